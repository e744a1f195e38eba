"""devbox: a local, scaled-down copy of the live architecture."""

__version__ = "0.1.0"
