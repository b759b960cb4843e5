"""Thin adapter over sae-lens: resolve an SAE spec, check it fits the model, train the default SAE,
and measure SAE quality. All SAE maths (encode/decode, TopK, training) is sae-lens's own.

Trained SAEs live in folders keyed by their training config and the model (:func:`trained_sae_dir`);
:func:`ensure_trained_sae` trains one only when its folder holds no finished SAE, one process at a
time (:func:`sae_training_lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from igds import settings
from igds.constants import (
    DEFAULT_SAE_NAME,
    RESID_POST,
    SAE_DATA_DIR,
    SAE_QUALITY_FILENAME,
    SAE_RECIPE_FILENAME,
    SAES_DIR,
)
from igds.hashing import file_sha256  # noqa: F401 - re-exported (igds sae train, tests)
from igds.modeling.adapters import HookSiteError, n_layers, parse_site
from igds.modeling.batching import EncodedItem, keep_mask, length_batches, pad_batch, position_mask
from igds.modeling.config import SaeSpec, SaeTrainConfig  # noqa: F401 - re-exported
from igds.modeling.hooks import patch, run_until
from igds.progress import ProgressFn, null_progress
from igds.scope import ALL_TOKENS


class SaeError(ValueError):
    """An SAE that cannot be loaded, does not fit the model, or is of too low quality."""


@dataclass(frozen=True)
class SaeInfo:
    """Identity and geometry of a loaded SAE."""

    key: str
    name: str
    source: str
    path: str | None
    site: str
    d_in: int
    d_sae: int
    architecture: str
    quality: dict
    neuronpedia_id: str | None = None

    def to_dict(self) -> dict:
        """Plain dict for the store."""
        return dict(self.__dict__)


def default_sae_dir() -> Path:
    """Folder of the default SAE, shipped with the project (verified against its ``SHA256SUMS``)."""
    return settings.data_dir() / SAE_DATA_DIR / DEFAULT_SAE_NAME


def trained_sae_dir(cfg: SaeTrainConfig, model_key: str) -> Path:
    """The folder of the SAE trained with recipe ``cfg`` on the model whose key is ``model_key``.

    ``<home>/saes/trained-<model>-L<layer>-k<k>-<d_sae>-<recipe key>``: the readable part names the
    model, the layer and the geometry; the recipe key (``cfg.stage_key(model_key)``) covers every field,
    so any change of recipe or model gets its own folder and never overwrites or reuses another's.

    Args:
        cfg: The training recipe.
        model_key: :func:`igds.modeling.load.model_key_of` of the model the SAE reads.

    Returns:
        The folder (it may not exist yet).
    """
    name = f"trained-{model_key[:8]}-L{cfg.layer}-k{cfg.k}-{cfg.d_sae}-{cfg.stage_key(model_key)[:8]}"
    return settings.home() / SAES_DIR / name


def _lock_path(out_dir: Path) -> Path:
    return out_dir.with_name(out_dir.name + ".lock")


def _lock_holder(lock_path: Path) -> str:
    try:
        return lock_path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def sae_training_lock(out_dir: Path, wait_s: float, poll_s: float = 0.1) -> Iterator[None]:
    """Hold the cross-process lock of SAE folder ``out_dir`` (an ``fcntl`` lock on ``<out_dir>.lock``).

    The holder's pid is written into the lock file so a waiter can say who trains. The lock is released
    when the block exits, or by the kernel when the holder dies, so a killed training never blocks the
    next one. The lock file itself stays (removing it would race with waiters).

    Args:
        out_dir: The SAE folder the lock guards (the lock file lies next to it).
        wait_s: How long to wait for another holder, in seconds (0: try once).
        poll_s: Seconds between attempts while waiting.

    Raises:
        SaeError: When another process still holds the lock after ``wait_s``, naming its pid.
    """
    lock_path = _lock_path(out_dir)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    locked = False
    try:
        deadline = time.monotonic() + wait_s
        while not locked:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SaeError(f"SAE {out_dir} is being trained by another process (pid "
                                   f"{_lock_holder(lock_path)}); waiting timed out after {wait_s:g} s") from None
                time.sleep(min(poll_s, left))
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        if locked:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def finished_sae(out_dir: Path, cfg: SaeTrainConfig | None = None) -> bool:
    """Whether ``out_dir`` holds a finished trained SAE (of recipe ``cfg`` when given).

    :func:`train_sae` writes into a temporary folder and renames it into place only once the weights,
    the quality figures, the recipe and the checksums are all written, so a folder with all of them is
    complete; a killed training leaves only a hidden ``.tmp-`` folder behind.
    """
    files = (*CHECKED_FILES, CHECKSUM_FILENAME, SAE_QUALITY_FILENAME, SAE_RECIPE_FILENAME)
    if not all((out_dir / f).is_file() for f in files):
        return False
    if cfg is None:
        return True
    try:
        return json.loads((out_dir / SAE_RECIPE_FILENAME).read_text()) == json.loads(cfg.to_json())
    except (OSError, ValueError):
        return False


def ensure_trained_sae(model, tokenizer, cfg: SaeTrainConfig, texts: tuple[list, list], model_key: str,
                       progress: ProgressFn | None = None, wait_s: float = 600.0, out_dir: Path | None = None,
                       retrain: bool = False) -> Path:
    """The folder of the SAE of recipe ``cfg`` on ``model``, trained first if it holds no finished SAE.

    One process trains a given folder at a time (:func:`sae_training_lock`): another process asking for
    the same SAE waits up to ``wait_s`` for it and then reuses what it trained. Training writes into a
    temporary folder renamed into place at the end (:func:`train_sae`), so an interrupted training is
    never mistaken for a finished SAE; its leftovers are removed by the next trainer.

    Args:
        model: The causal LM whose residual the SAE reads.
        tokenizer: Its tokenizer.
        cfg: The training recipe.
        texts: ``(train_examples, holdout_examples)``: :class:`~igds.data.records.Example` objects, encoded
            with :func:`igds.modeling.encoding.encode_examples` at ``cfg.max_length``.
        model_key: :func:`igds.modeling.load.model_key_of` of ``model`` (keys the folder).
        progress: ``progress(done, total, message)``.
        wait_s: Seconds to wait for another process training the same folder.
        out_dir: Train into this folder instead of :func:`trained_sae_dir` ``(cfg, model_key)``.
        retrain: Train even when the folder already holds a finished SAE of this recipe.

    Returns:
        The SAE folder.

    Raises:
        SaeError: When another process is still training the folder after ``wait_s``.
    """
    from igds.modeling.encoding import encode_examples

    out = Path(out_dir) if out_dir is not None else trained_sae_dir(cfg, model_key)
    if not retrain and finished_sae(out, cfg):
        return out
    with sae_training_lock(out, wait_s):
        if not retrain and finished_sae(out, cfg):  # trained by the process we waited for
            return out
        for stale in out.parent.glob(f".tmp-{glob.escape(out.name)}-*"):  # left by a killed training: we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        train, holdout = texts
        items = encode_examples(tokenizer, train, cfg.max_length)
        held = encode_examples(tokenizer, holdout, cfg.max_length)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        train_sae(model, items, held, cfg, out, pad_id, progress)
    return out


def _hash_folder(path: Path) -> str:
    h = hashlib.sha256()
    for name in ("cfg.json", "sae_weights.safetensors"):
        p = path / name
        if p.exists():
            h.update(name.encode())
            with open(p, "rb") as fh:  # the first MiB and the size identify the weights without reading 10 MB
                h.update(fh.read(1 << 20))
            h.update(str(p.stat().st_size).encode())
    return h.hexdigest()[:16]


def sae_site(sae, override: str = "") -> str:
    """The hook site an SAE reads, from the override or the SAE's own metadata."""
    site = override or getattr(sae.cfg.metadata, "hook_name", None)
    if not site:
        raise SaeError("the SAE's config names no hook site; pass one with --sae-site / SaeSpec(site=...)")
    return site


def check_sae_fits(sae, model, site: str) -> str:
    """Check the SAE's input width and site against the model; return the canonical site name.

    Raises:
        SaeError: naming both shapes when ``d_in`` differs from the model's width, or the site when it
            does not exist on the model.
    """
    d_model = int(model.config.hidden_size)
    name = getattr(model, "igds_name", model.config.model_type)
    try:
        resolved = parse_site(model, site)
    except HookSiteError as e:
        raise SaeError(f"SAE site {site!r} does not fit model {name!r} ({n_layers(model)} blocks): {e}") from e
    if int(sae.cfg.d_in) != d_model:
        raise SaeError(
            f"SAE/model mismatch: the SAE expects d_in={sae.cfg.d_in} at {site}, but model {name!r} has "
            f"d_model={d_model} ({n_layers(model)} blocks)"
        )
    return resolved.name


def load_sae(spec: SaeSpec | None = None, device: str = "cpu"):
    """Resolve a spec to ``(sae, SaeInfo)`` via sae-lens. Quality figures come from the folder if stored.

    Raises:
        SaeError: missing folder, malformed sae-lens folder, or a hub release while offline.
    """
    from sae_lens import SAE

    spec = spec or SaeSpec()
    source = spec.source
    quality: dict = {}
    if source == "default" or Path(source).expanduser().exists():
        path = default_sae_dir() if source == "default" else Path(source).expanduser().resolve()
        if not (path / "cfg.json").exists():
            hint = " (the default SAE ships with IGDS: restore it with git checkout)" if source == "default" else ""
            raise SaeError(f"no sae-lens SAE at {path}: cfg.json is missing{hint}")
        if source == "default":
            verify_checksums(path)
        try:
            sae = SAE.load_from_disk(str(path), device=device)
        except Exception as e:  # sae-lens raises many types for malformed folders
            raise SaeError(f"could not load the SAE in {path}: {e}") from e
        qpath = path / SAE_QUALITY_FILENAME
        if qpath.exists():
            quality = json.loads(qpath.read_text())
        key, name, spath = _hash_folder(path), path.name, str(path)
    elif "::" in source:
        if settings.offline():
            raise SaeError(f"{source!r} is a sae-lens release on the hub and IGDS runs offline; set IGDS_OFFLINE=0")
        release, sae_id = source.split("::", 1)
        sae = SAE.from_pretrained(release, sae_id, device=device)
        key = hashlib.sha256(source.encode()).hexdigest()[:16]
        name, spath = source, None
    else:
        raise SaeError(f"SAE source {source!r} is neither 'default', an existing folder, nor '<release>::<sae_id>'")
    sae.requires_grad_(False)
    sae.eval()
    info = SaeInfo(key=key, name=name, source=source, path=spath, site=sae_site(sae, spec.site),
                   d_in=int(sae.cfg.d_in), d_sae=int(sae.cfg.d_sae), architecture=sae.cfg.architecture(),
                   quality=quality, neuronpedia_id=getattr(sae.cfg.metadata, "neuronpedia_id", None))
    return sae, info


def check_quality(info: SaeInfo, spec: SaeSpec) -> None:
    """Refuse an SAE whose measured explained variance is below the spec's threshold."""
    ev = info.quality.get("explained_variance")
    if ev is not None and ev < spec.min_explained_variance:
        raise SaeError(
            f"SAE {info.name} explains only {ev:.3f} of the residual variance (< {spec.min_explained_variance}); "
            "its features would not describe the model. Train longer or pick another SAE."
        )


@torch.no_grad()
def collect_activations(model, site: str, items: Sequence[EncodedItem], n_tokens: int, pad_id: int,
                        sink_norm_factor: float = 10.0, batch_tokens: int = 4096,
                        progress: ProgressFn | None = None, positions: str = ALL_TOKENS.positions) -> torch.Tensor:
    """Residuals at ``site`` for non-sink positions of ``items`` inside the token scope ``positions``,
    up to ``n_tokens`` rows, fp32 ``[n, d]``."""
    progress = progress or null_progress
    device = next(model.parameters()).device
    out, have = [], 0
    for batch in length_batches(items, batch_tokens):
        ids, attn = pad_batch(batch, pad_id, device)
        h = run_until(model, site, ids, attn)
        keep = keep_mask(h, attn, sink_norm_factor) & position_mask(batch, ids.shape[1], positions).to(h.device)
        acts = h[keep].float().cpu()
        out.append(acts)
        have += len(acts)
        progress(min(have, n_tokens), n_tokens, f"collect activations: {min(have, n_tokens)}/{n_tokens} tokens")
        if have >= n_tokens:
            break
    return torch.cat(out)[:n_tokens]


def _batches(data: torch.Tensor, batch_size: int, seed: int, on_step=None) -> Iterator[torch.Tensor]:
    """Infinite shuffled batches; ``on_step`` is called once per batch handed to the trainer."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(len(data), generator=gen)
        for i in range(0, len(data) - batch_size + 1, batch_size):
            if on_step:
                on_step()
            yield data[perm[i : i + batch_size]]


@torch.no_grad()
def reconstruction_quality(sae, acts: torch.Tensor, chunk: int = 8192) -> dict:
    """L0, explained variance, cosine and the dead-latent share of ``sae`` on activations ``[n, d]``."""
    mean = acts.mean(0)
    sse = sst = cos = l0 = 0.0
    fired = torch.zeros(int(sae.cfg.d_sae), dtype=torch.bool)
    for i in range(0, len(acts), chunk):
        x = acts[i : i + chunk]
        z = sae.encode(x)
        xh = sae.decode(z)
        sse += float(((x - xh) ** 2).sum())
        sst += float(((x - mean) ** 2).sum())
        cos += float(torch.nn.functional.cosine_similarity(x, xh, dim=-1).sum())
        l0 += float((z > 0).sum())
        fired |= (z > 0).any(0)
    n = len(acts)
    return {"l0": l0 / n, "explained_variance": 1 - sse / sst, "cosine": cos / n,
            "dead_fraction": float((~fired).float().mean()), "n_eval_tokens": n}


@torch.no_grad()
def ce_recovered(model, sae, site: str, items: Sequence[EncodedItem], pad_id: int,
                 sink_norm_factor: float = 10.0, positions: str = ALL_TOKENS.positions) -> dict:
    """Next-token CE with the clean residual, with the SAE reconstruction spliced in, and with the
    residual zeroed, at the kept positions of the token scope ``positions`` (splice and CE both);
    ``ce_recovered = (zero − sae) / (zero − clean)``."""
    device = next(model.parameters()).device
    ids, attn = pad_batch(items, pad_id, device)
    h = run_until(model, site, ids, attn)
    keep2d = keep_mask(h, attn, sink_norm_factor) & position_mask(items, ids.shape[1], positions).to(h.device)
    keep = keep2d.unsqueeze(-1)

    def ce(replace=None) -> float:
        if replace is None:
            logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits
        else:
            with patch(model, site, replace):
                logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits
        lp = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), ids[:, 1:], reduction="none")
        m = (attn[:, 1:].bool() & keep2d[:, :-1]).float()
        return float((lp * m).sum() / m.sum())

    sae_dtype = next(sae.parameters()).dtype
    recon = lambda x: torch.where(keep, sae.decode(sae.encode(x.to(sae_dtype))).to(x.dtype), x)  # noqa: E731
    zero = lambda x: torch.where(keep, torch.zeros_like(x), x)  # noqa: E731
    clean, spliced, zeroed = ce(), ce(recon), ce(zero)
    rec = (zeroed - spliced) / (zeroed - clean) if zeroed != clean else float("nan")
    return {"ce_clean": clean, "ce_sae": spliced, "ce_zero": zeroed, "ce_recovered": rec}


def train_sae(model, items: Sequence[EncodedItem], holdout: Sequence[EncodedItem], cfg: SaeTrainConfig,
              out_dir: Path, pad_id: int, progress: ProgressFn | None = None) -> dict:
    """Train a TopK SAE with sae-lens on the model's residual after block ``cfg.layer``.

    Activations of ``items`` are collected inside the token scope ``cfg.positions`` with the sink
    guard, the decoder bias is initialised to the data mean (sae-lens 6 no longer does a
    geometric-median init; without it most latents die), and training runs sae-lens's ``SAETrainer``.
    Quality is measured in the same scope: explained variance and CE recovered on the held-out texts
    ``holdout``, the dead share over ``cfg.dead_tokens`` training activations. The result is a standard
    sae-lens folder plus our quality file, the recipe and a ``SHA256SUMS`` of the weights, written into a
    hidden ``.tmp-<name>-<pid>`` folder next to ``out_dir`` and renamed into place once complete (replacing
    any previous SAE there), so ``out_dir`` never holds a half-written SAE.

    Returns:
        quality figures (also written to ``out_dir/igds_quality.json``).
    """
    from sae_lens import SAE, SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import LoggingConfig, SAETrainerConfig

    progress = progress or null_progress
    torch.manual_seed(cfg.seed)
    site = RESID_POST.format(layer=cfg.layer)
    d_in = int(model.config.hidden_size)
    acts = collect_activations(model, site, items, cfg.n_tokens, pad_id, cfg.sink_norm_factor,
                               progress=progress, positions=cfg.positions)
    train_acts = acts[torch.randperm(len(acts), generator=torch.Generator().manual_seed(cfg.seed))]
    eval_acts = collect_activations(model, site, holdout, 10**9, pad_id, cfg.sink_norm_factor, positions=cfg.positions)
    batch = min(cfg.batch_size, len(train_acts))
    total_steps = max(1, cfg.epochs * len(train_acts) // batch)
    training_sae = TopKTrainingSAE(TopKTrainingSAEConfig(
        d_in=d_in, d_sae=cfg.d_sae, k=cfg.k, dtype="float32", device="cpu",
        normalize_activations="expected_average_only_in"))
    trainer_cfg = SAETrainerConfig(
        total_training_samples=total_steps * batch, train_batch_size_samples=batch, lr=cfg.lr,
        lr_end=0.0, lr_scheduler_name="constant", lr_warm_up_steps=min(20, total_steps // 10), device="cpu",
        dead_feature_window=100, feature_sampling_window=1000, n_batches_for_norm_estimate=10,
        logger=LoggingConfig(log_to_wandb=False))
    step = {"n": 0}

    def on_step():
        step["n"] += 1
        if step["n"] % 5 == 0 or step["n"] == total_steps:
            progress(min(step["n"], total_steps), total_steps, f"train SAE: step {step['n']}/{total_steps}")

    trainer = SAETrainer(cfg=trainer_cfg, sae=training_sae,
                         data_provider=_batches(train_acts, batch, cfg.seed))
    trainer.activation_scaler.estimate_scaling_factor(
        d_in=d_in, data_provider=_batches(train_acts, batch, cfg.seed + 1), n_batches_for_norm_estimate=10)
    with torch.no_grad():
        training_sae.b_dec.copy_(train_acts.mean(0) * trainer.activation_scaler.scaling_factor)
    trainer.data_provider = _batches(train_acts, batch, cfg.seed, on_step)
    trainer.fit()
    training_sae.cfg.metadata.hook_name = site
    training_sae.cfg.metadata.model_name = getattr(model, "igds_name", model.config.model_type)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".tmp-{out_dir.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        training_sae.save_inference_model(str(tmp))
        sae = SAE.load_from_disk(str(tmp))
        sae.requires_grad_(False)
        progress(total_steps, total_steps, "train SAE: measuring quality")
        quality = reconstruction_quality(sae, eval_acts)
        quality["dead_fraction"] = reconstruction_quality(sae, train_acts[: cfg.dead_tokens])["dead_fraction"]
        quality.update(ce_recovered(model, sae, site, list(holdout[:32]), pad_id, cfg.sink_norm_factor,
                                    cfg.positions))
        quality.update({"train_tokens": len(train_acts), "holdout_texts": len(holdout), "steps": total_steps,
                        "positions": cfg.positions, "config": cfg.to_dict()})
        quality = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in quality.items()}
        (tmp / SAE_QUALITY_FILENAME).write_text(json.dumps(quality, indent=2, sort_keys=True))
        (tmp / SAE_RECIPE_FILENAME).write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
        write_checksums(tmp)
        # the finished folder appears in one rename; a previous SAE there is moved aside first, then removed
        old = out_dir.with_name(f".old-{out_dir.name}-{os.getpid()}")
        if out_dir.exists():
            shutil.rmtree(old, ignore_errors=True)
            out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return quality


CHECKSUM_FILENAME = "SHA256SUMS"
CHECKED_FILES = ("cfg.json", "sae_weights.safetensors")


def write_checksums(folder: Path) -> dict[str, str]:
    """Write ``SHA256SUMS`` (``sha256sum`` format) for an SAE folder's config and weights."""
    sums = {name: file_sha256(folder / name) for name in CHECKED_FILES}
    (folder / CHECKSUM_FILENAME).write_text("".join(f"{v}  {k}\n" for k, v in sums.items()))
    return sums


def verify_checksums(folder: Path) -> str:
    """Check an SAE folder against its ``SHA256SUMS``; return the weights' sha256.

    Raises:
        SaeError: naming the file whose checksum differs (or the missing checksum file).
    """
    path = folder / CHECKSUM_FILENAME
    if not path.exists():
        raise SaeError(f"{folder} has no {CHECKSUM_FILENAME}; the shipped SAE cannot be verified")
    expected = dict(reversed(line.split(None, 1)) for line in path.read_text().splitlines() if line.strip())
    for name, digest in expected.items():
        got = file_sha256(folder / name) if (folder / name).exists() else "missing"
        if got != digest:
            raise SaeError(f"{folder / name}: sha256 {got[:16]}… differs from the shipped {digest[:16]}…; "
                           "restore it (git checkout) or retrain with 'python -m igds sae train'")
    return expected["sae_weights.safetensors"]


def decoder_directions(sae, features: Sequence[int] | None = None) -> torch.Tensor:
    """Effective decoder direction of each feature: ``decode(e_j) − decode(0)``, ``[n, d_model]``.

    Going through ``decode`` keeps any normalisation sae-lens folded into the decoder.
    """
    d_sae = int(sae.cfg.d_sae)
    feats = torch.arange(d_sae) if features is None else torch.as_tensor(list(features), dtype=torch.long)
    dtype = next(sae.parameters()).dtype
    with torch.no_grad():
        eye = torch.zeros(len(feats), d_sae, dtype=dtype)
        eye[torch.arange(len(feats)), feats] = 1.0
        return (sae.decode(eye) - sae.decode(torch.zeros_like(eye))).float()
