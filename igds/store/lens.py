"""Feature labels and notes, activation quantiles and the reads behind selection diffs and the text lens (issue 16)."""

from __future__ import annotations


class LensQueries:
    """Queries on these tables (mixed into :class:`igds.store.ActivationStore`)."""
