"""The local stack: the pipeline on loopback with no AWS account and no Docker (docs/local-stack.md)."""
