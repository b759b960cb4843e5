"""Stage 1b — interventional filtering: edit each candidate feature, measure the task's dev NLL, and
compare the effect with a fitted null of edits like it.

**Edits** (``InterventionConfig.edit_mode``) apply at the token scope ``InterventionConfig.positions``
(``content`` by default, the scope recall and FRS read, so a feature that fires in responses is tested too;
``prompt_content`` is an option), minus position 0 and attention sinks:

- ``scale`` (default): ``z_{t,j} ← (1+α)·z_{t,j}`` where feature ``j`` is active, i.e.
  ``h_t += α·z_{t,j}·W_dec[j]``. The SAE error term is kept because the edit is added to ``h``; on a
  feature that does not fire the edit is an exact no-op (those rows are never replayed).
- ``add``: ``h_t += α·ā_j·W_dec[j]`` at every edited position (``ā_j``: mean activation where ``j``
  fires on probe), which writes the feature where it is normally 0.
- ablation: ``h_t −= z_{t,j}·W_dec[j]`` (only feature ``j``'s own contribution goes).

``W_dec[j]`` is the effective decoder direction (:func:`igds.modeling.sae.decoder_directions`).

**Dev items** (:func:`dev_sample`): items over ``max_length`` are dropped (never cut), the rest shuffled by a seeded
hash (:func:`look_order`) and the first ``dev_items`` (256) measured in looks (``looks``: 64, 128, 192, then all).

**Null** (the yardstick, measured on each look's items before the candidates), at α = 1 (:func:`null_plan`):

- *Density-matched features* (``null_features``, 128). Each slot draws a testable candidate ``c`` at random, then one
  of the :data:`NULL_NEIGHBOURS` testable non-candidates closest to ``c`` in log token density (``tok_freq_task`` of
  the recall table) among those whose share of firing positions in the response is within ``share_tol`` of
  ``c``'s (:func:`feature_firing`), without repeats; ``default_rng([1, null_seed])`` drives every draw. Each goes
  through the run's own edit on its own positions. Where edits sit on scored response positions, these are what
  absorb the direct logit path.
- *Placed directions* (``null_placed`` per testable candidate, 4). Direction ``k`` of candidate ``c`` is a unit
  vector from ``default_rng([3, null_seed, c, k])`` added at ``c``'s firing positions with ``c``'s α = 1
  per-position edit norm ``|z_t|·‖W_dec[c]‖`` (:func:`placed_vector`); it stops when ``c`` does.
- *Global directions* (``null_directions``, 0 by default: the earlier null) add ``s/√|E_r|·u_k`` at every edited
  position, ``s`` the candidates' median edit size (:func:`edit_sizes`, :func:`null_edit_size`).

**Verdict** (:mod:`igds.method.verdict`): each candidate's p is the upper tail of a t fitted to the null's mean
effects over the items it was measured on, then Benjamini–Hochberg across the testable candidates (those firing on
``min_fired`` dev items or more; the rest are *untestable*); at each look a candidate that can no longer reach the
threshold stops (futility only). α sweep and ablation run for F* only.

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

import dataclasses
import hashlib
import itertools
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
from igds.method.verdict import (  # noqa: F401 - re-exported
    NullFit,
    benjamini_hochberg,
    decide,
    detectable_effect,
    futile,
    measured_items,
    null_at,
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
PLACED = "placed"  # a null job: a random direction on one candidate's firing positions at its edit norm
NULL_DIRECTION = "direction"
NULL_FEATURE = "feature"
NULL_PLACED = PLACED
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
    """One intervention: ``amplify`` feature ``feature`` by ``alpha``, ``ablate`` it, add global null ``direction``
    number ``feature`` (``alpha`` times the null's edit size), or add ``placed`` null direction number ``feature``
    on its candidate's firing positions."""

    feature: int
    kind: str
    alpha: float


@dataclass(frozen=True)
class Placed:
    """A placed null direction: unit ``vector`` added at ``candidate``'s firing positions at its α = 1 per-position
    edit norm ``|z_t|·‖W_dec[c]‖``."""

    candidate: int
    vector: torch.Tensor


def job_rows(cache: DevCache, job: Job, acts: dict[int, torch.Tensor], cfg: InterventionConfig,
             placed: dict[int, Placed] | None = None, span: tuple[int, int] | None = None) -> list[int]:
    """Dev rows a job changes (inside ``span``, a ``[lo, hi)`` range of rows); every other row keeps its base NLL
    exactly."""
    if job.kind == DIRECTION or (job.kind == AMPLIFY and cfg.edit_mode == ADD):
        live = cache.edit_mask.any(1)
    else:  # scale amplification, ablation and placed directions touch only positions where the feature fires
        live = (acts[placed[job.feature].candidate if job.kind == PLACED else job.feature] != 0).any(1)
    rows = live.nonzero(as_tuple=True)[0]
    if torch.is_tensor(span):
        rows = rows[torch.isin(rows, span)]
    elif span is not None:
        rows = rows[(rows >= span[0]) & (rows < span[1])]
    return rows.tolist()


def job_edits(cache: DevCache, job: Job, rows: Sequence[int], width: int, dirs: dict[int, torch.Tensor],
              mean_act: dict[int, float], acts: dict[int, torch.Tensor], cfg: InterventionConfig,
              directions: dict[int, torch.Tensor] | None = None,
              placed: dict[int, Placed] | None = None) -> torch.Tensor:
    """The additive edits ``Δh`` ``[len(rows), width, d]`` (fp32, CPU) a job makes to dev rows ``rows``.

    Zero outside ``cache.edit_mask`` by construction: ``acts`` are 0 there, and the ``add`` and
    ``direction`` edits are multiplied by the mask.
    """
    r = torch.as_tensor(list(rows), dtype=torch.long)
    edit = cache.edit_mask[r, :width].unsqueeze(-1).float()                          # [n, w, 1]
    if job.kind == DIRECTION:
        n_edit = edit.sum((1, 2)).clamp_min(1.0).sqrt()[:, None, None]
        return edit * (job.alpha / n_edit) * directions[job.feature][None, None]
    if job.kind == PLACED:
        p = placed[job.feature]
        z = acts[p.candidate][r, :width].abs().unsqueeze(-1)
        return (job.alpha * z * float(dirs[p.candidate].float().norm())) * p.vector[None, None]
    d = dirs[job.feature].float()[None, None]
    if job.kind == AMPLIFY and cfg.edit_mode == ADD:
        return edit * (job.alpha * mean_act[job.feature]) * d
    z = acts[job.feature][r, :width].unsqueeze(-1)
    return (job.alpha * z) * d if job.kind == AMPLIFY else -(z * d)


def job_edit(cache: DevCache, job: Job, row: int, dirs: dict[int, torch.Tensor], mean_act: dict[int, float],
             acts: dict[int, torch.Tensor], cfg: InterventionConfig,
             directions: dict[int, torch.Tensor] | None = None,
             placed: dict[int, Placed] | None = None) -> torch.Tensor:
    """The additive edit ``Δh`` ``[T, d]`` (fp32, CPU) a job makes to one dev row (:func:`job_edits`)."""
    return job_edits(cache, job, [row], cache.hidden.shape[1], dirs, mean_act, acts, cfg, directions, placed)[0]


def run_jobs(model, cache: DevCache, jobs: Sequence[Job], dirs: dict[int, torch.Tensor], mean_act: dict[int, float],
             acts: dict[int, torch.Tensor], cfg: InterventionConfig,
             directions: dict[int, torch.Tensor] | None = None, **kwargs) -> dict[Job, np.ndarray]:
    """Per-example intervened NLL of each job (:func:`iter_jobs`, collected)."""
    return {job: nll for job, nll, _ in iter_jobs(model, cache, jobs, dirs, mean_act, acts, cfg, directions, **kwargs)}


@torch.no_grad()
def iter_jobs(model, cache: DevCache, jobs: Sequence[Job], dirs: dict[int, torch.Tensor], mean_act: dict[int, float],
              acts: dict[int, torch.Tensor], cfg: InterventionConfig,
              directions: dict[int, torch.Tensor] | None = None, placed: dict[int, Placed] | None = None,
              span: tuple[int, int] | None = None) -> Iterator[tuple[Job, np.ndarray, float]]:
    """Per-example intervened NLL of each job, yielded as ``(job, NLL array, seconds)`` as each job completes;
    rows a job leaves unchanged (or outside ``span``) keep the base NLL exactly.

    Jobs run in order, in windows of consecutive jobs covering at least ``batch_rows`` rows per length
    bucket; inside a window the rows of one bucket are stacked ``batch_rows`` at a time, so a job's
    rows are finished when its window is.

    Args:
        dirs: decoder direction per feature ``[d]``.
        mean_act: ā_j (mean activation when firing on probe; used by ``add``).
        acts: ``[B, T]`` activation of each feature at editable positions (``scale``, ablation, placed directions).
        directions: null direction ``k`` → its vector ``s·u_k`` (``DIRECTION`` jobs).
        placed: placed null direction id → :class:`Placed` (``PLACED`` jobs).
        span: ``[lo, hi)`` dev rows to measure (a look's items), or a tensor of rows; None: all.
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
                at = 0
                for job, grp in itertools.groupby(chunk, key=lambda p: p[0]):
                    rr = [r for _, r in grp]
                    delta = job_edits(cache, job, rr, w, dirs, mean_act, acts, cfg, directions, placed)
                    h[at : at + len(rr)] += delta.to(device=device, dtype=dtype)
                    at += len(rr)
                nll = replay_nll(model, cache, rows, h).numpy()
                dt = (time.perf_counter() - t0) / len(chunk)
                for i, (job, r) in enumerate(chunk):
                    result[job][r] = nll[i]
                    seconds[job] += dt
        for job, _ in window:
            yield job, result.pop(job), seconds[job]

    window, size = [], 0
    for job in jobs:
        rows = job_rows(cache, job, acts, cfg, placed, span)
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


def primary_amplification(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of an effect summary that decide the filter: amplification at α = ``PRIMARY_ALPHA``.

    Args:
        summary: ``effect_summary`` rows (any frame with ``kind`` and ``alpha`` columns).

    Returns:
        those rows, index and columns unchanged (one per measured feature).
    """
    return summary[(summary.kind == AMPLIFY) & (summary.alpha == PRIMARY_ALPHA)]


# -- the null -------------------------------------------------------------------------------------------

def look_order(example_ids: Sequence[str], seed: int) -> list[int]:
    """Indices of ``example_ids`` in the run's look order: a seeded shuffle (sha256 of seed and id), so a look's
    items are a random sample of the dev set whatever order the split lists them in."""
    key = [hashlib.sha256(f"{seed}:{e}".encode()).hexdigest() for e in example_ids]
    return sorted(range(len(example_ids)), key=lambda i: (key[i], example_ids[i]))


def dev_sample(items: Sequence[EncodedItem], cfg: InterventionConfig) -> tuple[list[EncodedItem], int]:
    """The dev items a run measures, in look order: items longer than ``cfg.max_length`` are dropped (never cut),
    the rest shuffled by :func:`look_order` and the first ``cfg.dev_items`` kept (0: all).

    Returns:
        the items and how many were dropped for their length.
    """
    fit = [it for it in items if len(it.input_ids) <= cfg.max_length]
    order = look_order([it.example_id for it in fit], cfg.null_seed)
    kept = [fit[i] for i in order]
    return (kept[: cfg.dev_items] if cfg.dev_items else kept), len(items) - len(fit)


def look_bounds(n_items: int, cfg: InterventionConfig) -> list[int]:
    """The item counts after which the run looks (futility), ending with every item: e.g. 64, 128, 192, 256."""
    return [k for k in cfg.looks if k < n_items] + [n_items]


@torch.no_grad()
def feature_firing(sae, cache: DevCache, chunk: int = 4096) -> pd.DataFrame:
    """For every SAE feature, over the edit scope of the dev cache: the dev items it fires on (``n_fired``: the rows
    a ``scale`` edit changes) and the share of its firing positions that are response positions (``response_share``,
    NaN where it never fires).
    """
    response = position_mask(cache.items, cache.hidden.shape[1], "response") & cache.edit_mask
    rows = torch.arange(len(cache.items))[:, None].expand_as(cache.edit_mask)[cache.edit_mask]
    resp = response[cache.edit_mask]
    flat = cache.hidden[cache.edit_mask.to(cache.hidden.device)]
    d_sae = int(sae.cfg.d_sae)
    sae_dtype = next(sae.parameters()).dtype
    fired = torch.zeros(len(cache.items), d_sae, dtype=torch.bool)
    n_pos = torch.zeros(d_sae)
    n_resp = torch.zeros(d_sae)
    for s in range(0, len(flat), chunk):
        on = sae.encode(flat[s : s + chunk].float().to(sae_dtype)).float().cpu() != 0   # [c, d_sae]
        fired.index_put_((rows[s : s + chunk],), on, accumulate=True)
        n_pos += on.sum(0)
        n_resp += on[resp[s : s + chunk]].sum(0)
    share = torch.where(n_pos > 0, n_resp / n_pos.clamp_min(1), torch.tensor(float("nan")))
    return pd.DataFrame({"feature": np.arange(d_sae), "n_fired": fired.sum(0).numpy(),
                         "response_share": share.numpy()})


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
    """The global directions' edit size: the median candidate edit size over candidates whose edit is not a no-op
    (0 when there is none, which makes every global direction a no-op too)."""
    s = np.asarray(sizes, dtype=float)
    s = s[np.isfinite(s) & (s > 0)]
    return float(np.median(s)) if len(s) else 0.0


def null_direction_vectors(d_model: int, n: int, seed: int, stream: Sequence[int] = (0,)) -> torch.Tensor:
    """``[n, d_model]`` unit random directions; direction ``k`` comes from ``default_rng([*stream, seed, k])``
    alone, so it does not depend on how many are drawn."""
    out = np.zeros((n, d_model))
    for k in range(n):
        u = np.random.default_rng([*stream, seed, k]).standard_normal(d_model)
        out[k] = u / np.linalg.norm(u)
    return torch.tensor(out, dtype=torch.float32)


def placed_vector(d_model: int, candidate: int, k: int, seed: int) -> torch.Tensor:
    """Unit direction ``k`` placed on ``candidate``'s positions (``default_rng([3, seed, candidate, k])``)."""
    u = np.random.default_rng([3, seed, candidate, k]).standard_normal(d_model)
    return torch.tensor(u / np.linalg.norm(u), dtype=torch.float32)


def null_plan(candidates: Sequence[int], density: np.ndarray | None, cfg: InterventionConfig,
              firing: pd.DataFrame | None = None) -> pd.DataFrame:
    """The null's elements, deterministic for a seed: ``null_directions`` global random directions, then
    ``null_features`` density-matched non-candidate features, then ``null_placed`` placed directions per testable
    candidate.

    A density-matched slot draws a testable candidate ``c`` at random, then one of the :data:`NULL_NEIGHBOURS`
    testable non-candidates closest to ``c`` in log token density among those whose response share of firing
    positions is within ``share_tol`` of ``c``'s (all of them when none is), without repeats.

    Args:
        density: token density (``tok_freq_task``) of every SAE feature ``[d_sae]``, NaN or 0 where it never fired
            on probe.
        firing: :func:`feature_firing` of the dev cache (None: every feature counts as testable, share unknown).

    Returns:
        null_id, kind (``direction`` | ``feature`` | ``placed``), feature (the non-candidate; the direction's index
        for ``direction`` and ``placed``), matched (the candidate it matches or sits on; -1 for a global direction).
    """
    rows = [{"null_id": k, "kind": NULL_DIRECTION, "feature": k, "matched": -1} for k in range(cfg.null_directions)]
    n_fired = share = None
    if firing is not None:
        n_fired = firing.set_index("feature").n_fired.reindex(range(len(density) if density is not None else 0))
        share = firing.set_index("feature").response_share
    cands = sorted({int(c) for c in candidates})
    testable = [c for c in cands if n_fired is None or int(n_fired.get(c, 0)) >= cfg.min_fired]
    if cfg.null_features and testable:
        if density is None:
            raise ValueError("the density-matched null needs each feature's token density (tok_freq_task); "
                             "pass density, or set null_features=0")
        dens = np.asarray(density, dtype=float).copy()
        if n_fired is not None:  # a null feature must be testable too
            dens[n_fired.fillna(0).to_numpy()[: len(dens)] < cfg.min_fired] = np.nan
        rng = np.random.default_rng([1, cfg.null_seed])
        targets = (testable[int(rng.integers(len(testable)))] for _ in range(cfg.null_features))
        for target, feature in _matched_draws(targets, dens, cands, rng, share, cfg.share_tol):
            rows.append({"null_id": len(rows), "kind": NULL_FEATURE, "feature": feature, "matched": target})
    for c in testable:
        for k in range(cfg.null_placed):
            rows.append({"null_id": len(rows), "kind": NULL_PLACED, "feature": k, "matched": c})
    return pd.DataFrame(rows, columns=["null_id", "kind", "feature", "matched"])


def _matched_draws(targets, density: np.ndarray, exclude: Sequence[int], rng: np.random.Generator,
                   share: pd.Series | None = None, share_tol: float = 1.0):
    """For each target (drawn lazily), a distinct random feature among the ``NULL_NEIGHBOURS`` nearest to it in
    log token density (among those within ``share_tol`` of its response share, when shares are given and any is),
    never one of ``exclude``; yields ``(target, feature)`` until none is left."""
    dens = np.asarray(density, dtype=float)
    eligible = np.flatnonzero(np.isfinite(dens) & (dens > 0))
    eligible = eligible[~np.isin(eligible, list(exclude))]
    shares = (share.reindex(range(len(dens))).to_numpy(dtype=float) if share is not None
              else np.full(len(dens), np.nan))
    chosen: list[int] = []
    floor = dens[eligible].min() if len(eligible) else 1.0
    for target in targets:
        avail = eligible[~np.isin(eligible, chosen)]
        if not len(avail):
            return
        if np.isfinite(shares[target]):
            close = avail[np.abs(shares[avail] - shares[target]) <= share_tol]
            avail = close if len(close) else avail
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


# -- the filter -----------------------------------------------------------------------------------------

def effect_matrices(store, effect_id: str, candidates: Sequence[int], seed: int):
    """The run's per-item α = 1 effects in look order: ``(candidates [m, n], null [N, n], null ids, example ids)``,
    NaN where an element was not measured; items no element could score (no response tokens) are left out."""
    deltas = store.effect_deltas(effect_id)
    deltas = deltas[(deltas.kind == AMPLIFY) & (deltas.alpha == PRIMARY_ALPHA)]
    null = store.null_deltas(effect_id)
    ids = sorted(set(deltas.example_id) | set(null.example_id))
    ids = [ids[i] for i in look_order(ids, seed)]
    both = pd.concat([deltas[["example_id", "delta"]], null[["example_id", "delta"]]])
    scorable = set(both.dropna().example_id)
    ids = [e for e in ids if e in scorable]
    cand = (deltas.pivot(index="feature", columns="example_id", values="delta")
            .reindex(index=[int(c) for c in candidates], columns=ids).to_numpy(dtype=float))
    wide = null.pivot(index="null_id", columns="example_id", values="delta").reindex(columns=ids)
    return cand, wide.to_numpy(dtype=float), [int(i) for i in wide.index], ids


def verdict_of(cand: np.ndarray, null: np.ndarray, n_fired, cfg: InterventionConfig) -> pd.DataFrame:
    """:func:`igds.method.verdict.decide` with the run's config."""
    return decide(cand, null, n_fired, fdr=cfg.fdr, min_fired=cfg.min_fired, family=cfg.null_fit, delta=cfg.delta,
                  require_significance=cfg.require_significance)


def fstar_bootstrap(deltas: np.ndarray, null_deltas: np.ndarray, n_fired, cfg: InterventionConfig,
                    n_boot: int = 200, seed: int = 0) -> np.ndarray:
    """Share of ``n_boot`` bootstrap resamples of the dev items in which each candidate stays in ``F*``.

    Each resample draws, for every look length ``n`` a candidate was measured to, ``n`` of the first ``n`` items
    with replacement (``default_rng(seed)``), and recomputes the effects, the null fitted over the same items (the
    run's family, its t df held at the full fit's), p-values, BH q-values and the keep rule.

    Args:
        deltas: ``[m, n]`` per-item α = 1 effects in look order (NaN where not measured).
        null_deltas: ``[N, n]`` the null's per-item effects on the same items.

    Returns:
        ``[m]`` stability in [0, 1] (0 for an unmeasured or untestable candidate).
    """
    deltas = np.asarray(deltas, dtype=float)
    null_deltas = np.asarray(null_deltas, dtype=float)
    n_items = measured_items(deltas)
    n_fired = np.asarray(n_fired, dtype=int)
    if not deltas.size or not len(null_deltas):
        return np.zeros(len(deltas))
    full = verdict_of(deltas, null_deltas, n_fired, cfg)
    rng = np.random.default_rng(seed)
    hits = np.zeros(len(deltas))
    lengths = sorted({int(n) for n in n_items if n})
    for _ in range(n_boot):
        p = np.full(len(deltas), np.nan)
        eff = np.full(len(deltas), np.nan)
        for n in lengths:
            idx = rng.integers(0, n, n)
            rows = np.flatnonzero(n_items == n)
            eff[rows] = deltas[rows][:, idx].mean(1)
            nm = null_deltas[measured_items(null_deltas) >= n][:, idx].mean(1)
            df = full.null_df[rows[0]]
            fit = NullFit("t" if np.isfinite(df) else "normal", df, float(nm.mean()),
                          float(nm.std(ddof=1) * (math.sqrt((df - 2) / df) if np.isfinite(df) and df > 2 else 1.0)),
                          len(nm), float("nan"), tuple(nm))
            p[rows] = [fit.p(e) for e in eff[rows]]
        p[n_fired < cfg.min_fired] = np.nan
        tested = np.isfinite(p)
        q = np.full(len(p), np.nan)
        if tested.any():
            q[tested] = benjamini_hochberg(p[tested])
        kept = tested & ((q < cfg.fdr) if cfg.require_significance else tested)
        if cfg.delta is not None:
            kept &= eff > cfg.delta
        hits += kept
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
    verdict: pd.DataFrame       # one row per candidate: effect, p, rank_p, q_value, untestable, stopped, kept, reason
    attribution: pd.DataFrame   # every feature: est_amplify, est_ablate
    seconds: float
    null: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per null element (null_summary)
    null_cut: float = float("nan")  # the fitted null's 1 − fdr quantile over every item (BH's most lenient step)
    config: InterventionConfig | None = None
    null_fit: NullFit | None = None  # the null fitted over every measured item
    detectable: float = float("nan")  # the smallest effect found with 80% power (a planning figure)
    n_items: int = 0                # dev items measured (scorable)

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
        """The effect a kept feature must exceed at least: ``delta`` when set, else the fitted null's ``1 − fdr``
        quantile (BH's most lenient step; with more candidates tested the step is stricter)."""
        if self.config is not None and self.config.delta is not None:
            return float(self.config.delta)
        return self.null_cut

    @property
    def kept(self) -> list[int]:
        """``F*``: validated features, strongest amplification effect first (at the ranking resolution, ties by
        feature id: :func:`igds.ranking.ranked_ids`)."""
        v = self.verdict[self.verdict.kept]
        return [int(f) for f in ranked_ids(v.effect, v.feature, descending=True)]

    @property
    def power_line(self) -> str:
        """The filter's power in one line: dev items, testable candidates, the detectable effect."""
        v = self.verdict
        n_un = int(v.untestable.sum()) if "untestable" in v else 0
        det = f"{self.detectable:+.4f}" if np.isfinite(self.detectable) else "—"
        return (f"{self.n_items} dev items, {len(v) - n_un} of {len(v)} candidates testable ({n_un} fire on fewer "
                f"than {self.config.min_fired if self.config else 10} items), {self.null_text}; "
                f"smallest effect found with 80% power: {det} nats")

    @property
    def null_text(self) -> str:
        """How many null elements the final fit read: those measured through every item (a stopped candidate's
        placed directions stop with it)."""
        n_fit = self.null_fit.n_null if self.null_fit is not None else 0
        if n_fit and n_fit < len(self.null):
            return f"{n_fit} null elements measured through all {self.n_items} items (of {len(self.null)})"
        return f"{len(self.null)} null elements"

    def why_none_kept(self) -> str:
        """Why ``F*`` is empty, in one sentence with the strongest candidate's figures, the null and the power."""
        v = self.verdict
        if v.empty:
            return f"intervention run {self.effect_id} measured no candidates"
        tested = v[~v.untestable] if "untestable" in v else v
        if tested.empty or tested.effect.isna().all():
            return (f"none of the {len(v)} candidates of intervention run {self.effect_id} could be tested: "
                    f"cannot tell ({self.power_line})")
        best = tested.sort_values("effect", ascending=False).iloc[0]
        helped = int((tested.effect > 0).sum())
        level = 100 * (1 - self.config.fdr if self.config else 0.05)
        null = (f"the fitted null's p{level:g} is {self.null_cut:+.4f} nats over {self.null_text}"
                if np.isfinite(self.null_cut) else "the null is not measured")
        rule = (f"; the filter also asks effect > {self.config.delta:g}" if self.config is not None
                and self.config.delta is not None else "")
        return (f"none of the {len(tested)} tested candidates of intervention run {self.effect_id} passed the filter "
                f"({helped} lowered the dev NLL when amplified; the largest effect is {best.effect:+.4f} nats, "
                f"feature {int(best.feature)}, p = {best.p:.3g}, q = {best.q_value:.3g}; {null}{rule}). Nothing "
                f"that large is there; smaller effects it cannot tell ({self.power_line})")


def load_effects(store, effect_id: str, candidates: Sequence[int], cfg: InterventionConfig) -> EffectResult:
    """Read an intervention run's summaries, null and attribution and decide F* (:func:`verdict_of`)."""
    summary = store.effect_summary(effect_id)
    attribution = store.attribution(effect_id)
    null = store.null_summary(effect_id)
    candidates = [int(c) for c in candidates]
    cand, null_m, _, ids = effect_matrices(store, effect_id, candidates, cfg.null_seed)
    amp = primary_amplification(summary).set_index("feature")
    unknown = np.iinfo(np.int32).max  # a candidate not measured yet is not untestable
    n_fired = [int(amp.n_fired.get(c, unknown)) for c in candidates]
    verdict = verdict_of(cand, null_m, n_fired, cfg)
    verdict.insert(0, "feature", candidates)
    verdict["n_fired"] = [np.nan if n == unknown else n for n in n_fired]
    verdict["ci_low"] = [amp.ci_low.get(c, np.nan) for c in candidates]
    verdict["ci_high"] = [amp.ci_high.get(c, np.nan) for c in candidates]
    n = int(measured_items(null_m).max()) if null_m.size else 0
    fit = null_at(null_m, n, cfg.null_fit) if n else None
    cut = fit.quantile(1 - cfg.fdr) if fit is not None else float("nan")
    verdict["threshold"] = cfg.delta if cfg.delta is not None else cut
    n_tested = int((~verdict.untestable).sum())
    seconds = float(summary.seconds.sum()) if not summary.empty else 0.0
    seconds += float(null.seconds.sum()) if not null.empty else 0.0
    return EffectResult(effect_id=effect_id, summary=summary, verdict=verdict, attribution=attribution,
                        seconds=seconds, null=null, null_cut=cut, config=cfg, null_fit=fit,
                        detectable=detectable_effect(null_m, n_tested, cfg.fdr, cfg.null_fit) if n else float("nan"),
                        n_items=len(ids))


def exact_order(candidates: Sequence[int], attribution: pd.DataFrame) -> list[int]:
    """Candidates in exact-run order: strongest ``|estimated amplification effect|`` first (ties by id)."""
    est = dict(zip(attribution.feature, attribution.est_amplify.abs().fillna(0), strict=True))
    return sorted(candidates, key=lambda f: (-est.get(f, 0.0), f))


def null_edit_size_of(sae, cache: DevCache, candidates: Sequence[int], mean_act: np.ndarray,
                      cfg: InterventionConfig) -> float:
    """The global directions' edit size ``s``: the median α = 1 edit size of the candidates
    (:func:`null_edit_size`)."""
    cands = [int(f) for f in candidates]
    sizes = edit_sizes(cache, decoder_directions(sae, cands), feature_acts_at(sae, cache, cands),
                       [mean_act[f] for f in cands], cfg.edit_mode) if cands else []
    return null_edit_size(sizes)


def _span_rows(cache: DevCache, span) -> list[int]:
    """The dev rows of ``span``: a ``[lo, hi)`` pair, a tensor of rows, or None (every row)."""
    if torch.is_tensor(span):
        return span.tolist()
    return list(range(*(span or (0, len(cache.items)))))


def run_null_elements(model, sae, cache: DevCache, effect_id: str, todo: pd.DataFrame, size: float,
                      mean_act: np.ndarray, cfg: InterventionConfig,
                      span: tuple[int, int] | None = None) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Measure null elements (rows of :func:`null_plan`) on the dev rows ``span``; no I/O.

    Args:
        size: the global directions' edit size (:func:`null_edit_size_of`).

    Yields:
        per element, as it finishes: its per-example rows on ``span`` (``null_effects``) and its summary row
        (``null_summary``; its statistics cover ``span`` only, the driver recomputes them over every item).
    """
    d_model = cache.hidden.shape[-1]
    vecs = null_direction_vectors(d_model, cfg.null_directions, cfg.null_seed)
    feats = sorted({int(r.feature) for r in todo.itertuples() if r.kind == NULL_FEATURE}
                   | {int(r.matched) for r in todo.itertuples() if r.kind == NULL_PLACED})
    dirs = dict(zip(feats, decoder_directions(sae, feats), strict=True)) if feats else {}
    acts_t = feature_acts_at(sae, cache, feats) if feats else None
    acts = {f: acts_t[:, :, i] for i, f in enumerate(feats)}
    f_sizes = dict(zip(feats, edit_sizes(cache, torch.stack([dirs[f] for f in feats]), acts_t,
                                         [mean_act[f] for f in feats], cfg.edit_mode), strict=True)) if feats else {}
    jobs, meta, placed = [], {}, {}
    for r in todo.itertuples():
        if r.kind == NULL_DIRECTION:
            job = Job(int(r.null_id), DIRECTION, PRIMARY_ALPHA)
            meta[job] = (r, size, int(cache.edit_mask.any(1).sum()))
        elif r.kind == NULL_PLACED:
            job = Job(int(r.null_id), PLACED, PRIMARY_ALPHA)
            placed[int(r.null_id)] = Placed(int(r.matched), placed_vector(d_model, int(r.matched), int(r.feature),
                                                                         cfg.null_seed))
            meta[job] = (r, float(f_sizes[int(r.matched)]), int((acts[int(r.matched)] != 0).any(1).sum()))
        else:
            job = Job(int(r.feature), AMPLIFY, PRIMARY_ALPHA)
            meta[job] = (r, float(f_sizes[int(r.feature)]), int((acts[int(r.feature)] != 0).any(1).sum()))
        jobs.append(job)
    rows = _span_rows(cache, span)
    ids = [cache.items[i].example_id for i in rows]
    base = cache.nll_base.numpy()
    for job, nll, seconds in iter_jobs(model, cache, jobs, dirs, {f: float(mean_act[f]) for f in feats}, acts, cfg,
                                       directions={k: vecs[k] * size for k in range(cfg.null_directions)},
                                       placed=placed, span=span):
        r, norm, n_fired = meta[job]
        s = summarize_effect(job, base[list(rows)], nll[list(rows)], n_fired)
        eff = pd.DataFrame({"effect_id": effect_id, "null_id": int(r.null_id), "example_id": ids,
                            "nll_base": base[list(rows)], "nll_int": nll[list(rows)]})
        summ = pd.DataFrame([{"effect_id": effect_id, "null_id": int(r.null_id), "kind": r.kind,
                              "feature": int(r.feature), "matched": int(r.matched), "edit_norm": norm,
                              **{k: s[k] for k in ("n", "n_fired", "effect", "ci_low", "ci_high", "p_value")},
                              "seconds": seconds}])
        yield eff, summ


def run_feature_effects(model, sae, cache: DevCache, effect_id: str, jobs: Sequence[tuple[int, str, float]],
                        mean_act: np.ndarray, cfg: InterventionConfig,
                        span: tuple[int, int] | None = None) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Run candidate jobs ``(feature, kind, alpha)`` on the dev rows ``span``; no I/O.

    Yields:
        per feature, once all its jobs are done: its per-example rows on ``span`` (``feature_effects``) and its
        summary rows (``effect_summary``; statistics over ``span``, recomputed by the driver over every item).
    """
    jobs_of: dict[int, list[Job]] = {}
    for f, kind, alpha in jobs:
        jobs_of.setdefault(int(f), []).append(Job(int(f), kind, float(alpha)))
    todo = list(jobs_of)
    if not todo:
        return
    dirs = dict(zip(todo, decoder_directions(sae, todo), strict=True))
    acts_all = feature_acts_at(sae, cache, todo)
    acts = {f: acts_all[:, :, i] for i, f in enumerate(todo)}
    rows = list(_span_rows(cache, span))
    ids = [cache.items[i].example_id for i in rows]
    base = cache.nll_base.numpy()[rows]
    finished: dict[int, dict[Job, tuple[np.ndarray, float]]] = {f: {} for f in todo}
    for job, nll, seconds in iter_jobs(model, cache, [j for f in todo for j in jobs_of[f]], dirs,
                                       {f: float(mean_act[f]) for f in todo}, acts, cfg, span=span):
        f = job.feature
        finished[f][job] = (nll[rows], seconds)
        if len(finished[f]) < len(jobs_of[f]):
            continue
        n_fired = int((acts[f] != 0).any(1).sum())
        out, summ = [], []
        for j in jobs_of[f]:
            nll_j, sec = finished[f][j]
            out.append(pd.DataFrame({"effect_id": effect_id, "feature": f, "kind": j.kind, "alpha": j.alpha,
                                     "example_id": ids, "nll_base": base, "nll_int": nll_j}))
            summ.append({"effect_id": effect_id, **summarize_effect(j, base, nll_j, n_fired), "seconds": sec})
        yield pd.concat(out), pd.DataFrame(summ)


def primary_effect(summ: pd.DataFrame) -> float:
    """The α = 1 amplification effect in one feature's summary rows (NaN when it has none)."""
    amp = summ[(summ.kind == AMPLIFY) & (summ.alpha == PRIMARY_ALPHA)]
    return float(amp.effect.iloc[0]) if len(amp) else float("nan")


def finish_effects(store, effect_id: str, candidates: Sequence[int], cfg: InterventionConfig, finished_all: bool,
                   t0: float) -> EffectResult:
    """Read the run back, mark it done or partial and return its result (``seconds`` since ``t0``)."""
    result = load_effects(store, effect_id, candidates, cfg)
    store.update_run(effect_id, status="done" if finished_all else "partial",
                     message=f"{len(result.kept)} of {len(candidates)} kept")
    return dataclasses.replace(result, seconds=time.perf_counter() - t0)

