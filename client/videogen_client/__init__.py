"""The videogen command-line client. It speaks only the pipeline's HTTP API."""

__version__ = "0.1.0"
