"""Stage 1a — frequency recall: SAE features that fire on many task examples.

Frequencies come straight from the stored per-(example, feature) aggregates, so recall needs no
model forward; only the logit lens (what each feature's decoder direction promotes) touches weights.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from igds.method.config import FREQUENCIES, PAPER_RECALL, RecallConfig  # noqa: F401 - re-exported
from igds.modeling.sae import decoder_directions
from igds.ranking import rank_key
from igds.store import ActivationStore


@dataclass(frozen=True)
class RecallResult:
    """Recall statistics of every feature seen on probe or reference; ``candidates`` in rank order."""

    recall_id: str
    task: str
    table: pd.DataFrame
    n_probe: int
    n_reference: int

    @property
    def candidates(self) -> list[int]:
        """Candidate features, best first."""
        c = self.table[self.table.is_candidate].sort_values("rank")
        return [int(f) for f in c.feature]


def _subset_stats(store: ActivationStore, run_id: str, example_ids: Sequence[str]) -> tuple[pd.DataFrame, int]:
    """``store.feature_stats`` over a subset of examples plus its kept-token total; every example must
    have been extracted, except those the run dropped for their length (left out)."""
    dropped = store.run_dropped(run_id)
    example_ids = [e for e in example_ids if e not in dropped]
    df = store.feature_stats(run_id, example_ids)
    n_tokens, missing = store.subset_token_count(run_id, example_ids)
    if missing:
        raise ValueError(f"{missing} of {len(example_ids)} examples have no activations in run {run_id}; "
                         "run 'igds extract' for this task first")
    return df, n_tokens


def compute_recall(probe: pd.DataFrame, n_probe: int, probe_tokens: int, ref: pd.DataFrame, n_ref: int,
                   ref_tokens: int, cfg: RecallConfig, exclude: Sequence[int] = ()) -> pd.DataFrame:
    """Pure part of recall: frequencies, lift, guards and ranking from per-feature subset stats.

    Args:
        probe, ref: ``ActivationStore.feature_stats`` frames (feature, n_examples, n_active, sum_act, max_act).
        exclude: features that may not be candidates (e.g. flagged token detectors); the next ranked fill in.

    Returns:
        one row per feature with freq_task, freq_ref, tok_freq_task, tok_freq_ref, lift, mean_act_task,
        max_act_task, is_candidate, rank (1-based; NaN for non-candidates).
    """
    t = probe.set_index("feature")
    r = ref.set_index("feature")
    feats = t.index.union(r.index)
    t, r = t.reindex(feats), r.reindex(feats)
    out = pd.DataFrame({"feature": feats.astype(int)})
    out["freq_task"] = (t.n_examples.fillna(0) / max(n_probe, 1)).to_numpy()
    out["freq_ref"] = (r.n_examples.fillna(0) / max(n_ref, 1)).to_numpy()
    out["tok_freq_task"] = (t.n_active.fillna(0) / max(probe_tokens, 1)).to_numpy()
    out["tok_freq_ref"] = (r.n_active.fillna(0) / max(ref_tokens, 1)).to_numpy()
    task_f, ref_f = (out.tok_freq_task, out.tok_freq_ref) if cfg.frequency == "token" else (out.freq_task, out.freq_ref)
    out["lift"] = task_f / (ref_f + cfg.eps)
    out["mean_act_task"] = t.mean_act_firing.to_numpy()
    out["max_act_task"] = t.max_act.to_numpy()
    dense = (ref_f >= cfg.dense_ref) if cfg.dense_ref < 1 else pd.Series(False, index=out.index)  # 1: no guard
    eligible = (out.freq_task >= cfg.min_freq) & ~dense & (out.freq_task > 0) & ~out.feature.isin(list(exclude))
    if cfg.frequency == "token":
        eligible &= out.tok_freq_task >= cfg.min_tok_freq
    out["_freq"] = task_f
    key = "lift" if cfg.contrast else "_freq"
    # at the ranking resolution (igds.ranking); ties (e.g. many features on every probe example under
    # ``example``) break by token frequency, then id
    ranked = out[eligible].assign(_k1=lambda d: rank_key(d[key]), _k2=lambda d: rank_key(d.tok_freq_task))
    ranked = ranked.sort_values(["_k1", "_k2", "feature"], ascending=[False, False, True], kind="stable")
    ranked = ranked.head(cfg.k_recall)
    out["is_candidate"] = out.feature.isin(ranked.feature)
    out["rank"] = np.nan
    out.loc[ranked.index, "rank"] = np.arange(1, len(ranked) + 1)
    out = out.drop(columns="_freq")
    return out.sort_values(["rank", "freq_task", "feature"], ascending=[True, False, True], na_position="last",
                           kind="stable").reset_index(drop=True)


def recall_features(store: ActivationStore, run_id: str, task: str, probe_ids: Sequence[str],
                    reference_ids: Sequence[str], cfg: RecallConfig, preset: str = "default") -> RecallResult:
    """Compute, store and return frequency recall for ``task`` over extraction run ``run_id``.

    Idempotent: the result is keyed by config, run and the two example sets. ``preset`` names the method
    preset the config came from (:mod:`igds.method.presets`) and is recorded with the run.
    """
    import hashlib

    ids_hash = hashlib.sha256(("\n".join(sorted(probe_ids)) + "|" + "\n".join(sorted(reference_ids))).encode())
    source = store.run(run_id) or {}  # the recall reads the model and SAE of its extraction run
    exclude: list[int] = []
    if cfg.drop_token_detectors:
        checks = store.feature_checks(source.get("sae_key"))
        exclude = sorted(int(f) for f in checks.feature[checks.token_detector.fillna(False).astype(bool)])
    upstream = (run_id, task, ids_hash.hexdigest(), *([f"exclude={exclude}"] if exclude else []))
    recall_id = cfg.stage_key(*upstream)
    probe, probe_tokens = _subset_stats(store, run_id, probe_ids)
    ref, ref_tokens = _subset_stats(store, run_id, reference_ids)
    table = compute_recall(probe, len(probe_ids), probe_tokens, ref, len(reference_ids), ref_tokens, cfg, exclude)
    rows = table.assign(recall_id=recall_id, task=task)[
        ["recall_id", "task", "feature", "freq_task", "freq_ref", "tok_freq_task", "tok_freq_ref", "lift",
         "mean_act_task", "max_act_task", "is_candidate", "rank"]]
    store.write_recall(recall_id, rows)
    store.start_run(recall_id, "recall", {"recall": cfg.to_dict(), "task": task, "extract_run": run_id,
                                          "method_preset": preset, **({"excluded": exclude} if exclude else {})},
                    source.get("model_key"), source.get("sae_key"))
    store.update_run(recall_id, status="done", n_done=int(table.is_candidate.sum()),
                     message=f"{int(table.is_candidate.sum())} candidates")
    return RecallResult(recall_id=recall_id, task=task, table=table, n_probe=len(probe_ids),
                        n_reference=len(reference_ids))


def load_recall(store: ActivationStore, recall_id: str) -> RecallResult:
    """Read a stored recall result."""
    df = store.recall_table(recall_id)
    if df.empty:
        raise ValueError(f"no recall result {recall_id!r}")
    cfg = store.run(recall_id)["config"] if store.run(recall_id) else {}
    return RecallResult(recall_id=recall_id, task=df.task.iloc[0], table=df.drop(columns=["recall_id", "task"]),
                        n_probe=cfg.get("n_probe", 0), n_reference=cfg.get("n_reference", 0))


@torch.no_grad()
def logit_lens(model, tokenizer, sae, k: int = 10, chunk: int = 512) -> pd.DataFrame:
    """Top and bottom ``k`` tokens of every feature's decoder direction through the unembedding.

    The final norm's gain is applied (its per-token scale is not: it does not change the ranking).
    """
    from igds.modeling.adapters import final_norm

    dirs = decoder_directions(sae)
    gain = getattr(final_norm(model), "weight", None)
    if gain is not None:
        # gemma-style norms store weight - 1; the model's own forward adds it back
        gain = gain.float() + (1.0 if model.config.model_type.startswith("gemma") else 0.0)
        dirs = dirs * gain.cpu()
    w_u = model.get_output_embeddings().weight.float().cpu()
    rows = []
    for start in range(0, len(dirs), chunk):
        logits = dirs[start : start + chunk] @ w_u.T
        top = logits.topk(k, dim=-1).indices
        bot = (-logits).topk(k, dim=-1).indices
        for i in range(len(logits)):
            rows.append((start + i, json.dumps([tokenizer.decode([t]) for t in top[i].tolist()]),
                         json.dumps([tokenizer.decode([t]) for t in bot[i].tolist()])))
    return pd.DataFrame(rows, columns=["feature", "top_tokens", "bottom_tokens"])


def ensure_logit_lens(store: ActivationStore, sae_key: str, model, tokenizer, sae) -> int:
    """Compute and store the logit lens of every feature once per SAE; returns rows written."""
    if store.has_logit_lens(sae_key):
        return 0
    df = logit_lens(model, tokenizer, sae).assign(sae_key=sae_key)[["sae_key", "feature", "top_tokens",
                                                                      "bottom_tokens"]]
    store.write_logit_lens(df)
    return len(df)
