"""Selections, their members and vetting decisions: ``selections``, ``selection_members``,
``feature_overrides``, ``example_overrides``."""

from __future__ import annotations


class SelectionQueries:
    """Queries on these tables (mixed into :class:`igds.store.ActivationStore`)."""
