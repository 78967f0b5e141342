"""The Nacos 2.x gRPC edge: connections, naming requests and pushes over the same core."""
