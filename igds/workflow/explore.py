"""Read models for the dashboard: what each page shows, assembled from the store (no UI code here).

Pages call one function per view; everything returns DataFrames or plain dicts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from igds.method.intervene import AMPLIFY, primary_amplification
from igds.method.recall import load_recall
from igds.store import ActivationStore
from igds.workflow.stages import latest_effects, latest_run


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

    @property
    def ready_for_selection(self) -> bool:
        """IGDS selection needs validated features."""
        return self.n_kept > 0


def task_state(store: ActivationStore, task: str) -> TaskState:
    """Snapshot of the pipeline for one task."""
    ext = store.query_df("SELECT run_id, sae_key FROM runs WHERE stage = 'extract' AND status IN ('done', 'partial') "
                         "ORDER BY updated DESC LIMIT 1")
    rec = latest_run(store, "recall", task)
    eff = latest_run(store, "intervene", task)
    n_cand = n_meas = n_kept = 0
    if rec:
        n_cand = store.n_recall_candidates(rec["run_id"])
    if eff:
        n_meas = len(store.measured_features(eff["run_id"]))
        n_kept = len(latest_effects(store, task).kept) if n_meas else 0
    sels = store.query_df("SELECT selection_id, name, method, pool_setting, n_selected, n_pool, created "
                          "FROM selections WHERE task = ? ORDER BY created DESC", [task])
    return TaskState(task=task, extract_run=ext.run_id.iloc[0] if not ext.empty else None,
                     sae_key=ext.sae_key.iloc[0] if not ext.empty else None,
                     recall_id=rec["run_id"] if rec else None, effect_id=eff["run_id"] if eff else None,
                     n_candidates=n_cand, n_measured=n_meas, n_kept=n_kept, selections=sels)


def features_table(store: ActivationStore, task: str) -> pd.DataFrame:
    """Recalled candidates with frequencies, lift, mean activation, causal effects, verdict, logit lens
    and vetting status (one row per candidate, in recall rank order)."""
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
        t["q_value"] = t.feature.map(v.q_value)
        t["verdict"] = t.feature.map(v.reason)
        a = res.attribution.set_index("feature")
        t["attribution"] = t.feature.map(a.est_amplify)
    else:
        t["verdict"] = "not measured"
    if st.sae_key:
        lens = store.logit_lens_table(st.sae_key)
        t = t.merge(lens, on="feature", how="left")
        t["promotes"] = t.top_tokens.map(lambda s: " ".join(json.loads(s)[:6]) if isinstance(s, str) else "")
        ov = store.query_df("SELECT feature, action FROM feature_overrides WHERE task = ? AND sae_key = ?",
                            [task, st.sae_key])
        t["override"] = t.feature.map(dict(zip(ov.feature, ov.action, strict=True))).fillna("")
    return t.drop(columns=["is_candidate", "top_tokens", "bottom_tokens"], errors="ignore").reset_index(drop=True)


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
