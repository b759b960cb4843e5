"""Wire the stages together over one workspace: corpus → model → SAE → extraction → store.

Everything here is idempotent: a stage whose content key is already stored is skipped, so a second
``bootstrap`` finishes in seconds and an interrupted one resumes where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from igds.config import ConfigBase
from igds.constants import GENERAL
from igds.data.noise import NOISY_SPLIT
from igds.executor.config import ExecutorConfig, executor_config
from igds.executor.extract import run_extraction
from igds.executor.pool import Loaded
from igds.executor.registry import Opener, stage_pool
from igds.method.config import QuickLookConfig
from igds.method.extract import ExtractConfig, ExtractResult
from igds.method.intervene import InterventionConfig
from igds.method.pool import ensure_noisy_pool
from igds.method.recall import RecallConfig
from igds.modeling.encoding import encode_examples
from igds.modeling.load import ModelSpec, load_model, model_identity, model_key_of
from igds.modeling.sae import (
    SaeSpec,
    SaeTrainConfig,
    check_quality,
    check_sae_fits,
    load_sae,
)
from igds.progress import ProgressFn, null_progress
from igds.scope import DEFAULT_POOL, UNCUT
from igds.store import ActivationStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class BootstrapConfig(ConfigBase):
    """What ``igds bootstrap`` prepares.

    Args:
        tasks: tasks whose probe, dev and pool examples are extracted.
        pool_setting: ``mixed`` (task train + general set) or ``task-only``.
        model: the language model.
        sae: the SAE (``default``: the one shipped with IGDS, checksum-verified).
        extract: how activations are extracted.
        method_stages: also run recall, interventions and feature contexts for the first task.
        recall: recall config of that first run.
        intervene: intervention config of that first run.
        quick_look: the quick look the first run shows before its full filter (a preview, never F*).
    """

    tasks: tuple[str, ...] = field(default=("summarization",), metadata={"help": "tasks to extract"})
    pool_setting: str = field(default=DEFAULT_POOL.setting, metadata={"help": "mixed | task-only"})
    model: ModelSpec = field(default_factory=ModelSpec)
    sae: SaeSpec = field(default_factory=SaeSpec)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    method_stages: bool = field(default=True, metadata={"help": "also run recall and interventions (first task)"})
    recall: RecallConfig = field(default_factory=RecallConfig)
    intervene: InterventionConfig = field(default_factory=InterventionConfig)
    quick_look: QuickLookConfig = field(default_factory=QuickLookConfig)


@dataclass
class Workspace:
    """A loaded model + SAE registered in a store: what every later stage works on."""

    store: ActivationStore
    model: object
    tokenizer: object
    sae: object
    model_key: str
    sae_key: str
    site: str
    sae_info: dict
    model_spec: ModelSpec = field(default_factory=ModelSpec)
    examples_added: int = 0

    def fp32_model(self):
        """The model with fp32 weights (reloaded when the workspace runs in bf16): interventions edit
        the residual stream by amounts below bf16's resolution."""
        import dataclasses

        import torch

        if next(self.model.parameters()).dtype == torch.float32:
            return self.model
        model, _ = load_model(dataclasses.replace(self.model_spec, dtype="float32"))
        return model

    def loaded(self) -> Loaded:
        """The model, tokenizer, SAE and site this workspace holds (what a local pool serves)."""
        return Loaded(self.model, self.tokenizer, self.sae, self.site)

    def pool(self, executor: ExecutorConfig, model=None, sae: bool = True) -> Opener:
        """A pool opener for a stage on this workspace: a local pool serves ``model`` (default: the workspace's) and
        the SAE; a remote one loads their stored specs, in the weights' dtype of ``model``."""
        from igds.executor.worker import spec_for

        model = model or self.model
        loaded = Loaded(model, self.tokenizer, self.sae if sae else None, self.site)
        return stage_pool(executor, loaded, lambda: spec_for(self.store, self.model_key, self.sae_key if sae else None,
                                                             self.site, weights_dtype(model), need_sae=sae))

    def extraction_run_id(self, cfg: ExtractConfig) -> str:
        """Run id of an extraction with ``cfg`` on this model and SAE."""
        return cfg.stage_key(self.model_key, self.sae_key)


def ingest_corpus(store: ActivationStore, dataset: str = "demo") -> int:
    """Sync the shipped corpus into the store's ``examples`` table; returns the number of new ids."""
    from igds.data.corpus import load_corpus

    return store.sync_dataset(load_corpus(), dataset=dataset)[0]


def sae_training_texts(cfg: SaeTrainConfig) -> tuple[list, list]:
    """The default SAE's texts: every non-test record of the corpus (task probe/dev/train, general
    train and reference), seeded-shuffled; the first ``cfg.holdout_examples`` are held out of training
    for the quality figures. Returns ``(train, holdout)``."""
    import random

    from igds.data.corpus import load_corpus

    seen, texts = set(), []
    for e in sorted(load_corpus(), key=lambda e: e.id):
        if e.split != "test" and e.id not in seen:
            seen.add(e.id)
            texts.append(e)
    random.Random(cfg.seed).shuffle(texts)
    return texts[cfg.holdout_examples:], texts[: cfg.holdout_examples]


def train_default_sae(model, tokenizer, cfg: SaeTrainConfig, out_dir=None, progress: ProgressFn | None = None,
                      wait_s: float = 600.0) -> dict:
    """Train an SAE of recipe ``cfg`` on the corpus texts (``igds sae train``); returns its quality.

    Without ``out_dir`` the SAE goes to the folder keyed by the recipe and the model
    (:func:`igds.modeling.sae.trained_sae_dir`) and is trained only when that folder holds no finished SAE
    (:func:`igds.modeling.sae.ensure_trained_sae`); an explicit ``out_dir`` is always (re)trained. Either
    way one process trains a folder at a time: another waits up to ``wait_s`` seconds. The shipped SAE
    folder is never written.
    """
    import json

    from igds.constants import SAE_QUALITY_FILENAME
    from igds.modeling.sae import ensure_trained_sae

    folder = ensure_trained_sae(model, tokenizer, cfg, sae_training_texts(cfg), model_key_of(model), progress, wait_s,
                                out_dir=out_dir, retrain=out_dir is not None)
    return json.loads((folder / SAE_QUALITY_FILENAME).read_text())


TRAIN_SOURCE = "train"


def train_source_config(source: str) -> SaeTrainConfig:
    """The recipe an SAE source ``train`` or ``train:<layer>:<d_sae>:<k>`` asks for (the default recipe's other
    fields: content tokens, 256-token contexts)."""
    parts = source.split(":")
    if parts[0] != TRAIN_SOURCE or len(parts) not in (1, 4):
        raise ValueError(f"SAE source {source!r}: write 'train' or 'train:<layer>:<d_sae>:<k>', e.g. train:6:2048:32")
    if len(parts) == 1:
        return SaeTrainConfig()
    try:
        layer, d_sae, k = (int(p) for p in parts[1:])
    except ValueError:
        raise ValueError(f"SAE source {source!r}: layer, d_sae and k must be integers") from None
    return SaeTrainConfig(layer=layer, d_sae=d_sae, k=k)


def _resolve_sae_spec(spec: SaeSpec, model, tokenizer, model_key: str, progress: ProgressFn) -> SaeSpec:
    """A ``train`` source becomes the folder of the SAE trained with that recipe on this model (trained once,
    keyed by recipe and model; another process training it is waited for)."""
    import dataclasses

    from igds.modeling.sae import ensure_trained_sae

    if not spec.source.startswith(TRAIN_SOURCE) or Path(spec.source).exists():
        return spec
    cfg = train_source_config(spec.source)
    folder = ensure_trained_sae(model, tokenizer, cfg, sae_training_texts(cfg), model_key, progress)
    return dataclasses.replace(spec, source=str(folder))


def open_workspace(cfg: BootstrapConfig, store: ActivationStore | None = None,
                   progress: ProgressFn | None = None) -> Workspace:
    """Sync the shipped corpus into the store, load model and SAE (the shipped default SAE is
    verified against its checksum; a ``train`` SAE is trained once) and register both, with the specs they
    load from, in the store."""
    progress = progress or null_progress
    store = store or ActivationStore()
    progress(0, 1, "corpus: syncing the demo corpus")
    examples_added = ingest_corpus(store)
    model, tok = load_model(cfg.model, progress)
    if cfg.sae.source == "default" and cfg.model.name_or_path != "default":
        raise ValueError("the default SAE belongs to the default model; choose an SAE for "
                         f"{cfg.model.name_or_path!r} (--sae-source: a sae-lens folder, <release>::<id> or train)")
    mkey = model_key_of(model)
    sae_spec = _resolve_sae_spec(cfg.sae, model, tok, mkey, progress)
    sae, info = load_sae(sae_spec)
    site = check_sae_fits(sae, model, info.site)
    check_quality(info, sae_spec)
    store.register_model(mkey, model_identity(model), model_spec_record(cfg.model))
    store.register_sae(info.key, {**info.to_dict(), "site": site}, info.quality, sae_spec.to_dict())
    import_results_of_record(store, mkey, info.key)
    return Workspace(store=store, model=model, tokenizer=tok, sae=sae, model_key=mkey, sae_key=info.key,
                     site=site, sae_info=info.to_dict(), model_spec=cfg.model,
                     examples_added=examples_added)


def import_results_of_record(store: ActivationStore, model_key: str, sae_key: str) -> list:
    """The committed results of record (``results/filter/``, :mod:`igds.store.record`) of runs on this model and SAE,
    imported into the store when it lacks them, so a fresh clone reads them back instead of measuring them again
    (``IGDS_RECORDS=off``: none; the grid's cells of record are imported by the grid and the Results page,
    :func:`igds.experiment.record.import_grid_records`). Cheap when nothing is new: only the manifests are compared
    with the store; a malformed file is logged and skipped."""
    from igds import settings
    from igds.store.record import import_records

    folder = settings.records_dir()
    if folder is None or not folder.is_dir():
        return []
    return import_records(store, folder, model_key=model_key, sae_key=sae_key, strict=False)


def model_spec_record(spec: ModelSpec) -> dict:
    """What the store keeps of a model spec: a local folder as an absolute path, so other processes find it."""
    p = Path(spec.name_or_path).expanduser()
    path = str(p.resolve()) if spec.name_or_path != "default" and p.exists() else spec.name_or_path
    return {**spec.to_dict(), "name_or_path": path}


IDENTITY = "identity"


def workspace_config(store: ActivationStore, **overrides) -> BootstrapConfig:
    """The workspace's :class:`BootstrapConfig`: its chosen model and SAE (:func:`choose_identity`; the
    default model and shipped SAE until one is chosen), some fields replaced (e.g. ``tasks``)."""
    ident = store.get_setting(IDENTITY) or {}
    chosen = {"model": ModelSpec.from_dict(ident["model"]), "sae": SaeSpec.from_dict(ident["sae"])} if ident else {}
    return BootstrapConfig(**{**chosen, **overrides})


def default_workspace(store: ActivationStore | None = None, progress: ProgressFn | None = None,
                      **overrides) -> Workspace:
    """The workspace's current model and SAE (:func:`workspace_config`), some fields replaced. Every caller
    without a config or a run of its own opens the workspace through here."""
    store = store or ActivationStore()
    return open_workspace(workspace_config(store, **overrides), store, progress)


def resolve_workspace(store: ActivationStore, *, run_id: str | None = None, model_key: str | None = None,
                      sae_key: str | None = None, progress: ProgressFn | None = None) -> Workspace:
    """The one resolver: the model, SAE and site a stored run (or a model / SAE key pair, e.g. a selection's
    lineage) was made with, loaded again from the specs the store recorded for them. Pages, jobs, the CLI,
    fine-tuning, evaluation, amplification, highlights and steering all load through here.

    Falls back to the workspace's current identity for keys recorded without a spec (runs made before specs
    were stored), and refuses when that identity is another model or SAE.

    Raises:
        ValueError: an unknown run, or a run whose model / SAE cannot be loaded again.
    """
    if run_id is not None:
        run = store.run(run_id)
        if run is None:
            raise ValueError(f"no run {run_id!r} in {store.path}")
        model_key, sae_key = run.get("model_key"), run.get("sae_key")
    mspec, sspec = store.identity_specs(model_key, sae_key)
    cfg = workspace_config(store)
    if mspec is not None and sspec is not None:
        cfg = BootstrapConfig(model=ModelSpec.from_dict(mspec), sae=SaeSpec.from_dict(sspec))
    ws = open_workspace(cfg, store, progress)
    wanted = {"model": model_key, "SAE": sae_key}
    got = {"model": ws.model_key, "SAE": ws.sae_key}
    wrong = [k for k in wanted if wanted[k] and wanted[k] != got[k]]
    if wrong and (mspec is None or sspec is None):
        raise ValueError(f"the {' and '.join(wrong)} of {run_id or 'this selection'} ({wanted}) are not recorded "
                         f"with a spec and differ from the workspace's current ones ({got}); choose them again "
                         "with 'igds workspace use'")
    return ws


def identity_quality(ws: Workspace, task: str, n_examples: int = 64, n_tokens: int = 20_000,
                     progress: ProgressFn | None = None) -> dict:
    """How well the workspace's SAE reconstructs its model on ``task``'s content tokens (probe items): explained
    variance, cosine, L0, dead share, measured now."""
    from igds.modeling.sae import collect_activations, reconstruction_quality
    from igds.workflow.catalog import task_split

    examples = task_split(ws.store, task, "probe")[:n_examples]
    if not examples:
        raise ValueError(f"task {task!r} has no probe items in this workspace")
    items = encode_examples(ws.tokenizer, examples, 256)
    acts = collect_activations(ws.model, ws.site, items, n_tokens, ws.tokenizer.pad_token_id, progress=progress,
                               positions="content")
    return {**reconstruction_quality(ws.sae, acts), "task": task, "n_examples": len(examples)}


def choose_identity(store: ActivationStore, model: ModelSpec, sae: SaeSpec, task: str | None = None,
                    progress: ProgressFn | None = None) -> dict:
    """Make ``model`` + ``sae`` the workspace's identity after validating them: load both, check the SAE's width
    and hook site against the model, and (with ``task``) measure the explained variance on the task's content
    tokens, refusing one below ``sae.min_explained_variance``.

    Returns:
        model_key, sae_key, site, model and SAE names and the measured quality.

    Raises:
        ModelLoadError, SaeError, ValueError: naming what does not fit; the identity is left unchanged.
    """
    from igds.modeling.sae import SaeError

    ws = open_workspace(BootstrapConfig(model=model, sae=sae), store, progress)
    quality = identity_quality(ws, task, progress=progress) if task else {}
    ev = quality.get("explained_variance")
    if ev is not None and ev < sae.min_explained_variance:
        raise SaeError(f"SAE {ws.sae_info['name']} explains {ev:.3f} of the variance of {ws.model.igds_name} at "
                       f"{ws.site} on {task}'s content tokens (< {sae.min_explained_variance}); pick another SAE")
    sae_record = store.identity_specs(None, ws.sae_key)[1] or sae.to_dict()
    store.set_setting(IDENTITY, {"model": model_spec_record(model), "sae": sae_record})
    return {"model_key": ws.model_key, "sae_key": ws.sae_key, "site": ws.site, "model": ws.model.igds_name,
            "sae": ws.sae_info["name"], "d_model": int(ws.model.config.hidden_size),
            "d_sae": int(ws.sae.cfg.d_sae), "quality": quality}


LOOK, TASK_POOL, GENERAL_POOL = "probe, reference, dev", "task pool", "general records"
EXTRACTION_GROUPS = (LOOK, TASK_POOL, GENERAL_POOL)
"""What a task's extraction covers, in the order a first run extracts it: what recall and the filter read (probe,
reference and dev items), the task's own pool (its ``train`` items) and the shipped general records (the mixed
pool's other half)."""


def extraction_groups(store: ActivationStore, tasks: Sequence[str], pool_setting: str = "mixed") -> dict[str, list]:
    """:func:`extraction_examples` by :data:`EXTRACTION_GROUPS` (each example in the first group that names it; the
    general records only for the ``mixed`` pool)."""
    from igds.data.corpus import check_pool_setting, reference_set
    from igds.workflow.catalog import task_split

    check_pool_setting(pool_setting)
    seen: set[str] = set()
    out: dict[str, list] = {g: [] for g in EXTRACTION_GROUPS}
    for task in tasks:
        parts = {LOOK: [*task_split(store, task, "probe"), *reference_set(10**9, task=task),
                        *task_split(store, task, "dev")],
                 TASK_POOL: [*task_split(store, task, "train"), *noisy_items(store, task, pool_setting)],
                 GENERAL_POOL: task_split(store, GENERAL, "train") if pool_setting == "mixed" else []}
        for group, examples in parts.items():
            for ex in examples:
                if ex.id not in seen:
                    seen.add(ex.id)
                    out[group].append(ex)
    return out


def noisy_items(store: ActivationStore, task: str, pool_setting: str) -> list:
    """The corrupted items of the task's noisy pool (built when missing) for the ``noisy`` setting; else none."""
    if pool_setting != "noisy":
        return []
    from igds.workflow.catalog import task_split

    ensure_noisy_pool(store, task)
    return task_split(store, task, NOISY_SPLIT)


def extraction_examples(store: ActivationStore, tasks: Sequence[str], pool_setting: str = "mixed") -> list:
    """Examples a task needs activations for: its probe and dev splits, the reference split (recall's
    contrast) and its candidate pool (the task's ``train`` items, plus the general set when ``mixed``), as
    the store holds them (shipped and workspace tasks alike)."""
    return [ex for group in extraction_groups(store, tasks, pool_setting).values() for ex in group]


def extract_tasks(ws: Workspace, tasks: Sequence[str], cfg: ExtractConfig, pool_setting: str = "mixed",
                  progress: ProgressFn | None = None, max_shards: int | None = None,
                  executor: ExecutorConfig | None = None, groups: Sequence[str] = EXTRACTION_GROUPS) -> ExtractResult:
    """Extract (resumably) every example the given tasks need into the workspace's extraction run.

    Args:
        executor: where the shards are computed; None: the workspace's executor setting (local by default).
        groups: only these of :data:`EXTRACTION_GROUPS` now (a first run extracts what recall reads first); the run
            stays ``partial`` until every group is stored.
    """
    executor = executor or executor_config(ws.store)
    by_group = extraction_groups(ws.store, tasks, pool_setting)
    examples = [ex for group in by_group.values() for ex in group]
    encoded = {ex.id: it for ex, it in zip(examples, encode_examples(ws.tokenizer, examples, UNCUT), strict=True)}
    fits = {i for i, it in encoded.items() if len(it.input_ids) <= cfg.max_length}  # longer: dropped, never cut
    run_id = ws.extraction_run_id(cfg)
    ws.store.start_run(run_id, "extract", {"extract": cfg.to_dict(), "site": ws.site}, ws.model_key, ws.sae_key,
                       n_total=len(fits))
    if len(fits) < len(examples):
        ws.store.set_run_dropped(run_id, [i for i in encoded if i not in fits])
        log.warning("extraction %s: %d of %d examples are longer than %d tokens and are dropped (never cut)",
                    run_id, len(examples) - len(fits), len(examples), cfg.max_length)
    wanted = [ex for g in EXTRACTION_GROUPS if g in groups for ex in by_group[g] if ex.id in fits]
    items = [encoded[ex.id] for ex in wanted]
    res = run_extraction(ws.store, run_id, items, cfg, ws.tokenizer.pad_token_id, ws.pool(executor), progress,
                         max_shards=max_shards)
    if len(wanted) < len(fits):
        n_stored = len(ws.store.token_counts(run_id, sorted(fits)))
        ws.store.update_run(run_id, status="done" if n_stored >= len(fits) else "partial", n_done=n_stored)
    return res


def weights_dtype(model) -> str:
    """The dtype of a loaded model's weights as a ``ModelSpec.dtype`` (``float32``, ``bfloat16``...): Ray workers
    load the same weights the driver's run key was made with."""
    return str(next(model.parameters()).dtype).removeprefix("torch.")
