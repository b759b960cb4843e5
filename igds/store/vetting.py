"""Vetting sessions, their decisions and the token activations the vetting queue highlights (issue 16):
``vetting_sessions``, ``vetting_decisions``, ``highlight_tokens``, ``highlight_acts``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import pyarrow as pa

from igds.store.base import id_table

_TOKEN_TYPES = {"run_id": pa.string(), "task": pa.string(), "example_id": pa.string(),
                "tokens": pa.list_(pa.string()), "in_scope": pa.list_(pa.bool_()), "features": pa.list_(pa.int32())}
_ACT_TYPES = {"run_id": pa.string(), "task": pa.string(), "example_id": pa.string(), "feature": pa.int32(),
              "positions": pa.list_(pa.int32()), "acts": pa.list_(pa.float32())}
HIGHLIGHT_TOKEN_COLUMNS = tuple(_TOKEN_TYPES)
"""Columns of ``highlight_tokens`` a writer supplies (``created`` is filled in)."""
HIGHLIGHT_ACT_COLUMNS = tuple(_ACT_TYPES)
"""Columns of ``highlight_acts``."""
DECISION_COLUMNS = ["example_id", "decision", "note", "user_name", "decided", "seq"]
_IN_FORCE = ("session_id = ? AND seq <= ? AND (undone_seq IS NULL OR undone_seq > ?)")


class VettingQueries:
    """Queries on these tables (mixed into :class:`igds.store.ActivationStore`)."""

    # -- token activations for highlights ---------------------------------------------------------------
    def write_highlights(self, tokens: Mapping[str, Sequence], acts: Mapping[str, Sequence]) -> int:
        """Store examples' highlights in one transaction, replacing those of the same (run, task, example).

        Args:
            tokens: one list per column of :data:`HIGHLIGHT_TOKEN_COLUMNS`, one row per example.
            acts: one list per column of :data:`HIGHLIGHT_ACT_COLUMNS`, one row per (example, feature that fired).

        Returns:
            rows written (both tables).
        """
        tok = pa.table({c: pa.array(tokens[c], t) for c, t in _TOKEN_TYPES.items()})
        act = pa.table({c: pa.array(acts[c], t) for c, t in _ACT_TYPES.items()})
        keys = tok.select(["run_id", "task", "example_id"])
        with self.transaction() as con:
            con.register("hl_keys", keys)
            for table in ("highlight_tokens", "highlight_acts"):
                con.execute(f"DELETE FROM {table} h WHERE EXISTS (SELECT 1 FROM hl_keys k WHERE "  # noqa: S608
                            "k.run_id = h.run_id AND k.task = h.task AND k.example_id = h.example_id)")
            for table, data, cols in (("highlight_tokens", tok, HIGHLIGHT_TOKEN_COLUMNS),
                                      ("highlight_acts", act, HIGHLIGHT_ACT_COLUMNS)):
                con.register("hl_rows", data)
                names = ", ".join(cols)
                con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM hl_rows")  # noqa: S608 - fixed names
                con.unregister("hl_rows")
            con.unregister("hl_keys")
        return tok.num_rows + act.num_rows

    def highlighted_examples(self, run_id: str, task: str, features: Sequence[int] | None = None) -> set[str]:
        """Examples of a task's pool whose highlights are stored for a run (with ``features``: only those whose
        stored row covers every one of them)."""
        feats = sorted({int(f) for f in features or ()})
        df = self.query_df("SELECT example_id FROM highlight_tokens WHERE run_id = ? AND task = ? "
                           "AND list_has_all(features, ?::INTEGER[])", [run_id, task, feats])
        return set(df.example_id)

    def highlight_rows(self, run_id: str, task: str, example_ids: Sequence[str] | None = None) -> dict[str, int]:
        """Stored highlight rows of a task's pool (of ``example_ids`` only, when given): ``examples`` (rows of
        ``highlight_tokens``), ``acts`` (rows of ``highlight_acts``) and ``rows`` (both)."""
        out = {}
        with self.connect() as con:
            join = ""
            if example_ids is not None:
                con.register("hl_ids", id_table(example_ids))
                join = "JOIN hl_ids USING (example_id) "
            for table, name in (("highlight_tokens", "examples"), ("highlight_acts", "acts")):
                out[name] = int(con.execute(f"SELECT count(*) FROM {table} {join}"  # noqa: S608 - fixed names
                                            "WHERE run_id = ? AND task = ?", [run_id, task]).fetchall()[0][0])
        out["rows"] = out["examples"] + out["acts"]
        return out

    def example_highlights(self, run_id: str, task: str, example_id: str) -> dict | None:
        """One example's stored highlights: tokens, in_scope, features (computed) and acts ``{feature:
        (positions, values)}``; None when not stored."""
        with self.connect() as con:
            row = con.execute("SELECT tokens, in_scope, features FROM highlight_tokens WHERE run_id = ? AND task = ? "
                              "AND example_id = ?", [run_id, task, example_id]).fetchall()
            if not row:
                return None
            acts = con.execute("SELECT feature, positions, acts FROM highlight_acts WHERE run_id = ? AND task = ? "
                               "AND example_id = ?", [run_id, task, example_id]).fetchall()
        tokens, in_scope, features = row[0]
        return {"tokens": list(tokens), "in_scope": list(in_scope), "features": [int(f) for f in features],
                "acts": {int(f): (list(p), list(a)) for f, p, a in acts}}

    def queue_examples(self, run_id: str, task: str, example_ids: Sequence[str]) -> dict[str, dict]:
        """Several examples of the vetting queue at once, in one connection: per id its prompt (content) and
        response and its stored highlights (as :meth:`example_highlights`; None when not stored)."""
        out: dict[str, dict] = {}
        with self.connect() as con:
            con.register("q_ids", id_table(list(dict.fromkeys(example_ids))))
            for eid, prompt, response in con.execute("SELECT r.id, r.prompt, r.response FROM records r "
                                                     "JOIN q_ids q ON q.example_id = r.id").fetchall():
                out[eid] = {"prompt": prompt, "response": response, "highlights": None}
            for eid, tokens, in_scope, features in con.execute(
                    "SELECT h.example_id, h.tokens, h.in_scope, h.features FROM highlight_tokens h JOIN q_ids "
                    "USING (example_id) WHERE h.run_id = ? AND h.task = ?", [run_id, task]).fetchall():
                if eid in out:
                    out[eid]["highlights"] = {"tokens": list(tokens), "in_scope": list(in_scope),
                                              "features": [int(f) for f in features], "acts": {}}
            for eid, f, pos, acts in con.execute(
                    "SELECT a.example_id, a.feature, a.positions, a.acts FROM highlight_acts a JOIN q_ids "
                    "USING (example_id) WHERE a.run_id = ? AND a.task = ?", [run_id, task]).fetchall():
                if eid in out and out[eid]["highlights"] is not None:
                    out[eid]["highlights"]["acts"][int(f)] = (list(pos), list(acts))
            con.unregister("q_ids")
        return out

    # -- sessions ---------------------------------------------------------------------------------------
    def add_vetting_session(self, session_id: str, *, task: str, extract_run: str | None, pool_setting: str | None,
                            pool_limit: int, selection_id: str | None, settings_json: str | None,
                            user_name: str | None) -> None:
        """Store a new vetting session."""
        with self.connect() as con:
            con.execute("INSERT INTO vetting_sessions (session_id, task, extract_run, pool_setting, pool_limit, "
                        "selection_id, settings, user_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [session_id, task, extract_run, pool_setting, int(pool_limit), selection_id, settings_json,
                         user_name])

    def vetting_session(self, session_id: str) -> dict | None:
        """One session row as a dict, or None."""
        df = self.query_df("SELECT * FROM vetting_sessions WHERE session_id = ?", [session_id])
        return df.iloc[0].to_dict() if not df.empty else None

    def pool_vetting_sessions(self, task: str, extract_run: str | None, pool_setting: str | None, pool_limit: int,
                              limit: int = 5) -> pd.DataFrame:
        """The sessions on a task's pool that have decisions in force, the most recently decided first.

        Returns:
            session_id, user_name, created, selection_id, n_decisions, accepted, rejected, skipped, last_decided
            (at most ``limit`` rows).
        """
        return self.query_df(
            "WITH d AS (SELECT session_id, example_id, decision, decided FROM vetting_decisions "
            "WHERE undone_seq IS NULL "
            "QUALIFY row_number() OVER (PARTITION BY session_id, example_id ORDER BY seq DESC) = 1) "
            "SELECT s.session_id, s.user_name, s.created, s.selection_id, count(*) AS n_decisions, "
            "count(*) FILTER (WHERE d.decision = 'accept') AS accepted, "
            "count(*) FILTER (WHERE d.decision = 'reject') AS rejected, "
            "count(*) FILTER (WHERE d.decision = 'skip') AS skipped, max(d.decided) AS last_decided "
            "FROM vetting_sessions s JOIN d USING (session_id) WHERE s.task = ? "
            "AND s.extract_run IS NOT DISTINCT FROM ? AND s.pool_setting IS NOT DISTINCT FROM ? "
            "AND s.pool_limit = ? GROUP BY s.session_id, s.user_name, s.created, s.selection_id "
            "ORDER BY last_decided DESC, s.session_id LIMIT ?",
            [task, extract_run, pool_setting, int(pool_limit), int(limit)])

    def vetting_sessions_of_selection(self, selection_id: str) -> list[str]:
        """Sessions recorded for a stored selection, newest first."""
        df = self.query_df("SELECT session_id FROM vetting_sessions WHERE selection_id = ? ORDER BY created DESC",
                           [selection_id])
        return list(df.session_id)

    def set_vetting_selection(self, session_id: str, selection_id: str) -> None:
        """Record the stored selection a session vets (or was saved as)."""
        with self.connect() as con:
            con.execute("UPDATE vetting_sessions SET selection_id = ? WHERE session_id = ?", [selection_id, session_id])

    # -- decisions --------------------------------------------------------------------------------------
    def vetting_seq(self, session_id: str) -> int:
        """The session's latest action number (0 before any)."""
        return int(self.scalar("SELECT coalesce(max(greatest(seq, coalesce(undone_seq, 0))), 0) FROM "
                               "vetting_decisions WHERE session_id = ?", [session_id]))

    def add_decisions(self, session_id: str, example_ids: Sequence[str], decision: str, note: str | None,
                      user_name: str | None) -> int:
        """Record one action: ``decision`` on every example of ``example_ids`` (one seq for all); returns the seq
        (0 when ``example_ids`` is empty)."""
        ids = list(dict.fromkeys(example_ids))
        if not ids:
            return 0
        with self.transaction() as con:
            seq = int(con.execute("SELECT coalesce(max(greatest(seq, coalesce(undone_seq, 0))), 0) + 1 FROM "
                                  "vetting_decisions WHERE session_id = ?", [session_id]).fetchall()[0][0])
            con.register("vet_ids", id_table(ids))
            con.execute("INSERT INTO vetting_decisions (session_id, seq, example_id, decision, note, user_name) "
                        "SELECT ?, ?, example_id, ?, ?, ? FROM vet_ids", [session_id, seq, decision, note or None,
                                                                           user_name])
            con.unregister("vet_ids")
        return seq

    def undo_decision(self, session_id: str) -> list[str]:
        """Mark the latest action in force undone; returns the examples it had decided (empty: nothing to undo)."""
        with self.transaction() as con:
            last, top = con.execute("SELECT max(seq) FILTER (WHERE undone_seq IS NULL), "
                                    "max(greatest(seq, coalesce(undone_seq, 0))) FROM vetting_decisions "
                                    "WHERE session_id = ?", [session_id]).fetchall()[0]
            if last is None:
                return []
            nxt = int(top) + 1
            ids = [r[0] for r in con.execute("SELECT example_id FROM vetting_decisions WHERE session_id = ? "
                                             "AND seq = ? ORDER BY example_id", [session_id, last]).fetchall()]
            con.execute("UPDATE vetting_decisions SET undone_seq = ? WHERE session_id = ? AND seq = ?",
                        [nxt, session_id, last])
        return ids

    def discard_decisions(self, session_id: str) -> int:
        """Take back every decision of a session in one action (the log keeps the rows, marked undone, so the
        decisions as of an earlier seq still read back); returns how many examples had a decision in force."""
        with self.transaction() as con:
            n, top = con.execute("SELECT count(DISTINCT example_id) FILTER (WHERE undone_seq IS NULL), "
                                 "coalesce(max(greatest(seq, coalesce(undone_seq, 0))), 0) FROM vetting_decisions "
                                 "WHERE session_id = ?", [session_id]).fetchall()[0]
            con.execute("UPDATE vetting_decisions SET undone_seq = ? WHERE session_id = ? AND undone_seq IS NULL",
                        [int(top) + 1, session_id])
        return int(n)

    def session_decisions(self, session_id: str, as_of: int | None = None) -> pd.DataFrame:
        """Each example's decision in force (its latest not undone) as of action ``as_of`` (None: now).

        Returns:
            example_id, decision, note, user_name, decided (time), seq — by seq, then example id.
        """
        w = 2**31 - 1 if as_of is None else int(as_of)
        df = self.query_df(f"SELECT {', '.join(DECISION_COLUMNS)} FROM vetting_decisions WHERE {_IN_FORCE} "  # noqa: S608
                           "QUALIFY row_number() OVER (PARTITION BY example_id ORDER BY seq DESC) = 1 "
                           "ORDER BY seq, example_id", [session_id, w, w])
        return df if not df.empty else pd.DataFrame(columns=DECISION_COLUMNS)

    def decision_history(self, session_id: str) -> pd.DataFrame:
        """Every decision row of a session, undone and replaced ones included, by seq."""
        return self.query_df("SELECT example_id, decision, note, user_name, decided, seq, undone_seq FROM "
                             "vetting_decisions WHERE session_id = ? ORDER BY seq, example_id", [session_id])

    def vetting_fingerprint(self, task: str) -> tuple:
        """What the Selection page's cached read-models depend on, in one query: the runs (count, last update)
        and the task's feature overrides (count, last change)."""
        with self.connect() as con:
            return tuple(con.execute(
                "SELECT (SELECT count(*) FROM runs), (SELECT max(updated) FROM runs), "
                "(SELECT count(*) FROM feature_overrides WHERE task = ?), "
                "(SELECT max(created) FROM feature_overrides WHERE task = ?), "
                "(SELECT count(*) FROM selections WHERE task = ?)", [task, task, task]).fetchall()[0])
