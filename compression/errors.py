"""Errors a user of `edgeinspect compress` can act on; each message names the bad part of the request."""

from __future__ import annotations


class BudgetError(ValueError):
    """A budget or a fixed rank is malformed, or the model cannot be compressed to meet it."""


class LayerNotFactorizableError(ValueError):
    """The layer's shape has no useful factorization (grouped/depthwise conv, 1-wide kernel, ...)."""
