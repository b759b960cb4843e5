"""Stage 1b — interventional filtering: amplify / ablate each candidate feature, measure task NLL.

Efficient by construction. One full forward over the dev set records the residual at the SAE's site
and the exact arguments every later block received (masks, rotary tables...). Each intervention then
edits the cached residual and replays only the blocks after the site (from block L for
``blocks.L.hook_resid_pre``, from L+1 for ``blocks.L.hook_resid_post``; ``Site.first_replayed``),
stacking several (feature, example) rows into one batch, and unembeds only response positions.
Ablation rows where the feature never fires are skipped: their NLL is unchanged by definition.
Replaying recorded block arguments keeps this architecture-agnostic (sliding-window layers get their
own masks back). Hooks and the replay itself live in :mod:`igds.modeling.hooks`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from igds.config import ConfigBase
from igds.modeling.adapters import Site, parse_site
from igds.modeling.batching import EncodedItem, keep_mask, pad_batch, position_mask
from igds.modeling.hooks import BlockInputs, capture, record_replay_inputs, replay_from
from igds.modeling.nll import nll_from_hidden, response_targets
from igds.modeling.sae import decoder_directions
from igds.progress import ProgressFn, null_progress


@dataclass(frozen=True, kw_only=True)
class InterventionConfig(ConfigBase):
    """Causal validation of candidate features.

    Args:
        alphas: amplification coefficients (``v_j = α · ā_j · W_dec[j]``); 1.0 decides the filter,
            the others give dose–response curves.
        ablate: also measure ablation (subtract the feature's own contribution).
        positions: where interventions apply: ``all``, ``prompt`` or ``response``.
        max_length: truncate dev examples to this many tokens.
        batch_rows: (feature, example) rows replayed per forward.
        sink_norm_factor: positions above this × median residual norm are never edited.
        delta: minimum amplification effect (nats) to keep a feature.
        fdr: Benjamini–Hochberg level of the one-sided paired test; 1.0 with ``require_significance``
            off reproduces the paper's "Δamp > 0".
        require_significance: keep only features whose BH-adjusted p-value is below ``fdr``.
    """

    alphas: tuple[float, ...] = field(default=(1.0,), metadata={"help": "amplification coefficients α"})
    ablate: bool = field(default=True, metadata={"help": "also measure ablation"})
    positions: str = field(default="all", metadata={"help": "edited positions: all | prompt | response"})
    max_length: int = field(default=256, metadata={"help": "truncate dev examples to this many tokens"})
    batch_rows: int = field(default=64, metadata={"help": "rows per replayed forward"})
    sink_norm_factor: float = field(default=10.0, metadata={"help": "sink guard factor"})
    delta: float = field(default=0.0, metadata={"help": "min amplification effect to keep (nats)"})
    fdr: float = field(default=0.05, metadata={"help": "BH false-discovery rate of the paired test"})
    require_significance: bool = field(default=True, metadata={"help": "keep only BH-significant features"})
    precision: str = field(default="auto", metadata={
        "help": "auto (fp32 residual stream with bf16 matmuls where the hardware has bf16) | fp32"})

    def __post_init__(self):
        if self.precision not in ("auto", "fp32"):
            raise ValueError("precision must be auto or fp32")
        if not self.alphas or 1.0 not in self.alphas:
            raise ValueError("alphas must include 1.0 (it decides the filter)")
        if not 0 < self.fdr <= 1:
            raise ValueError("fdr must be in (0, 1]")


PAPER_INTERVENTION = InterventionConfig(require_significance=False, delta=0.0)


@dataclass
class DevCache:
    """Everything an intervention needs about the dev set, computed once."""

    items: list[EncodedItem]
    hidden: torch.Tensor          # [B, T, d] residual at ``site``
    edit_mask: torch.Tensor       # [B, T] positions that interventions may edit
    nll_mask: torch.Tensor        # [B, T] positions whose next token is a response token
    targets: torch.Tensor         # [B, T]
    block_args: list[BlockInputs]  # recorded (args, kwargs) of blocks site.first_replayed..N-1
    site: Site
    nll_base: torch.Tensor        # [B]
    autocast: bool = False        # bf16 matmuls over an fp32 residual stream

    @property
    def layer(self) -> int:
        """Block index of the site (its input for ``hook_resid_pre``, its output for ``hook_resid_post``)."""
        return self.site.layer

    def amp(self):
        """The autocast context every model call of this cache runs under."""
        return torch.autocast(self.hidden.device.type, dtype=torch.bfloat16, enabled=self.autocast)


def use_autocast(model, cfg: InterventionConfig) -> bool:
    """bf16 autocast keeps the residual stream (and so every edit of it) in fp32 while matmuls run in
    bf16. Pure bf16 weights would round ``h + v`` to ~0.5 per element at |h|≈170, which is larger than
    most of a feature's edit, so interventions need fp32 residuals."""
    from igds import settings

    param = next(model.parameters())
    if cfg.precision == "fp32" or param.dtype != torch.float32:
        return False
    return param.device.type == "cuda" or settings.cpu_has_bf16()


def _select_rows(x, rows: torch.Tensor, batch: int):
    """Index the batch dimension of every tensor in a recorded block argument."""
    if torch.is_tensor(x):
        return x[rows.to(x.device)] if x.dim() > 0 and x.shape[0] == batch and batch > 1 else x
    if isinstance(x, tuple | list):
        return type(x)(_select_rows(v, rows, batch) for v in x)
    if isinstance(x, dict):
        return {k: _select_rows(v, rows, batch) for k, v in x.items()}
    return x


@torch.no_grad()
def prepare_dev(model, site: str, items: Sequence[EncodedItem], pad_id: int, cfg: InterventionConfig) -> DevCache:
    """One full forward over the dev set recording the residual at ``site`` and the replayed blocks' arguments."""
    resolved = parse_site(model, site)
    device = next(model.parameters()).device
    ids, attn = pad_batch(items, pad_id, device)
    autocast = use_autocast(model, cfg)
    with (capture(model, [resolved]) as captured, record_replay_inputs(model, resolved) as recorded,
          torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast)):
        model(input_ids=ids, attention_mask=attn, use_cache=False)
    hidden = captured[resolved.name]
    edit = keep_mask(hidden, attn, cfg.sink_norm_factor).cpu() & position_mask(items, ids.shape[1], cfg.positions)
    nll_mask, targets = response_targets(items, ids.shape[1])
    cache = DevCache(items=list(items), hidden=hidden, edit_mask=edit, nll_mask=nll_mask, targets=targets,
                     block_args=recorded, site=resolved, nll_base=torch.empty(0), autocast=autocast)
    cache.nll_base = replay_nll(model, cache, torch.arange(len(items)), hidden)
    return cache


def run_suffix(model, cache: DevCache, rows: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Run the blocks after the site on residuals ``h`` (``[len(rows), T, d]``) that belong to dev rows ``rows``."""
    batch = cache.hidden.shape[0]
    inputs = [(_select_rows(args, rows, batch), _select_rows(kwargs, rows, batch)) for args, kwargs in cache.block_args]
    return replay_from(model, cache.site, h, inputs)


def replay_nll(model, cache: DevCache, rows: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Mean response NLL per row after replaying the suffix on ``h``."""
    with cache.amp():
        out = run_suffix(model, cache, rows, h)
        return nll_from_hidden(model, out, cache.nll_mask[rows], cache.targets[rows])


def feature_acts_at(sae, cache: DevCache, features: Sequence[int]) -> torch.Tensor:
    """Activations of ``features`` at editable positions, ``[B, T, len(features)]`` (0 elsewhere)."""
    b, t, _ = cache.hidden.shape
    out = torch.zeros(b, t, len(features))
    flat = cache.hidden[cache.edit_mask.to(cache.hidden.device)].float()
    sae_dtype = next(sae.parameters()).dtype
    z = sae.encode(flat.to(sae_dtype)).float().cpu()
    out[cache.edit_mask] = z[:, list(features)]
    return out


@dataclass(frozen=True)
class Job:
    """One intervention: feature ``feature`` of kind amplify (with ``alpha``) or ablate."""

    feature: int
    kind: str
    alpha: float


@torch.no_grad()
def run_jobs(model, cache: DevCache, jobs: Sequence[Job], dirs: dict[int, torch.Tensor], mean_act: dict[int, float],
             acts: dict[int, torch.Tensor], cfg: InterventionConfig, on_job=None) -> dict[Job, np.ndarray]:
    """Per-example intervened NLL of each job (rows where an ablation changes nothing keep the base NLL).

    Args:
        dirs: decoder direction per feature ``[d]``.
        mean_act: ā_j (mean activation when firing on probe).
        acts: ``[B, T]`` activation of each feature at editable positions (for ablation and skipping).
        on_job: called with (job, nll array, seconds) as each job completes.
    """
    dtype = cache.hidden.dtype
    device = cache.hidden.device
    edit = cache.edit_mask.to(device).unsqueeze(-1).to(dtype)
    pending = []  # (job, row) pairs
    result: dict[Job, np.ndarray] = {}
    for job in jobs:
        result[job] = cache.nll_base.numpy().copy()
        if job.kind == "ablate":
            rows = (acts[job.feature] > 0).any(1).nonzero(as_tuple=True)[0].tolist()
        else:
            rows = list(range(cache.hidden.shape[0]))
        pending.extend((job, r) for r in rows)
        if not rows and on_job:
            on_job(job, result[job], 0.0)
    remaining = {job: sum(1 for j, _ in pending if j == job) for job in jobs}
    for start in range(0, len(pending), cfg.batch_rows):
        t0 = time.perf_counter()
        chunk = pending[start : start + cfg.batch_rows]
        rows = torch.tensor([r for _, r in chunk])
        h = cache.hidden[rows.to(device)].clone()
        for i, (job, r) in enumerate(chunk):
            d = dirs[job.feature].to(device=device, dtype=dtype)
            if job.kind == "amplify":
                h[i] += edit[r] * (job.alpha * mean_act[job.feature]) * d
            else:
                h[i] -= acts[job.feature][r].to(device=device, dtype=dtype).unsqueeze(-1) * d
        nll = replay_nll(model, cache, rows, h).numpy()
        dt = (time.perf_counter() - t0) / len(chunk)
        for i, (job, r) in enumerate(chunk):
            result[job][r] = nll[i]
            remaining[job] -= 1
            if remaining[job] == 0 and on_job:
                on_job(job, result[job], dt)
    return result


def summarize_effect(job: Job, nll_base: np.ndarray, nll_int: np.ndarray, n_fired: int) -> dict:
    """Mean effect with a 95% t-interval and a one-sided paired p-value.

    Amplification effect = NLL_base − NLL_amp (positive: amplifying helps);
    ablation effect = NLL_abl − NLL_base (positive: the task needs the feature).
    """
    from scipy import stats

    d = (nll_base - nll_int) if job.kind == "amplify" else (nll_int - nll_base)
    d = d[~np.isnan(d)]
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    if n > 1 and d.std(ddof=1) > 0:
        se = d.std(ddof=1) / math.sqrt(n)
        half = float(stats.t.ppf(0.975, n - 1) * se)
        p = float(stats.ttest_1samp(d, 0.0, alternative="greater").pvalue)
    else:
        half, p = 0.0, (0.0 if mean > 0 else 1.0)
    return {"feature": job.feature, "kind": job.kind, "alpha": job.alpha, "n": n, "n_fired": n_fired,
            "effect": mean, "ci_low": mean - half, "ci_high": mean + half, "p_value": p}


def benjamini_hochberg(p: Sequence[float]) -> np.ndarray:
    """BH-adjusted p-values (q-values), monotone and capped at 1."""
    p = np.asarray(p, dtype=float)
    n = len(p)
    if n == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(q, 1.0)
    return out


AMPLIFY = "amplify"
ABLATE = "ablate"
PRIMARY_ALPHA = 1.0  # the amplification coefficient whose effect decides F* (see InterventionConfig.alphas)


def primary_amplification(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of an effect summary that decide the filter: amplification at α = ``PRIMARY_ALPHA``.

    Args:
        summary: ``effect_summary`` rows (any frame with ``kind`` and ``alpha`` columns).

    Returns:
        those rows, index and columns unchanged (one per measured feature).
    """
    return summary[(summary.kind == AMPLIFY) & (summary.alpha == PRIMARY_ALPHA)]


def filter_features(summary: pd.DataFrame, candidates: Sequence[int], cfg: InterventionConfig) -> pd.DataFrame:
    """Decide ``F*`` from the α=1 amplification effects of the candidates.

    Returns:
        one row per candidate: feature, effect, q_value, kept, reason.
    """
    amp = primary_amplification(summary)
    amp = amp[amp.feature.isin(candidates)]
    amp = amp.set_index("feature").reindex(list(candidates))
    q = benjamini_hochberg(amp.p_value.fillna(1.0).to_numpy())
    out = pd.DataFrame({"feature": list(candidates), "effect": amp.effect.to_numpy(), "q_value": q})
    positive = out.effect > cfg.delta
    significant = out.q_value < cfg.fdr if cfg.require_significance else pd.Series(True, index=out.index)
    out["kept"] = positive & significant
    out["reason"] = np.where(~amp.effect.notna().to_numpy(), "not measured",
                             np.where(~positive, f"effect <= {cfg.delta}",
                                      np.where(~significant, f"q >= {cfg.fdr}", "kept")))
    return out


def attribution_estimates(model, sae, cache: DevCache, mean_act: np.ndarray, chunk: int = 1024) -> pd.DataFrame:
    """First-order estimates of amplification (α=1) and ablation effects for every SAE feature.

    One backward pass from the mean dev NLL to the residual at the SAE's site (``cache.hidden``, the
    residual interventions edit) gives ``g``; then
    ``Δamp_j ≈ −ā_j · Σ_{s,t∈T} g·d_j`` and ``Δabl_j ≈ −Σ_{s,t} z_j · g·d_j`` (signs as in
    :func:`summarize_effect`). It screens features; exact interventions decide.

    Args:
        mean_act: ā for every feature ``[d_sae]`` (NaN where unknown).
    """
    h = cache.hidden.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        nll = replay_nll(model, cache, torch.arange(h.shape[0]), h)
        nll[~torch.isnan(nll)].mean().backward()
    g = h.grad.float()
    edit = cache.edit_mask.to(g.device)
    g_sum = (g * edit.unsqueeze(-1)).sum((0, 1)).cpu()          # Σ over edited positions
    g_tok = g[edit].cpu()                                       # [n_tok, d]
    flat = cache.hidden[edit].float().cpu()
    sae_dtype = next(sae.parameters()).dtype
    d_sae = int(sae.cfg.d_sae)
    est_amp = np.zeros(d_sae)
    est_abl = np.zeros(d_sae)
    with torch.no_grad():
        z = sae.encode(flat.to(sae_dtype)).float()
        for s in range(0, d_sae, chunk):
            feats = list(range(s, min(s + chunk, d_sae)))
            dirs = decoder_directions(sae, feats)                  # [c, d]
            est_amp[feats] = -(dirs @ g_sum).numpy()
            est_abl[feats] = -(z[:, feats] * (g_tok @ dirs.T)).sum(0).numpy()
    est_amp = est_amp * np.nan_to_num(mean_act, nan=0.0)
    est_amp[np.isnan(mean_act)] = np.nan
    return pd.DataFrame({"feature": np.arange(d_sae), "mean_act": mean_act,
                         "est_amplify": est_amp, "est_ablate": est_abl})


@dataclass(frozen=True)
class EffectResult:
    """Stored outcome of an intervention run."""

    effect_id: str
    summary: pd.DataFrame       # one row per (feature, kind, alpha)
    verdict: pd.DataFrame       # one row per candidate: effect, q_value, kept, reason
    attribution: pd.DataFrame   # every feature: est_amplify, est_ablate
    seconds: float

    @property
    def amplification(self) -> pd.DataFrame:
        """Summary rows of the deciding effect (α = 1 amplification), one per measured feature."""
        return primary_amplification(self.summary)

    @property
    def kept(self) -> list[int]:
        """``F*``: validated features, strongest amplification effect first."""
        v = self.verdict[self.verdict.kept].sort_values("effect", ascending=False)
        return [int(f) for f in v.feature]

    def why_none_kept(self) -> str:
        """Why ``F*`` is empty, in one sentence with the strongest candidate's figures."""
        v = self.verdict
        if v.empty:
            return f"intervention run {self.effect_id} measured no candidates"
        best = v.sort_values("effect", ascending=False).iloc[0]
        helped = int((v.effect > 0).sum())
        return (f"none of the {len(v)} candidates of intervention run {self.effect_id} passed the filter "
                f"({helped} lowered the dev NLL when amplified; the largest effect is {best.effect:+.4f} nats, "
                f"feature {int(best.feature)}, q = {best.q_value:.3g})")


def load_effects(store, effect_id: str, candidates: Sequence[int], cfg: InterventionConfig) -> EffectResult:
    """Read an intervention run's summaries and attribution and apply the filter."""
    summary = store.effect_summary(effect_id)
    attribution = store.attribution(effect_id)
    seconds = float(summary.seconds.sum()) if not summary.empty else 0.0
    return EffectResult(effect_id=effect_id, summary=summary, verdict=filter_features(summary, candidates, cfg),
                        attribution=attribution, seconds=seconds)


def measure_effects(store, effect_id: str, model, sae, site: str, dev_items: Sequence[EncodedItem],
                    candidates: Sequence[int], mean_act: np.ndarray, cfg: InterventionConfig, pad_id: int,
                    progress: ProgressFn | None = None, max_features: int | None = None) -> EffectResult:
    """Measure (resumably) amplification and ablation effects of every candidate on the dev NLL.

    Results are written feature by feature, each in one transaction, so an interrupted run continues
    with the features not yet measured. The attribution screen of all features is stored first.

    Args:
        mean_act: ā of every SAE feature ``[d_sae]`` (mean activation when firing on probe).
        max_features: stop after measuring this many new features (tests use it to interrupt).
    """
    progress = progress or null_progress
    t0 = time.perf_counter()
    cache = prepare_dev(model, site, dev_items, pad_id, cfg)
    if not store.has_attribution(effect_id):
        progress(0, len(candidates), "intervene: attribution screen of all features")
        store.write_attribution(attribution_estimates(model, sae, cache, mean_act).assign(effect_id=effect_id))
    attr = store.attribution(effect_id)
    est = dict(zip(attr.feature, attr.est_amplify.abs().fillna(0), strict=True))
    done = store.measured_features(effect_id)
    # exact runs in order of the attribution estimate, so an interrupted run has the likely-strong ones
    todo = sorted((f for f in candidates if f not in done), key=lambda f: (-est.get(f, 0.0), f))
    if max_features is not None:
        todo = todo[:max_features]
    dirs = dict(zip(todo, decoder_directions(sae, todo), strict=True)) if todo else {}
    acts_all = feature_acts_at(sae, cache, todo) if todo else None
    ids = [it.example_id for it in cache.items]
    base = cache.nll_base.numpy()
    n_done = len(done & set(candidates))
    for i, f in enumerate(todo):
        t1 = time.perf_counter()
        acts = {f: acts_all[:, :, i]}
        n_fired = int((acts[f] > 0).any(1).sum())
        jobs = [Job(f, AMPLIFY, float(a)) for a in cfg.alphas] + ([Job(f, ABLATE, 0.0)] if cfg.ablate else [])
        res = run_jobs(model, cache, jobs, dirs, {f: float(mean_act[f])}, acts, cfg)
        seconds = time.perf_counter() - t1
        rows, summ = [], []
        for job, nll in res.items():
            rows.append(pd.DataFrame({"effect_id": effect_id, "feature": f, "kind": job.kind, "alpha": job.alpha,
                                      "example_id": ids, "nll_base": base, "nll_int": nll}))
            summ.append({"effect_id": effect_id, **summarize_effect(job, base, nll, n_fired),
                         "seconds": seconds / len(jobs)})
        store.write_feature_effects(pd.concat(rows), pd.DataFrame(summ))
        n_done += 1
        store.update_run(effect_id, n_done=n_done, message=f"{n_done}/{len(candidates)} features")
        progress(n_done, len(candidates), f"intervene: feature {f} ({n_done}/{len(candidates)}, {seconds:.1f} s)")
    result = load_effects(store, effect_id, candidates, cfg)
    finished = n_done >= len(candidates)
    store.update_run(effect_id, status="done" if finished else "partial",
                     message=f"{len(result.kept)} of {len(candidates)} kept")
    return EffectResult(effect_id=effect_id, summary=result.summary, verdict=result.verdict,
                        attribution=result.attribution, seconds=time.perf_counter() - t0)
