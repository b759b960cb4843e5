"""Selections, their members and vetting decisions: ``selections``, ``selection_members``,
``feature_overrides``, ``example_overrides``."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa


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
            con.execute("INSERT INTO selection_members SELECT * FROM sel_members")
            con.unregister("sel_members")
        return True

    def selection_members(self, selection_id: str) -> pd.DataFrame:
        """A selection's members joined with their examples: rank, score and every ``examples`` column,
        in rank order (members whose example is no longer stored are left out)."""
        return self.query_df("SELECT m.rank, m.score, e.* FROM selection_members m JOIN examples e "
                             "ON e.id = m.example_id WHERE m.selection_id = ? ORDER BY m.rank", [selection_id])

    def selection_member_ids(self, selection_id: str) -> set[str]:
        """Ids of a selection's members (whether or not their examples are still stored)."""
        df = self.query_df("SELECT example_id FROM selection_members WHERE selection_id = ?", [selection_id])
        return set(df.example_id)
