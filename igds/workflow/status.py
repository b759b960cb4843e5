"""Workspace status for the overview page and ``igds store info``: what exists, what each stage produced."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from igds.modeling.load import default_model_dir
from igds.modeling.sae import default_sae_dir
from igds.store import ActivationStore


@dataclass(frozen=True)
class WorkspaceStatus:
    """Snapshot of the workspace: models, SAEs (with quality), corpus counts, runs, readiness flags."""

    store_path: str
    model_ready: bool
    sae_ready: bool
    models: pd.DataFrame
    saes: pd.DataFrame
    examples: pd.DataFrame
    runs: pd.DataFrame
    counts: dict

    @property
    def extracted(self) -> bool:
        """Whether any extraction run has finished."""
        return bool(((self.runs["stage"] == "extract") & (self.runs["status"] == "done")).any()) \
            if not self.runs.empty else False

    @property
    def prepared(self) -> bool:
        """Whether the first run got through: an extraction and an intervention run have finished."""
        done = self.runs[self.runs["status"] == "done"] if not self.runs.empty else self.runs
        return self.extracted and bool((done["stage"] == "intervene").any())


def workspace_status(store: ActivationStore) -> WorkspaceStatus:
    """Collect the workspace snapshot (cheap: a handful of small queries)."""
    saes = store.query_df("SELECT sae_key, name, site, d_in, d_sae, architecture, quality, created FROM saes")
    if not saes.empty:
        q = saes["quality"].map(json.loads)
        for col in ("l0", "explained_variance", "dead_fraction", "ce_recovered"):
            saes[col] = q.map(lambda d, c=col: d.get(c))
        saes = saes.drop(columns=["quality"])
    return WorkspaceStatus(
        store_path=str(store.path),
        model_ready=(default_model_dir() / "config.json").exists(),
        sae_ready=(default_sae_dir() / "cfg.json").exists(),
        models=store.query_df("SELECT model_key, name, family, n_layers, d_model, n_params FROM models"),
        saes=saes,
        examples=store.query_df("SELECT task, split, count(*) AS n FROM examples GROUP BY task, split "
                                "ORDER BY task, split"),
        runs=store.query_df("SELECT run_id, stage, status, n_done, n_total, message, created, updated FROM runs "
                            "ORDER BY updated DESC"),
        counts=store.summary(),
    )
