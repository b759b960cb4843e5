"""The grid in the store: register an experiment, record its cells and read them back.

Every statement lives in :class:`igds.store.experiments.ExperimentQueries`; this module turns its rows
into configs and cells.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata

import pandas as pd

from igds.experiment.grid import Cell, ExperimentConfig, experiment_id
from igds.store import ActivationStore
from igds.training.results import BASE_RUN, make_eval_id

PACKAGES = ("torch", "transformers", "peft", "sae-lens", "duckdb", "datasets", "streamlit")  # versions kept


def register_experiment(store: ActivationStore, cfg: ExperimentConfig, command: str, provenance: dict) -> str:
    """Create (or refresh) the experiment row with the command, package versions and the method's
    provenance per task (:func:`igds.experiment.run.method_provenance`); returns its id, which covers the
    grid config and every task's method identity."""
    eid = experiment_id(cfg, provenance)
    versions = {p: _version(p) for p in PACKAGES} | {"python": platform.python_version()}
    store.save_experiment(eid, cfg.preset, cfg.to_json(), command, versions,
                          json.dumps(provenance, sort_keys=True, default=str))
    return eid


def experiment_provenance(store: ActivationStore, exp_id: str) -> dict:
    """Per task the method presets' configs, intervention runs and F*, the overrides, the amplification
    features and their control, and the sequence lengths an experiment ran with ({} when unrecorded)."""
    row = store.experiment_row(exp_id)
    return json.loads(row["provenance"]) if row is not None and row.get("provenance") else {}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def record_cell(store: ActivationStore, exp_id: str, cell: Cell, **values) -> None:
    """Write a cell's row: any of selection_id, run_id, eval_id, status, seconds, note (others stay empty)."""
    store.record_experiment_cell(exp_id, cell.key, **values)


def experiment_config(store: ActivationStore, exp_id: str) -> ExperimentConfig:
    """The config an experiment was registered with; raises ``ValueError`` for an unknown id."""
    row = store.experiment_row(exp_id)
    if row is None:
        raise ValueError(f"no experiment {exp_id!r}")
    return ExperimentConfig.from_dict(json.loads(row["config"]))


def experiments(store: ActivationStore) -> pd.DataFrame:
    """Stored experiments, newest first, with their finished cell counts."""
    return store.list_experiments()


def experiment_cells(store: ActivationStore, exp_id: str) -> pd.DataFrame:
    """Cells of an experiment joined with their evaluation, base evaluation and amplification."""
    return store.experiment_cell_rows(exp_id)


def cell_status(store: ActivationStore, exp_id: str) -> dict[tuple, str]:
    """Recorded status (running, done, empty) of each cell, by :attr:`Cell.key`."""
    return store.experiment_cell_status(exp_id)


def empty_cells(store: ActivationStore, exp_id: str, task: str) -> pd.DataFrame:
    """A task's cells that could not run, with the reason (IGDS without validated features)."""
    return store.empty_experiment_cells(exp_id, task)


def base_eval_id(cfg: ExperimentConfig, task: str, model_key: str | None) -> str:
    """Id of the base evaluation a task's cells are compared with: same model, items and settings."""
    return make_eval_id(BASE_RUN, task, "test", model_key, cfg.evaluation(task).to_dict())
