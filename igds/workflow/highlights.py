"""Token highlights for the vetting queue, stored once per pool so no click runs the model.

:func:`store_token_activations` runs the workspace model and SAE once over pool examples (one early-exit
forward per length bucket, :func:`igds.workflow.explore.iter_token_activations`, rendered exactly as extraction
rendered them) and stores per example its tokens, each position's in-scope flag and the nonzero activations of the
task's candidate features (``highlight_tokens`` + ``highlight_acts``). :func:`ensure_pool_highlights` does it
for a task's pool, the examples nearest the default cut first; the ``highlights`` job and the end of the
bootstrap call it; the Selection page reads the rows back (:meth:`~igds.store.ActivationStore.example_highlights`).

**Row budget.** A pool stores one ``highlight_tokens`` row per example plus one ``highlight_acts`` row per
(example, candidate feature that fires anywhere in it), at most ``max_rows`` (:data:`DEFAULT_MAX_ROWS`) in
all; past the budget the remaining examples (the ones farthest from the cut) get none. Measured on the default
workspace (SmolLM2-135M-Instruct, the shipped SAE, the 32 summarization candidates, ``max_length`` 256, tokens kept
with every position, in scope or not): the 1,200-example task-only summarization pool takes 33,206 rows (27.7 an
example: 1,200 token rows + 32,006 activation rows), so a 1,360-example task pool about 37,600; the 3,945-example
mixed pool (the general examples fire fewer task features) 53,405 rows (13.5 an example), 7.6 MB of the store.
One pass over the mixed pool took 862 s on the 2-core CPU while other work ran (4.6 examples/s).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from igds.progress import ProgressFn, null_progress
from igds.scope import DEFAULT_POOL, PoolSpec
from igds.workflow.config import DEFAULT_MAX_ROWS, HIGHLIGHTS_MEASURED, HighlightConfig  # noqa: F401 - re-exported
from igds.workflow.explore import extract_setup, iter_token_activations


def _example_rows(run_id: str, task: str, eid: str, tokens: list[str], acts: np.ndarray, in_scope: np.ndarray,
                  feats: list[int]) -> tuple[dict, dict]:
    """One example's ``highlight_tokens`` row and its ``highlight_acts`` rows (features that fired)."""
    tok = {"run_id": run_id, "task": task, "example_id": eid, "tokens": tokens,
           "in_scope": [bool(x) for x in in_scope], "features": feats}
    act: dict[str, list] = {c: [] for c in ("run_id", "task", "example_id", "feature", "positions", "acts")}
    for j, f in enumerate(feats):
        pos = np.flatnonzero(acts[:, j])
        if pos.size:
            for c, v in (("run_id", run_id), ("task", task), ("example_id", eid), ("feature", f),
                         ("positions", pos.tolist()), ("acts", acts[pos, j].tolist())):
                act[c].append(v)
    return tok, act


def store_token_activations(ws, run_id: str, examples: Sequence, features: Sequence[int], *, task: str,
                            max_rows: int = DEFAULT_MAX_ROWS, chunk: int = 128,
                            progress: ProgressFn | None = None) -> dict:
    """Compute and store the token highlights of ``examples`` (a task's pool, in the order to cover them) for an
    extraction run, resumably: examples already stored with every one of ``features`` are skipped.

    The run's ``max_length``, scope and sink guard apply; BOS and sinks hold 0 and are out of scope. Rows are
    counted against ``max_rows`` per pool (the rows already stored for ``examples`` included): the first example
    that would exceed it and every later one get no highlights (see the module's row budget).

    Args:
        ws: a :class:`~igds.workflow.workspace.Workspace` with the run's model and SAE.
        run_id: the extraction run the pool's scores come from.
        examples: records with id, task (the task they are rendered through), source, prompt, response.
        features: the task's candidate features.
        task: the task whose pool the examples are (the rows' key).
        max_rows: the pool's row budget.
        chunk: examples per forward pass and write.
        progress: ``progress(done, total, message)``.

    Returns:
        examples (stored now), rows (written now), stored_examples / stored_rows (the pool's, after),
        over_budget (examples left without highlights), features, seconds.

    Raises:
        ValueError: ``run_id`` is not an extraction run, or was extracted with another SAE than ``ws``'s.
    """
    t0 = time.perf_counter()
    progress = progress or null_progress
    store = ws.store
    cfg, _, run_sae = extract_setup(store, run_id)
    if run_sae and getattr(ws, "sae_key", None) and run_sae != ws.sae_key:
        raise ValueError(f"run {run_id!r} was extracted with SAE {run_sae!r}, the workspace holds {ws.sae_key!r}")
    feats = sorted({int(f) for f in features})
    ids = [e.id for e in examples]
    have = store.highlighted_examples(run_id, task, feats)
    todo = [e for e in examples if e.id not in have]
    budget = max_rows - store.highlight_rows(run_id, task, [i for i in ids if i in have])["rows"]
    written = n_examples = 0
    over = 0
    for start in range(0, len(todo), chunk):
        part = todo[start: start + chunk]

        def step(done, total, message, offset=start):
            progress(offset + done, len(todo), f"highlights: {offset + done}/{len(todo)} examples")

        got = {eid: (toks, a, s) for eid, toks, a, s in
               iter_token_activations(part, cfg, ws.model, ws.tokenizer, ws.sae, ws.site, feats, step, "highlights")}
        toks_rows: dict[str, list] = {}
        act_rows: dict[str, list] = {}
        for i, ex in enumerate(part):  # the caller's order: the budget keeps the first examples
            tok, act = _example_rows(run_id, task, ex.id, *got[ex.id], feats)
            need = 1 + len(act["feature"])
            if need > budget:
                over = len(todo) - start - i
                break
            budget -= need
            for rows, new in ((toks_rows, {k: [v] for k, v in tok.items()}), (act_rows, act)):
                for k, v in new.items():
                    rows.setdefault(k, []).extend(v)
        if toks_rows:
            if not act_rows:
                act_rows = {c: [] for c in ("run_id", "task", "example_id", "feature", "positions", "acts")}
            written += store.write_highlights(toks_rows, act_rows)
            n_examples += len(toks_rows["example_id"])
        if over:
            break
    after = store.highlight_rows(run_id, task, ids)
    progress(len(todo), len(todo), f"highlights: {after['examples']} of {len(ids)} examples, {after['rows']:,} rows")
    return {"examples": n_examples, "rows": written, "stored_examples": after["examples"],
            "stored_rows": after["rows"], "over_budget": over, "features": len(feats),
            "seconds": round(time.perf_counter() - t0, 1)}


def ensure_pool_highlights(ws, run_id: str, task: str, pool: PoolSpec = DEFAULT_POOL,
                           cfg: HighlightConfig | None = None, progress: ProgressFn | None = None) -> dict:
    """Store the token highlights of a task's pool (:func:`store_token_activations`) for its candidate features
    (intervention candidates, validated and pinned ones), the examples the vetting queue shows first (by
    closeness to the cut of the default live selection) first, so a row budget leaves out the far ends.

    Returns:
        :func:`store_token_activations`'s summary plus pool (its size).
    """
    from igds.method.pool import pool_records
    from igds.method.resonance import ResonanceConfig
    from igds.method.selection import SelectionConfig
    from igds.method.vetting import queue_order
    from igds.workflow.stages import candidate_features, latest_effects, live_selection, pool_matrix

    cfg = cfg or HighlightConfig()
    effects = latest_effects(ws.store, task)
    feats = candidate_features(ws.store, task, effects, ws.sae_key)
    matrix = pool_matrix(ws.store, run_id, task, pool, feats)
    sp, chosen = live_selection(ws.store, run_id, task, effects,
                                SelectionConfig(pool_setting=pool.setting, pool_limit=pool.limit), ResonanceConfig(),
                                ws.sae_key, matrix)
    first = queue_order(sp.scores, chosen.example_id, "by uncertainty")
    rank = {e: i for i, e in enumerate(first)}
    records = sorted(pool_records(matrix.pool), key=lambda e: rank.get(e.id, len(rank)))
    out = store_token_activations(ws, run_id, records, feats, task=task, max_rows=cfg.max_rows, chunk=cfg.chunk,
                                  progress=progress)
    return {**out, "pool": len(records)}
