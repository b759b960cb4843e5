"""The model worker every pool runs: one model + SAE (loaded from their stored specs, or the ones this process
holds) serving the stages' pure per-item functions.

A :class:`ModelWorker` never touches the store. Extraction shards are written to their Parquet files under their
content keys (atomically) and returned; interventions, NLL tables and evaluations return their rows. The driver
owns every store write (:mod:`igds.executor.pool`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from igds.config import ConfigBase
from igds.progress import ProgressFn, null_progress


@dataclass(frozen=True, kw_only=True)
class WorkerSpec(ConfigBase):
    """What a model actor loads.

    Args:
        model: the ``ModelSpec`` dict the store recorded for the run's model (``models.spec``).
        sae: the ``SaeSpec`` dict the store recorded for the run's SAE (``saes.spec``); None for stages without one.
        site: the SAE's hook site on the model.
        dtype: the weights' dtype (``float32``...), pinned to what the driver's run used; None keeps the spec's.
        adapter: a LoRA adapter folder (on a filesystem every worker reads) wrapped around the model: evaluation
            calls then run the tuned model, or its base weights with the adapter disabled.
    """

    model: dict = field(default_factory=dict)
    sae: dict | None = None
    site: str = ""
    dtype: str | None = None
    adapter: str | None = None


def spec_for(store, model_key: str | None, sae_key: str | None, site: str = "", dtype: str | None = None,
             need_sae: bool = True) -> WorkerSpec:
    """The :class:`WorkerSpec` of a stored model / SAE key pair (what ``resolve_workspace`` would load).

    Raises:
        ValueError: the store has no spec for the model (or the SAE), so a worker could not load it.
    """
    mspec, sspec = store.identity_specs(model_key, sae_key)
    if mspec is None or (need_sae and sspec is None):
        what = "model" if mspec is None else "SAE"
        raise ValueError(f"the {what} {model_key if mspec is None else sae_key!r} has no stored spec, so Ray workers "
                         "cannot load it; open the workspace once with this model and SAE ('igds workspace use') "
                         "or use the local executor")
    return WorkerSpec(model=mspec, sae=sspec if need_sae else None, site=site, dtype=dtype)


class ModelWorker:
    """A model worker: a model (+ SAE) serving the stages' pure per-item functions. Built either from stored specs
    (:meth:`load`, in a remote pool's worker process) or around objects this process already holds
    (:meth:`serving`, the local pool). Streaming methods are generators: a local pool hands their events to the
    driver as they come, a remote one sends the list back when the item is done."""

    def __init__(self, spec: dict | None = None, cpus: float = 1.0, gpus: float = 0.0):
        self.spec = WorkerSpec.from_dict(spec or {})
        self.site = self.spec.site
        self.device = "cuda" if gpus > 0 else "cpu"
        self.threads = max(1, math.floor(cpus))
        self.model = self.tokenizer = self.sae = None
        self.cache = None  # the interventions' dev prefix (prepare_dev)
        self.peft = None  # a LoRA-wrapped model (load_adapter, or a PeftModel served as it is)
        self.progress = null_progress  # the stage's, in a local pool: fine-grained progress of long items

    @classmethod
    def serving(cls, model, tokenizer, sae, site: str, progress: ProgressFn | None = None) -> ModelWorker:
        """A worker around a model (a ``PeftModel`` too), tokenizer and SAE this process already holds."""
        worker = cls()
        worker.model, worker.tokenizer, worker.sae, worker.site = model, tokenizer, sae, site
        if hasattr(model, "disable_adapter"):
            worker.peft = model
        worker.progress = progress or null_progress
        return worker

    def describe(self) -> dict:
        """This worker's process id, device and weights' dtype."""
        p = next(self.model.parameters())
        return {"pid": os.getpid(), "device": str(p.device.type), "dtype": str(p.dtype)}

    def load(self) -> dict:
        """Load the model (and SAE) from the specs; returns :meth:`describe`. Errors name the spec."""
        import dataclasses

        import torch

        from igds.modeling.load import ModelSpec, load_model
        from igds.modeling.sae import SaeSpec, check_sae_fits, load_sae

        torch.set_num_threads(self.threads)
        mspec = ModelSpec.from_dict(self.spec.model)
        mspec = dataclasses.replace(mspec, device=self.device, dtype=self.spec.dtype or mspec.dtype)
        self.model, self.tokenizer = load_model(mspec)
        if self.spec.sae is not None:
            self.sae, info = load_sae(SaeSpec.from_dict(self.spec.sae), device=self.device)
            self.site = self.spec.site or info.site
            check_sae_fits(self.sae, self.model, self.site)
        if self.spec.adapter:
            from igds.training.evaluate import load_adapter

            self.peft = load_adapter(self.model, self.spec.adapter)
        return self.describe()

    # -- extraction -------------------------------------------------------------------------------------------

    def extract(self, items: list, cfg: dict, pad_id: int, acts_path: str, stats_path: str) -> Iterator[tuple]:
        """One shard: :func:`igds.method.extract.process_batch` over its length batches, written to its two files
        (a shard an earlier, killed attempt already wrote is read back). Yields ``("batch", n examples)`` per
        batch, then ``("shard", acts, stats)``."""
        import pyarrow as pa

        from igds.method.extract import ExtractConfig, ShardPlan, shard_batches

        plan = ShardPlan("", items, Path(acts_path), Path(stats_path))
        if plan.written:
            yield ("shard", *plan.read())
            return
        acts, stats = [], []
        for n, a, s in shard_batches(self.model, self.sae, self.site, items, ExtractConfig.from_dict(cfg), pad_id):
            acts.append(a)
            stats.append(s)
            yield ("batch", n)
        acts, stats = pa.concat_tables(acts), pa.concat_tables(stats)
        plan.write(acts, stats)
        yield ("shard", acts, stats)

    # -- interventions ----------------------------------------------------------------------------------------

    def prepare_dev(self, items: list, cfg: dict, pad_id: int) -> str:
        """Cache the dev prefix (:func:`igds.method.intervene.prepare_dev`); returns the numeric mode it runs in
        (:func:`igds.method.intervene.compute_mode`, part of the run's key)."""
        from igds.method.intervene import InterventionConfig, compute_mode, prepare_dev

        self.icfg = InterventionConfig.from_dict(cfg)
        self.cache = prepare_dev(self.model, self.site, items, pad_id, self.icfg)
        return compute_mode(self.model, self.icfg)

    def attribution(self, mean_act):
        """The attribution screen of every feature on the cached dev prefix."""
        from igds.method.intervene import attribution_estimates

        return attribution_estimates(self.model, self.sae, self.cache, mean_act, edit_mode=self.icfg.edit_mode)

    def firing(self):
        """Per SAE feature: dev items it fires on in the edit scope and its response share of firing positions."""
        from igds.method.intervene import feature_firing

        return feature_firing(self.sae, self.cache)

    def null_size(self, candidates: list[int], mean_act) -> float:
        """The global null directions' edit size from every candidate's α = 1 edit."""
        from igds.method.intervene import null_edit_size_of

        return null_edit_size_of(self.sae, self.cache, candidates, mean_act, self.icfg)

    def null_elements(self, effect_id: str, todo, size: float, mean_act, span=None) -> Iterator[tuple]:
        """Null elements (rows of the null plan) on dev rows ``span`` → ``(null_effects rows, null_summary row)`` per
        element."""
        from igds.method.intervene import run_null_elements

        yield from run_null_elements(self.model, self.sae, self.cache, effect_id, todo, size, mean_act, self.icfg,
                                     span)

    def feature_effects(self, effect_id: str, features: list[int], kinds: list, mean_act, span=None) -> Iterator[tuple]:
        """Candidate features, each with the jobs ``kinds`` (``(kind, alpha)`` pairs), on dev rows ``span`` →
        ``(feature_effects rows, effect_summary rows)`` per feature."""
        from igds.method.intervene import run_feature_effects

        jobs = [(f, kind, alpha) for f in features for kind, alpha in kinds]
        yield from run_feature_effects(self.model, self.sae, self.cache, effect_id, jobs, mean_act, self.icfg, span)

    # -- NLL tables -------------------------------------------------------------------------------------------

    def nll_table(self, examples: list, max_length: int, batch_tokens: int):
        """:func:`igds.modeling.nll.nll_table` of some examples (``example_id, nll_cond, nll_uncond``)."""
        from igds.modeling.nll import nll_table

        return nll_table(self.model, self.tokenizer, examples, max_length=max_length, batch_tokens=batch_tokens,
                         progress=self.progress)

    # -- evaluation -------------------------------------------------------------------------------------------

    def _eval_model(self, base: bool):
        """``(model, context)`` an evaluation call runs under: the tuned model, or the base weights."""
        from contextlib import nullcontext

        peft = self.peft
        if peft is None:
            if not base:
                raise ValueError("this actor has no adapter loaded (load_adapter): only base=True evaluates")
            return self.model, nullcontext()
        return peft, (peft.disable_adapter() if base else nullcontext())

    def eval_generate(self, batches: list, gen_cfg, base: bool) -> list:
        """Generation batches (each a list of prompt ids, as
        :func:`igds.training.evaluate.generation_batches` cut them) → their decoded continuations, batch by batch
        (:func:`igds.training.evaluate.generate_batch`)."""
        import torch

        from igds.training.evaluate import generate_batch

        model, ctx = self._eval_model(base)
        model.eval()
        with ctx, torch.no_grad():
            return [generate_batch(model, self.tokenizer, prompts, gen_cfg) for prompts in batches]

    def eval_nll(self, batches: list, pad_id: int, batch_tokens: int, base: bool) -> dict:
        """Reference-NLL batches (``length_batches`` of the encoded examples) → ``{example_id: nll}``
        (:func:`igds.modeling.nll.response_nll`, each batch on its own: the driver's batches, unchanged)."""
        import torch

        from igds.modeling.nll import response_nll
        from igds.training.evaluate import base_transformer

        model, ctx = self._eval_model(base)
        out: dict = {}
        with ctx, torch.no_grad():
            for batch in batches:
                out.update(response_nll(base_transformer(model), batch, pad_id, batch_tokens))
        return out

    def eval_activation(self, batches: list, cfg: dict, pad_id: int, features: list[int], base: bool) -> list:
        """Feature-activation batches → one ``{example_id: {feature: a_j(s)}}`` per batch
        (:func:`igds.training.evaluate.activation_batch`)."""
        import torch

        from igds.method.extract import ExtractConfig
        from igds.training.evaluate import activation_batch, base_transformer

        model, ctx = self._eval_model(base)
        acfg = ExtractConfig.from_dict(cfg)
        with ctx, torch.no_grad():
            return [activation_batch(base_transformer(model), self.sae, self.site, batch, acfg, pad_id, features)
                    for batch in batches]
