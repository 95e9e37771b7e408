"""The worker runtime: ``execute`` decides about one delivery, ``consumer`` runs many."""

from __future__ import annotations

from .consumer import Worker as Worker

__all__ = ("Worker",)
