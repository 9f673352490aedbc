"""The `flopex` command line: the only place that prints."""

from __future__ import annotations

from flopex.cli._app import app, main

__all__ = ["app", "main"]
