"""Intervention effects: ``effects``, ``effect_summary``, ``attribution``."""

from __future__ import annotations


class EffectQueries:
    """Queries on these tables (mixed into :class:`igds.store.ActivationStore`)."""
