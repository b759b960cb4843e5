"""Recall candidates and the logit lens: ``recall``, ``feature_info``."""

from __future__ import annotations


class RecallQueries:
    """Queries on these tables (mixed into :class:`igds.store.ActivationStore`)."""
