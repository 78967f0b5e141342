"""The Eureka REST facade (issue #14): Eureka clients on the same registry as Nacos clients."""
