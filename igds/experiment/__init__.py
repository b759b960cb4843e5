"""Stage 5 — the reproduction: the paper's comparison in miniature, cell by cell, resumable.

A *cell* is one (task, pool setting, method, ratio, seed): select from the pool, LoRA fine-tune on the
selection, evaluate on the held-out test split. Every stage underneath is content-addressed
(selections, fine-tune runs, evaluations), so a rerun finds finished cells in the store and skips them,
and a smaller preset (``quick``) shares its cells with the larger one (``demo``).

Rooms, each importing only those above it in this list:

- ``grid``: :class:`ExperimentConfig`, the presets, :class:`Cell` and the cell plan;
- ``estimate``: the expected wall time of a set of cells;
- ``cells``: registering an experiment and recording / reading its cells (SQL in ``igds.store``);
- ``stats``: bootstrap intervals, differences to Random and amplification–gain correlations;
- ``plot``: the quartile test as a static SVG;
- ``report``: the markdown results page;
- ``run``: the run loop, :func:`run_experiment`.
"""

from igds.experiment.cells import (
    cell_status,
    empty_cells,
    experiment_cells,
    experiment_config,
    experiment_provenance,
    experiments,
    record_cell,
    register_experiment,
)
from igds.experiment.estimate import estimate_seconds, format_duration
from igds.experiment.grid import (
    GRID_BASELINES,
    PRESETS,
    QUARTILE_METHODS,
    Cell,
    ExperimentConfig,
    experiment_id,
    plan_cells,
    preset,
)
from igds.experiment.report import quartile_rows, report_markdown, verdict, write_report
from igds.experiment.run import plan_experiment, run_experiment
from igds.experiment.stats import (
    boot_means,
    correlation_rows,
    experiment_points,
    results_table,
    source_table,
    summarize,
)

__all__ = [
    "GRID_BASELINES", "PRESETS", "QUARTILE_METHODS", "Cell", "ExperimentConfig", "boot_means", "cell_status",
    "correlation_rows", "empty_cells", "estimate_seconds", "experiment_cells", "experiment_config", "experiment_id",
    "experiment_points", "experiment_provenance", "experiments", "format_duration", "plan_cells", "plan_experiment",
    "preset", "quartile_rows", "record_cell", "register_experiment", "report_markdown", "results_table",
    "run_experiment", "source_table", "summarize", "verdict", "write_report",
]
