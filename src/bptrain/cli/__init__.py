"""The click commands, one module per command family; `main` is the `bptrain` entry point."""

from .main import main

__all__ = ["main"]
