"""Tasks in the workspace: a task of the researcher's own, defined once and seen by every page, CLI command and
job, because it lives in the store (``tasks``) rather than in one process.

A task is a :class:`~igds.data.tasks.TaskSpec` (instruction, system prompt, metric, answer extraction from a
fixed menu, generation budget) plus a :class:`TaskData`: which datasets give its probe / dev / test items
(by a split column, or a seeded split with sizes) and which datasets form its candidate pool (any mix of the
workspace's datasets and the shipped general set). Adding a task writes its memberships, so every stage reads
its items exactly as it reads the shipped tasks' (:func:`task_split`). An example is in at most one split of a
task: pool rows that are also eval items stay eval items (the pool never holds a test item).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

import pyarrow as pa

from igds.config import ConfigBase
from igds.constants import GENERAL
from igds.data.ingest import SPLIT_LABELS
from igds.data.records import Example
from igds.data.tasks import (
    BUILTIN_TASKS,
    TaskSpec,
    UnknownTaskError,
    check_references,
    get_task,
    list_tasks,
    register_task,
    unregister_task,
)

EVAL_SPLITS = ("probe", "dev", "test")
EVAL_LABELS = {label for label, split in SPLIT_LABELS.items() if split in EVAL_SPLITS}
SPLIT_MODES = ("seeded", "column")


@dataclass(frozen=True, kw_only=True)
class TaskData(ConfigBase):
    """Where a workspace task's items come from.

    Args:
        eval_datasets: datasets giving the probe (recall), dev (interventions) and test (evaluation) items.
        split_by: ``seeded`` (a seeded shuffle cut into ``n_probe``/``n_dev``/``n_test``) or ``column`` (the
            datasets' mapped split column: probe, dev/validation/val, test; other labels are no eval item).
        n_probe: probe items (``seeded``).
        n_dev: dev items (``seeded``).
        n_test: test items (``seeded``).
        seed: seed of the split.
        pool_datasets: datasets forming the candidate pool; ``general`` is the shipped general set, which the
            ``mixed`` pool setting adds (``task-only`` is the rest).
    """

    eval_datasets: tuple[str, ...] = field(default=(), metadata={"help": "datasets of the probe/dev/test items"})
    split_by: str = field(default="seeded", metadata={"help": "seeded | column"})
    n_probe: int = field(default=100, metadata={"help": "probe items (seeded split)"})
    n_dev: int = field(default=50, metadata={"help": "dev items (seeded split)"})
    n_test: int = field(default=100, metadata={"help": "test items (seeded split)"})
    seed: int = field(default=0, metadata={"help": "seed of the split"})
    pool_datasets: tuple[str, ...] = field(default=(), metadata={"help": "datasets of the candidate pool "
                                                                          "('general': the shipped general set)"})

    def __post_init__(self):
        if self.split_by not in SPLIT_MODES:
            raise ValueError(f"split_by must be one of {', '.join(SPLIT_MODES)}, not {self.split_by!r}")
        if not self.eval_datasets:
            raise ValueError("a task needs at least one dataset for its probe, dev and test items")
        if not self.pool_datasets:
            raise ValueError("a task needs a candidate pool: at least one pool dataset (or 'general')")
        if self.split_by == "seeded" and min(self.n_probe, self.n_dev, self.n_test) < 1:
            raise ValueError("a seeded split needs at least one probe, one dev and one test item")

    @property
    def default_pool_setting(self) -> str:
        """``mixed`` when the pool includes the shipped general set, else ``task-only``."""
        return "mixed" if GENERAL in self.pool_datasets else "task-only"


def _check_name(name: str) -> None:
    if name in BUILTIN_TASKS or name == GENERAL:
        raise ValueError(f"task name {name!r} is taken by a shipped task; choose another name")


def _eval_memberships(rows_of: dict[str, list[tuple[str, str]]], data: TaskData) -> dict[str, list[tuple[str, str]]]:
    """``{split: [(dataset, example_id)]}`` of the eval splits; an id is used once (its first row)."""
    seen: set[str] = set()
    items: list[tuple[str, str, str]] = []  # dataset, id, label
    for ds in data.eval_datasets:
        for eid, label in rows_of[ds]:
            if eid not in seen and (data.split_by == "seeded" or label in EVAL_LABELS):
                seen.add(eid)
                items.append((ds, eid, label))
    out: dict[str, list[tuple[str, str]]] = {s: [] for s in EVAL_SPLITS}
    if data.split_by == "column":
        for ds, eid, label in items:
            out[SPLIT_LABELS[label]].append((ds, eid))
        empty = [s for s in EVAL_SPLITS if not out[s]]
        if empty:
            labels = sorted({lb or "(none)" for ds in data.eval_datasets for _, lb in rows_of[ds]})
            raise ValueError(f"the split column gives no {', '.join(empty)} rows (labels found: {', '.join(labels)}); "
                             "label rows probe, dev (or validation) and test, or use a seeded split")
        return out
    want = data.n_probe + data.n_dev + data.n_test
    if len(items) < want:
        raise ValueError(f"the eval dataset(s) have {len(items)} distinct examples; the split asks for {want} "
                         f"({data.n_probe} probe + {data.n_dev} dev + {data.n_test} test)")
    order = sorted(items, key=lambda t: t[1])
    random.Random(data.seed).shuffle(order)
    cut = [0, data.n_probe, data.n_probe + data.n_dev, want]
    for split, a, b in zip(EVAL_SPLITS, cut, cut[1:], strict=False):
        out[split] = [(ds, eid) for ds, eid, _ in order[a:b]]
    return out


def add_task(store, spec: TaskSpec, data: TaskData) -> dict[str, int]:
    """Define a workspace task: store its spec and its memberships in one transaction, register it here.

    Args:
        store: the workspace's :class:`igds.store.ActivationStore`.
        spec: how the task is prompted, generated and scored.
        data: where its items come from.

    Returns:
        Items per split (``probe``, ``dev``, ``test``, ``train`` = the task's own pool) and ``overlap``: pool
        rows left out because they are eval items.

    Raises:
        ValueError: a taken name, an unknown dataset, too few items, a split column without a split, or an
            eval item's response over ``MAX_REFERENCE_CHARS`` (named by dataset and row).
    """
    _check_name(spec.name)
    register_task(spec, overwrite=True)  # validates the name and the metric before anything is stored
    try:
        return _add_task(store, spec, data)
    except BaseException:
        unregister_task(spec.name)
        store.register_tasks()  # the spec stays known only if the store holds it (a taken name)
        raise


def _add_task(store, spec: TaskSpec, data: TaskData) -> dict[str, int]:
    names = {*data.eval_datasets, *(d for d in data.pool_datasets if d != GENERAL)}
    rows_of: dict[str, list[tuple[str, str]]] = {}
    answers: dict[tuple[str, str], tuple[int, str]] = {}  # (dataset, eval item id) -> (row number, response)
    for ds in sorted(names):
        if store.dataset(ds) is None:
            known = ", ".join(store.datasets_table().name) or "none yet"
            raise ValueError(f"unknown dataset {ds!r}; datasets in this workspace: {known}")
        df = store.dataset_examples(ds)
        rows_of[ds] = list(zip(df.example_id, df.split_label.fillna(""), strict=True))
        if ds in data.eval_datasets:  # an eval item's response is a reference: its first row, for the message
            first = df.drop_duplicates("example_id")
            answers.update(((ds, e), (int(n), r)) for e, n, r in zip(first.example_id, first.row_no, first.response,
                                                                     strict=True))
    evals = _eval_memberships(rows_of, data)
    check_references((ds, *answers[ds, eid]) for items in evals.values() for ds, eid in items)
    eval_ids = {eid for items in evals.values() for _, eid in items}
    used, overlap = set(eval_ids), set()
    pool: list[tuple[str, str]] = []
    for ds in (d for d in data.pool_datasets if d != GENERAL):
        for eid, label in rows_of[ds]:
            if eid in eval_ids:
                # an eval row of a dataset that is also a pool dataset is not an overlap; its content elsewhere is
                if not (ds in data.eval_datasets and (data.split_by == "seeded" or label in EVAL_LABELS)):
                    overlap.add(eid)
            elif eid not in used:
                used.add(eid)
                pool.append((ds, eid))
    members = [*((ds, split, eid) for split, items in evals.items() for ds, eid in items),
               *((ds, "train", eid) for ds, eid in pool)]
    counts = {**{s: len(v) for s, v in evals.items()}, "train": len(pool), "overlap": len(overlap)}
    store.insert_task(spec.name, spec.to_dict(), data.to_dict(), counts, pa.table({
        "dataset": [m[0] for m in members], "task": [spec.name] * len(members),
        "split": [m[1] for m in members], "example_id": [m[2] for m in members]}))
    return counts


def remove_task(store, name: str, expect=None) -> int:
    """Remove a workspace task and its memberships (its runs, selections and results stay in the store).

    ``expect``: the confirmed plan (``store.removal_plan("task", name)``); refused when it no longer holds.

    Raises:
        ValueError: for a shipped task; UnknownTaskError for a name the workspace does not have.
    """
    _check_name(name)
    if name not in store.register_tasks():
        raise UnknownTaskError(f"unknown workspace task {name!r}; workspace tasks: "
                               f"{', '.join(store.register_tasks()) or 'none'}")
    n = store.remove_task(name, expect)
    store.register_tasks()
    return n


def require_task(store, name: str) -> TaskSpec:
    """The task called ``name`` (shipped or in the workspace), before anything heavy loads.

    Raises:
        UnknownTaskError: listing the known tasks.
    """
    store.register_tasks()
    return get_task(name)


def task_names(store) -> list[str]:
    """Every task a page or command may offer: the shipped ones, then the workspace's (oldest first)."""
    store.register_tasks()
    return list_tasks()


def task_data(store, name: str) -> TaskData | None:
    """The data definition of a workspace task (None for a shipped task)."""
    rows = store.task_rows()
    row = rows[rows.name == name]
    return TaskData.from_dict(json.loads(row.data.iloc[0])) if not row.empty else None


def tasks_table(store):
    """Every task with its metric, answer rule and items per split (for ``igds task list`` and the Data page)."""
    import pandas as pd

    store.register_tasks()
    counts = store.task_split_counts().pivot_table(index="task", columns="split", values="n", aggfunc="sum")
    stored = set(store.task_rows().name)
    rows = []
    for name in list_tasks():
        spec = get_task(name)
        c = counts.loc[name] if name in counts.index else {}
        rows.append({"task": name, "kind": "workspace" if name in stored else "shipped", "metric": spec.metric,
                     "answer": spec.answer + (f" {spec.answer_arg}" if spec.answer_arg else ""),
                     **{s: int(c.get(s, 0) or 0) for s in (*EVAL_SPLITS, "train")}})
    return pd.DataFrame(rows)


def task_split(store, task: str, split: str) -> list[Example]:
    """A task's examples of one split from the store (ordered by source and id, as the shipped corpus is)."""
    df = store.task_examples(task, split)
    return [Example(r.id, r.task, r.source, r.split, r.prompt, r.response, json.loads(r.meta or "{}"))
            for r in df.itertuples()]


def test_sample(store, task: str, n: int, seed: int = 0) -> list[Example]:
    """The evaluation items of a task: a seeded, source-stratified sample of its test split (all for ``n=0``)."""
    from igds.data.corpus import stratified_sample

    examples = task_split(store, task, "test")
    return stratified_sample(examples, n, seed) if n else examples


test_sample.__test__ = False  # type: ignore[attr-defined]
