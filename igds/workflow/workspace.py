"""Wire the stages together over one workspace: corpus → model → SAE → extraction → store.

Everything here is idempotent: a stage whose content key is already stored is skipped, so a second
``bootstrap`` finishes in seconds and an interrupted one resumes where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from igds import settings
from igds.config import ConfigBase
from igds.method.extract import ExtractConfig, ExtractResult, run_extraction
from igds.modeling.encoding import encode_examples
from igds.modeling.load import ModelSpec, load_model, model_identity, model_key_of
from igds.modeling.sae import (
    SaeSpec,
    SaeTrainConfig,
    check_quality,
    check_sae_fits,
    default_sae_dir,
    load_sae,
    train_sae,
)
from igds.progress import ProgressFn, null_progress, scaled
from igds.store import ActivationStore


@dataclass(frozen=True, kw_only=True)
class BootstrapConfig(ConfigBase):
    """What ``igds bootstrap`` prepares.

    Args:
        tasks: tasks whose probe, dev and pool examples are extracted.
        pool_setting: ``mixed`` (task train + general set) or ``task-only``.
        model: the language model.
        sae: the SAE (``default`` is trained here on first use).
        sae_train: how the default SAE is trained.
        extract: how activations are extracted.
    """

    tasks: tuple[str, ...] = field(default=("summarization",), metadata={"help": "tasks to extract"})
    pool_setting: str = field(default="mixed", metadata={"help": "mixed | task-only"})
    model: ModelSpec = field(default_factory=ModelSpec)
    sae: SaeSpec = field(default_factory=SaeSpec)
    sae_train: SaeTrainConfig = field(default_factory=SaeTrainConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)


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


def sae_training_examples(n: int, seed: int = 0) -> list:
    """A deterministic mix of training-split examples of every task plus general text."""
    import random

    from igds.data.corpus import load_corpus

    pool = [e for e in load_corpus() if e.split == "train"]
    pool.sort(key=lambda e: e.id)
    random.Random(seed).shuffle(pool)
    return pool[:n]


def open_workspace(cfg: BootstrapConfig, store: ActivationStore | None = None,
                   progress: ProgressFn | None = None) -> Workspace:
    """Sync the shipped corpus into the store, load model and SAE (training the default SAE on first
    use) and register both in the store."""
    progress = progress or null_progress
    store = store or ActivationStore()
    progress(0, 1, "corpus: syncing the demo corpus")
    examples_added = ingest_corpus(store)
    model, tok = load_model(cfg.model, progress)
    if cfg.sae.source == "default" and not (default_sae_dir() / "cfg.json").exists():
        if cfg.model.name_or_path != "default":
            raise ValueError("the default SAE is trained on the default model; pass --sae for another model")
        # ~3 examples per 400 tokens: collect enough sequences for the token budget
        n_ex = max(64, cfg.sae_train.n_tokens // 60)
        items = encode_examples(tok, sae_training_examples(n_ex, cfg.sae_train.seed), cfg.sae_train.max_length)
        train_sae(model, items, cfg.sae_train, default_sae_dir(), tok.pad_token_id, progress)
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
    """Examples a task needs activations for: its probe and dev splits plus its candidate pool."""
    from igds.data.corpus import dev_set, probe_set, task_pool

    seen, out = set(), []
    for task in tasks:
        for ex in [*probe_set(task), *dev_set(task), *task_pool(task, setting=pool_setting)]:
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


def bootstrap(cfg: BootstrapConfig | None = None, store: ActivationStore | None = None,
              progress: ProgressFn | None = None) -> dict:
    """Prepare the offline default workspace: corpus in the store, converted model, trained SAE,
    extracted activations for ``cfg.tasks``. Cached steps are skipped.

    Returns:
        a summary dict (keys, counts, timings, SAE quality).
    """
    cfg = cfg or BootstrapConfig()
    progress = progress or null_progress
    settings.apply_offline_env()
    t0 = time.perf_counter()
    ws = open_workspace(cfg, store or ActivationStore(), scaled(progress, 0, 60, 100))
    res = extract_tasks(ws, cfg.tasks, cfg.extract, cfg.pool_setting, scaled(progress, 60, 40, 100))
    progress(100, 100, "bootstrap: done")
    return {"examples_added": ws.examples_added, "model_key": ws.model_key, "sae_key": ws.sae_key, "site": ws.site,
            "run_id": res.run_id, "extracted_examples": res.n_examples, "new_examples": res.n_new,
            "rows": res.n_rows, "extract_seconds": round(res.seconds, 1),
            "sae_quality": {k: v for k, v in ws.sae_info["quality"].items() if k != "config"},
            "seconds": round(time.perf_counter() - t0, 1)}
