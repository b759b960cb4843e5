"""Vetting: a person goes through a queue of pool examples and accepts, rejects or skips each one.

A **session** is one user's vetting of one task's pool, started from the live selection's settings (or for a
stored selection). Its **decisions** are an append-only log (``igds.store.vetting``): an example's decision is
its latest one not undone, undo takes back the latest action (one decision, or one bulk decision), and every
action has a sequence number, so the decisions as they stood when a selection was saved can be read back.

Sessions are **explicit**: a session's decisions apply only where it was started or resumed by name
(:func:`pool_sessions` lists those a pool has, :func:`describe_session` names one); nothing picks a session by
task, pool or user. :func:`discard_session` takes back all of a session's decisions (the log keeps them, so a
selection saved from it still lists its decisions as of the save) and it is no longer offered to resume.

**Accept is not pin.** A pin (``igds.method.selection.set_example_override``) is a task-wide override: every
later selection of the task, the baselines and the experiment grid keep a pinned example (and never a rejected
one). A session's *accept* only puts the example into this session's selection (and a *reject* takes it out):
the live selection the Selection page shows re-ranks with the session's decisions, a selection saved from it
keeps them, and nothing else changes until the user applies the session's decisions as task overrides
(:func:`apply_to_overrides`). Within the session its decisions win over the task's overrides.

The **queue** starts where decisions matter: alternately the weakest selected example and the strongest one left
out (``around the cut``), or every example by the closeness of its FRS to the cut (``by uncertainty``), or the
examples a :class:`VetFilter` matches in ranking order (``filter``). Examples with a task override are decided
already and are not queued.
"""

from __future__ import annotations

import dataclasses
import json
import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from igds import settings
from igds.config import ConfigBase
from igds.method.selection import Overrides, SelectionConfig, select_from_ranking, set_example_override
from igds.ranking import rank_key, rank_order
from igds.scope import DEFAULT_POOL
from igds.store import ActivationStore

DECISIONS = ("accept", "reject", "skip")
QUEUE_MODES = ("around the cut", "by uncertainty", "filter")


@dataclass(frozen=True, kw_only=True)
class VetFilter(ConfigBase):
    """Which pool examples a filtered queue or a bulk decision takes (every set criterion must hold).

    Args:
        sources: keep examples from these sources (empty: any).
        min_tokens, max_tokens: content length range, in the extraction's kept tokens (``n_tokens``).
        min_score, max_score: FRS range.
        feature: keep examples where this SAE feature fires (a column of the pool's resonance matrix).
    """

    sources: tuple[str, ...] = field(default=(), metadata={"help": "sources to keep (empty: any)"})
    min_tokens: int | None = field(default=None, metadata={"help": "shortest content length kept, in tokens"})
    max_tokens: int | None = field(default=None, metadata={"help": "longest content length kept, in tokens"})
    min_score: float | None = field(default=None, metadata={"help": "lowest FRS kept"})
    max_score: float | None = field(default=None, metadata={"help": "highest FRS kept"})
    feature: int | None = field(default=None, metadata={"help": "keep examples where this feature fires"})

    def mask(self, scores: pd.DataFrame, matrix=None) -> np.ndarray:
        """Boolean mask over ``scores`` rows (example_id, frs or score, n_tokens, source).

        Args:
            matrix: the pool's :class:`~igds.method.resonance.ResonanceMatrix`; needed for ``feature``.

        Raises:
            ValueError: ``feature`` set without a matrix holding it.
        """
        col = "frs" if "frs" in scores else "score"
        keep = np.ones(len(scores), dtype=bool)
        if self.sources:
            keep &= scores.source.isin(self.sources).to_numpy()
        tokens = scores.n_tokens.to_numpy(dtype=float)
        if self.min_tokens is not None:
            keep &= tokens >= self.min_tokens
        if self.max_tokens is not None:
            keep &= tokens <= self.max_tokens
        frs = scores[col].to_numpy(dtype=float)
        if self.min_score is not None:
            keep &= frs >= self.min_score
        if self.max_score is not None:
            keep &= frs <= self.max_score
        if self.feature is not None:
            if matrix is None or int(self.feature) not in matrix.features:
                raise ValueError(f"feature {self.feature} is not a column of the pool's resonance matrix")
            rows = pd.Index(matrix.pool.example_id).get_indexer(scores.example_id)
            fired = matrix.max_act[:, matrix.features.index(int(self.feature))]
            vals = np.where(rows >= 0, np.nan_to_num(fired[np.maximum(rows, 0)], nan=0.0), 0.0)
            keep &= vals > 0
        return keep

    def describe(self) -> str:
        """The set criteria in words (for notes and captions)."""
        parts = []
        if self.sources:
            parts.append("source " + " | ".join(self.sources))
        if self.min_tokens is not None or self.max_tokens is not None:
            parts.append(f"length {self.min_tokens or 0}–{self.max_tokens if self.max_tokens is not None else '∞'}")
        if self.min_score is not None or self.max_score is not None:
            lo = "-∞" if self.min_score is None else f"{self.min_score:g}"
            hi = "∞" if self.max_score is None else f"{self.max_score:g}"
            parts.append(f"FRS {lo}…{hi}")
        if self.feature is not None:
            parts.append(f"feature {self.feature} fires")
        return ", ".join(parts) or "every example"


# -- the queue and the session's selection (pure) -------------------------------------------------------------
def queue_order(scores: pd.DataFrame, selected: Iterable[str], mode: str = "around the cut", *,
                flt: VetFilter | None = None, matrix=None, overrides: Overrides | None = None) -> list[str]:
    """The order in which to vet a ranked pool.

    Args:
        scores: the ranking, best first (example_id, frs or score, n_tokens, source), e.g. ``ScoredPool.scores``.
        selected: ids of the selection before the session's decisions (the cut).
        mode: ``around the cut``: alternately the weakest selected and the strongest unselected example, moving
            away from the cut; ``by uncertainty``: by ``|FRS − cut|``, the cut halfway between the weakest selected
            and the strongest unselected score, both scores and distance at the ranking's resolution
            (:func:`igds.ranking.rank_key`; ties in ranking order); ``filter``: the examples ``flt`` matches,
            in ranking order.
        flt: the filter of ``filter`` mode.
        matrix: the pool's resonance matrix (a filter on a feature needs it).
        overrides: the task's overrides: pinned and rejected examples are decided already and left out.

    Returns:
        example ids in vetting order.
    """
    if mode not in QUEUE_MODES:
        raise ValueError(f"mode must be one of {' | '.join(QUEUE_MODES)}, not {mode!r}")
    ov = overrides or Overrides()
    fixed = ov.pinned_examples | ov.rejected_examples
    ids = scores.example_id.to_numpy(dtype=object)
    free = ~np.isin(ids, list(fixed))
    if mode == "filter":
        return list(ids[free & (flt or VetFilter()).mask(scores, matrix)])
    sel = np.isin(ids, list(set(selected)))
    inside, outside = list(ids[sel & free][::-1]), list(ids[~sel & free])
    if mode == "around the cut":
        out = []
        for i in range(max(len(inside), len(outside))):
            out += [q[i] for q in (inside, outside) if i < len(q)]
        return out
    col = "frs" if "frs" in scores else "score"
    frs = rank_key(scores[col])  # distances of rounded scores: float noise cannot reorder the queue
    pos = {e: i for i, e in enumerate(ids)}
    ends = [frs[pos[q[0]]] for q in (inside, outside) if q]
    cut = float(np.mean(ends)) if ends else 0.0
    order = rank_order(np.abs(frs - cut), np.arange(len(ids)), descending=False)
    return [ids[i] for i in order if free[i]]


def session_overrides(task_overrides: Overrides, decisions: pd.DataFrame) -> Overrides:
    """The task's overrides with a session's decisions on top: accepted examples pinned, rejected ones rejected
    (the session wins where both speak; skips change nothing)."""
    acc = frozenset(decisions.example_id[decisions.decision == "accept"])
    rej = frozenset(decisions.example_id[decisions.decision == "reject"])
    return dataclasses.replace(task_overrides,
                               pinned_examples=(task_overrides.pinned_examples - rej) | acc,
                               rejected_examples=(task_overrides.rejected_examples - acc) | rej)


def apply_decisions(scores: pd.DataFrame, sel_cfg: SelectionConfig, task_overrides: Overrides,
                    decisions: pd.DataFrame, higher_first: bool = True) -> pd.DataFrame:
    """The session's selection: the ranking cut as the live selection cuts it (ratio, threshold or budget), with
    accepted examples in (counted by the ratio, like pins) and rejected ones out (the next in the ranking fills
    their place).

    Args:
        scores: the ranking, best first (example_id, frs or score, n_tokens, ...).
        decisions: :meth:`~igds.store.ActivationStore.session_decisions` rows (example_id, decision).

    Returns:
        the selected rows in rank order with ``rank`` (see :func:`~igds.method.selection.select_from_ranking`).
    """
    ranked = scores.rename(columns={"frs": "score"})
    return select_from_ranking(ranked, sel_cfg, session_overrides(task_overrides, decisions), n_pool=len(ranked),
                               higher_first=higher_first)


@dataclass(frozen=True)
class VetCounts:
    """A session's progress over its queue."""

    queue: int          # examples in the queue
    decided: int        # of them, decided (accept, reject or skip)
    accepted: int       # in the whole session
    rejected: int
    skipped: int


def vetting_counts(decisions: pd.DataFrame, queue: Iterable[str]) -> VetCounts:
    """Decided / queue length and the session's accepts, rejects and skips."""
    q = list(queue)
    d = decisions.decision.value_counts()
    return VetCounts(queue=len(q), decided=int(pd.Index(q).isin(decisions.example_id).sum()),
                     accepted=int(d.get("accept", 0)), rejected=int(d.get("reject", 0)), skipped=int(d.get("skip", 0)))


# -- sessions and decisions in the store -----------------------------------------------------------------------
def open_session(store: ActivationStore, task: str, *, user: str | None = None, extract_run: str | None = None,
                 pool_setting: str | None = None, pool_limit: int = DEFAULT_POOL.limit, selection_id: str | None = None,
                 settings_dict: dict | None = None) -> str:
    """Start a vetting session; returns its id.

    Args:
        user: who vets (default ``IGDS_USER``, see :func:`igds.settings.user_name`).
        extract_run, pool_setting, pool_limit: the pool it vets (the live selection's).
        selection_id: the stored selection it vets, if any.
        settings_dict: the settings it started from (e.g. the selection and resonance configs), stored as JSON.
    """
    session_id = secrets.token_hex(8)
    store.add_vetting_session(session_id, task=task, extract_run=extract_run, pool_setting=pool_setting,
                              pool_limit=int(pool_limit), selection_id=selection_id,
                              settings_json=json.dumps(settings_dict, sort_keys=True) if settings_dict else None,
                              user_name=user if user is not None else settings.user_name())
    return session_id


def decide(store: ActivationStore, session_id: str, example_ids: Iterable[str], decision: str,
           note: str | None = None, user: str | None = None) -> int:
    """Record ``decision`` (accept | reject | skip) on examples as one action (re-deciding replaces an example's
    decision; the earlier one stays in the history); returns the action's sequence number. ``user`` defaults to
    the session's user, else ``IGDS_USER``."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {' | '.join(DECISIONS)}, not {decision!r}")
    if user is None:  # the session's user (its row is read only then: a decision per key press stays one write)
        info = store.vetting_session(session_id)
        if info is None:
            raise ValueError(f"no vetting session {session_id!r}")
        user = _text(info.get("user_name")) or settings.user_name()
    return store.add_decisions(session_id, list(example_ids), decision, note, user)


def undo(store: ActivationStore, session_id: str) -> list[str]:
    """Take back the session's latest action in force; returns the examples it had decided."""
    return store.undo_decision(session_id)


def bulk_decide(store: ActivationStore, session_id: str, scores: pd.DataFrame, flt: VetFilter, decision: str, *,
                matrix=None, overrides: Overrides | None = None, note: str | None = None,
                user: str | None = None) -> list[str]:
    """Decide every example of the ranking ``flt`` matches (leaving out those with a task override) as one action
    (one undo takes it back); the filter is recorded in the note. Returns the decided ids."""
    ov = overrides or Overrides()
    ids = [e for e in scores.example_id[flt.mask(scores, matrix)]
           if e not in ov.pinned_examples and e not in ov.rejected_examples]
    text = f"bulk: {flt.describe()}" + (f" · {note}" if note else "")
    decide(store, session_id, ids, decision, text, user)
    return ids


def apply_to_overrides(store: ActivationStore, task: str, session_id: str, as_of: int | None = None) -> dict[str, int]:
    """Make a session's decisions task-wide: accepted examples pinned, rejected ones rejected (skips are left
    alone). From then on every selection of the task, the baselines and the grid follow them.

    Args:
        as_of: apply the decisions as they stood at this action (the ones a user was shown:
            :meth:`~igds.store.ActivationStore.vetting_seq` when they were listed); None: as they stand now.
    """
    d = store.session_decisions(session_id, as_of)
    acc = list(d.example_id[d.decision == "accept"])
    rej = list(d.example_id[d.decision == "reject"])
    set_example_override(store, task, acc, "pin")
    set_example_override(store, task, rej, "reject")
    return {"pinned": len(acc), "rejected": len(rej)}


def pool_sessions(store: ActivationStore, task: str, *, extract_run: str | None, pool_setting: str | None,
                  pool_limit: int = DEFAULT_POOL.limit, limit: int = 5) -> pd.DataFrame:
    """The sessions a pool's vetting can resume: those with decisions in force, the most recently decided first
    (session_id, user_name, created, selection_id, n_decisions, accepted, rejected, skipped, last_decided)."""
    return store.pool_vetting_sessions(task, extract_run, pool_setting, int(pool_limit), limit)


def describe_session(session_id: str, n_decisions: int, user: str | None, when) -> str:
    """One line naming a session: ``session <id> (<n> decisions, by <user>, <when>)``."""
    stamp = "" if when is None or pd.isna(when) else f", {pd.Timestamp(when):%Y-%m-%d %H:%M}"
    word = "decision" if int(n_decisions) == 1 else "decisions"
    return f"session {session_id} ({int(n_decisions)} {word}, by {_text(user) or 'no name'}{stamp})"


def discard_session(store: ActivationStore, session_id: str) -> int:
    """Take back every decision of a session in one action; returns how many examples had one. The log keeps
    them (a selection saved from the session still lists its decisions as of the save), and the session is no
    longer offered to resume (:func:`pool_sessions`)."""
    if store.vetting_session(session_id) is None:
        raise ValueError(f"no vetting session {session_id!r}")
    return store.discard_decisions(session_id)


def _time(value) -> str | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).isoformat()


def _text(value) -> str | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def vetting_lineage(store: ActivationStore, selection_id: str, lineage: dict) -> dict:
    """The lineage an export of a selection carries: ``lineage`` plus, when the selection was saved from a vetting
    session (its lineage names ``vetting_session``) or is vetted by one, a ``vetting`` entry listing every decision
    in force (example_id, decision, time, note, user) — as of the save for a saved session, else now.

    The CLI's ``igds export`` and the Export page both build an export's lineage through here.
    """
    session_id = lineage.get("vetting_session")
    as_of = lineage.get("vetting_seq") if session_id else None
    if not session_id:
        sessions = store.vetting_sessions_of_selection(selection_id)
        session_id = sessions[0] if sessions else None
    if not session_id:
        return dict(lineage)
    info = store.vetting_session(session_id) or {}
    d = store.session_decisions(session_id, as_of)
    return {**lineage, "vetting": {
        "session_id": session_id, "user": _text(info.get("user_name")),
        "as_of_seq": int(as_of) if as_of is not None else store.vetting_seq(session_id),
        "counts": {k: int((d.decision == k).sum()) for k in DECISIONS},
        "decisions": [{"example_id": r.example_id, "decision": r.decision, "time": _time(r.decided),
                       "note": _text(r.note), "user": _text(r.user_name)} for r in d.itertuples()]}}
