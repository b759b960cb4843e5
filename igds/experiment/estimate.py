"""How long a set of cells takes on this machine: the store's measured rates, or reference figures."""

from __future__ import annotations

import math

from igds.experiment.grid import Cell, ExperimentConfig
from igds.store import ActivationStore
from igds.training.results import BASE_RUN

# measured on the 2-core reference machine (CPU profile, bf16 autocast); replaced by the store's own
# figures as soon as it has finished runs
DEFAULT_SECONDS_PER_PAIR = 0.33
DEFAULT_SECONDS_PER_EVAL_ITEM = {"summarization": 0.45, "translation": 0.6, "math": 1.6}
CELL_OVERHEAD_SECONDS = 15.0
INTERVENTION_SECONDS = 460.0


def pool_size(cfg: ExperimentConfig, pool_setting: str) -> int:
    """Examples in a cell's pool (the general set is larger than any demo limit)."""
    n = cfg.pool_limit or 1200
    return 2 * n if pool_setting == "mixed" else n


def n_train(cfg: ExperimentConfig, cell: Cell) -> int:
    """Training pairs of a cell: its share of the pool."""
    return math.ceil(cell.ratio * pool_size(cfg, cell.pool_setting))


def measured_rates(store: ActivationStore) -> tuple[float, dict[str, float]]:
    """Seconds per training pair (CPU profile) and per evaluated test item by task, from the store's
    finished runs; the reference figures where it has none."""
    per_pair = store.finetune_seconds_per_pair("cpu")
    per_item = {**DEFAULT_SECONDS_PER_EVAL_ITEM, **store.eval_seconds_per_item(exclude_run_id=BASE_RUN)}
    return (DEFAULT_SECONDS_PER_PAIR if per_pair is None else per_pair), per_item


def estimate_seconds(cfg: ExperimentConfig, cells: list[Cell], store: ActivationStore,
                     tasks_needing_interventions: int = 0) -> float:
    """Expected wall time of ``cells`` on this machine (training + evaluation + overhead)."""
    per_pair, per_item = measured_rates(store)
    if cfg.finetune_profile != "cpu":
        per_pair = DEFAULT_SECONDS_PER_PAIR  # no measured figure for the profile; a GPU is far faster
    total = tasks_needing_interventions * INTERVENTION_SECONDS
    for c in cells:
        epochs = cfg.finetune(c.seed).epochs
        total += n_train(cfg, c) * epochs * per_pair + cfg.evaluation(c.task).n_examples * per_item[c.task]
        total += CELL_OVERHEAD_SECONDS
    return total


def format_duration(seconds: float) -> str:
    """``42 min`` or ``3 h 05 min``."""
    m = round(seconds / 60)
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min"
