"""Moved to `aiyield.plugins.emit`; this name stays importable for tools written against it."""

from aiyield.plugins.emit import Emitter

__all__ = ["Emitter"]
