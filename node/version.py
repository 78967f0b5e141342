"""The version this node reports to its peers and in ``operator/servers``."""

VERSION = "1.4.6-py"
