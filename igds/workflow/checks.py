"""Run the feature checks on a workspace and store them (``feature_checks``): the token-injection test of a task's
candidates, and their decoder match against an SAE trained with another seed. The Features page shows them as
badges; ``RecallConfig(drop_token_detectors=True)`` keeps flagged features out of a later recall."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from igds.method.checks import SEED_MATCH, TOKEN_INJECTION, CheckConfig, decoder_match, token_injection
from igds.progress import ProgressFn, null_progress, scaled


def check_token_injection(ws, task: str, run_id: str, features: Sequence[int], cfg: CheckConfig | None = None,
                          progress: ProgressFn | None = None) -> pd.DataFrame:
    """The token-injection test of ``features`` (their top contexts in extraction run ``run_id`` are computed
    first when not cached), on reference texts no pool of ``task`` holds; stored for the workspace's SAE."""
    from igds.data.corpus import reference_set
    from igds.workflow.explore import compute_contexts

    cfg = cfg or CheckConfig()
    progress = progress or null_progress
    contexts = compute_contexts(ws.store, run_id, features, ws.model, ws.tokenizer, ws.sae, ws.site,
                                progress=scaled(progress, 0, 20, 100))
    reference = reference_set(cfg.n_texts, cfg.seed, task=task)
    res = token_injection(ws.model, ws.tokenizer, ws.sae, ws.site, contexts, reference, cfg,
                          scaled(progress, 20, 80, 100))
    ws.store.add_feature_checks(ws.sae_key, TOKEN_INJECTION, res)
    return res


def check_seed_stability(ws, other_sae, other_name: str, features: Sequence[int],
                         cfg: CheckConfig | None = None) -> pd.DataFrame:
    """Each feature's best decoder match in ``other_sae`` (the same recipe, another seed); stored."""
    cfg = cfg or CheckConfig()
    res = decoder_match(ws.sae, other_sae, features, cfg.match_threshold)
    res["detail"] = [{**d, "other_sae": other_name} for d in res.detail]
    ws.store.add_feature_checks(ws.sae_key, SEED_MATCH, res)
    return res


def fstar_overlap(fstar_a: Sequence[int], fstar_b: Sequence[int], matches: pd.DataFrame,
                  threshold: float) -> dict:
    """How many of SAE A's validated features are found again among SAE B's validated ones: A's feature counts
    when its best decoder match (``matches``, from :func:`decoder_match` over A's features) is in ``fstar_b``
    with a cosine at least ``threshold``."""
    best = {int(r.feature): (int(r.detail["match"]), float(r.value)) for r in matches.itertuples()}
    found = [f for f in fstar_a if f in best and best[f][0] in set(fstar_b) and best[f][1] >= threshold]
    return {"n_a": len(fstar_a), "n_b": len(fstar_b), "found_in_b": found, "n_found": len(found)}
