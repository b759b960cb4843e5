"""Feature checks: is a feature more than a token detector, and does it survive a change of SAE seed?

**Token injection.** Published audits found that many SAE features labelled with an abstract concept fire on
a handful of tokens out of any context. The test takes a feature's five top-activating tokens (the highest
in-scope token activations of its cached top contexts), inserts them at one seeded word boundary into each of
100 reference texts (general text no pool contains, rendered without instruction as recall reads it), and
measures the feature's max activation on each text's content tokens exactly as extraction does
(:func:`igds.method.extract.process_batch`: BOS and attention sinks excluded). The feature is flagged as a
**token detector** when it fires above ``threshold`` (half) of its median top activation on more than
``majority`` (half) of the injected texts. The same texts without the tokens give the base rate, reported
beside it (a feature that already fires on plain reference text is not explained by the tokens).

**Seed stability.** Two SAEs trained with the same recipe and different seeds learn partly different
dictionaries. A feature's match is the best cosine between its decoder direction and any decoder direction of
the other SAE; it is called stable at ``match_threshold`` (0.7) or above.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import pandas as pd

from igds.method.config import CheckConfig  # noqa: F401 - re-exported
from igds.progress import ProgressFn, null_progress
from igds.scope import CONTENT, STAGE_LENGTH

TOKEN_INJECTION = "token_injection"
SEED_MATCH = "seed_match"


def top_tokens(contexts: pd.DataFrame, n: int = 5) -> list[str]:
    """A feature's ``n`` top-activating distinct tokens from its cached contexts (in-scope positions only,
    highest activation first; whitespace-only tokens skipped).

    Args:
        contexts: the feature's rows of ``ActivationStore.feature_contexts`` (tokens, acts, in_scope).
    """
    pairs = [(float(a), t) for r in contexts.itertuples() for t, a, s in zip(r.tokens, r.acts, r.in_scope, strict=True)
             if s and a > 0 and t.strip()]
    out: list[str] = []
    for _, tok in sorted(pairs, key=lambda p: -p[0]):
        if tok not in out:
            out.append(tok)
        if len(out) == n:
            break
    return out


def inject(text: str, tokens: Sequence[str], rng: random.Random) -> str:
    """``text`` with ``tokens`` (stripped, space-separated) inserted at one random word boundary."""
    words = text.split(" ")
    at = rng.randint(0, len(words))
    piece = " ".join(t.strip() for t in tokens if t.strip())
    return " ".join([*words[:at], piece, *words[at:]])


def max_activations(model, tokenizer, sae, site: str, examples: Sequence, features: Sequence[int],
                    positions: str = CONTENT.positions, max_length: int = STAGE_LENGTH.max_length,
                    progress: ProgressFn | None = None) -> pd.DataFrame:
    """Each example's max activation of each feature over its in-scope tokens, as extraction measures it.

    Returns:
        example_id, feature, max_act (only pairs that fired; absent pairs are 0).
    """
    from igds.method.extract import ExtractConfig, process_batch
    from igds.modeling.batching import length_batches
    from igds.modeling.encoding import encode_examples

    progress = progress or null_progress
    cfg = ExtractConfig(positions=positions, max_length=max_length)
    items = encode_examples(tokenizer, examples, max_length)
    fset = {int(f) for f in features}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    parts, done = [], 0
    for batch in length_batches(items, cfg.batch_tokens):
        acts, _ = process_batch(model, sae, site, batch, cfg, pad)
        df = acts.select(["example_id", "feature", "max_act"]).to_pandas()
        parts.append(df[df.feature.isin(fset)])
        done += len(batch)
        progress(done, len(items), f"feature checks: {done}/{len(items)} texts")
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["example_id", "feature", "max_act"])


def token_injection(model, tokenizer, sae, site: str, contexts: pd.DataFrame, reference: Sequence,
                    cfg: CheckConfig | None = None, progress: ProgressFn | None = None) -> pd.DataFrame:
    """The token-injection test of every feature with cached contexts.

    Args:
        contexts: ``feature_contexts`` rows of the features to test (their top examples).
        reference: reference examples (records of the general reference split).

    Returns:
        feature, value (injection rate), flagged (token detector), detail (tokens, median top activation,
        base rate, counts), one row per feature.
    """
    import dataclasses

    cfg = cfg or CheckConfig()
    reference = list(reference)[: cfg.n_texts]
    plan: dict[int, tuple[list[str], float]] = {}
    for f, rows in contexts.groupby("feature", sort=True):
        toks = top_tokens(rows, cfg.n_tokens)
        if toks:
            plan[int(f)] = (toks, float(np.median(rows.max_act.astype(float))))
    injected = []
    for f, (toks, _) in plan.items():
        rng = random.Random(f"{cfg.seed}:{f}")
        injected += [dataclasses.replace(ex, id=f"inj-{f}-{ex.id}", prompt=inject(ex.prompt, toks, rng))
                     for ex in reference]
    feats = list(plan)
    acts = max_activations(model, tokenizer, sae, site, [*reference, *injected], feats, max_length=cfg.max_length,
                           progress=progress)
    peak = {(r.example_id, int(r.feature)): float(r.max_act) for r in acts.itertuples()}
    rows = []
    for f, (toks, median_top) in plan.items():
        cut = cfg.threshold * median_top
        rate = np.mean([peak.get((f"inj-{f}-{ex.id}", f), 0.0) > cut for ex in reference])
        base = np.mean([peak.get((ex.id, f), 0.0) > cut for ex in reference])
        rows.append({"feature": f, "value": float(rate), "flagged": bool(rate > cfg.majority),
                     "detail": {"tokens": toks, "median_top": median_top, "cut": cut, "base_rate": float(base),
                                "n_texts": len(reference)}})
    return pd.DataFrame(rows, columns=["feature", "value", "flagged", "detail"])


def decoder_match(sae_a, sae_b, features: Sequence[int] | None = None, threshold: float = 0.7) -> pd.DataFrame:
    """Each feature of ``sae_a``'s best decoder-cosine match among ``sae_b``'s features.

    Returns:
        feature, value (the best cosine), flagged (True when below ``threshold``: not found again), detail
        (the matching feature of ``sae_b``).
    """
    import torch

    from igds.modeling.sae import decoder_directions

    a = decoder_directions(sae_a, features).float()
    b = decoder_directions(sae_b).float()
    a = torch.nn.functional.normalize(a, dim=-1)
    b = torch.nn.functional.normalize(b, dim=-1)
    best, match = (a @ b.T).max(dim=-1)
    feats = list(features) if features is not None else list(range(a.shape[0]))
    return pd.DataFrame({"feature": [int(f) for f in feats], "value": best.tolist(),
                         "flagged": [bool(v < threshold) for v in best.tolist()],
                         "detail": [{"match": int(m), "threshold": threshold} for m in match.tolist()]})
