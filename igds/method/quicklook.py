"""The quick look: what a first run can say about its candidates within minutes, before the full filter has run.

It is an intervention run of its own stage (``quicklook``, never read as F*): the α = 1 amplification effect of the
:attr:`~igds.method.config.QuickLookConfig.top` strongest candidates by attribution against a small null, on the same
dev items and edits as the full filter. Beside each effect it gives the *detectable effect*: the smallest true mean
effect a paired test on these dev items would find with the look's power, from the spread of the measured per-item
changes, a planning figure (never a bound on the true effect). Ours, not the paper's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from igds.method.config import PRIMARY_ALPHA, QuickLookConfig

QUICK_LOOK = "quicklook"
"""The stage name of a quick look's run (an ``intervene`` run is the full filter)."""


def detectable_effect(deltas: np.ndarray, level: float = 0.05, power: float = 0.8) -> float:
    """The smallest mean effect (nats) a two-sided paired t-test at ``level`` detects with ``power`` on items whose
    per-item changes spread like ``deltas``: ``(t_{1-level/2} + t_{power}) · sd / √n`` (NaN for fewer than 2 items)."""
    d = np.asarray(deltas, dtype=float)
    d = d[np.isfinite(d)]
    if d.size < 2:
        return float("nan")
    df = d.size - 1
    return float((stats.t.ppf(1 - level / 2, df) + stats.t.ppf(power, df)) * d.std(ddof=1) / np.sqrt(d.size))


@dataclass(frozen=True)
class QuickLook:
    """A quick look's result: ``table`` (feature, attribution, effect, ci_low, ci_high, n, detectable, beyond_null:
    the effect exceeds every small-null element's), the small ``null`` (null_id, kind, effect) and the ``detectable``
    effect over the measured candidates (their median)."""

    effect_id: str
    table: pd.DataFrame
    null: pd.DataFrame
    detectable: float
    n_items: int
    config: QuickLookConfig


def load_quick_look(store, effect_id: str, cfg: QuickLookConfig) -> QuickLook:
    """Read a quick look's run back: its α = 1 effects, small null and detectable effects."""
    summ = store.effect_summary(effect_id)
    summ = summ[(summ.kind == "amplify") & (summ.alpha == PRIMARY_ALPHA)]
    deltas = store.effect_deltas(effect_id)
    deltas = deltas[(deltas.kind == "amplify") & (deltas.alpha == PRIMARY_ALPHA)]
    null = store.null_summary(effect_id)
    attr = store.attribution(effect_id)
    est = dict(zip(attr.feature.astype(int), attr.est_amplify, strict=True)) if not attr.empty else {}
    top = float(null.effect.max()) if not null.empty else float("nan")
    det = {int(f): detectable_effect(g.delta.to_numpy(), cfg.level, cfg.power) for f, g in deltas.groupby("feature")}
    table = pd.DataFrame({"feature": summ.feature.astype(int).to_numpy(),
                          "attribution": [est.get(int(f), np.nan) for f in summ.feature],
                          "effect": summ.effect.to_numpy(), "ci_low": summ.ci_low.to_numpy(),
                          "ci_high": summ.ci_high.to_numpy(), "n": summ.n.astype(int).to_numpy(),
                          "detectable": [det.get(int(f), np.nan) for f in summ.feature]})
    table["beyond_null"] = table.effect > top if np.isfinite(top) else False
    table = table.sort_values("effect", ascending=False, ignore_index=True)
    n_items = int(deltas.example_id.nunique()) if not deltas.empty else 0
    return QuickLook(effect_id=effect_id, table=table, null=null[["null_id", "kind", "effect"]].reset_index(drop=True),
                     detectable=float(np.nanmedian(table.detectable)) if len(table) else float("nan"),
                     n_items=n_items, config=cfg)
