"""The reproduction grid's tables: ``experiments``, ``experiment_cells``, ``experiment_results``,
``experiment_correlations``."""

from __future__ import annotations


class ExperimentQueries:
    """Queries on these tables (mixed into :class:`igds.store.ActivationStore`)."""
