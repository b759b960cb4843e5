"""Vetting sessions, their decisions and the token activations the vetting queue highlights (issue 16)."""

from __future__ import annotations


class VettingQueries:
    """Queries on these tables (mixed into :class:`igds.store.ActivationStore`)."""
