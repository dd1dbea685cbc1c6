"""pcapstate: what happened to every TCP connection in a capture."""

__version__ = "0.1.0"
