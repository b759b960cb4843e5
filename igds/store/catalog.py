"""The workspace's own data and tasks: ``datasets``, ``dataset_rows``, ``tasks`` (and the task memberships they
make), plus the workspace's chosen model and SAE in ``meta``. Written by :mod:`igds.data.ingest` and
:mod:`igds.workflow.catalog`; every process reads them, so a task added in the dashboard is known to the CLI
and to job processes."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from igds.constants import GENERAL
from igds.store.selections import loadable_members_sql

REMOVABLE = ("task", "dataset")


@dataclass(frozen=True)
class AffectedSelection:
    """A stored selection that loses members to a removal (it stays in the store, but no longer loads)."""

    selection_id: str
    name: str
    task: str
    n_members: int
    n_lost: int  # members whose example the removal takes away


@dataclass(frozen=True)
class Removal:
    """What removing a task or a dataset deletes: the plan :meth:`CatalogQueries.removal_plan` makes before, and
    the report :meth:`CatalogQueries.remove` returns after (equal, when nothing changed in between).

    Args:
        kind: ``task`` or ``dataset``.
        name: the task's or dataset's name.
        exists: whether the store has it.
        memberships: task items (task, example) deleted.
        dataset_rows: dataset rows deleted.
        records: stored texts no task and no dataset refers to any more, deleted with it.
        selections: stored selections whose members lose their examples (they stay, but fail to load).
        blocked_by: tasks that draw items from the dataset: the removal is refused while they exist.
    """

    kind: str
    name: str
    exists: bool
    memberships: int = 0
    dataset_rows: int = 0
    records: int = 0
    selections: tuple[AffectedSelection, ...] = ()
    blocked_by: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        """Whether the removal may go ahead."""
        return self.exists and not self.blocked_by

    def lines(self) -> list[str]:
        """The plan in words, one line per effect (what a confirmation shows)."""
        if not self.exists:
            return [f"there is no {'workspace task' if self.kind == 'task' else 'dataset'} {self.name!r}"]
        if self.blocked_by:
            return [f"dataset {self.name!r} is used by task(s) {', '.join(self.blocked_by)}; remove those first"]
        out = [f"{self.kind} {self.name!r}"]
        if self.kind == "task":
            out.append(f"{self.memberships:,} task items (memberships)")
        else:
            out.append(f"{self.dataset_rows:,} dataset rows")
        out.append(f"{self.records:,} stored texts no other task or dataset uses")
        for s in self.selections:
            out.append(f"selection {s.name!r} ({s.selection_id}, task {s.task!r}) loses {s.n_lost:,} of "
                       f"{s.n_members:,} members and will no longer load")
        if self.kind == "task":
            out.append("kept: the task's runs, selections and results (re-adding the task from the same data "
                       "brings its selections back)")
        return out


class CatalogQueries:
    """Queries on the catalog tables (mixed into :class:`igds.store.ActivationStore`)."""

    # -- datasets ------------------------------------------------------------------------------
    def insert_dataset(self, info: dict, records: pa.Table, rows: pa.Table) -> bool:
        """Store a dataset, its new records and its rows in one transaction (all or nothing).

        Args:
            info: name, kind, origin, content_sha256, mapping (JSON text), n_rows, n_records.
            records: id, source, prompt, response, meta (JSON text); ids already stored are kept as they are.
            rows: row_no int32, example_id, split_label.

        Returns:
            False when a dataset of that name with the same content and mapping is already stored (nothing
            written: ingest is idempotent), True when inserted.

        Raises:
            ValueError: when the name is taken by other content or another mapping.
        """
        with self.transaction() as con:
            have = con.execute("SELECT content_sha256, mapping FROM datasets WHERE name = ?", [info["name"]]).fetchall()
            if have:
                if tuple(have[0]) == (info["content_sha256"], info["mapping"]):
                    return False
                raise ValueError(f"dataset {info['name']!r} already exists with other content or another column "
                                 "mapping; remove it first or choose another name")
            con.execute("INSERT INTO datasets (name, kind, origin, content_sha256, mapping, n_rows, n_records) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [info["name"], info["kind"], info["origin"], info["content_sha256"], info["mapping"],
                         info["n_rows"], info["n_records"]])
            con.register("ds_records", records)
            con.register("ds_rows", rows)
            con.execute("INSERT INTO records SELECT id, first(source), first(prompt), first(response), first(meta) "
                        "FROM (SELECT *, row_number() OVER () AS n FROM ds_records) "
                        "WHERE id NOT IN (SELECT id FROM records) GROUP BY id ORDER BY min(n)")
            con.execute("INSERT INTO dataset_rows SELECT ?, row_no, example_id, split_label FROM ds_rows",
                        [info["name"]])
            con.unregister("ds_records")
            con.unregister("ds_rows")
        return True

    def dataset(self, name: str) -> dict | None:
        """One dataset row (mapping parsed), or None."""
        df = self.query_df("SELECT * FROM datasets WHERE name = ?", [name])
        if df.empty:
            return None
        row = df.iloc[0].to_dict()
        row["mapping"] = json.loads(row["mapping"] or "{}")
        return row

    def datasets_table(self) -> pd.DataFrame:
        """Every dataset with the tasks that use it (``tasks``: comma-separated names)."""
        return self.query_df(
            "SELECT d.name, d.kind, d.n_rows, d.n_records, d.origin, d.created, "
            "coalesce(string_agg(DISTINCT m.task, ', ' ORDER BY m.task), '') AS tasks "
            "FROM datasets d LEFT JOIN memberships m ON m.dataset = d.name "
            "GROUP BY ALL ORDER BY d.created, d.name")

    def dataset_examples(self, name: str, limit: int | None = None) -> pd.DataFrame:
        """A dataset's rows in file order with their records: row_no, example_id, split_label, source, prompt,
        response, meta."""
        return self.query_df(
            "SELECT r.row_no, r.example_id, r.split_label, x.source, x.prompt, x.response, x.meta "
            "FROM dataset_rows r JOIN records x ON x.id = r.example_id WHERE r.dataset = ? ORDER BY r.row_no "
            "LIMIT ?", [name, limit if limit is not None else 2**62])

    def remove_dataset(self, name: str, expect: Removal | None = None) -> int:
        """Delete a dataset, its rows and the records nothing refers to any more; returns the rows removed.

        Args:
            expect: the plan a user confirmed (:meth:`removal_plan`); the removal is refused, nothing deleted,
                when it would now delete something else.

        Raises:
            ValueError: for an unknown dataset, while a task draws items from it (remove the task first), or when
                ``expect`` differs.
        """
        return self.remove("dataset", name, expect).dataset_rows

    # -- removals ----------------------------------------------------------------------------
    def removal_plan(self, kind: str, name: str) -> Removal:
        """What removing the task or dataset ``name`` would delete, without deleting anything.

        The removal is carried out inside a transaction, measured and rolled back, so the plan counts exactly
        what :meth:`remove_task` / :meth:`remove_dataset` delete (pass it to them as ``expect``).

        Args:
            kind: ``task`` or ``dataset``.
            name: its name.
        """
        if kind not in REMOVABLE:
            raise ValueError(f"kind must be one of {', '.join(REMOVABLE)}, not {kind!r}")
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                return self._apply_removal(con, kind, name)
            finally:
                con.execute("ROLLBACK")

    def remove(self, kind: str, name: str, expect: Removal | None = None) -> Removal:
        """Remove the task or dataset ``name`` and say what went (a workspace task: prefer
        :func:`igds.workflow.catalog.remove_task`, which also refuses shipped tasks and updates the task registry).

        Args:
            kind: ``task`` or ``dataset``.
            name: its name.
            expect: the plan a user confirmed (:meth:`removal_plan`); when the removal would now delete
                something else it is refused and nothing is deleted.

        Returns:
            what was deleted (equal to ``expect`` when given).

        Raises:
            ValueError: for an unknown name, a dataset a task draws from, or a plan that no longer holds.
        """
        if kind not in REMOVABLE:
            raise ValueError(f"kind must be one of {', '.join(REMOVABLE)}, not {kind!r}")
        with self.transaction() as con:
            done = self._apply_removal(con, kind, name)
            if not done.allowed:
                raise ValueError(done.lines()[0])
            if expect is not None and done != expect:
                raise ValueError(f"{kind} {name!r} changed since the removal was planned (it would now delete: "
                                 f"{'; '.join(done.lines()[1:])}); nothing removed, look again and confirm")
        return done

    def _apply_removal(self, con, kind: str, name: str) -> Removal:
        """Delete a task or a dataset on ``con`` (inside the caller's transaction) and measure what went."""
        one = lambda sql: con.execute(sql, [name]).fetchall()[0][0]
        exists = bool(one("SELECT count(*) FROM tasks WHERE name = ?") if kind == "task"
                      else one("SELECT count(*) FROM datasets WHERE name = ?"))
        if kind == "dataset":
            users = tuple(r[0] for r in con.execute("SELECT DISTINCT task FROM memberships WHERE dataset = ? "
                                                    "ORDER BY 1", [name]).fetchall())
            if users:
                return Removal(kind, name, exists, blocked_by=users)
        loadable = f"SELECT selection_id, count(*) AS n FROM ({loadable_members_sql()}) GROUP BY selection_id"
        before = dict(con.execute(loadable, [GENERAL]).fetchall())
        n_records = con.execute("SELECT count(*) FROM records").fetchall()[0][0]
        memberships = rows = 0
        if kind == "task":
            memberships = one("SELECT count(*) FROM memberships WHERE task = ?")
            con.execute("DELETE FROM memberships WHERE task = ?", [name])
            con.execute("DELETE FROM tasks WHERE name = ?", [name])
        else:
            rows = one("SELECT count(*) FROM dataset_rows WHERE dataset = ?")
            con.execute("DELETE FROM dataset_rows WHERE dataset = ?", [name])
            con.execute("DELETE FROM datasets WHERE name = ?", [name])
        self._drop_orphan_records(con)
        after = dict(con.execute(loadable, [GENERAL]).fetchall())
        lost = [sid for sid, n in before.items() if after.get(sid, 0) < n]
        affected = ()
        if lost:
            con.register("lost_selections", pa.table({"selection_id": pa.array(lost, pa.string())}))
            info = con.execute("SELECT s.selection_id, s.name, s.task, count(m.example_id) FROM selections s "
                               "JOIN lost_selections USING (selection_id) LEFT JOIN selection_members m "
                               "USING (selection_id) GROUP BY s.selection_id, s.name, s.task, s.created "
                               "ORDER BY s.created, s.selection_id").fetchall()
            con.unregister("lost_selections")
            affected = tuple(AffectedSelection(sid, sname or "", task, int(n), int(before[sid] - after.get(sid, 0)))
                             for sid, sname, task, n in info)
        return Removal(kind, name, exists, memberships=int(memberships), dataset_rows=int(rows),
                       records=int(n_records - con.execute("SELECT count(*) FROM records").fetchall()[0][0]),
                       selections=affected)

    @staticmethod
    def _drop_orphan_records(con) -> None:
        con.execute("DELETE FROM records WHERE id NOT IN (SELECT example_id FROM memberships) "
                    "AND id NOT IN (SELECT example_id FROM dataset_rows)")

    # -- tasks ---------------------------------------------------------------------------------
    def insert_task(self, name: str, spec: dict, data: dict, counts: dict, members: pa.Table) -> None:
        """Store a task and its memberships in one transaction.

        Args:
            members: dataset, task, split, example_id (one row per example; the task's own).

        Raises:
            ValueError: when the name is taken (remove the task first).
        """
        with self.transaction() as con:
            if con.execute("SELECT count(*) FROM tasks WHERE name = ?", [name]).fetchall()[0][0]:
                raise ValueError(f"task {name!r} already exists; remove it first ('igds task remove {name}')")
            if con.execute("SELECT count(*) FROM memberships WHERE task = ?", [name]).fetchall()[0][0]:
                raise ValueError(f"task name {name!r} is used by the shipped corpus; choose another name")
            con.execute("INSERT INTO tasks (name, spec, data, counts) VALUES (?, ?, ?, ?)",
                        [name, json.dumps(spec, sort_keys=True), json.dumps(data, sort_keys=True),
                         json.dumps(counts, sort_keys=True)])
            con.register("task_members", members)
            con.execute("INSERT INTO memberships SELECT dataset, task, split, example_id FROM task_members")
            con.unregister("task_members")

    def task_rows(self) -> pd.DataFrame:
        """Every workspace task: name, spec, data, counts (JSON text), created; oldest first."""
        return self.query_df("SELECT name, spec, data, counts, created FROM tasks ORDER BY created, name")

    def remove_task(self, name: str, expect: Removal | None = None) -> int:
        """Delete a workspace task and its memberships (runs, selections and results stay, but its selections
        no longer load); returns the memberships removed. Records stay while their dataset does.

        Args:
            expect: the plan a user confirmed (:meth:`removal_plan`); the removal is refused, nothing deleted,
                when it would now delete something else.
        """
        return self.remove("task", name, expect).memberships

    def register_tasks(self) -> list[str]:
        """Register every workspace task in this process's task registry (:mod:`igds.data.tasks`), and forget
        workspace tasks another process removed. Returns the workspace task names."""
        from igds.data import tasks

        rows = self.task_rows()
        names = list(rows.name)
        for name in set(_FROM_STORE) - set(names):
            tasks.unregister_task(name)
            _FROM_STORE.discard(name)
        for name, spec in zip(rows.name, rows.spec, strict=True):
            tasks.register_task(tasks.TaskSpec.from_dict(json.loads(spec)), overwrite=True)
            _FROM_STORE.add(name)
        return names

    def task_examples(self, task: str, split: str) -> pd.DataFrame:
        """A task's examples of one split, ordered by source and id (the shipped corpus's order):
        id, task, source, split, prompt, response, meta."""
        return self.query_df("SELECT id, task, source, split, prompt, response, meta FROM examples "
                             "WHERE task = ? AND split = ? ORDER BY source, id", [task, split])

    def task_split_counts(self) -> pd.DataFrame:
        """Examples per task and split (every task with memberships): task, split, n."""
        return self.query_df("SELECT task, split, count(*) AS n FROM memberships GROUP BY ALL ORDER BY ALL")

    # -- the workspace's chosen model and SAE ----------------------------------------------------
    def get_setting(self, key: str) -> dict | None:
        """A JSON workspace setting stored in ``meta`` (e.g. ``identity``), or None."""
        value = self.scalar("SELECT value FROM meta WHERE key = ?", [f"setting:{key}"])
        return json.loads(value) if value else None

    def set_setting(self, key: str, value: dict | None) -> None:
        """Store (or, with None, clear) a JSON workspace setting."""
        with self.connect() as con:
            con.execute("DELETE FROM meta WHERE key = ?", [f"setting:{key}"])
            if value is not None:
                con.execute("INSERT INTO meta VALUES (?, ?)", [f"setting:{key}", json.dumps(value, sort_keys=True)])


# workspace task names this process registered from a store (forgotten when another process removes them)
_FROM_STORE: set[str] = set()
