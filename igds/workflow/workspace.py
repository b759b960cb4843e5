"""Wire the stages together over one workspace: corpus → model → SAE → extraction → store.

Everything here is idempotent: a stage whose content key is already stored is skipped, so a second
``bootstrap`` finishes in seconds and an interrupted one resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from igds.config import ConfigBase
from igds.method.extract import ExtractConfig, ExtractResult, run_extraction
from igds.method.intervene import InterventionConfig
from igds.method.recall import RecallConfig
from igds.modeling.encoding import encode_examples
from igds.modeling.load import ModelSpec, load_model, model_identity, model_key_of
from igds.modeling.sae import (
    SaeSpec,
    SaeTrainConfig,
    check_quality,
    check_sae_fits,
    load_sae,
    retrained_sae_dir,
    train_sae,
)
from igds.progress import ProgressFn, null_progress
from igds.store import ActivationStore


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
    """

    tasks: tuple[str, ...] = field(default=("summarization",), metadata={"help": "tasks to extract"})
    pool_setting: str = field(default="mixed", metadata={"help": "mixed | task-only"})
    model: ModelSpec = field(default_factory=ModelSpec)
    sae: SaeSpec = field(default_factory=SaeSpec)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    method_stages: bool = field(default=True, metadata={"help": "also run recall and interventions (first task)"})
    recall: RecallConfig = field(default_factory=RecallConfig)
    intervene: InterventionConfig = field(default_factory=InterventionConfig)


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


def open_workspace(cfg: BootstrapConfig, store: ActivationStore | None = None,
                   progress: ProgressFn | None = None) -> Workspace:
    """Sync the shipped corpus into the store, load model and SAE (the shipped default SAE is
    verified against its checksum) and register both in the store."""
    progress = progress or null_progress
    store = store or ActivationStore()
    progress(0, 1, "corpus: syncing the demo corpus")
    examples_added = ingest_corpus(store)
    model, tok = load_model(cfg.model, progress)
    if cfg.sae.source == "default" and cfg.model.name_or_path != "default":
        raise ValueError("the default SAE belongs to the default model; pass --sae-source for another model")
    sae, info = load_sae(cfg.sae)
    site = check_sae_fits(sae, model, info.site)
    check_quality(info, cfg.sae)
    mkey = model_key_of(model)
    store.register_model(mkey, model_identity(model))
    store.register_sae(info.key, {**info.to_dict(), "site": site}, info.quality)
    return Workspace(store=store, model=model, tokenizer=tok, sae=sae, model_key=mkey, sae_key=info.key,
                     site=site, sae_info=info.to_dict(), model_spec=cfg.model,
                     examples_added=examples_added)


def default_workspace(store: ActivationStore | None = None, progress: ProgressFn | None = None,
                      **overrides) -> Workspace:
    """The default workspace: :func:`open_workspace` of ``BootstrapConfig()``, some fields replaced
    (e.g. ``tasks``). Every caller without a config of its own opens the workspace through here."""
    return open_workspace(BootstrapConfig(**overrides), store, progress)


def extraction_examples(tasks: Sequence[str], pool_setting: str = "mixed") -> list:
    """Examples a task needs activations for: its probe and dev splits, the reference split (recall's
    contrast) and its candidate pool."""
    from igds.data.corpus import dev_set, probe_set, reference_set, task_pool

    seen, out = set(), []
    for task in tasks:
        for ex in [*probe_set(task), *reference_set(10**9, task=task), *dev_set(task),
                   *task_pool(task, setting=pool_setting)]:
            if ex.id not in seen:
                seen.add(ex.id)
                out.append(ex)
    return out


def extract_tasks(ws: Workspace, tasks: Sequence[str], cfg: ExtractConfig, pool_setting: str = "mixed",
                  progress: ProgressFn | None = None, max_shards: int | None = None) -> ExtractResult:
    """Extract (resumably) every example the given tasks need into the workspace's extraction run."""
    examples = extraction_examples(tasks, pool_setting)
    run_id = ws.extraction_run_id(cfg)
    ws.store.start_run(run_id, "extract", {"extract": cfg.to_dict(), "site": ws.site}, ws.model_key, ws.sae_key,
                       n_total=len(examples))
    items = encode_examples(ws.tokenizer, examples, cfg.max_length)
    return run_extraction(ws.store, run_id, ws.model, ws.sae, ws.site, items, cfg, ws.tokenizer.pad_token_id,
                          progress, max_shards=max_shards)
