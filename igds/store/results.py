"""Fine-tunes, evaluations and their per-example outputs, amplification, correlations and the
base-model NLL cache: ``finetunes``, ``evals``, ``eval_outputs``, ``amplification``, ``correlations``,
``example_nll``."""

from __future__ import annotations


class ResultQueries:
    """Queries on these tables (mixed into :class:`igds.store.ActivationStore`)."""
