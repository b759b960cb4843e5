"""The grid: :class:`ExperimentConfig`, its presets, and the cells a config plans.

A *cell* is one (task, pool setting, method, ratio, seed). The methods are IGDS plus the baselines the
baseline registry holds, so a baseline registered there joins the grid without an edit here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from igds.config import ConfigBase
from igds.data.corpus import POOL_SETTINGS
from igds.method.baselines import BASELINES
from igds.training.evaluate import EvalConfig
from igds.training.finetune import FinetuneConfig

# the baselines a grid may compare at its ratio: every registered one but Full, which is always run, at ρ = 1
GRID_BASELINES = tuple(m for m in BASELINES if m != "full")
METHOD_ORDER = {m: i for i, m in enumerate(("igds", *BASELINES))}  # rows of the tables


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig(ConfigBase):
    """The grid of cells and the settings every cell shares.

    Args:
        preset: label of the preset the values came from.
        tasks: tasks to run, in order.
        pool_settings: ``task-only`` (the task's training set) and/or ``mixed`` (plus the general set).
        pool_limit: task examples in the pool (and general examples added in the mixed setting).
        ratio: the selection share of the main comparison (IGDS vs. the baselines).
        igds_ratios: extra IGDS shares, for the amplification–gain correlation.
        baselines: baselines run at ``ratio`` (Full is always run).
        seeds: fine-tune seeds of IGDS and Random at ``ratio`` (Random also reselects per seed);
            every other cell uses the first seed.
        n_eval: held-out test items per task (the first N of the test split).
        finetune_profile: ``cpu`` (r=16 on attention, 1 epoch) or ``default`` (the paper's, for GPUs).
        finetune_overrides: ``FinetuneConfig`` fields replacing the profile's (e.g. ``{"epochs": 2}``).
        eval_overrides: ``EvalConfig`` fields (besides ``n_examples``) for every evaluation.
    """

    preset: str = field(default="demo", metadata={"help": "preset label"})
    tasks: tuple[str, ...] = field(default=("summarization", "translation", "math"), metadata={"help": "tasks"})
    pool_settings: tuple[str, ...] = field(default=POOL_SETTINGS, metadata={"help": "task-only | mixed"})
    pool_limit: int = field(default=300, metadata={"help": "task examples per pool (and general ones in mixed)"})
    ratio: float = field(default=0.5, metadata={"help": "share of the main comparison"})
    igds_ratios: tuple[float, ...] = field(default=(0.25, 0.75), metadata={"help": "extra IGDS shares"})
    baselines: tuple[str, ...] = field(default=GRID_BASELINES, metadata={"help": "baselines at the ratio"})
    seeds: tuple[int, ...] = field(default=(0, 1, 2), metadata={"help": "seeds of IGDS and Random at the ratio"})
    n_eval: dict[str, int] = field(default_factory=lambda: {"summarization": 100, "translation": 100, "math": 50},
                                   metadata={"help": "test items per task"})
    finetune_profile: str = field(default="cpu", metadata={"help": "cpu | default"})
    finetune_overrides: dict = field(default_factory=dict, metadata={"help": "FinetuneConfig fields to override"})
    eval_overrides: dict = field(default_factory=dict, metadata={"help": "EvalConfig fields to override"})

    def __post_init__(self):
        if not set(self.pool_settings) <= set(POOL_SETTINGS) or not self.pool_settings:
            raise ValueError(f"pool_settings must be a non-empty subset of {POOL_SETTINGS}")
        if not set(self.baselines) <= set(GRID_BASELINES):
            raise ValueError(f"baselines must be a subset of {GRID_BASELINES}")
        if not self.seeds or self.pool_limit < 0 or not 0 < self.ratio <= 1:
            raise ValueError("need at least one seed, pool_limit >= 0 and ratio in (0, 1]")
        if self.finetune_profile not in ("cpu", "default"):
            raise ValueError("finetune_profile must be cpu or default")

    def finetune(self, seed: int) -> FinetuneConfig:
        """The fine-tune config of a cell."""
        base = FinetuneConfig.cpu_profile() if self.finetune_profile == "cpu" else FinetuneConfig()
        return FinetuneConfig.from_dict({**base.to_dict(), **self.finetune_overrides, "seed": seed})

    def evaluation(self, task: str) -> EvalConfig:
        """The evaluation config of a task."""
        return EvalConfig.from_dict({**self.eval_overrides, "n_examples": int(self.n_eval.get(task, 100))})


PRESETS: dict[str, ExperimentConfig] = {
    # one task, one pool, one seed; its cells are the first cells of "demo", which reuses them
    "quick": ExperimentConfig(preset="quick", tasks=("summarization",), pool_settings=("task-only",), seeds=(0,)),
    "demo": ExperimentConfig(),
    "gpu": ExperimentConfig(preset="gpu", pool_limit=1200, finetune_profile="default",
                            n_eval={"summarization": 400, "translation": 400, "math": 400}),
}


def preset(name: str, **overrides) -> ExperimentConfig:
    """A named preset with some fields replaced (``None`` values are ignored)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


def experiment_id(cfg: ExperimentConfig) -> str:
    """The experiment's id: preset label plus a hash of the whole config."""
    return f"{cfg.preset}-{cfg.stage_key()[:8]}"


@dataclass(frozen=True)
class Cell:
    """One fine-tune of the grid."""

    task: str
    pool_setting: str
    method: str
    ratio: float
    seed: int

    @property
    def label(self) -> str:
        """``task/pool/method@ratio/seed s``, for logs and progress."""
        return f"{self.task}/{self.pool_setting}/{self.method}@{self.ratio:g}/seed {self.seed}"

    @property
    def key(self) -> tuple:
        """The cell's primary key in ``experiment_cells`` (after the experiment id)."""
        return (self.task, self.pool_setting, self.method, self.ratio, self.seed)


def plan_cells(cfg: ExperimentConfig) -> list[Cell]:
    """Every cell, in run order: per task and pool, one seed of each method first, then the other seeds."""
    cells = []
    for task in cfg.tasks:
        for pool in cfg.pool_settings:
            s0 = cfg.seeds[0]
            cells += [Cell(task, pool, "igds", cfg.ratio, s0), Cell(task, pool, "random", cfg.ratio, s0)]
            cells += [Cell(task, pool, m, cfg.ratio, s0) for m in cfg.baselines if m != "random"]
            cells.append(Cell(task, pool, "full", 1.0, s0))
            cells += [Cell(task, pool, "igds", r, s0) for r in cfg.igds_ratios if r != cfg.ratio]
            for s in cfg.seeds[1:]:
                cells += [Cell(task, pool, "igds", cfg.ratio, s)]
                if "random" in cfg.baselines:
                    cells.append(Cell(task, pool, "random", cfg.ratio, s))
    return cells
