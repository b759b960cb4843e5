"""The grid: :class:`ExperimentConfig`, its presets, and the cells a config plans.

A *cell* is one (task, pool setting, method, ratio, seed). The methods are IGDS plus the baselines the
baseline registry holds, so a baseline registered there joins the grid without an edit here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from igds.config import ConfigBase
from igds.data.corpus import POOL_SETTINGS
from igds.method.baselines import BASELINES
from igds.method.presets import DEFAULT_PRESET, METHOD_PRESETS
from igds.scope import GRID_POOL
from igds.training.config import EvalConfig
from igds.training.finetune import FinetuneConfig

# the baselines a grid may compare at its ratio: every registered one but Full, which is always run, at ρ = 1
GRID_BASELINES = tuple(m for m in BASELINES if m != "full")
QUARTILE_POOL = "task-only"  # the controlled test runs on the task's own pool
QUARTILE_RATIO = 0.25        # four equal blocks of the FRS ranking
QUARTILE_METHODS = tuple(f"igds-q{q}" for q in range(1, 5))
# the controls (``controls=True``, igds.method.controls): equal token budgets, length-stratified quartiles, task first
TOKEN_METHODS = ("igds-tokens", "random-tokens")
STRATIFIED_METHODS = tuple(f"igds-sq{q}" for q in range(1, 5))
TASK_FIRST = "task-first"
CONTROL_METHODS = (*TOKEN_METHODS, *STRATIFIED_METHODS, TASK_FIRST)


GRID_POOLS = tuple(p for p in POOL_SETTINGS if p != "noisy")
"""The pools a grid runs by default: every setting but the noisy pool, a control run on request."""


def igds_method(preset: str) -> str:
    """The cell method of IGDS under a method preset: ``igds`` for the default, ``igds-<preset>`` otherwise."""
    return "igds" if preset == DEFAULT_PRESET else f"igds-{preset}"


def preset_of(method: str) -> str | None:
    """The method preset of an IGDS cell method (quartile and control cells use the default); None for a baseline
    or a control that does not score with FRS."""
    if method == "igds" or method in (*QUARTILE_METHODS, *STRATIFIED_METHODS, "igds-tokens"):
        return DEFAULT_PRESET
    if method in CONTROL_METHODS:
        return None
    return method.removeprefix("igds-") if method.startswith("igds-") else None


def quartile_of(method: str) -> int | None:
    """1..4 for a quartile (or length-stratified quartile) cell method, else None."""
    for block in (QUARTILE_METHODS, STRATIFIED_METHODS):
        if method in block:
            return block.index(method) + 1
    return None


def method_order(method: str) -> int:
    """Row order of the tables: IGDS (default preset, then the others), the quartiles, then the baselines in
    registry order (Random first), Full last."""
    fixed = ["igds", *(igds_method(p) for p in METHOD_PRESETS if p != DEFAULT_PRESET), *QUARTILE_METHODS,
             *STRATIFIED_METHODS, *TOKEN_METHODS, TASK_FIRST, *(m for m in BASELINES if m != "full"), "full"]
    return fixed.index(method) if method in fixed else len(fixed)


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig(ConfigBase):
    """The grid of cells and the settings every cell shares.

    Args:
        preset: label of the grid preset the values came from (``quick`` / ``demo`` / ``gpu``: how many
            cells, not how each selects; that is ``method_presets``).
        tasks: tasks to run, in order.
        pool_settings: ``task-only`` (the task's training set), ``mixed`` (plus the general set) and/or ``noisy``
            (the training set with 30% of it corrupted, a positive control).
        pool_limit: task examples in the pool (and general examples added in the mixed setting).
        ratio: the selection share of the main comparison (IGDS vs. the baselines, all at this size).
        igds_ratios: extra IGDS shares; Random runs at each of them too (one seed), so every IGDS row has
            a same-size reference.
        baselines: baselines run at ``ratio`` (Full is always run, at ρ = 1, without a verdict).
        seeds: fine-tune seeds of IGDS (default preset) and Random at ``ratio``; IGDS re-trains its one
            selection per seed while Random also re-selects. Every other cell runs the first seed only.
        method_presets: IGDS under each of these method presets (:mod:`igds.method.presets`) at ``ratio``.
        quartiles: the controlled test: IGDS's FRS ranking of the task-only pool cut into four equal
            blocks (``igds-q1`` top … ``igds-q4`` bottom), each fine-tuned, beside Random of the same size.
        controls: the length and task-share controls (:mod:`igds.method.controls`): ``igds-tokens`` and
            ``random-tokens`` at an equal token budget (ρ of the task-only pool's tokens), ``igds-sq1..4`` (FRS
            quarters within four length strata, task-only) and ``task-first`` (the mixed pool, the task's items
            first in a seeded order).
        n_eval: held-out test items per task: a seeded sample stratified by source.
        eval_seed: seed of the test sample.
        length_quantile: the fine-tune's sequence length is this quantile of the pool's full lengths ...
        length_cap: ... capped at this many tokens; longer examples are dropped and counted, never cut.
        finetune_profile: ``cpu`` (r=16 on attention, 1 epoch) or ``default`` (the paper's, for GPUs).
        finetune_overrides: ``FinetuneConfig`` fields replacing the profile's (e.g. ``{"epochs": 2}``).
        eval_overrides: ``EvalConfig`` fields (besides ``n_examples`` and ``sample_seed``) for every evaluation.
    """

    preset: str = field(default="demo", metadata={"help": "grid preset label"})
    tasks: tuple[str, ...] = field(default=("summarization", "translation", "math"), metadata={"help": "tasks"})
    pool_settings: tuple[str, ...] = field(default=GRID_POOLS, metadata={"help": "task-only | mixed | noisy"})
    pool_limit: int = field(default=GRID_POOL.limit,
                            metadata={"help": "task examples per pool (and general ones in mixed)"})
    ratio: float = field(default=0.5, metadata={"help": "share of the main comparison"})
    igds_ratios: tuple[float, ...] = field(default=(), metadata={"help": "extra IGDS shares (with Random)"})
    baselines: tuple[str, ...] = field(default=GRID_BASELINES, metadata={"help": "baselines at the ratio"})
    seeds: tuple[int, ...] = field(default=(0, 1, 2), metadata={"help": "seeds of IGDS and Random at the ratio"})
    method_presets: tuple[str, ...] = field(default=tuple(METHOD_PRESETS), metadata={"help": "IGDS method presets"})
    quartiles: bool = field(default=True, metadata={"help": "the FRS-quartile test on the task-only pool"})
    controls: bool = field(default=False, metadata={
        "help": "the controls: IGDS and Random at an equal token budget, length-stratified FRS quartiles "
                "(task-only pool), task first (mixed pool)", "added": True})
    n_eval: dict[str, int] = field(default_factory=lambda: {"summarization": 100, "translation": 100, "math": 50},
                                   metadata={"help": "test items per task"})
    eval_seed: int = field(default=0, metadata={"help": "seed of the stratified test sample"})
    length_quantile: float = field(default=0.99, metadata={"help": "sequence length: this quantile of the pool"})
    length_cap: int = field(default=512, metadata={"help": "sequence length cap (longer examples are dropped)"})
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
        if not self.method_presets or not set(self.method_presets) <= set(METHOD_PRESETS):
            raise ValueError(f"method_presets must be a non-empty subset of {tuple(METHOD_PRESETS)}")
        if not 0 < self.length_quantile <= 1 or self.length_cap < 8:
            raise ValueError("length_quantile must be in (0, 1] and length_cap >= 8")

    def finetune(self, seed: int, max_length: int | None = None) -> FinetuneConfig:
        """The fine-tune config of a cell (``max_length``: the pool's data-driven sequence length)."""
        base = FinetuneConfig.cpu_profile() if self.finetune_profile == "cpu" else FinetuneConfig()
        length = {} if max_length is None else {"max_length": int(max_length)}
        return FinetuneConfig.from_dict({**base.to_dict(), **length, **self.finetune_overrides, "seed": seed})

    def evaluation(self, task: str) -> EvalConfig:
        """The evaluation config of a task."""
        return EvalConfig.from_dict({**self.eval_overrides, "n_examples": int(self.n_eval.get(task, 100)),
                                     "sample_seed": self.eval_seed})


PRESETS: dict[str, ExperimentConfig] = {
    # one task, one pool, one seed, the default method preset; its cells are also cells of "demo"
    "quick": ExperimentConfig(preset="quick", tasks=("summarization",), pool_settings=("task-only",), seeds=(0,),
                              method_presets=("default",), quartiles=False, pool_limit=160,
                              n_eval={"summarization": 60}),
    # sized for the 2-core reference machine: its cells run most informative first (see plan_cells), so a
    # run with a time budget (--max-minutes) has compared what matters most; a rerun continues
    "demo": ExperimentConfig(pool_limit=160, n_eval={"summarization": 60, "translation": 60, "math": 30}),
    "gpu": ExperimentConfig(preset="gpu", pool_limit=1200, finetune_profile="default",
                            n_eval={"summarization": 400, "translation": 400, "math": 400}),
}


def preset(name: str, **overrides) -> ExperimentConfig:
    """A named preset with some fields replaced (``None`` values are ignored)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


def experiment_id(cfg: ExperimentConfig, provenance: dict) -> str:
    """The experiment's id: the grid preset label plus a hash of the whole grid config and of what the method
    is at run time (:func:`igds.experiment.run.method_provenance`: per task each method preset's configs,
    intervention run and F*, and the overrides). A new F*, a veto, a pin or another method preset therefore
    starts a new experiment instead of mixing variants in one row; the finished cells it shares with the
    old one are found in the store, not run again."""
    return f"{cfg.preset}-{cfg.stage_key(provenance_key(provenance))[:8]}"


def provenance_key(provenance: dict) -> str:
    """The part of a provenance record the experiment id covers (JSON): every task's method identity."""
    return json.dumps({t: p.get("method") for t, p in sorted(provenance.items())}, sort_keys=True, default=str)


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
    """Every cell, in run order, most informative first so that a run stopped by its time budget has
    compared what matters most: per task and pool IGDS, Random, Longest and Shortest at the main ratio;
    then the quartile test; then the other seeds of IGDS and Random; then IGDS under the other method
    presets; then the other baselines, Full and any extra ratios (each with Random of its size)."""
    s0, r = cfg.seeds[0], cfg.ratio
    pairs = [(t, p) for t in cfg.tasks for p in cfg.pool_settings]
    first = [m for m in ("random", "longest", "shortest") if m in cfg.baselines]
    tiers: list[list[Cell]] = [[], [], [], [], []]
    for t, p in pairs:
        tiers[0] += [Cell(t, p, "igds", r, s0)] + [Cell(t, p, m, r, s0) for m in first]
        tiers[2] += [Cell(t, p, m, r, s) for s in cfg.seeds[1:]
                     for m in ("igds", "random") if m == "igds" or "random" in cfg.baselines]
        tiers[3] += [Cell(t, p, igds_method(mp), r, s0) for mp in cfg.method_presets if mp != DEFAULT_PRESET]
        tiers[4] += [Cell(t, p, m, r, s0) for m in cfg.baselines if m not in first]
        tiers[4].append(Cell(t, p, "full", 1.0, s0))
        for x in cfg.igds_ratios:
            if x != r:
                tiers[4] += [Cell(t, p, "igds", x, s0), Cell(t, p, "random", x, s0)]
    if cfg.quartiles and QUARTILE_POOL in cfg.pool_settings:
        for t in cfg.tasks:
            tiers[1] += [Cell(t, QUARTILE_POOL, m, QUARTILE_RATIO, s0) for m in QUARTILE_METHODS]
            tiers[1].append(Cell(t, QUARTILE_POOL, "random", QUARTILE_RATIO, s0))
    if cfg.controls:
        for t in cfg.tasks:
            if QUARTILE_POOL in cfg.pool_settings:
                tiers[1] += [Cell(t, QUARTILE_POOL, m, r, s0) for m in TOKEN_METHODS]
                tiers[1] += [Cell(t, QUARTILE_POOL, m, QUARTILE_RATIO, s0) for m in STRATIFIED_METHODS]
                tiers[1].append(Cell(t, QUARTILE_POOL, "random", QUARTILE_RATIO, s0))
            if "mixed" in cfg.pool_settings:
                tiers[1].append(Cell(t, "mixed", TASK_FIRST, r, s0))
    if DEFAULT_PRESET not in cfg.method_presets:
        tiers = [[c for c in tier if preset_of(c.method) != DEFAULT_PRESET] for tier in tiers]
    out: list[Cell] = []
    for c in (c for tier in tiers for c in tier):
        if c not in out:  # e.g. Random at an extra ratio equal to the quartile ratio
            out.append(c)
    return out
