"""Selections, their members and vetting decisions: ``selections``, ``selection_members``,
``feature_overrides``, ``example_overrides``.

A member is an example of the selection's own task (its pool's ``train`` items) or, in a mixed pool, a
``general`` record: members are read through the selection's task, never through the example id alone, since
two tasks over one dataset hold the same ids.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from igds.constants import GENERAL


class MissingMembersError(ValueError):
    """A stored selection some of whose members' examples are gone (its task or their dataset was removed)."""


def loadable_members_sql() -> str:
    """SQL of the (selection_id, example_id) members whose example is stored under the selection's task (or as a
    ``general`` record), with one parameter: :data:`igds.constants.GENERAL`.
    :meth:`SelectionQueries.selection_members` loads exactly these."""
    return ("SELECT m.selection_id, m.example_id FROM selection_members m JOIN selections s USING (selection_id) "
            "WHERE EXISTS (SELECT 1 FROM examples e WHERE e.id = m.example_id AND (e.task = s.task OR e.task = ?))")


class SelectionQueries:
    """Queries on these tables (mixed into :class:`igds.store.ActivationStore`)."""

    def insert_selection(self, selection_id: str, *, name: str, task: str, method: str, pool_setting: str,
                         n_pool: int, lineage_json: str, members: pa.Table) -> bool:
        """Store a selection row and its members in one transaction; a known id is left as it is.

        Args:
            selection_id: content hash of members and lineage.
            members: ``selection_members`` rows (selection_id, example_id, rank int32, score double).

        Returns:
            True if inserted, False if the selection already existed.
        """
        with self.transaction() as con:
            if con.execute("SELECT count(*) FROM selections WHERE selection_id = ?", [selection_id]).fetchall()[0][0]:
                return False
            con.execute("INSERT INTO selections (selection_id, name, task, method, pool_setting, n_pool, n_selected, "
                        "lineage) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [selection_id, name, task, method, pool_setting, n_pool, members.num_rows, lineage_json])
            con.register("sel_members", members)
            con.execute("INSERT INTO selection_members (selection_id, example_id, rank, score) "
                        "SELECT selection_id, example_id, rank, score FROM sel_members")
            con.unregister("sel_members")
        return True

    def selection_members(self, selection_id: str) -> pd.DataFrame:
        """A selection's members joined with their examples: rank, score and every ``examples`` column,
        in rank order, one row per member.

        Each member is read as an example of the selection's task (a ``general`` record when the task does not
        hold it), never as another task's copy of the same content.

        Raises:
            MissingMembersError: when members' examples are no longer stored (the task or their dataset was
                removed), naming the selection, its task and how many are missing.
        """
        with self.connect() as con:
            df = con.execute(
                "SELECT m.rank, m.score, e.* FROM selection_members m JOIN selections s USING (selection_id) "
                "JOIN examples e ON e.id = m.example_id AND (e.task = s.task OR e.task = ?) "
                "WHERE m.selection_id = ? "
                "QUALIFY row_number() OVER (PARTITION BY m.example_id ORDER BY e.task = ?) = 1 "
                "ORDER BY m.rank, m.example_id", [GENERAL, selection_id, GENERAL]).fetch_df()
            stored = con.execute("SELECT s.name, s.task, count(m.example_id), "
                                 "(SELECT count(*) FROM tasks t WHERE t.name = s.task), "
                                 "(SELECT count(*) FROM memberships x WHERE x.task = s.task) "
                                 "FROM selections s LEFT JOIN selection_members m USING (selection_id) "
                                 "WHERE s.selection_id = ? GROUP BY ALL", [selection_id]).fetchall()
        if stored and len(df) < stored[0][2]:
            name, task, n, defined, items = stored[0]
            why = (f"task {task!r} was removed" if not defined and not items
                   else f"their examples are no longer among task {task!r}'s items (a dataset changed or was removed)")
            raise MissingMembersError(
                f"selection {name!r} ({selection_id}) of task {task!r}: {n - len(df):,} of {n:,} members are no "
                f"longer in the store ({why}); it cannot be loaded, exported or trained on. Adding the task again "
                "from the same data brings them back.")
        return df

    def selection_members_of_record(self, selection_id: str) -> pa.Table:
        """A selection's ``selection_members`` rows in key order, each with its content tokens (stored, else the
        extraction's), as a results-of-record file carries them."""
        with self.connect() as con:
            return con.sql("SELECT m.selection_id, m.example_id, m.rank, m.score, coalesce(m.n_tokens, "
                           "(SELECT any_value(es.n_tokens) FROM example_stats es WHERE es.example_id = m.example_id))"
                           "::INTEGER AS n_tokens FROM selection_members m WHERE m.selection_id = ? "
                           "ORDER BY m.selection_id, m.example_id", params=[selection_id]).to_arrow_table()

    def selection_member_ids(self, selection_id: str) -> set[str]:
        """Ids of a selection's members (whether or not their examples are still stored)."""
        df = self.query_df("SELECT example_id FROM selection_members WHERE selection_id = ?", [selection_id])
        return set(df.example_id)
