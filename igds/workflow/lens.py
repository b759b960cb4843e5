"""Text lens: any text (or a stored example) through the workspace's model and SAE, token by token.

:func:`encode_text` / :func:`encode_stored_example` make the model input, :func:`text_lens` runs the model to the
SAE's site once and keeps every token's SAE activations (:class:`TextLens`: per-token top-k features, the features
firing most on the text); :func:`annotate_features` marks the task's validated features (F*) and recall candidates
and adds each feature's logit-lens tokens and label; :func:`search_features` finds features by a promoted token, by
text they fire on (cached top-activating contexts) or by label. No UI code here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from igds.scope import STAGE_LENGTH, TokenScope
from igds.store import ActivationStore

SEARCH_KINDS = ("promoted token", "text it fires on", "label")
"""What :func:`search_features` can search by."""


@dataclass(frozen=True, eq=False)
class TextLens:
    """SAE activations of every token of one text.

    Attributes:
        tokens: the decoded tokens.
        in_scope: whether a token counts (not BOS or an attention sink; for a rendered example its own content
            and response only, as extraction counts them).
        acts: ``[n_tokens, d_sae]`` float32 SAE activations, 0 at BOS and sinks.
        example_id: the stored example, or None for pasted text.
    """

    tokens: list[str]
    in_scope: list[bool]
    acts: np.ndarray
    example_id: str | None = None

    def _scoped(self) -> np.ndarray:
        return self.acts * np.asarray(self.in_scope, dtype=self.acts.dtype)[:, None]

    def top_k(self, k: int = 5) -> pd.DataFrame:
        """Per counted token its ``k`` strongest firing features: pos, token, rank (0 = strongest), feature, act."""
        a = self._scoped()
        k = min(int(k), a.shape[1])
        if not len(a) or k <= 0:
            return pd.DataFrame(columns=["pos", "token", "rank", "feature", "act"])
        idx = np.argsort(-a, axis=1, kind="stable")[:, :k]
        vals = np.take_along_axis(a, idx, axis=1)
        pos, rank = np.nonzero(vals > 0)
        return pd.DataFrame({"pos": pos, "token": [self.tokens[p] for p in pos], "rank": rank,
                             "feature": idx[pos, rank].astype(int), "act": vals[pos, rank].astype(float)})

    def top_features(self, n: int = 30) -> pd.DataFrame:
        """The ``n`` features firing most on the text (by max activation over counted tokens): feature, max_act,
        mean_act (over the tokens it fires on), n_tokens (it fires on), max_pos, max_token."""
        a = self._scoped()
        cols = ["feature", "max_act", "mean_act", "n_tokens", "max_pos", "max_token"]
        if not len(a):
            return pd.DataFrame(columns=cols)
        mx = a.max(axis=0)
        feats = [int(f) for f in np.argsort(-mx, kind="stable")[:n] if mx[f] > 0]
        fired = a[:, feats] > 0
        sums = a[:, feats].sum(axis=0)
        pos = a[:, feats].argmax(axis=0)
        return pd.DataFrame({"feature": feats, "max_act": mx[feats].astype(float),
                             "mean_act": (sums / np.maximum(fired.sum(axis=0), 1)).astype(float),
                             "n_tokens": fired.sum(axis=0).astype(int), "max_pos": pos.astype(int),
                             "max_token": [self.tokens[p] for p in pos]})[cols]

    def values(self, feature: int) -> list[float]:
        """One feature's activation at every token (0 where not counted)."""
        return [float(v) for v in self._scoped()[:, int(feature)]]


def encode_text(tokenizer, text: str, max_length: int = STAGE_LENGTH.max_length, task: str | None = None):
    """Model input for pasted text: as plain text after BOS (every token counts), or with ``task`` rendered as that
    task's prompt (only the text's own tokens count, as extraction counts an example's content).

    Returns:
        an :class:`igds.modeling.batching.EncodedItem` (example id empty).
    """
    from igds.modeling.batching import EncodedItem

    if task:
        from igds.modeling.encoding import render_example

        return render_example(tokenizer, task, text, None, max_length)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None:
        ids = [bos, *ids]
    ids = ids[:max_length]
    return EncodedItem("", ids, len(ids), {"content": ((1 if bos is not None else 0, len(ids)),)})


def encode_stored_example(store: ActivationStore, tokenizer, example_id: str,
                          max_length: int = STAGE_LENGTH.max_length):
    """Model input of a stored example, rendered as extraction rendered it (through the task that brought it:
    its first non-``general`` membership, else ``general``), prompt content and response.

    Raises:
        ValueError: no such example.
    """
    from igds.data.records import Example
    from igds.modeling.encoding import encode_examples

    df = store.query_df("SELECT id, task, source, prompt, response FROM examples WHERE id = ? "
                        "ORDER BY task = 'general', task LIMIT 1", [example_id])
    if df.empty:
        raise ValueError(f"no example {example_id!r}")
    r = df.iloc[0]
    ex = Example(id=r["id"], task=r["task"], source=r["source"], split="train", prompt=r["prompt"],
                 response=r["response"], meta={})
    return encode_examples(tokenizer, [ex], max_length)[0]


def text_lens(model, tokenizer, sae, site: str, item, scope: str = "content",
              sink_norm_factor: float = 10.0) -> TextLens:
    """Run the model to the SAE's site on one encoded text and keep every token's SAE activations.

    Args:
        item: from :func:`encode_text` or :func:`encode_stored_example`.
        scope: the token scope that counts (:data:`igds.modeling.batching.POSITION_SCOPES`; an item without spans
            counts every position).
        sink_norm_factor: the sink guard of extraction.
    """
    import torch

    from igds.modeling.batching import keep_mask, scope_positions
    from igds.modeling.hooks import run_until

    device = next(model.parameters()).device
    param = next(sae.parameters())
    ids = torch.tensor([list(item.input_ids)], device=device)
    with torch.no_grad():
        h = run_until(model, site, ids)
        keep = keep_mask(h, torch.ones_like(ids), sink_norm_factor)[0].cpu()
        z = sae.encode(h[0].to(device=param.device, dtype=param.dtype)).float().cpu() * keep.unsqueeze(-1)
    n = len(item.input_ids)
    scoped = np.zeros(n, dtype=bool)
    scoped[scope_positions(item, scope) if item.spans else list(range(n))] = True
    return TextLens(tokens=[tokenizer.decode([t]) for t in item.input_ids],
                    in_scope=[bool(s and k) for s, k in zip(scoped, keep.numpy(), strict=True)],
                    acts=z.numpy().astype(np.float32), example_id=item.example_id or None)


# -- the task's view of features --------------------------------------------------------------------------
def example_exists(store: ActivationStore, example_id: str) -> bool:
    """Whether the store holds an example with this id (a link's or a typed ``example``, checked before the model
    runs)."""
    return store.scalar("SELECT count(*) FROM examples WHERE id = ?", [example_id]) > 0


def run_label(store: ActivationStore, run_id: str) -> str:
    """An extraction run by what it is rather than its hash: model, SAE and its site, token scope and date
    (``tiny-llama · SAE tiny-sae at blocks.1.hook_resid_post · content tokens · 2026-12-07``)."""
    run = store.run(run_id)
    if run is None:
        return f"run {run_id} (not in the store)"
    model = store.scalar("SELECT name FROM models WHERE model_key = ?", [run["model_key"]]) or run["model_key"]
    sae = store.query_df("SELECT name, site FROM saes WHERE sae_key = ?", [run["sae_key"]])
    sae_name, site = (sae.name.iloc[0], sae.site.iloc[0]) if len(sae) else (run["sae_key"], run["config"].get("site"))
    scope = TokenScope.of_run(run).positions
    return f"{model} · SAE {sae_name} at {site} · {scope} tokens · {str(run['created'])[:10]}"


def feature_marks(store: ActivationStore, task: str) -> tuple[list[int], list[int]]:
    """``(F*, candidates)`` of a task now: its validated features (strongest first) and its recall candidates
    (empty before interventions / recall)."""
    from igds.method.recall import load_recall
    from igds.workflow.explore import task_state
    from igds.workflow.stages import latest_effects

    state = task_state(store, task)
    cands = list(load_recall(store, state.recall_id).candidates) if state.recall_id else []
    try:
        fstar = list(latest_effects(store, task).kept) if state.n_measured else []
    except ValueError:
        fstar = []
    return fstar, cands


def mark(feature: int, fstar: Sequence[int], candidates: Sequence[int]) -> str:
    """``★`` for a validated feature, ``◆`` for a candidate, else empty."""
    return "★" if feature in fstar else "◆" if feature in candidates else ""


def annotate_features(store: ActivationStore, task: str, sae_key: str | None, df: pd.DataFrame,
                      n_tokens: int = 6) -> pd.DataFrame:
    """``df`` (with a ``feature`` column) plus mark (★ F*, ◆ candidate), promotes and suppresses (the first
    ``n_tokens`` logit-lens tokens) and label."""
    fstar, cands = feature_marks(store, task)
    out = df.copy()
    feats = [int(f) for f in out.feature]
    out.insert(1, "mark", [mark(f, fstar, cands) for f in feats])
    lens = store.logit_lens_table(sae_key, feats) if sae_key and feats else pd.DataFrame()
    top = dict(zip(lens.feature.astype(int), lens.top_tokens, strict=True)) if len(lens) else {}
    bottom = dict(zip(lens.feature.astype(int), lens.bottom_tokens, strict=True)) if len(lens) else {}
    out["promotes"] = [" ".join(json.loads(top[f])[:n_tokens]) if f in top else "" for f in feats]
    out["suppresses"] = [" ".join(json.loads(bottom[f])[:n_tokens]) if f in bottom else "" for f in feats]
    labels = store.feature_labels(sae_key, feats) if sae_key and feats else pd.DataFrame(columns=["feature", "label"])
    out["label"] = [dict(zip(labels.feature, labels.label, strict=True)).get(f, "") for f in feats]
    return out


def search_features(store: ActivationStore, task: str, sae_key: str | None, run_id: str | None, query: str,
                    by: str = "promoted token", limit: int = 50) -> pd.DataFrame:
    """Features matching ``query`` (case-insensitive), annotated (:func:`annotate_features`).

    Args:
        by: ``promoted token`` (a token of the stored logit lens's top list contains it; exact tokens and higher
            places first), ``text it fires on`` (a cached top-activating context's max token or window contains
            it) or ``label`` (the feature's label or note contains it).

    Returns:
        feature, mark, match (what matched), score (place in the lens / contexts matched / —), promotes, suppresses,
        label; empty for an empty query.
    """
    query = (query or "").strip()
    if by not in SEARCH_KINDS:
        raise ValueError(f"search by one of {', '.join(SEARCH_KINDS)}, not {by!r}")
    cols = ["feature", "match", "score"]
    rows = pd.DataFrame(columns=cols)
    if query and by == "promoted token" and sae_key:
        q, hits = query.lower(), []
        for r in store.search_logit_lens(sae_key, query, 1000).itertuples():
            toks = json.loads(r.top_tokens)
            places = [(t.strip().lower() != q, i, t) for i, t in enumerate(toks) if q in t.lower()]
            if places:
                inexact, i, t = min(places)
                hits.append((int(r.feature), t, i + 1, inexact))
        hits.sort(key=lambda h: (h[3], h[2], h[0]))
        rows = pd.DataFrame([h[:3] for h in hits[:limit]], columns=cols)
    elif query and by == "text it fires on" and run_id:
        df = store.search_contexts(run_id, query, limit)
        rows = pd.DataFrame({"feature": df.feature.astype(int),
                             "match": [f"max token in {a} of {b} contexts" if a else f"in {b} context windows"
                                       for a, b in zip(df.n_max, df.n_window, strict=True)],
                             "score": df.n_max * 1000 + df.n_window})
    elif query and by == "label" and sae_key:
        df = store.search_feature_labels(sae_key, query, limit)
        rows = pd.DataFrame({"feature": df.feature.astype(int),
                             "match": [f"{la} — {no}" if no else la for la, no in zip(df.label, df.note.fillna(""),
                                                                                      strict=True)],
                             "score": range(len(df), 0, -1)})
    rows["feature"] = rows.feature.astype(int)
    return annotate_features(store, task, sae_key, rows.reset_index(drop=True))[
        ["feature", "mark", "match", "score", "promotes", "suppresses", "label"]]
