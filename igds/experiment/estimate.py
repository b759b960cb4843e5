"""How long a set of cells takes on this machine: the store's measured rates, or reference figures."""

from __future__ import annotations

import math

from igds.experiment.grid import Cell, ExperimentConfig, quartile_of
from igds.store import ActivationStore
from igds.training.results import BASE_RUN

# measured on the 2-core reference machine (CPU profile, bf16 autocast); replaced by the store's own
# figures, per task, as soon as it has finished runs
DEFAULT_SECONDS_PER_PAIR = 0.33
DEFAULT_SECONDS_PER_EVAL_ITEM = {"summarization": 0.45, "translation": 0.6, "math": 1.6}
CELL_OVERHEAD_SECONDS = 15.0
INTERVENTION_SECONDS = 460.0       # a task's default-preset recall and interventions, when not stored
PAPER_INTERVENTION_SECONDS = 150.0  # the paper preset's (α = 1 only, no null)


def pool_size(cfg: ExperimentConfig, pool_setting: str) -> int:
    """Examples in a cell's pool (the general set is larger than any demo limit)."""
    n = cfg.pool_limit or 1200
    return 2 * n if pool_setting == "mixed" else n


def n_train(cfg: ExperimentConfig, cell: Cell) -> int:
    """Training pairs of a cell: its share of the pool (a quartile block: a quarter, rounded down)."""
    n = pool_size(cfg, cell.pool_setting)
    return n // 4 if quartile_of(cell.method) else math.ceil(cell.ratio * n)


def measured_rates(store: ActivationStore) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per training pair (CPU profile) and per evaluated test item, by task, from the store's
    finished runs; the reference figures where it has none."""
    per_pair = store.finetune_seconds_per_pair("cpu")
    per_item = {**DEFAULT_SECONDS_PER_EVAL_ITEM, **store.eval_seconds_per_item(exclude_run_id=BASE_RUN)}
    return per_pair, per_item


def estimate_seconds(cfg: ExperimentConfig, cells: list[Cell], store: ActivationStore,
                     tasks_needing_interventions: int = 0, tasks_needing_paper: int = 0) -> float:
    """Expected wall time of ``cells`` on this machine (training + evaluation + overhead), plus the method
    stages of tasks whose default (``tasks_needing_interventions``) or paper preset runs are not stored."""
    per_pair, per_item = measured_rates(store)
    total = tasks_needing_interventions * INTERVENTION_SECONDS + tasks_needing_paper * PAPER_INTERVENTION_SECONDS
    for c in cells:
        # no measured figure for the GPU profile: the CPU reference is an upper bound there
        rate = per_pair.get(c.task, DEFAULT_SECONDS_PER_PAIR) if cfg.finetune_profile == "cpu" else \
            DEFAULT_SECONDS_PER_PAIR
        epochs = cfg.finetune(c.seed).epochs
        total += n_train(cfg, c) * epochs * rate + cfg.evaluation(c.task).n_examples * per_item[c.task]
        total += CELL_OVERHEAD_SECONDS
    return total


def format_duration(seconds: float) -> str:
    """``42 min`` or ``3 h 05 min``."""
    m = round(seconds / 60)
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min"
