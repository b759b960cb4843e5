"""Feature checks: the token-injection test and cross-seed SAE stability (issue 16)."""

from __future__ import annotations


class CheckQueries:
    """Queries on these tables (mixed into :class:`igds.store.ActivationStore`)."""
