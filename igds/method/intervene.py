"""Stage 1b — interventional filtering: edit each candidate feature, measure the task's dev NLL, and
compare the effect with a null of edits of the same size.

**Edits** (``InterventionConfig.edit_mode``) apply at the token scope ``InterventionConfig.positions``
(prompt content by default: editing the response positions whose NLL is scored mostly rewards
directions that raise the logits of common response tokens), minus position 0 and attention sinks:

- ``scale`` (default): ``z_{t,j} ← (1+α)·z_{t,j}`` where feature ``j`` is active, i.e.
  ``h_t += α·z_{t,j}·W_dec[j]``. The SAE error term is kept because the edit is added to ``h``; on a
  feature that does not fire the edit is an exact no-op (those rows are never replayed).
- ``add``: ``h_t += α·ā_j·W_dec[j]`` at every edited position (``ā_j``: mean activation where ``j``
  fires on probe), which writes the feature where it is normally 0.
- ablation: ``h_t −= z_{t,j}·W_dec[j]`` (only feature ``j``'s own contribution goes).

``W_dec[j]`` is the effective decoder direction (:func:`igds.modeling.sae.decoder_directions`).

**Null** (the yardstick, measured before the candidates), at α = 1 on the same dev rows and positions:

- *Edit size.* The α = 1 edit of a candidate on dev example ``r`` has norm
  ``‖Δ_r‖ = sqrt(Σ_{t∈E_r} ‖Δh_{r,t}‖²)`` over the example's edited positions ``E_r``; the candidate's
  size is the root mean square over the dev examples, ``s_j = sqrt(mean_r ‖Δ_r‖²)`` (examples where a
  ``scale`` edit is a no-op count as 0). The null size ``s`` is the median of ``s_j`` over the candidates
  with ``s_j > 0`` (:func:`edit_sizes`, :func:`null_edit_size`).
- *Random directions.* Direction ``k`` is a standard normal vector drawn with
  ``numpy.random.default_rng([0, null_seed, k])``, normalised; on example ``r`` it adds
  ``s/√|E_r| · u_k`` at every edited position, so ``‖Δ_r‖ = s`` on every example with edited positions.
- *Density-matched features.* Each of ``null_features`` slots draws a candidate ``c`` at random and then
  one of the :data:`NULL_NEIGHBOURS` non-candidate features closest to ``c`` in log token density
  (``tok_freq_task`` of the recall table; features that never fired on probe are not eligible), at
  random, without repeats; one generator ``default_rng([1, null_seed])`` drives every draw
  (:func:`null_plan`). They go through the run's own edit (``scale`` or ``add``) at α = 1.
- The null threshold is the ``null_quantile`` (0.95) quantile of the pooled mean effects of all null
  elements (:func:`null_threshold`). ``F*`` keeps a candidate when its α = 1 effect exceeds it and its
  one-sided paired test is significant after Benjamini–Hochberg across the candidates.

**Cost.** One forward over the dev set (in length buckets of :data:`BUCKET_ROWS` rows, so padding stays
small) records the residual at the SAE's site and the exact arguments every later block received
(masks, rotary tables...). Each intervention then edits the cached residual and replays only the
blocks after the site (from block L for ``blocks.L.hook_resid_pre``, from L+1 for
``blocks.L.hook_resid_post``; ``Site.first_replayed``), stacking several (job, example) rows of one
bucket into a batch, and unembeds only response positions. Rows an edit leaves unchanged are never
replayed. Replaying recorded block arguments keeps this architecture-agnostic (sliding-window layers
get their own masks back). Hooks and the replay itself live in :mod:`igds.modeling.hooks`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from igds.method.config import (  # noqa: F401 - re-exported
    ADD,
    EDIT_MODES,
    PAPER_INTERVENTION,
    PRIMARY_ALPHA,
    SCALE,
    InterventionConfig,
)
from igds.modeling.adapters import Site, parse_site
from igds.modeling.batching import EncodedItem, keep_mask, pad_batch, position_mask
from igds.modeling.hooks import BlockInputs, capture, record_replay_inputs, replay_from
from igds.modeling.nll import nll_from_hidden, response_targets
from igds.modeling.sae import decoder_directions
from igds.ranking import ranked_ids

AMPLIFY = "amplify"
ABLATE = "ablate"
DIRECTION = "direction"  # a null job: a random direction of the null's edit size
NULL_DIRECTION = "direction"
NULL_FEATURE = "feature"
NULL_NEIGHBOURS = 8  # a density-matched null feature is drawn from this many nearest non-candidates
BUCKET_ROWS = 16  # dev rows per length bucket of the cached prefix


@dataclass(frozen=True)
class Bucket:
    """Dev rows of similar length run together: their width and the replayed blocks' recorded inputs."""

    rows: torch.Tensor             # global dev rows, shortest first
    width: int
    block_args: list[BlockInputs]  # recorded (args, kwargs) of blocks site.first_replayed..N-1


@dataclass
class DevCache:
    """Everything an intervention needs about the dev set, computed once."""

    items: list[EncodedItem]
    hidden: torch.Tensor          # [B, T, d] residual at ``site`` (0 beyond each row's bucket width)
    edit_mask: torch.Tensor       # [B, T] positions that interventions may edit
    nll_mask: torch.Tensor        # [B, T] positions whose next token is a response token
    targets: torch.Tensor         # [B, T]
    buckets: list[Bucket]
    site: Site
    nll_base: torch.Tensor        # [B]
    autocast: bool = False        # bf16 matmuls over an fp32 residual stream
    row_bucket: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))  # [B]
    row_local: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))   # [B]

    def __post_init__(self):
        n = len(self.items)
        self.row_bucket = torch.zeros(n, dtype=torch.long)
        self.row_local = torch.zeros(n, dtype=torch.long)
        for b, bucket in enumerate(self.buckets):
            self.row_bucket[bucket.rows] = b
            self.row_local[bucket.rows] = torch.arange(len(bucket.rows))

    @property
    def layer(self) -> int:
        """Block index of the site (its input for ``hook_resid_pre``, its output for ``hook_resid_post``)."""
        return self.site.layer

    @property
    def block_args(self) -> list[BlockInputs]:
        """Recorded inputs of the replayed blocks (first bucket's; every bucket has one entry per block)."""
        return self.buckets[0].block_args

    def amp(self):
        """The autocast context every model call of this cache runs under."""
        return torch.autocast(self.hidden.device.type, dtype=torch.bfloat16, enabled=self.autocast)


def use_autocast(model, cfg: InterventionConfig) -> bool:
    """bf16 autocast keeps the residual stream (and so every edit of it) in fp32 while matmuls run in
    bf16. Pure bf16 weights would round ``h + v`` to ~0.5 per element at |h|≈170, which is larger than
    most of a feature's edit, so interventions need fp32 residuals. ``auto`` autocasts where the precision of
    record computes in bf16 (:func:`igds.settings.fast_bf16_by_default`: CUDA), never on a CPU."""
    from igds import settings

    param = next(model.parameters())
    if cfg.precision == "fp32" or param.dtype != torch.float32:
        return False
    return settings.fast_bf16_by_default(param.device.type)


def compute_mode(model, cfg: InterventionConfig) -> str:
    """The resolved numeric mode of a run, part of its key: ``fp32``, ``fp32+bf16-autocast`` or the
    weights' own dtype (``bfloat16``...) when they are not fp32."""
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    if dtype != "float32":
        return dtype
    return "fp32+bf16-autocast" if use_autocast(model, cfg) else "fp32"


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
    """Forward the dev set once (by length bucket), recording the residual at ``site`` and the replayed
    blocks' arguments; the base NLL comes from a replay of the unedited residual."""
    resolved = parse_site(model, site)
    device = next(model.parameters()).device
    ids, attn = pad_batch(items, pad_id, device)
    autocast = use_autocast(model, cfg)
    order = sorted(range(len(items)), key=lambda i: (len(items[i].input_ids), i))
    hidden, buckets = None, []
    for s in range(0, len(order), BUCKET_ROWS):
        rows = order[s : s + BUCKET_ROWS]
        b_ids, b_attn = pad_batch([items[i] for i in rows], pad_id, device)
        with (capture(model, [resolved]) as captured, record_replay_inputs(model, resolved) as recorded,
              torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast)):
            model(input_ids=b_ids, attention_mask=b_attn, use_cache=False)
        h = captured[resolved.name]
        if hidden is None:
            hidden = torch.zeros((len(items), ids.shape[1], h.shape[-1]), dtype=h.dtype, device=h.device)
        hidden[torch.tensor(rows, device=h.device), : h.shape[1]] = h
        buckets.append(Bucket(rows=torch.tensor(rows), width=int(b_ids.shape[1]), block_args=recorded))
    edit = keep_mask(hidden, attn, cfg.sink_norm_factor).cpu() & position_mask(items, ids.shape[1], cfg.positions)
    nll_mask, targets = response_targets(items, ids.shape[1])
    cache = DevCache(items=list(items), hidden=hidden, edit_mask=edit, nll_mask=nll_mask, targets=targets,
                     buckets=buckets, site=resolved, nll_base=torch.empty(0), autocast=autocast)
    cache.nll_base = replay_nll(model, cache, torch.arange(len(items)), hidden)
    return cache


def _bucket_parts(cache: DevCache, rows: torch.Tensor):
    """``(bucket, positions in rows, local rows)`` for each bucket that ``rows`` touches."""
    for b, bucket in enumerate(cache.buckets):
        sel = (cache.row_bucket[rows] == b).nonzero(as_tuple=True)[0]
        if len(sel):
            yield bucket, sel, cache.row_local[rows[sel]]


def replay_nll(model, cache: DevCache, rows: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Mean response NLL per row after replaying the blocks after the site on ``h``.

    Args:
        rows: dev rows ``h`` belongs to (any buckets; each bucket replays separately at its width).
        h: ``[len(rows), ≥ width, d]`` residuals at the site (differentiable).
    """
    pieces, index = [], []
    for bucket, sel, local in _bucket_parts(cache, rows):
        n_b, w = len(bucket.rows), bucket.width
        inputs = [(_select_rows(a, local, n_b), _select_rows(k, local, n_b)) for a, k in bucket.block_args]
        r = rows[sel]
        with cache.amp():
            out = replay_from(model, cache.site, h[sel.to(h.device), :w], inputs)
            pieces.append(nll_from_hidden(model, out, cache.nll_mask[r, :w], cache.targets[r, :w]))
        index.append(sel)
    nll = torch.cat(pieces)
    return nll[torch.argsort(torch.cat(index))]


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
    """One intervention: ``amplify`` feature ``feature`` by ``alpha``, ``ablate`` it, or add null
    ``direction`` number ``feature`` (``alpha`` times the null's edit size)."""

    feature: int
    kind: str
    alpha: float


def job_rows(cache: DevCache, job: Job, acts: dict[int, torch.Tensor], cfg: InterventionConfig) -> list[int]:
    """Dev rows a job changes; every other row keeps its base NLL exactly."""
    if job.kind == DIRECTION or (job.kind == AMPLIFY and cfg.edit_mode == ADD):
        live = cache.edit_mask.any(1)
    else:  # scale amplification and ablation touch only positions where the feature fires
        live = (acts[job.feature] != 0).any(1)
    return live.nonzero(as_tuple=True)[0].tolist()


def job_edit(cache: DevCache, job: Job, row: int, dirs: dict[int, torch.Tensor], mean_act: dict[int, float],
             acts: dict[int, torch.Tensor], cfg: InterventionConfig,
             directions: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """The additive edit ``Δh`` ``[T, d]`` (fp32, CPU) a job makes to dev row ``row``'s residual.

    Zero outside ``cache.edit_mask`` by construction: ``acts`` are 0 there, and the ``add`` and
    ``direction`` edits are multiplied by the mask.
    """
    edit = cache.edit_mask[row].unsqueeze(-1).float()
    if job.kind == DIRECTION:
        v = directions[job.feature]
        return edit * (job.alpha / math.sqrt(max(float(edit.sum()), 1.0))) * v
    d = dirs[job.feature].float()
    if job.kind == AMPLIFY and cfg.edit_mode == ADD:
        return edit * (job.alpha * mean_act[job.feature]) * d
    z = acts[job.feature][row].unsqueeze(-1)
    return (job.alpha * z) * d if job.kind == AMPLIFY else -(z * d)


def run_jobs(model, cache: DevCache, jobs: Sequence[Job], dirs: dict[int, torch.Tensor], mean_act: dict[int, float],
             acts: dict[int, torch.Tensor], cfg: InterventionConfig,
             directions: dict[int, torch.Tensor] | None = None) -> dict[Job, np.ndarray]:
    """Per-example intervened NLL of each job (:func:`iter_jobs`, collected)."""
    return {job: nll for job, nll, _ in iter_jobs(model, cache, jobs, dirs, mean_act, acts, cfg, directions)}


@torch.no_grad()
def iter_jobs(model, cache: DevCache, jobs: Sequence[Job], dirs: dict[int, torch.Tensor], mean_act: dict[int, float],
              acts: dict[int, torch.Tensor], cfg: InterventionConfig,
              directions: dict[int, torch.Tensor] | None = None) -> Iterator[tuple[Job, np.ndarray, float]]:
    """Per-example intervened NLL of each job, yielded as ``(job, NLL array, seconds)`` as each job completes;
    rows a job leaves unchanged keep the base NLL exactly.

    Jobs run in order, in windows of consecutive jobs covering at least ``batch_rows`` rows per length
    bucket; inside a window the rows of one bucket are stacked ``batch_rows`` at a time, so a job's
    rows are finished when its window is.

    Args:
        dirs: decoder direction per feature ``[d]``.
        mean_act: ā_j (mean activation when firing on probe; used by ``add``).
        acts: ``[B, T]`` activation of each feature at editable positions (``scale`` and ablation).
        directions: null direction ``k`` → its vector ``s·u_k`` (``DIRECTION`` jobs).
    """
    dtype = cache.hidden.dtype
    device = cache.hidden.device
    result = {job: cache.nll_base.numpy().copy() for job in jobs}
    seconds = dict.fromkeys(jobs, 0.0)
    target = cfg.batch_rows * len(cache.buckets)

    def run_window(window: list[tuple[Job, list[int]]]) -> Iterator[tuple[Job, np.ndarray, float]]:
        pairs = [(job, r) for job, rows in window for r in rows]
        for b in range(len(cache.buckets)):
            mine = [(job, r) for job, r in pairs if int(cache.row_bucket[r]) == b]
            for s in range(0, len(mine), cfg.batch_rows):
                t0 = time.perf_counter()
                chunk = mine[s : s + cfg.batch_rows]
                rows = torch.tensor([r for _, r in chunk])
                w = cache.buckets[b].width
                h = cache.hidden[rows.to(device), :w].clone()
                for i, (job, r) in enumerate(chunk):
                    delta = job_edit(cache, job, r, dirs, mean_act, acts, cfg, directions)
                    h[i] += delta[:w].to(device=device, dtype=dtype)
                nll = replay_nll(model, cache, rows, h).numpy()
                dt = (time.perf_counter() - t0) / len(chunk)
                for i, (job, r) in enumerate(chunk):
                    result[job][r] = nll[i]
                    seconds[job] += dt
        for job, _ in window:
            yield job, result.pop(job), seconds[job]

    window, size = [], 0
    for job in jobs:
        rows = job_rows(cache, job, acts, cfg)
        if not rows:
            yield job, result.pop(job), 0.0
            continue
        window.append((job, rows))
        size += len(rows)
        if size >= target:
            yield from run_window(window)
            window, size = [], 0
    if window:
        yield from run_window(window)


def summarize_effect(job: Job, nll_base: np.ndarray, nll_int: np.ndarray, n_fired: int) -> dict:
    """Mean effect with a 95% t-interval and a one-sided paired p-value.

    Amplification (and null direction) effect = NLL_base − NLL_int (positive: the edit helps);
    ablation effect = NLL_abl − NLL_base (positive: the task needs the feature).
    """
    from scipy import stats

    d = (nll_int - nll_base) if job.kind == ABLATE else (nll_base - nll_int)
    d = d[~np.isnan(d)]
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    p = float(_one_sided_p(d[None])[0]) if n else 1.0  # the same test the stability bootstrap recomputes
    half = float(stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n)) if n > 1 and d.std(ddof=1) > 0 else 0.0
    return {"feature": job.feature, "kind": job.kind, "alpha": job.alpha, "n": n, "n_fired": n_fired,
            "effect": mean, "ci_low": mean - half, "ci_high": mean + half, "p_value": p}


def benjamini_hochberg(p: Sequence[float]) -> np.ndarray:
    """BH-adjusted p-values (q-values), monotone and capped at 1."""
    p = np.asarray(p, dtype=float)
    n = len(p)
    if n == 0:
        return p
    order = np.argsort(p, kind="stable")
    ranked = p[order] * n / np.arange(1, n + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(q, 1.0)
    return out


def primary_amplification(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of an effect summary that decide the filter: amplification at α = ``PRIMARY_ALPHA``.

    Args:
        summary: ``effect_summary`` rows (any frame with ``kind`` and ``alpha`` columns).

    Returns:
        those rows, index and columns unchanged (one per measured feature).
    """
    return summary[(summary.kind == AMPLIFY) & (summary.alpha == PRIMARY_ALPHA)]


# -- the null -------------------------------------------------------------------------------------------

def edit_sizes(cache: DevCache, dirs: torch.Tensor, acts: torch.Tensor, mean_act: Sequence[float],
               edit_mode: str) -> np.ndarray:
    """Size of each feature's α = 1 edit: ``sqrt(mean_r Σ_{t∈E_r} ‖Δh_{r,t}‖²)`` over dev rows ``r``.

    Args:
        dirs: decoder directions ``[n, d]``.
        acts: ``[B, T, n]`` activations at editable positions (:func:`feature_acts_at`).
        mean_act: ā of each feature (``add``).

    Returns:
        ``[n]`` sizes (NaN for an ``add`` edit without ā).
    """
    dn = dirs.float().norm(dim=1).double()                                  # [n]
    if edit_mode == SCALE:
        per_row = acts.double().pow(2).sum(1) * dn.pow(2)                  # [B, n]
    else:
        n_edit = cache.edit_mask.sum(1).double()                            # [B]
        a = torch.as_tensor(np.asarray(mean_act, dtype=float))
        per_row = n_edit[:, None] * (a * dn).pow(2)[None]
    return per_row.mean(0).sqrt().numpy()


def null_edit_size(sizes: Sequence[float]) -> float:
    """The null's edit size: the median candidate edit size over candidates whose edit is not a no-op
    (0 when there is none, which makes every random direction a no-op too)."""
    s = np.asarray(sizes, dtype=float)
    s = s[np.isfinite(s) & (s > 0)]
    return float(np.median(s)) if len(s) else 0.0


def null_direction_vectors(d_model: int, n: int, seed: int) -> torch.Tensor:
    """``[n, d_model]`` unit random directions; direction ``k`` comes from ``default_rng([0, seed, k])``
    alone, so it does not depend on how many are drawn."""
    out = np.zeros((n, d_model))
    for k in range(n):
        u = np.random.default_rng([0, seed, k]).standard_normal(d_model)
        out[k] = u / np.linalg.norm(u)
    return torch.tensor(out, dtype=torch.float32)


def null_plan(candidates: Sequence[int], density: np.ndarray | None, cfg: InterventionConfig) -> pd.DataFrame:
    """The null's elements: ``null_directions`` random directions, then ``null_features`` density-matched
    random non-candidate features (see the module docstring), deterministic for a seed.

    Args:
        density: token density (``tok_freq_task``) of every SAE feature ``[d_sae]``, NaN or 0 where it
            never fired on probe.

    Returns:
        null_id, kind (``direction`` | ``feature``), feature (the non-candidate; -1 for a direction),
        matched (the candidate whose density it matches; -1 for a direction).
    """
    rows = [{"null_id": k, "kind": NULL_DIRECTION, "feature": -1, "matched": -1} for k in range(cfg.null_directions)]
    cands = sorted({int(c) for c in candidates})
    if cfg.null_features and cands:
        if density is None:
            raise ValueError("the density-matched null needs each feature's token density (tok_freq_task); "
                             "pass density, or set null_features=0")
        rng = np.random.default_rng([1, cfg.null_seed])
        targets = (cands[int(rng.integers(len(cands)))] for _ in range(cfg.null_features))
        for target, feature in _matched_draws(targets, density, cands, rng):
            rows.append({"null_id": len(rows), "kind": NULL_FEATURE, "feature": feature, "matched": target})
    return pd.DataFrame(rows, columns=["null_id", "kind", "feature", "matched"])


def _matched_draws(targets, density: np.ndarray, exclude: Sequence[int], rng: np.random.Generator):
    """For each target (drawn lazily), a distinct random feature among the ``NULL_NEIGHBOURS`` nearest to it in
    log token density, never one of ``exclude``; yields ``(target, feature)`` until none is left."""
    dens = np.asarray(density, dtype=float)
    eligible = np.flatnonzero(np.isfinite(dens) & (dens > 0))
    eligible = eligible[~np.isin(eligible, list(exclude))]
    chosen: list[int] = []
    floor = dens[eligible].min() if len(eligible) else 1.0
    for target in targets:
        avail = eligible[~np.isin(eligible, chosen)]
        if not len(avail):
            return
        # a target that never fired on probe (e.g. a pinned feature) matches the rarest features that did
        own = dens[target] if np.isfinite(dens[target]) and dens[target] > 0 else floor
        dist = np.abs(np.log(dens[avail]) - np.log(own))
        near = avail[np.lexsort((avail, dist))[:NULL_NEIGHBOURS]]
        chosen.append(int(near[int(rng.integers(len(near)))]))
        yield int(target), chosen[-1]


def density_matched_features(features: Sequence[int], density: np.ndarray, exclude: Sequence[int],
                             seed: int = 0) -> list[int]:
    """A control feature set: one distinct random feature per feature of ``features``, drawn among the
    ``NULL_NEIGHBOURS`` nearest to it in log token density (as the null's features are), never one of
    ``exclude`` (e.g. every recall candidate) — what amplification of "any features this frequent" looks like.

    Args:
        density: token density of every SAE feature ``[d_sae]`` (0 or NaN where it never fired).
        seed: seed of the draws.
    """
    feats = [int(f) for f in features]
    rng = np.random.default_rng([2, seed])
    return [f for _, f in _matched_draws(feats, density, {*feats, *map(int, exclude)}, rng)]


def null_threshold(null_effects: Sequence[float], quantile: float) -> float:
    """The ``quantile`` of the pooled null effects (linear interpolation); NaN without any."""
    e = np.asarray(null_effects, dtype=float)
    e = e[np.isfinite(e)]
    return float(np.quantile(e, quantile)) if len(e) else float("nan")


# -- the filter -----------------------------------------------------------------------------------------

def filter_features(summary: pd.DataFrame, candidates: Sequence[int], cfg: InterventionConfig,
                    null_cut: float = float("nan")) -> pd.DataFrame:
    """Decide ``F*`` from the α = 1 amplification effects of the candidates.

    A candidate is kept when its effect exceeds the threshold (``cfg.delta``, or ``null_cut``, the
    null's ``null_quantile`` quantile, when ``delta`` is None) and, with ``require_significance``, its
    one-sided paired p-value is below ``cfg.fdr`` after Benjamini–Hochberg across all candidates
    (unmeasured ones count as p = 1).

    Returns:
        one row per candidate: feature, effect, q_value, threshold, kept, reason.
    """
    amp = primary_amplification(summary)
    amp = amp[amp.feature.isin(candidates)]
    amp = amp.set_index("feature").reindex(list(candidates))
    q = benjamini_hochberg(amp.p_value.fillna(1.0).to_numpy())
    threshold = cfg.delta if cfg.delta is not None else null_cut
    out = pd.DataFrame({"feature": list(candidates), "effect": amp.effect.to_numpy(), "q_value": q,
                        "threshold": threshold})
    above = (out.effect > threshold).to_numpy()
    significant = (out.q_value < cfg.fdr).to_numpy() if cfg.require_significance else np.ones(len(out), bool)
    out["kept"] = above & significant
    cut = (f"effect <= delta ({cfg.delta:g})" if cfg.delta is not None
           else f"effect <= null p{100 * cfg.null_quantile:g} ({threshold:+.4g})")
    out["reason"] = np.where(~amp.effect.notna().to_numpy(), "not measured",
                             np.where(np.isnan(threshold), "null not measured",
                                      np.where(~above, cut, np.where(~significant, f"q >= {cfg.fdr:g}", "kept"))))
    return out


def _one_sided_p(x: np.ndarray) -> np.ndarray:
    """One-sided paired t-test p-values (mean > 0) of each row of ``x`` ``[k, n]`` (1 sample: 0 if the mean
    is positive, else 1; likewise when a row has no spread)."""
    from scipy import stats

    n = x.shape[1]
    mean = x.mean(1)
    if n < 2:
        return np.where(mean > 0, 0.0, 1.0)
    sd = x.std(1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / (sd / math.sqrt(n))
    return np.where(sd > 0, stats.t.sf(t, n - 1), np.where(mean > 0, 0.0, 1.0))


def kept_from_deltas(deltas: np.ndarray, null_deltas: np.ndarray, cfg: InterventionConfig) -> np.ndarray:
    """``F*`` membership from per-example α = 1 effects, as :func:`filter_features` decides it.

    Args:
        deltas: ``[n_candidates, n_examples]`` NLL_base − NLL_amp; a row of NaN is an unmeasured candidate.
        null_deltas: ``[n_null, n_examples]`` the null's per-example effects on the same examples.

    Returns:
        bool ``[n_candidates]``.
    """
    measured = ~np.isnan(deltas).all(1)
    mean = np.full(len(deltas), np.nan)
    p = np.ones(len(deltas))
    if measured.any():
        mean[measured] = deltas[measured].mean(1)
        p[measured] = _one_sided_p(deltas[measured])
    q = benjamini_hochberg(p)
    cut = cfg.delta if cfg.delta is not None else null_threshold(null_deltas.mean(1), cfg.null_quantile)
    above = mean > cut
    return above & (q < cfg.fdr) if cfg.require_significance else above


def fstar_bootstrap(deltas: np.ndarray, null_deltas: np.ndarray, cfg: InterventionConfig, n_boot: int = 200,
                    seed: int = 0) -> np.ndarray:
    """Share of ``n_boot`` bootstrap resamples of the dev examples in which each candidate stays in ``F*``.

    Each resample draws the examples with replacement (``default_rng(seed)``) and recomputes the effect
    means, p-values, BH q-values and the null quantile from the resampled per-example effects. Examples
    that are NaN in any measured row (no response tokens) are dropped first.

    Args:
        deltas: ``[n_candidates, n_examples]`` per-example α = 1 effects (rows of NaN: unmeasured).
        null_deltas: ``[n_null, n_examples]`` per-example null effects on the same examples.

    Returns:
        ``[n_candidates]`` stability in [0, 1] (0 for an unmeasured candidate).
    """
    deltas = np.asarray(deltas, dtype=float)
    null_deltas = np.asarray(null_deltas, dtype=float).reshape(-1, deltas.shape[1])
    measured = ~np.isnan(deltas).all(1)
    ok = ~np.isnan(deltas[measured]).any(0) & ~np.isnan(null_deltas).any(0)
    deltas, null_deltas = deltas[:, ok], null_deltas[:, ok]
    n = deltas.shape[1]
    if n == 0:
        return np.zeros(len(deltas))
    rng = np.random.default_rng(seed)
    hits = np.zeros(len(deltas))
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        hits += kept_from_deltas(deltas[:, idx], null_deltas[:, idx], cfg)
    return hits / n_boot


# -- attribution screen ---------------------------------------------------------------------------------

def attribution_estimates(model, sae, cache: DevCache, mean_act: np.ndarray, chunk: int = 1024,
                          edit_mode: str = ADD) -> pd.DataFrame:
    """First-order estimates of amplification (α=1) and ablation effects for every SAE feature.

    A backward pass from the mean dev NLL to the residual at the SAE's site (``cache.hidden``, the
    residual interventions edit) gives ``g``; then, over the edited positions ``T``,
    ``Δabl_j ≈ −Σ_{s,t∈T} z_j · g·d_j`` and ``Δamp_j ≈ −ā_j · Σ_{s,t∈T} g·d_j`` for ``add`` or
    ``Δamp_j ≈ −Σ_{s,t∈T} z_j · g·d_j = Δabl_j`` for ``scale`` (signs as in :func:`summarize_effect`).
    It screens features; exact interventions decide.

    Args:
        mean_act: ā for every feature ``[d_sae]`` (NaN where unknown; ``add`` estimates are NaN there).
        edit_mode: the run's ``InterventionConfig.edit_mode``.
    """
    h = cache.hidden.detach().clone().requires_grad_(True)
    n_valid = int((~torch.isnan(cache.nll_base)).sum())
    with torch.enable_grad():
        for bucket in cache.buckets:  # one backward per bucket keeps one bucket's graph in memory
            nll = replay_nll(model, cache, bucket.rows, h[bucket.rows.to(h.device)])
            loss = nll[~torch.isnan(nll)].sum() / max(n_valid, 1)
            if loss.requires_grad:
                loss.backward()
    g = h.grad.float() if h.grad is not None else torch.zeros_like(h, dtype=torch.float32)
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
    if edit_mode == SCALE:
        est_amp = est_abl.copy()
    else:
        est_amp = est_amp * np.nan_to_num(mean_act, nan=0.0)
        est_amp[np.isnan(mean_act)] = np.nan
    return pd.DataFrame({"feature": np.arange(d_sae), "mean_act": mean_act,
                         "est_amplify": est_amp, "est_ablate": est_abl})


# -- results --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EffectResult:
    """Stored outcome of an intervention run."""

    effect_id: str
    summary: pd.DataFrame       # one row per (feature, kind, alpha)
    verdict: pd.DataFrame       # one row per candidate: effect, q_value, threshold, kept, reason
    attribution: pd.DataFrame   # every feature: est_amplify, est_ablate
    seconds: float
    null: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per null element (null_summary)
    null_cut: float = float("nan")  # the null's ``null_quantile`` quantile of pooled effects
    config: InterventionConfig | None = None

    @property
    def amplification(self) -> pd.DataFrame:
        """Summary rows of the deciding effect (α = 1 amplification), one per measured feature."""
        return primary_amplification(self.summary)

    @property
    def dose_response(self) -> pd.DataFrame:
        """Amplification rows of the features measured at more than one α (the swept ones)."""
        amp = self.summary[self.summary.kind == AMPLIFY]
        swept = amp.groupby("feature").alpha.nunique()
        return amp[amp.feature.isin(swept[swept > 1].index)]

    @property
    def threshold(self) -> float:
        """The effect a kept feature must exceed: ``delta`` when set, else the null quantile."""
        if self.config is not None and self.config.delta is not None:
            return float(self.config.delta)
        return self.null_cut

    @property
    def kept(self) -> list[int]:
        """``F*``: validated features, strongest amplification effect first (at the ranking resolution, ties by
        feature id: :func:`igds.ranking.ranked_ids`)."""
        v = self.verdict[self.verdict.kept]
        return [int(f) for f in ranked_ids(v.effect, v.feature, descending=True)]

    def why_none_kept(self) -> str:
        """Why ``F*`` is empty, in one sentence with the strongest candidate's figures and the null."""
        v = self.verdict
        if v.empty:
            return f"intervention run {self.effect_id} measured no candidates"
        best = v.sort_values("effect", ascending=False).iloc[0]
        helped = int((v.effect > 0).sum())
        q = self.config.null_quantile if self.config is not None else 0.95
        null = (f"the null p{100 * q:g} is {self.null_cut:+.4f} nats over {len(self.null)} random edits of the same "
                f"size" if np.isfinite(self.null_cut) else "the null is not measured")
        rule = (f"; the filter used delta = {self.config.delta:g}" if self.config is not None
                and self.config.delta is not None else "")
        return (f"none of the {len(v)} candidates of intervention run {self.effect_id} passed the filter "
                f"({helped} lowered the dev NLL when amplified; the largest effect is {best.effect:+.4f} nats, "
                f"feature {int(best.feature)}, q = {best.q_value:.3g}; {null}{rule})")


def load_effects(store, effect_id: str, candidates: Sequence[int], cfg: InterventionConfig) -> EffectResult:
    """Read an intervention run's summaries, null and attribution and apply the filter."""
    summary = store.effect_summary(effect_id)
    attribution = store.attribution(effect_id)
    null = store.null_summary(effect_id)
    cut = null_threshold(null.effect, cfg.null_quantile) if not null.empty else float("nan")
    seconds = float(summary.seconds.sum()) if not summary.empty else 0.0
    seconds += float(null.seconds.sum()) if not null.empty else 0.0
    return EffectResult(effect_id=effect_id, summary=summary, verdict=filter_features(summary, candidates, cfg, cut),
                        attribution=attribution, seconds=seconds, null=null, null_cut=cut, config=cfg)


def exact_order(candidates: Sequence[int], attribution: pd.DataFrame) -> list[int]:
    """Candidates in exact-run order: strongest ``|estimated amplification effect|`` first (ties by id).
    The first ``InterventionConfig.sweep_top`` of them get every α."""
    est = dict(zip(attribution.feature, attribution.est_amplify.abs().fillna(0), strict=True))
    return sorted(candidates, key=lambda f: (-est.get(f, 0.0), f))


def null_edit_size_of(sae, cache: DevCache, candidates: Sequence[int], mean_act: np.ndarray,
                      cfg: InterventionConfig) -> float:
    """The null's edit size ``s``: the median α = 1 edit size of the candidates (:func:`null_edit_size`)."""
    cands = [int(f) for f in candidates]
    sizes = edit_sizes(cache, decoder_directions(sae, cands), feature_acts_at(sae, cache, cands),
                       [mean_act[f] for f in cands], cfg.edit_mode) if cands else []
    return null_edit_size(sizes)


def run_null_elements(model, sae, cache: DevCache, effect_id: str, todo: pd.DataFrame, size: float,
                      mean_act: np.ndarray, cfg: InterventionConfig) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Measure null elements (rows of :func:`null_plan`) on the dev cache; no I/O.

    Args:
        size: the null's edit size (:func:`null_edit_size_of`).

    Yields:
        per element, as it finishes: its per-example rows (``null_effects``) and its summary row
        (``null_summary``).
    """
    vecs = null_direction_vectors(cache.hidden.shape[-1], cfg.null_directions, cfg.null_seed)
    feats = [int(f) for f in todo.feature if f >= 0]
    dirs = dict(zip(feats, decoder_directions(sae, feats), strict=True)) if feats else {}
    acts_t = feature_acts_at(sae, cache, feats) if feats else None
    acts = {f: acts_t[:, :, i] for i, f in enumerate(feats)}
    f_sizes = dict(zip(feats, edit_sizes(cache, torch.stack([dirs[f] for f in feats]), acts_t,
                                         [mean_act[f] for f in feats], cfg.edit_mode), strict=True)) if feats else {}
    jobs, meta = [], {}
    for r in todo.itertuples():
        if r.kind == NULL_DIRECTION:
            job = Job(int(r.null_id), DIRECTION, PRIMARY_ALPHA)
            meta[job] = (r, size, int(cache.edit_mask.any(1).sum()))
        else:
            job = Job(int(r.feature), AMPLIFY, PRIMARY_ALPHA)
            meta[job] = (r, float(f_sizes[int(r.feature)]), int((acts[int(r.feature)] != 0).any(1).sum()))
        jobs.append(job)
    ids = [it.example_id for it in cache.items]
    base = cache.nll_base.numpy()

    for job, nll, seconds in iter_jobs(model, cache, jobs, dirs, {f: float(mean_act[f]) for f in feats}, acts, cfg,
                                       directions={k: vecs[k] * size for k in range(cfg.null_directions)}):
        r, norm, n_fired = meta[job]
        s = summarize_effect(job, base, nll, n_fired)
        eff = pd.DataFrame({"effect_id": effect_id, "null_id": int(r.null_id), "example_id": ids,
                            "nll_base": base, "nll_int": nll})
        summ = pd.DataFrame([{"effect_id": effect_id, "null_id": int(r.null_id), "kind": r.kind,
                              "feature": int(r.feature), "matched": int(r.matched), "edit_norm": norm,
                              **{k: s[k] for k in ("n", "n_fired", "effect", "ci_low", "ci_high", "p_value")},
                              "seconds": seconds}])
        yield eff, summ


def run_feature_effects(model, sae, cache: DevCache, effect_id: str, features: Sequence[int], sweep: set[int],
                        mean_act: np.ndarray, cfg: InterventionConfig) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Amplify (every α for the features in ``sweep``, α = 1 otherwise) and ablate ``features`` on the dev cache;
    no I/O.

    Yields:
        per feature, once all its jobs are done: its per-example rows (``feature_effects``) and its summary rows
        (``effect_summary``).
    """
    todo = [int(f) for f in features]
    if not todo:
        return
    dirs = dict(zip(todo, decoder_directions(sae, todo), strict=True))
    acts_all = feature_acts_at(sae, cache, todo)
    acts = {f: acts_all[:, :, i] for i, f in enumerate(todo)}
    ids = [it.example_id for it in cache.items]
    base = cache.nll_base.numpy()
    jobs_of = {f: [Job(f, AMPLIFY, float(a)) for a in (cfg.alphas if f in sweep else (PRIMARY_ALPHA,))]
               + ([Job(f, ABLATE, 0.0)] if cfg.ablate else []) for f in todo}
    finished: dict[int, dict[Job, tuple[np.ndarray, float]]] = {f: {} for f in todo}
    for job, nll, seconds in iter_jobs(model, cache, [j for f in todo for j in jobs_of[f]], dirs,
                                       {f: float(mean_act[f]) for f in todo}, acts, cfg):
        f = job.feature
        finished[f][job] = (nll, seconds)
        if len(finished[f]) < len(jobs_of[f]):
            continue
        n_fired = int((acts[f] != 0).any(1).sum())
        rows, summ = [], []
        for j in jobs_of[f]:
            nll_j, sec = finished[f][j]
            rows.append(pd.DataFrame({"effect_id": effect_id, "feature": f, "kind": j.kind, "alpha": j.alpha,
                                      "example_id": ids, "nll_base": base, "nll_int": nll_j}))
            summ.append({"effect_id": effect_id, **summarize_effect(j, base, nll_j, n_fired), "seconds": sec})
        yield pd.concat(rows), pd.DataFrame(summ)


def primary_effect(summ: pd.DataFrame) -> float:
    """The α = 1 amplification effect in one feature's summary rows."""
    amp = summ[(summ.kind == AMPLIFY) & (summ.alpha == PRIMARY_ALPHA)]
    return float(amp.effect.iloc[0])


def null_todo(store, effect_id: str, candidates: Sequence[int], density: np.ndarray | None,
              cfg: InterventionConfig, max_null: int | None) -> tuple[pd.DataFrame, int, int]:
    """The null elements not stored yet (at most ``max_null``), how many are stored and how many the plan has."""
    plan = null_plan(candidates, density, cfg)
    done = store.measured_nulls(effect_id)
    todo = plan[~plan.null_id.isin(done)]
    if max_null is not None:
        todo = todo.head(max_null)
    return todo, len(done), len(plan)


def finish_effects(store, effect_id: str, candidates: Sequence[int], cfg: InterventionConfig, finished_all: bool,
                   t0: float) -> EffectResult:
    """Read the run back, mark it done or partial and return its result (``seconds`` since ``t0``)."""
    result = load_effects(store, effect_id, candidates, cfg)
    store.update_run(effect_id, status="done" if finished_all else "partial",
                     message=f"{len(result.kept)} of {len(candidates)} kept")
    return EffectResult(effect_id=effect_id, summary=result.summary, verdict=result.verdict,
                        attribution=result.attribution, seconds=time.perf_counter() - t0, null=result.null,
                        null_cut=result.null_cut, config=cfg)
