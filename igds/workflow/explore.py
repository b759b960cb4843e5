"""Read models for the dashboard: what each page shows, assembled from the store (no UI code here).

Pages call one function per view; everything returns DataFrames or plain dicts. The one view that needs
the model, a feature's top-activating contexts, is computed once (:func:`compute_contexts`,
:func:`ensure_contexts`) and read from the store afterwards (:func:`cached_contexts`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np
import pandas as pd

from igds.method.config import ExtractConfig
from igds.method.intervene import AMPLIFY, primary_amplification
from igds.method.recall import load_recall
from igds.method.selection import load_overrides
from igds.progress import ProgressFn, null_progress
from igds.ranking import ranked_ids
from igds.store import ActivationStore
from igds.workflow.stages import fstar_stability, latest_effects, latest_run

CONTEXT_K = 8
"""Top-activating examples kept per feature (the Features page, the bootstrap and reports share it)."""
CONTEXT_WINDOW = 12
"""Tokens shown on each side of a context's max token."""


@dataclass(frozen=True)
class TaskState:
    """Which stages have produced results for a task."""

    task: str
    extract_run: str | None
    sae_key: str | None
    recall_id: str | None
    effect_id: str | None
    n_candidates: int
    n_measured: int
    n_kept: int
    selections: pd.DataFrame
    n_used: int = 0  # features an IGDS selection scores with: F* minus vetoes plus pins
    pinned: tuple[int, ...] = ()
    effect_status: str | None = None  # the intervention run's status (``done`` once every candidate is measured)

    @property
    def ready_for_selection(self) -> bool:
        """IGDS selection needs features to score with: validated ones (less vetoes) or pinned ones."""
        return self.n_used > 0

    @property
    def measuring(self) -> bool:
        """The task's intervention run has not finished: ``F*`` is not decided yet."""
        return self.effect_id is not None and self.effect_status != "done"


def missing_activations(store: ActivationStore, run_id: str | None, task: str) -> int:
    """How many of a task's probe and dev items the extraction run has no activations for (all of them without a
    run): a task added after the last extraction needs its own before recall."""
    from igds.workflow.catalog import task_split

    ids = [e.id for s in ("probe", "dev") for e in task_split(store, task, s)]
    if not run_id:
        return len(ids)
    return len(ids) - len(store.token_counts(run_id, ids))


def task_state(store: ActivationStore, task: str) -> TaskState:
    """Snapshot of the pipeline for one task.

    The extraction run is the one the task's latest recall read (so a newer extraction with other
    settings, e.g. ``--positions all``, does not silently change what the pages show), else the latest.
    """
    rec = latest_run(store, "recall", task)
    # the run a recall read counts while it grows (a first run extracts the pool after its recall)
    ext = store.query_df("SELECT run_id, sae_key FROM runs WHERE stage = 'extract' AND (run_id = ? OR ? IS NULL) "
                         "AND (status IN ('done', 'partial') OR ? IS NOT NULL) ORDER BY updated DESC LIMIT 1",
                         [(rec or {}).get("config", {}).get("extract_run")] * 3)
    eff = latest_run(store, "intervene", task)
    sae_key = ext.sae_key.iloc[0] if not ext.empty else None
    n_cand = n_meas = n_kept = n_used = 0
    pinned: tuple[int, ...] = ()
    if rec:
        n_cand = store.n_recall_candidates(rec["run_id"])
    if eff:
        n_meas = len(store.measured_features(eff["run_id"]))
    if n_meas:  # pins count once effects are measured: a selection weighs its features by them
        kept = latest_effects(store, task).kept
        ov = load_overrides(store, task, sae_key)
        n_kept, n_used, pinned = len(kept), len(ov.apply_to_features(kept)), tuple(sorted(ov.pinned_features))
    sels = store.query_df("SELECT selection_id, name, method, pool_setting, n_selected, n_pool, created "
                          "FROM selections WHERE task = ? ORDER BY created DESC", [task])
    return TaskState(task=task, extract_run=ext.run_id.iloc[0] if not ext.empty else None, sae_key=sae_key,
                     recall_id=rec["run_id"] if rec else None, effect_id=eff["run_id"] if eff else None,
                     n_candidates=n_cand, n_measured=n_meas, n_kept=n_kept, selections=sels, n_used=n_used,
                     pinned=pinned, effect_status=eff["status"] if eff else None)


def features_table(store: ActivationStore, task: str) -> pd.DataFrame:
    """Recalled candidates with frequencies, lift, mean activation, causal effects, verdict, F* stability,
    top-activating context tokens, logit lens and vetting status (one row per candidate, in recall rank
    order).

    ``contexts`` (the max tokens of the cached top-activating contexts, see :func:`max_token_summary`) is
    there once any candidate's contexts are cached; ``stability`` (the share of bootstrap resamples of
    the dev items in which the feature stays in F*) once effects are measured.
    """
    st = task_state(store, task)
    if not st.recall_id:
        return pd.DataFrame()
    rec = load_recall(store, st.recall_id).table
    t = rec[rec.is_candidate].copy()
    t["rank"] = t["rank"].astype(int)
    if st.effect_id and st.n_measured:
        res = latest_effects(store, task)
        s = res.summary
        amp = res.amplification.set_index("feature")
        abl = s[s.kind == "ablate"].set_index("feature")
        t["amp_effect"] = t.feature.map(amp.effect)
        t["amp_ci_low"] = t.feature.map(amp.ci_low)
        t["amp_ci_high"] = t.feature.map(amp.ci_high)
        t["abl_effect"] = t.feature.map(abl.effect)
        v = res.verdict.set_index("feature")
        t["items_fired"] = t.feature.map(v.n_fired)
        t["items_measured"] = t.feature.map(v.n)
        t["p_fitted"] = t.feature.map(v.p)
        t["rank_p"] = t.feature.map(v.rank_p)
        t["q_value"] = t.feature.map(v.q_value)
        t["verdict"] = t.feature.map(v.reason)
        a = res.attribution.set_index("feature")
        t["attribution"] = t.feature.map(a.est_amplify)
        t["stability"] = t.feature.map(fstar_stability_table(store, st.effect_id).set_index("feature").stability)
    else:
        t["verdict"] = "not measured"
    if st.extract_run:
        ctx = store.feature_contexts(st.extract_run, CONTEXT_K, CONTEXT_WINDOW, t.feature.tolist())
        if not ctx.empty:
            t.insert(int(t.columns.get_loc("feature")) + 1, "contexts",
                     t.feature.map(max_token_summary(ctx)).fillna(""))
    if st.sae_key:
        lens = store.logit_lens_table(st.sae_key)
        t = t.merge(lens, on="feature", how="left")
        t["promotes"] = t.top_tokens.map(lambda s: " ".join(json.loads(s)[:6]) if isinstance(s, str) else "")
        ov = store.query_df("SELECT feature, action FROM feature_overrides WHERE task = ? AND sae_key = ?",
                            [task, st.sae_key])
        t["override"] = t.feature.map(dict(zip(ov.feature, ov.action, strict=True))).fillna("")
    return t.drop(columns=["is_candidate", "top_tokens", "bottom_tokens"], errors="ignore").reset_index(drop=True)


@lru_cache(maxsize=32)
def _stability(store: ActivationStore, effect_id: str, n_measured: int, n_null: int) -> pd.DataFrame:
    return fstar_stability(store, effect_id, n_boot=200, seed=0)


def fstar_stability_table(store: ActivationStore, effect_id: str) -> pd.DataFrame:
    """``feature, stability``: the share of 200 bootstrap resamples of the dev items in which each feature
    stays in F* (:func:`igds.workflow.stages.fstar_stability`), computed once per state of the run (the
    numbers of measured features and null elements key the cache, so a resumed run is recomputed)."""
    return _stability(store, effect_id, len(store.measured_features(effect_id)),
                      len(store.measured_nulls(effect_id)))


def top_examples(store: ActivationStore, run_id: str, feature: int, task: str, k: int = 10) -> pd.DataFrame:
    """Pool examples of a task where a feature fires most strongly (by max activation)."""
    return store.top_activating_examples(run_id, feature, task, k)


def activation_histogram(store: ActivationStore, run_id: str, feature: int) -> pd.DataFrame:
    """Max activation per example where the feature fires, with the example's task (for a histogram)."""
    return store.feature_max_acts(run_id, feature)


def logit_lens_tokens(store: ActivationStore, sae_key: str, feature: int) -> dict:
    """Top (promoted) and bottom (suppressed) tokens of a feature's decoder direction."""
    df = store.logit_lens_table(sae_key, [feature])
    if df.empty:
        return {"top": [], "bottom": []}
    return {"top": json.loads(df.top_tokens.iloc[0]), "bottom": json.loads(df.bottom_tokens.iloc[0])}


def effect_views(store: ActivationStore, task: str) -> dict[str, pd.DataFrame]:
    """Frames for the interventions page: per-feature effects (all, and the deciding α = 1 amplification),
    dose–response, attribution vs exact, per-example deltas, and strong features recall missed."""
    res = latest_effects(store, task)
    s = res.summary.copy()
    s["feature_label"] = "f" + s.feature.astype(str)
    amp1 = primary_amplification(s)
    scatter = amp1[["feature", "effect"]].merge(res.attribution[["feature", "est_amplify", "mean_act"]], on="feature")
    per_ex = store.effect_deltas(res.effect_id)
    per_ex.loc[per_ex.kind == "ablate", "delta"] *= -1
    cands = set(s.feature)
    missed = res.attribution[~res.attribution.feature.isin(cands)].nlargest(15, "est_amplify")
    return {"summary": s, "amplification": amp1, "dose": s[s.kind == AMPLIFY], "scatter": scatter,
            "per_example": per_ex, "missed": missed, "verdict": res.verdict}


def jaccard(a: set, b: set) -> float:
    """Overlap of two selections."""
    return len(a & b) / len(a | b) if a | b else float("nan")


def selection_overlaps(store: ActivationStore, task: str, chosen: set[str], pool_setting: str) -> pd.DataFrame:
    """Jaccard overlap of a live selection with every stored selection of the same task and pool."""
    sels = store.query_df("SELECT selection_id, name, method, n_selected FROM selections WHERE task = ? "
                          "AND pool_setting = ? ORDER BY created DESC", [task, pool_setting])
    rows = []
    for r in sels.itertuples():
        ids = store.selection_member_ids(r.selection_id)
        rows.append({"selection": r.name, "method": r.method, "n": r.n_selected, "jaccard": jaccard(chosen, ids),
                     "shared": len(chosen & ids)})
    return pd.DataFrame(rows)


def example_record(store: ActivationStore, example_id: str) -> dict:
    """One stored example (task, source, split, prompt, response)."""
    df = store.query_df("SELECT id, task, source, split, prompt, response FROM examples WHERE id = ?", [example_id])
    if df.empty:
        raise ValueError(f"no example {example_id!r}")
    return df.iloc[0].to_dict()


def neuronpedia_url(store: ActivationStore, sae_key: str, feature: int) -> str | None:
    """Link to the feature's Neuronpedia page when the SAE comes from a release Neuronpedia hosts."""
    npid = store.scalar("SELECT neuronpedia_id FROM saes WHERE sae_key = ?", [sae_key])
    return f"https://www.neuronpedia.org/{npid}/{int(feature)}" if npid else None


# -- top-activating contexts -------------------------------------------------------------------------
# A feature is described first by where it fires (Neuronpedia / SAEDashboard feature pages lead with
# top activations): at a middle block the logit lens of a clear feature is often noise. The store keeps
# only per-(example, feature) aggregates, so token activations are recomputed for the top examples
# (one early-exit forward + SAE encode), then cached in ``feature_contexts``.


def extract_setup(store: ActivationStore, run_id: str) -> tuple[ExtractConfig, str | None, str | None]:
    """An extraction run's config (scope, max_length, sink guard, batch budget), site and SAE key."""
    run = store.run(run_id)
    if run is None or run["stage"] != "extract":
        raise ValueError(f"{run_id!r} is not an extraction run")
    conf = run["config"]
    ext = conf.get("extract", conf)
    names = {f.name for f in fields(ExtractConfig)}
    return ExtractConfig.from_dict({k: v for k, v in ext.items() if k in names}), conf.get("site"), run["sae_key"]


def cached_contexts(store: ActivationStore, run_id: str, features: Sequence[int] | None = None,
                    k: int = CONTEXT_K, window: int = CONTEXT_WINDOW) -> pd.DataFrame:
    """Cached top-activating contexts of a run (no model): one row per (feature, rank), see
    :func:`compute_contexts`; empty for features not cached yet."""
    return store.feature_contexts(run_id, k, window, features)


def compute_contexts(store: ActivationStore, run_id: str, features: Sequence[int], model, tokenizer, sae,
                     site: str | None = None, k: int = CONTEXT_K, window: int = CONTEXT_WINDOW,
                     progress: ProgressFn | None = None) -> pd.DataFrame:
    """Top-activating contexts of ``features`` in one batched pass over the examples they need; cached.

    For each feature, the ``k`` examples of the extraction run with the highest stored max activation
    (:meth:`~igds.store.ActivationStore.run_top_examples`, any task or split) are rendered as extraction
    rendered them (same task, ``max_length``); one early-exit forward per length bucket and an SAE encode
    give every token's activation. Only positions inside the run's scope (``ExtractConfig.positions``),
    past BOS and under the sink guard (per example) can be the max; the rest are kept for display with
    ``in_scope`` false (0 at BOS and sinks). Features already cached at ``(k, window)`` are not recomputed.

    Args:
        store: the store holding the run.
        run_id: an extraction run.
        features: SAE features.
        model, tokenizer, sae: the run's model and SAE.
        site: the SAE's site; default (and checked against) the run's.
        k: examples per feature.
        window: tokens shown on each side of the max token.
        progress: ``progress(done, total, message)`` per forward batch.

    Returns:
        cached rows of every requested feature, by feature and rank: feature, sae_key, rank, example_id,
        task (the rendering task), source, max_act (recomputed), stored_max (the run's aggregate),
        max_pos, max_token, start_pos (position of ``tokens[0]``), n_positions, tokens, acts, in_scope.
    """
    cfg, run_site, sae_key = extract_setup(store, run_id)
    if site is not None and run_site is not None and site != run_site:
        raise ValueError(f"the SAE reads {site}, run {run_id!r} was extracted at {run_site}")
    site = run_site or site
    if site is None:
        raise ValueError(f"run {run_id!r} records no site: pass the SAE's site")
    feats = sorted({int(f) for f in features})
    todo = sorted(set(feats) - store.context_features(run_id, k, window))
    top = store.run_top_examples(run_id, todo, k) if todo else pd.DataFrame()
    if not top.empty:
        rows = _recompute_contexts(top, cfg, model, tokenizer, sae, site, window, progress or null_progress)
        n = len(rows["feature"])
        rows.update({"run_id": [run_id] * n, "sae_key": [sae_key] * n, "k": [int(k)] * n,
                     "half_window": [int(window)] * n})
        store.write_contexts(rows)
    return store.feature_contexts(run_id, k, window, feats)


def iter_token_activations(examples: Sequence, cfg: ExtractConfig, model, tokenizer, sae, site: str,
                           features: Sequence[int], progress: ProgressFn | None = None,
                           label: str = "token activations"):
    """Every token's activation of ``features`` on ``examples``, rendered and truncated exactly as extraction
    rendered them (``cfg.max_length``), one early-exit forward per length bucket (``cfg.batch_tokens``).

    Args:
        examples: records with id, task (the task they are rendered through), source, prompt, response.
        features: SAE features, the columns of ``acts`` in this order.
        progress: ``progress(done, total, message)`` per forward batch.
        label: what the progress messages call the work.

    Yields:
        ``(example_id, tokens, acts, in_scope)`` per example, in length-bucket order: the decoded tokens,
        ``acts`` float32 ``[n_tokens, len(features)]`` (0 at BOS and sinks) and ``in_scope``, the positions the
        run's token scope (``cfg.positions``) counts, past BOS and under the sink guard.
    """
    import torch

    from igds.modeling.batching import keep_mask, length_batches, pad_batch, scope_positions
    from igds.modeling.encoding import encode_examples
    from igds.modeling.hooks import run_until

    progress = progress or null_progress
    items = encode_examples(tokenizer, examples, cfg.max_length)
    feats = [int(f) for f in features]
    device = next(model.parameters()).device
    sae_param = next(sae.parameters())
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    done = 0
    for batch in length_batches(items, cfg.batch_tokens):
        ids, attn = pad_batch(batch, pad_id, device)
        out = []
        with torch.no_grad():  # the batch's results are yielded outside the no-grad block
            h = run_until(model, site, ids, attn)
            for i, it in enumerate(batch):
                n = len(it.input_ids)
                keep = keep_mask(h[i : i + 1, :n], attn[i : i + 1, :n], cfg.sink_norm_factor)[0].cpu()
                z = sae.encode(h[i, :n].to(device=sae_param.device, dtype=sae_param.dtype))
                z = z[:, feats].float().cpu() * keep.unsqueeze(-1)
                in_scope = torch.zeros(n, dtype=torch.bool)
                in_scope[scope_positions(it, cfg.positions)] = True
                out.append((it.example_id, [tokenizer.decode([t]) for t in it.input_ids], z.numpy(),
                            (in_scope & keep).numpy()))
        done += len(batch)
        progress(done, len(items), f"{label}: {done}/{len(items)} examples")
        yield from out


def _recompute_contexts(top: pd.DataFrame, cfg: ExtractConfig, model, tokenizer, sae, site: str, window: int,
                        progress: ProgressFn) -> dict[str, list]:
    """Token activations of ``top``'s features on its examples, cut into windows around each max."""
    from igds.data.records import Example

    exs = top.drop_duplicates("example_id")
    examples = [Example(id=r.example_id, task=r.task, source=r.source, split="train", prompt=r.prompt,
                        response=r.response) for r in exs.itertuples()]
    feats = sorted({int(f) for f in top.feature})
    col = {f: i for i, f in enumerate(feats)}
    acts, scope, tokens = {}, {}, {}
    for eid, toks, a, s in iter_token_activations(examples, cfg, model, tokenizer, sae, site, feats, progress,
                                                     "contexts"):
        acts[eid], scope[eid], tokens[eid] = a, s, toks
    out: dict[str, list] = {c: [] for c in ("feature", "rank", "example_id", "task", "source", "max_act",
                                             "stored_max", "max_pos", "max_token", "start_pos", "n_positions",
                                             "tokens", "acts", "in_scope")}
    for r in top.itertuples():
        a, s = acts[r.example_id][:, col[int(r.feature)]], scope[r.example_id]
        if not s.any():
            continue  # nothing of the example inside the scope (cannot happen for an example that fired)
        p = int(np.argmax(np.where(s, a, -np.inf)))  # first position of the in-scope max
        lo, hi = max(0, p - window), min(len(a), p + window + 1)
        for c, v in (("feature", int(r.feature)), ("rank", int(r.rank)), ("example_id", r.example_id),
                     ("task", r.task), ("source", r.source), ("max_act", float(a[p])),
                     ("stored_max", float(r.max_act)), ("max_pos", p), ("max_token", tokens[r.example_id][p]),
                     ("start_pos", lo), ("n_positions", len(a)), ("tokens", tokens[r.example_id][lo:hi]),
                     ("acts", [float(x) for x in a[lo:hi]]), ("in_scope", [bool(x) for x in s[lo:hi]])):
            out[c].append(v)
    return out


def top_contexts(store: ActivationStore, run_id: str, feature: int, k: int = CONTEXT_K,
                 window: int = CONTEXT_WINDOW, *, model=None, tokenizer=None, sae=None,
                 site: str | None = None) -> pd.DataFrame:
    """Top-activating contexts of one feature: from the cache, else computed (:func:`compute_contexts`).

    Without ``model`` only the cache is read.

    Raises:
        LookupError: not cached, the feature fires in the run and no model was given.
    """
    cached = store.feature_contexts(run_id, k, window, [feature])
    if not cached.empty:
        return cached
    if model is None:
        if store.run_top_examples(run_id, [feature], 1).empty:
            return cached  # the feature never fires in the run: nothing to show
        raise LookupError(f"contexts of feature {feature} in run {run_id!r} are not cached: pass the model")
    return compute_contexts(store, run_id, [feature], model, tokenizer, sae, site, k, window)


def ensure_contexts(ws, run_id: str, features: Sequence[int], k: int = CONTEXT_K, window: int = CONTEXT_WINDOW,
                    progress: ProgressFn | None = None) -> pd.DataFrame:
    """Compute and cache the contexts of ``features`` not cached yet, in one batched pass (e.g. for F* at
    the end of the bootstrap, so the Features page shows them without a click).

    Args:
        ws: a :class:`igds.workflow.workspace.Workspace` (store, model, tokenizer, sae, site) whose SAE
            is the run's.
        run_id: an extraction run of ``ws.store``.

    Returns:
        the cached contexts of ``features`` (see :func:`compute_contexts`).
    """
    _, _, run_sae = extract_setup(ws.store, run_id)
    ws_sae = getattr(ws, "sae_key", None)
    if run_sae and ws_sae and run_sae != ws_sae:
        raise ValueError(f"run {run_id!r} was extracted with SAE {run_sae!r}, the workspace holds {ws_sae!r}")
    return compute_contexts(ws.store, run_id, features, ws.model, ws.tokenizer, ws.sae, ws.site, k, window,
                            progress)


def refresh_contexts(ws, run_id: str, features: Sequence[int], k: int = CONTEXT_K, window: int = CONTEXT_WINDOW,
                     progress: ProgressFn | None = None) -> pd.DataFrame:
    """:func:`ensure_contexts` after forgetting the cached contexts of features whose top ``k`` examples in the run
    are no longer the cached ones (the run grew since, e.g. a first run's pool extraction after its recall)."""
    feats = sorted({int(f) for f in features})
    top = ws.store.run_top_examples(run_id, feats, k).groupby("feature").example_id.agg(frozenset)
    cached = ws.store.feature_contexts(run_id, k, window, feats).groupby("feature").example_id.agg(frozenset)
    stale = [f for f in feats if f in cached.index and top.get(f, frozenset()) != cached[f]]
    ws.store.drop_contexts(run_id, stale, k, window)
    return ensure_contexts(ws, run_id, feats, k, window, progress)


def _row(r, name: str):
    return r[name] if isinstance(r, Mapping | pd.Series) else getattr(r, name)


def _quote(token: str) -> str:
    return '"' + token.replace("\n", "\\n") + '"'


def context_text(row) -> str:
    """One context as plain text for a report, its max token in ⟦ ⟧: ``…the ⟦library⟧ for…``.

    Args:
        row: a contexts row (Series, dict or itertuples record) with tokens, max_pos, start_pos and n_positions.
    """
    tokens = [t.replace("\r", "").replace("\n", "↵") for t in _row(row, "tokens")]
    start = int(_row(row, "start_pos"))
    i = int(_row(row, "max_pos")) - start
    tok = tokens[i]
    body = tok.lstrip()
    mark = f"{tok[: len(tok) - len(body)]}⟦{body}⟧" if body else f"⟦{tok}⟧"
    text = "".join(tokens[:i]) + mark + "".join(tokens[i + 1 :])
    left = "…" if start > 0 else ""
    right = "…" if start + len(tokens) < int(_row(row, "n_positions")) else ""
    return left + text + right


def max_token_summary(contexts: pd.DataFrame, n: int = 3) -> dict[int, str]:
    """Per feature, its contexts' distinct max tokens by rank, quoted, at most ``n``, with a count when
    repeated: ``" library" ×5 · " Java"``."""
    out = {}
    for f, g in contexts.groupby("feature", sort=True):
        counts = g.max_token.value_counts(sort=False)
        firsts = list(dict.fromkeys(g.sort_values("rank").max_token))[:n]
        out[int(f)] = " · ".join(_quote(t) + (f" ×{counts[t]}" if counts[t] > 1 else "") for t in firsts)
    return out


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|#"})


def contexts_markdown(contexts: pd.DataFrame, n: int = 3) -> str:
    """Cached contexts as a markdown list for a report: per feature its max tokens, then its ``n``
    strongest contexts as plain text (markdown characters escaped)."""
    lines = []
    summary = max_token_summary(contexts)
    for f, g in contexts.groupby("feature", sort=True):
        lines.append(f"- **feature {int(f)}** (max {g.max_act.max():.2f}, {len(g)} examples): "
                     + summary[int(f)].translate(_MD_SPECIAL))
        for r in g.sort_values("rank").head(n).to_dict("records"):
            lines.append(f"  - {context_text(r).translate(_MD_SPECIAL)} ({r['max_act']:.2f}, {r['task']})")
    return "\n".join(lines)


# -- feature pages at research speed (issue 16): labels, checks, density, activation quantiles, one feature's effect


def feature_explorer_table(store: ActivationStore, task: str, sae_key: str | None = None) -> pd.DataFrame:
    """:func:`features_table` plus each feature's label and the feature checks' flags: ``label``, and
    ``token_detector`` / ``seed_stable`` (True / False; None where the check has not run) once any feature of the
    SAE was checked (:meth:`~igds.store.ActivationStore.feature_checks`).

    Args:
        sae_key: the task's SAE (:attr:`TaskState.sae_key`; looked up when not given).
    """
    t = features_table(store, task)
    if t.empty:
        return t
    sae_key = sae_key or task_state(store, task).sae_key
    feats = [int(f) for f in t.feature]
    labels = store.feature_labels(sae_key, feats)
    t["label"] = t.feature.map(dict(zip(labels.feature, labels.label, strict=True))).fillna("")
    checks = store.feature_checks(sae_key, feats)
    if len(checks):
        c = checks.set_index("feature")
        for col in ("token_detector", "seed_stable"):
            t[col] = [c[col].get(int(f)) if int(f) in c.index else None for f in t.feature]
    return t


def feature_badges(store: ActivationStore, sae_key: str | None, feature: int) -> list[str]:
    """The feature checks' warnings for one feature: ``token detector`` and ``unstable across seeds`` where a
    check flagged it (empty when unchecked or clean)."""
    c = store.feature_checks(sae_key, [int(feature)])
    if c.empty:
        return []
    r = c.iloc[0]
    out = []
    if _flag(r.token_detector) is True:
        out.append("token detector")
    if _flag(r.seed_stable) is False:
        out.append("unstable across seeds")
    return out


def _flag(value) -> bool | None:
    """A check's boolean (None where it has not run)."""
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else bool(value)


def feature_density(store: ActivationStore, run_id: str, feature: int) -> dict:
    """How often a feature fires over an extraction run (SAEDashboard's activation density, from the stored
    per-example aggregates).

    Returns:
        examples (per example it fires on: example_id, task, n_active, n_tokens, density, max_act, mean_act),
        n_examples / n_tokens (the run's), example_share (share of examples it fires on), token_share (share of
        kept tokens it fires on).
    """
    per = store.feature_density(run_id, feature)
    n_ex, n_tok = store.run_totals(run_id)
    return {"examples": per, "n_examples": n_ex, "n_tokens": n_tok,
            "example_share": len(per) / n_ex if n_ex else float("nan"),
            "token_share": float(per.n_active.sum()) / n_tok if n_tok else float("nan")}


QUANTILES = (1.0, 0.9, 0.75, 0.5)
"""Activation quantiles a feature page samples examples from (top, 90th, 75th and 50th percentile)."""


def quantile_examples(store: ActivationStore, run_id: str, feature: int, quantiles: Sequence[float] = QUANTILES,
                      per: int = 2) -> pd.DataFrame:
    """``per`` examples from each quantile of a feature's per-example max activation
    (:meth:`~igds.store.ActivationStore.quantile_examples`) with an ``interval`` label (``top``, ``p90``, …)."""
    df = store.quantile_examples(run_id, feature, quantiles, per)
    df.insert(0, "interval", ["top" if q >= 1 else f"p{100 * q:g}" for q in df["quantile"]])
    return df


def feature_effect(store: ActivationStore, task: str, feature: int) -> dict | None:
    """One feature's measured effect for the task's latest intervention run, or None when not measured.

    Returns:
        amplify / ablate (the α = 1 summary rows as dicts, None where missing), dose (amplification rows by α),
        null (the null's elements), null_cut, null_level (the fitted null's quantile that null_cut is), threshold
        (the least a kept feature must beat), kept,
        swept (measured at more than one α).
    """
    try:
        res = latest_effects(store, task)
    except ValueError:
        return None
    s = res.summary[res.summary.feature == int(feature)]
    if s.empty:
        return None
    amp = primary_amplification(s)
    abl = s[(s.kind != AMPLIFY) & (s.alpha == 1.0)]
    dose = s[s.kind == AMPLIFY].sort_values("alpha")
    return {"amplify": amp.iloc[0].to_dict() if len(amp) else None,
            "ablate": abl.iloc[0].to_dict() if len(abl) else None, "dose": dose, "null": res.null,
            "null_cut": res.null_cut, "null_level": 1 - res.config.fdr if res.config else float("nan"),
            "threshold": res.threshold, "kept": int(feature) in res.kept, "swept": dose.alpha.nunique() > 1}


def example_activation(store: ActivationStore, run_id: str, example_id: str, feature: int) -> dict:
    """A stored example with one feature's stored aggregates on it (max_act, mean_act, n_active; 0 when it does
    not fire) and its rank among the examples the feature fires on (None when it does not)."""
    rec = example_record(store, example_id)
    acts = store.example_feature_acts(run_id, example_id, [int(feature)])
    row = acts.iloc[0].to_dict() if len(acts) else {"max_act": 0.0, "mean_act": 0.0, "n_active": 0}
    rank = None
    if len(acts):
        dens = store.feature_density(run_id, feature)
        rank = int((dens.max_act > row["max_act"]).sum()) + 1
    return {**rec, "max_act": float(row["max_act"]), "mean_act": float(row["mean_act"]),
            "n_active": int(row["n_active"]), "rank": rank}


# -- an empty F* and the ways on from it (issue 24) ---------------------------------------------------------------
# When the filter keeps nothing, the Features, Interventions and Selection pages say why (what the filter could see)
# and offer a way on: the paper preset's filter or a looser one (a job), pinned candidates, or a baseline.


def measuring_message(state: TaskState) -> str:
    """What an unfinished intervention run has measured so far, instead of a verdict it cannot give yet."""
    return (f"Interventions are still measuring: {state.n_measured} of {state.n_candidates} candidates so far "
            "(the null's random edits are measured before the candidates). F* is decided once every candidate is "
            "measured.")


def fstar_why(effects) -> str:
    """Why ``F*`` is empty, with the filter's power: :meth:`~igds.method.intervene.EffectResult.why_none_kept` plus
    the number of dev items measured and the strongest candidate's 95% interval (effects inside it are noise to the
    filter)."""
    why = effects.why_none_kept()
    amp = effects.amplification.dropna(subset=["effect"])
    amp = amp[amp.n > 0]
    if amp.empty:
        return why
    best = amp[amp.feature == ranked_ids(amp.effect, amp.feature)[0]].iloc[0]
    half = (best.ci_high - best.ci_low) / 2
    return (f"{why}. Measured on {int(amp.n.max())} dev items: the strongest candidate's 95% interval is "
            f"{best.effect:+.4f} ± {half:.4f} nats, so a smaller true effect cannot be told from noise")


def pin_choices(effects) -> pd.DataFrame:
    """Measured candidates a user may pin, strongest α = 1 amplification effect first (at the ranking resolution, ties
    by feature id): feature, effect, ci_low, ci_high, q_value, reason."""
    v = effects.verdict.dropna(subset=["effect"])
    amp = effects.amplification.set_index("feature")
    out = v[["feature", "effect", "q_value", "reason"]].assign(
        ci_low=v.feature.map(amp.ci_low), ci_high=v.feature.map(amp.ci_high))
    order = ranked_ids(out.effect, out.feature, descending=True)
    return out.set_index("feature").loc[order].reset_index()[["feature", "effect", "ci_low", "ci_high", "q_value",
                                                             "reason"]]


def filter_rule(cfg) -> str:
    """An intervention config's keep rule in words: ``effect > null p95 and BH q < 0.05``."""
    test = (f"p against the fitted null of {cfg.null_features} density-matched features and {cfg.null_placed} placed "
            f"directions per candidate, BH q < {cfg.fdr:g}")
    if cfg.delta is None:
        return test if cfg.require_significance else "every measured candidate (no test)"
    return f"effect > {cfg.delta:g} nats" + (f" and {test}" if cfg.require_significance else " (no significance test)")


def filter_preset(cfg) -> str | None:
    """The method preset whose intervention config ``cfg`` is (``default``, ``paper``), or None for one of a user's
    own."""
    from igds.method.presets import METHOD_PRESETS

    return next((name for name, p in METHOD_PRESETS.items() if p.intervene == cfg), None)


def sae_width(store: ActivationStore, sae_key: str | None) -> int | None:
    """How many features (latents) an SAE has, or None when the store does not know it."""
    d = store.scalar("SELECT d_sae FROM saes WHERE sae_key = ?", [sae_key]) if sae_key else None
    return int(d) if d is not None else None


def feature_link_problem(raw: str, d_sae: int | None) -> str | None:
    """Why a link's ``feature`` value names no feature of the SAE (not a whole number ≥ 0, or past its width), or
    None when it names one."""
    text = str(raw).strip()
    if not text.isdigit():
        return f"“{raw}” is not a feature number"
    if d_sae is not None and int(text) >= d_sae:
        return f"feature {int(text):,} does not exist: this task's SAE has {d_sae:,} features (0–{d_sae - 1:,})"
    return None


def selection_name(task: str, sel_cfg, res_cfg, vetted: bool = False) -> str:
    """The default name of an IGDS selection: method, direction, task and cut (``igds-summarization-0.5``,
    ``igds-hard-math-tau1.2``, ``igds-summarization-100000tok-vetted``)."""
    kind = "igds" if res_cfg.higher_first else "igds-hard"
    cut = (f"tau{sel_cfg.threshold:g}" if sel_cfg.threshold is not None else
           f"{sel_cfg.token_budget}tok" if sel_cfg.token_budget is not None else f"{sel_cfg.ratio:g}")
    return f"{kind}-{task}-{cut}" + ("-vetted" if vetted else "")


def selection_named(store: ActivationStore, name: str) -> dict | None:
    """The stored selection called ``name`` (the newest; selection_id, task, method, n_selected, created), or
    None."""
    df = store.query_df("SELECT selection_id, task, method, n_selected, created FROM selections WHERE name = ? "
                        "ORDER BY created DESC LIMIT 1", [name])
    return df.iloc[0].to_dict() if len(df) else None


def saved_name(store: ActivationStore, selection_id: str) -> str:
    """The name a stored selection goes by (a selection saved again under another name keeps its first one)."""
    return store.scalar("SELECT name FROM selections WHERE selection_id = ?", [selection_id]) or selection_id


def default_pool(store: ActivationStore, task: str, run_id: str | None = None, extracted=None) -> str:
    """The pool setting a task is extracted with by default: ``task-only`` for a task whose pool does not include the
    shipped general set, else ``mixed`` (shipped tasks). With ``run_id``, ``task-only`` while the run has not extracted
    the mixed pool yet (a first run extracts the general records last), as ``extracted(store, run_id, task, setting)``
    tells (default :func:`pool_extracted`; pages pass a remembering one)."""
    from igds.workflow.catalog import task_data

    data = task_data(store, task)
    setting = data.default_pool_setting if data else "mixed"
    extracted = extracted or pool_extracted
    if setting == "mixed" and run_id is not None and not extracted(store, run_id, task, setting):
        return "task-only"
    return setting


def pool_extracted(store: ActivationStore, run_id: str, task: str, setting: str) -> bool:
    """Whether extraction run ``run_id`` holds every example of ``task``'s pool of ``setting`` (but those it dropped for
    their length)."""
    dropped = store.run_dropped(run_id)
    ids = [i for i in store.pool_examples(task, setting == "mixed").example_id if i not in dropped]
    return len(store.token_counts(run_id, ids)) >= len(ids)
