"""The IGDS method on a workspace, stage by stage: recall → interventions → selection (IGDS or a
baseline). Each function reads its inputs from the store, writes its outputs back and is resumable."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from igds.data.corpus import reference_set
from igds.executor.config import ExecutorConfig, executor_config
from igds.executor.intervene import Candidates, measure_effects
from igds.executor.nll import nll_table
from igds.method.arms import FILTER_STAGE, FilterArm
from igds.method.config import QuickLookConfig
from igds.method.controls import stratified_quartile, task_first
from igds.method.extract import ExtractConfig
from igds.method.intervene import (
    EffectResult,
    InterventionConfig,
    compute_mode,
    effect_matrices,
    fstar_bootstrap,
    load_effects,
    measured_items,
    primary_amplification,
)
from igds.method.pool import pool_fingerprint, pool_frame, pool_records
from igds.method.presets import DEFAULT_PRESET, MethodPreset
from igds.method.quicklook import QUICK_LOOK, QuickLook, load_quick_look
from igds.method.recall import RecallConfig, RecallResult, ensure_logit_lens, recall_features
from igds.method.resonance import ResonanceConfig, ResonanceMatrix, load_resonance_matrix
from igds.method.selection import Overrides, SelectionConfig, load_overrides, save_selection, select_from_ranking
from igds.modeling.encoding import encode_examples
from igds.progress import ProgressFn
from igds.scope import STAGE_LENGTH, UNCUT, PoolSpec
from igds.store import ActivationStore
from igds.workflow.catalog import task_split
from igds.workflow.workspace import Workspace


def run_recall(ws: Workspace, task: str, cfg: RecallConfig, extract_cfg: ExtractConfig,
               preset: str = DEFAULT_PRESET) -> RecallResult:
    """Frequency recall of ``task`` over the workspace's extraction run; also stores the logit lens.

    Args:
        preset: the method preset the config came from, recorded with the run (the dashboard follows
            ``default`` runs).
    """
    ensure_logit_lens(ws.store, ws.sae_key, ws.model, ws.tokenizer, ws.sae)
    probe = [e.id for e in task_split(ws.store, task, "probe")]
    ref = [e.id for e in reference_set(cfg.n_reference, cfg.seed, task=task)]
    return recall_features(ws.store, ws.extraction_run_id(extract_cfg), task, probe, ref, cfg, preset=preset)


def current_recall(ws: Workspace, task: str, extract_cfg: ExtractConfig, preset: str = DEFAULT_PRESET) -> RecallResult:
    """The task's latest stored recall under a method preset, or a fresh one with the preset's config."""
    from igds.method.presets import method_preset
    from igds.method.recall import load_recall

    prev = latest_run(ws.store, "recall", task, preset)
    if prev:
        return load_recall(ws.store, prev["run_id"])
    return run_recall(ws, task, method_preset(preset).recall, extract_cfg, preset=preset)


def effect_id_for(ws: Workspace, recall: RecallResult, dev_ids: list[str], cfg: InterventionConfig,
                  model) -> str:
    """Content key of an intervention run: config, recall, model, SAE, dev set, and the numerics it runs
    with (:func:`igds.method.intervene.compute_mode`, e.g. ``fp32`` or ``fp32+bf16-autocast``, and the
    weights' dtype), so results of another precision are never mixed into a resumed run.

    Args:
        model: the model the run uses (``ws.fp32_model()``).
    """
    weights = str(next(model.parameters()).dtype).removeprefix("torch.")
    return cfg.stage_key(recall.recall_id, ws.model_key, ws.sae_key,
                         hashlib.sha256("\n".join(sorted(dev_ids)).encode()).hexdigest(),
                         f"compute={compute_mode(model, cfg)}", f"weights={weights}")


def _recall_vector(recall: RecallResult, d_sae: int, column: str, fill: float) -> np.ndarray:
    """One recall-table column as a ``[d_sae]`` vector indexed by feature (``fill`` where it has no value)."""
    out = np.full(d_sae, fill)
    t = recall.table.dropna(subset=[column])
    out[t.feature.to_numpy(dtype=int)] = t[column].to_numpy()
    return out


def candidates_of(recall: RecallResult, d_sae: int) -> Candidates:
    """A recall run's candidates with their ā and token density over all ``d_sae`` features (what interventions
    measure)."""
    return Candidates(recall.candidates, mean_activation_vector(recall, d_sae), token_density_vector(recall, d_sae))


def mean_activation_vector(recall: RecallResult, d_sae: int) -> np.ndarray:
    """ā for every feature from the recall table (NaN where the feature never fired on probe)."""
    return _recall_vector(recall, d_sae, "mean_act_task", np.nan)


def token_density_vector(recall: RecallResult, d_sae: int) -> np.ndarray:
    """Token density ``tok_freq_task`` of every feature on probe from the recall table (0 where it never
    fired): what the density-matched null matches candidates on."""
    return _recall_vector(recall, d_sae, "tok_freq_task", 0.0)


def run_interventions(ws: Workspace, task: str, recall: RecallResult, cfg: InterventionConfig,
                      progress: ProgressFn | None = None, max_features: int | None = None,
                      preset: str = DEFAULT_PRESET, executor: ExecutorConfig | None = None,
                      arm: FilterArm | None = None) -> EffectResult:
    """Measure the null, then amplify / ablate every recall candidate on the task's dev split (resumable).

    Runs on fp32 weights (bf16 autocast on CUDA, see ``InterventionConfig.precision``).

    Args:
        preset: the method preset the config came from, recorded with the run.
        executor: where the interventions run; None: the workspace's executor setting (local by default).
        arm: measure the ``filter-only`` ablation arm's random features (:class:`igds.method.arms.FilterArm`)
            instead of the recall's candidates, with ``recall``'s ā and densities (the candidates left out of the
            null): a run of its own, keyed by the recall run's key plus :attr:`FilterArm.key` and of stage
            :data:`~igds.method.arms.FILTER_STAGE`, so it resumes by itself and is never read back as the task's F*.
    """
    executor = executor or executor_config(ws.store)
    dev = task_split(ws.store, task, "dev")
    model = ws.fp32_model()
    eid = effect_id_for(ws, recall, [e.id for e in dev], cfg, model)
    cands = candidates_of(recall, int(ws.sae.cfg.d_sae))
    stage, what = "intervene", {"recall_id": recall.recall_id}
    if arm is not None:
        cands = Candidates(list(arm.features), cands.mean_act, arm.null_density(cands.density))
        eid, stage, what = f"{eid}-{arm.key}", FILTER_STAGE, {"arm": arm.to_dict(), "density_recall_id":
                                                               recall.recall_id}
    ws.store.start_run(eid, stage, {"intervene": cfg.to_dict(), "task": task, **what,
                                    "compute": compute_mode(model, cfg), "method_preset": preset},
                       ws.model_key, ws.sae_key, n_total=len(cands.features), keep_done=True)
    items = encode_examples(ws.tokenizer, dev, UNCUT)  # dev_sample drops (never cuts) items over cfg.max_length
    return measure_effects(ws.store, eid, items, cands, cfg, ws.tokenizer.pad_token_id,
                           ws.pool(executor, model), progress, max_features)


def run_quick_look(ws: Workspace, task: str, recall: RecallResult, cfg: InterventionConfig, look: QuickLookConfig,
                   progress: ProgressFn | None = None, executor: ExecutorConfig | None = None) -> QuickLook:
    """The quick look at ``recall``'s candidates (:mod:`igds.method.quicklook`): ``look.top`` of them at α = 1 against
    a small null, with ``cfg``'s edits and dev items, as a run of stage ``quicklook`` (resumable; never F*)."""
    executor = executor or executor_config(ws.store)
    dev = task_split(ws.store, task, "dev")
    model = ws.fp32_model()
    icfg = look.intervention(cfg)
    eid = effect_id_for(ws, recall, [e.id for e in dev], icfg, model) + f"-{QUICK_LOOK}-{look.stage_key()[:8]}"
    ws.store.start_run(eid, QUICK_LOOK, {"intervene": icfg.to_dict(), "quick_look": look.to_dict(), "task": task,
                                         "recall_id": recall.recall_id, "compute": compute_mode(model, icfg)},
                       ws.model_key, ws.sae_key, n_total=min(look.top, len(recall.candidates)), keep_done=True)
    items = encode_examples(ws.tokenizer, dev, UNCUT)
    measure_effects(ws.store, eid, items, candidates_of(recall, int(ws.sae.cfg.d_sae)), icfg,
                    ws.tokenizer.pad_token_id, ws.pool(executor, model), progress, max_features=look.top)
    ws.store.update_run(eid, status="done", message=f"{look.top} candidates at alpha = 1")
    return load_quick_look(ws.store, eid, look)


def latest_quick_look(store: ActivationStore, task: str) -> QuickLook | None:
    """The task's latest finished quick look, or None."""
    df = store.query_df("SELECT run_id FROM runs WHERE stage = ? AND status = 'done' AND "
                        "json_extract_string(config, '$.task') = ? ORDER BY updated DESC LIMIT 1", [QUICK_LOOK, task])
    if df.empty:
        return None
    run = store.run(df.run_id.iloc[0])
    return load_quick_look(store, run["run_id"], QuickLookConfig.from_dict(run["config"]["quick_look"]))


def prepare_method(ws: Workspace, task: str, preset: MethodPreset, extract_cfg: ExtractConfig,
                   progress: ProgressFn | None = None) -> EffectResult:
    """Recall and interventions of ``task`` with a method preset's configs: the preset's validated features
    (content-addressed, so a finished run is read back rather than measured again)."""
    recall = run_recall(ws, task, preset.recall, extract_cfg, preset=preset.name)
    return run_interventions(ws, task, recall, preset.intervene, progress, preset=preset.name)


def fstar_stability(store: ActivationStore, effect_id: str, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """How stable each candidate's ``F*`` membership is under resampling of the dev examples.

    The share of ``n_boot`` bootstrap resamples (``seed``) of the dev items in which the candidate stays
    in ``F*``, recomputing effects, the fitted null, p-values and BH q-values from the resampled per-item effects
    (:func:`igds.method.intervene.fstar_bootstrap`) with the run's own filter.

    Returns:
        feature, stability (in [0, 1]; NaN for a candidate not measured yet or untestable), one row per candidate in
        the run's candidate order (the measured α = 1 features when the run names no recall).
    """
    run = store.run(effect_id)
    if run is None:
        raise ValueError(f"no intervention run {effect_id!r}")
    cfg = InterventionConfig.from_dict(run["config"].get("intervene", run["config"]))
    summ = primary_amplification(store.effect_summary(effect_id)).set_index("feature")
    if run["config"].get("recall_id"):
        from igds.method.recall import load_recall

        candidates = load_recall(store, run["config"]["recall_id"]).candidates
    else:
        candidates = sorted(int(f) for f in summ.index)
    cand, null, _, _ = effect_matrices(store, effect_id, candidates, cfg.null_seed)
    n_fired = [int(summ.n_fired.get(c, 0)) for c in candidates]
    share = fstar_bootstrap(cand, null, n_fired, cfg, n_boot, seed)
    measured = (measured_items(cand) > 0) & (np.asarray(n_fired) >= cfg.min_fired)
    return pd.DataFrame({"feature": candidates, "stability": np.where(measured, share, np.nan)})


def selection_pool(store: ActivationStore, task: str, sel_cfg: SelectionConfig,
                   run_id: str | None = None) -> pd.DataFrame:
    """The candidate pool a selection ranks (see :func:`igds.method.pool.pool_frame`)."""
    return pool_frame(store, task, sel_cfg.pool, run_id)


def candidate_features(store: ActivationStore, task: str, effects: EffectResult,
                       sae_key: str | None = None) -> tuple[int, ...]:
    """Every feature a user may score with: the intervention candidates, the validated ones and the
    pinned ones (the columns of the resonance matrix, so vetoes and pins re-rank without a query)."""
    pins = load_overrides(store, task, sae_key).pinned_features
    return tuple(sorted({*effects.summary.feature.astype(int), *effects.kept, *pins}))


def pool_matrix(store: ActivationStore, run_id: str, task: str, pool: PoolSpec,
                features: tuple[int, ...]) -> ResonanceMatrix:
    """The resonance matrix of a task's pool (setting and limit) over ``features``."""
    return load_resonance_matrix(store, run_id, pool_frame(store, task, pool, run_id), features)


@dataclass(frozen=True)
class ScoredPool:
    """IGDS scores of a pool with everything needed to explain and re-rank them."""

    scores: pd.DataFrame       # example_id, frs, n_tokens, n_positions, task, source (in ranking order)
    features: list[int]
    scales: pd.DataFrame
    effects: dict[int, float]
    overrides: Overrides
    matrix: ResonanceMatrix

    def explain(self, example_id: str, res_cfg: ResonanceConfig) -> pd.DataFrame:
        """Per-feature FRS terms of one example ("why selected"); they sum to its score."""
        return self.matrix.explain(example_id, self.features, res_cfg, self.effects, self.scales)


def live_selection(store: ActivationStore, run_id: str, task: str, effects: EffectResult, sel_cfg: SelectionConfig,
                   res_cfg: ResonanceConfig, sae_key: str | None = None,
                   matrix: ResonanceMatrix | None = None) -> tuple[ScoredPool, pd.DataFrame]:
    """Score the pool with the validated features (vetoes and pins applied) and cut it by ratio,
    threshold or budget with the example overrides, from the end of the ranking ``res_cfg.direction``
    names (``resonant``: top FRS; ``hard``: bottom FRS); nothing is stored. The slider view and
    :func:`select_igds` both come through here.

    Args:
        matrix: the pool's resonance matrix for ``sel_cfg``'s pool setting and limit (the dashboard
            caches it); loaded when not given.
    """
    ov = load_overrides(store, task, sae_key)
    feats = ov.apply_to_features(effects.kept)
    if matrix is None:
        matrix = pool_matrix(store, run_id, task, sel_cfg.pool, candidate_features(store, task, effects, sae_key))
    amp = effects.amplification
    eff = dict(zip(amp.feature.astype(int), amp.effect.clip(lower=0), strict=True))
    scales = matrix.scales(feats, res_cfg)  # over the pool being selected from
    scores = matrix.score(feats, res_cfg, eff, scales)
    sp = ScoredPool(scores=scores, features=feats, scales=scales, effects=eff, overrides=ov, matrix=matrix)
    ranked = scores.rename(columns={"frs": "score"})
    return sp, select_from_ranking(ranked, sel_cfg, ov, n_pool=len(ranked), higher_first=res_cfg.higher_first)


def lineage(store: ActivationStore, extract_run: str, sel_cfg: SelectionConfig, pool_ids, extra: dict) -> dict:
    """The provenance every stored selection carries: model, SAE, site, pool fingerprint, configs."""
    run = store.run(extract_run) or {"config": {}}
    sae = store.query_df("SELECT name, site FROM saes WHERE sae_key = ?", [run.get("sae_key")])
    model = store.query_df("SELECT name FROM models WHERE model_key = ?", [run.get("model_key")])
    return {"model_key": run.get("model_key"), "model": model.name.iloc[0] if not model.empty else None,
            "sae_key": run.get("sae_key"), "sae": sae.name.iloc[0] if not sae.empty else None,
            "site": run["config"].get("site"), "extract_run": extract_run,
            "pool_fingerprint": pool_fingerprint(pool_ids), "selection": sel_cfg.to_dict(), **extra}


class NoValidatedFeatures(ValueError):
    """IGDS cannot rank a pool: the task's ``F*`` (after vetoes and pins) is empty."""


def select_igds(store: ActivationStore, run_id: str, task: str, effects: EffectResult, sel_cfg: SelectionConfig,
                res_cfg: ResonanceConfig, sae_key: str | None = None, name: str | None = None,
                matrix: ResonanceMatrix | None = None, preset: str = DEFAULT_PRESET,
                quartile: int | None = None, stratified: bool = False) -> str:
    """Store what :func:`live_selection` shows for the same settings (and ``matrix``); return its id.

    Args:
        preset: the method preset the configs came from (recorded in the lineage).
        quartile: instead of the ratio's head, the ``quartile``-th of four equal blocks of the FRS ranking
            (1 = the top quarter, 4 = the bottom one), for the controlled test of the causal claim;
            ``sel_cfg.ratio`` is ignored and overrides are not applied (the blocks must stay disjoint and
            equal-sized).
        stratified: the quartile is taken within each of four length strata (``igds-sq<q>``,
            :func:`igds.method.controls.stratified_quartile`), so the four blocks share one length mix.

    Raises:
        NoValidatedFeatures: when no feature is left to score with (every score would be 0, so the
            "selection" would be an arbitrary order rather than IGDS).
    """
    sp, chosen = live_selection(store, run_id, task, effects, sel_cfg, res_cfg, sae_key, matrix)
    if quartile is not None:
        ranked = sp.scores.rename(columns={"frs": "score"})
        chosen = stratified_quartile(ranked, quartile) if stratified else quartile_block(ranked, quartile)
    require_features(sp, effects, task)
    method = "igds" if quartile is None else f"igds-{'sq' if stratified else 'q'}{quartile}"
    lin = igds_lineage(store, run_id, sel_cfg, sp, res_cfg, effects, preset, method=method,
                       **({"overrides": {}, "quartile": quartile, **({"stratified": True} if stratified else {})}
                          if quartile is not None else {}))
    default = f"igds-{task}-{sel_cfg.ratio:g}" if res_cfg.higher_first else f"igds-hard-{task}-{sel_cfg.ratio:g}"
    return save_selection(store, name or default, task, method, sel_cfg.pool_setting, len(sp.scores), chosen, lin)


def require_features(sp: ScoredPool, effects: EffectResult, task: str) -> None:
    """Refuse to store an IGDS selection scored with no feature (every score would be 0).

    Raises:
        NoValidatedFeatures: naming why (all vetoed, or the filter kept none).
    """
    if not sp.features:
        why = (f"all {len(effects.kept)} validated features are vetoed" if effects.kept
               else effects.why_none_kept())
        raise NoValidatedFeatures(f"IGDS has no features to score {task!r} with: {why}; pin a candidate (Pin on the "
                                  "Features, Interventions or Selection page) or rerun the filter looser (those "
                                  "pages' Rerun the filter, or 'igds intervene --int-delta 0 "
                                  "--int-require-significance false'), or select with a baseline")


def igds_lineage(store: ActivationStore, run_id: str, sel_cfg: SelectionConfig, sp: ScoredPool,
                 res_cfg: ResonanceConfig, effects: EffectResult, preset: str, **extra) -> dict:
    """The lineage of an IGDS selection (:func:`lineage` plus the features, resonance, intervention run, overrides
    and method preset); ``extra`` adds or replaces entries (a quartile, a vetting session)."""
    return lineage(store, run_id, sel_cfg, sp.scores.example_id, {
        "method": "igds", "features": sp.features, "resonance": res_cfg.to_dict(), "effect_id": effects.effect_id,
        "overrides": sp.overrides.to_dict(), "method_preset": preset, **extra})


def quartile_block(ranked: pd.DataFrame, quartile: int, n_blocks: int = 4) -> pd.DataFrame:
    """The ``quartile``-th of ``n_blocks`` equal, disjoint blocks of a ranking (1 = its head), with ranks.

    Every block has ``len(ranked) // n_blocks`` rows; the remainder (at most ``n_blocks - 1`` rows at the
    tail of the ranking) is in none, so blocks compare equal amounts of data.
    """
    if not 1 <= quartile <= n_blocks:
        raise ValueError(f"quartile must be in 1..{n_blocks}, not {quartile}")
    size = len(ranked) // n_blocks
    out = ranked.iloc[(quartile - 1) * size: quartile * size].reset_index(drop=True)
    return out.assign(rank=range(1, len(out) + 1))


def baseline_name(task: str, sel_cfg: SelectionConfig) -> str:
    """The default name of a baseline selection: ``<method>-<task>-<share>`` (``full`` keeps the whole pool: 1)."""
    return f"{sel_cfg.method}-{task}-{1.0 if sel_cfg.method == 'full' else sel_cfg.ratio:g}"


def select_baseline(ws: Workspace, task: str, sel_cfg: SelectionConfig, name: str | None = None,
                    progress: ProgressFn | None = None, extract_cfg: ExtractConfig | None = None) -> str:
    """Run a baseline (random, loss, ifd, zip, full) on the same pool and ratio; store it.

    ``extract_cfg`` names the extraction run whose token counts Longest / Shortest rank by and whose cap the Loss /
    IFD NLL tables cut at (default: the default extraction).

    Rankings see the pool's canonical keys (:func:`igds.method.pool.shown_key`) rather than the
    example ids, so their draws and tie-breaks follow the pool's canonical order.
    """
    from igds.method import baselines

    method = sel_cfg.method
    spec = baselines.get_baseline(method)
    extract_cfg = extract_cfg or ExtractConfig()
    extract_run = ws.extraction_run_id(extract_cfg)
    # the NLL tables drop (never cut) examples over their cap: at least the stage cap, so no pool example is dropped
    max_length = max(extract_cfg.max_length, STAGE_LENGTH.max_length)
    # Longest / Shortest rank by content tokens, and a token budget counts them: the extraction's kept tokens
    by_tokens = spec.needs_lengths or sel_cfg.token_budget is not None
    pool = selection_pool(ws.store, task, sel_cfg, extract_run if by_tokens else None)
    key_of = dict(zip(pool.example_id, pool.shown_key, strict=True))
    id_of = {k: i for i, k in key_of.items()}
    examples = pool_records(pool)
    n_select = int(np.ceil(sel_cfg.ratio * len(pool)))
    nll_df = cached_nll_table(ws, examples, progress, max_length) if spec.needs_nll else None
    texts = baselines.example_texts(examples) if spec.needs_texts else None
    ranking = baselines.rank_baseline(
        baselines.BaselineConfig(method=method, seed=sel_cfg.seed, max_length=max_length), list(pool.shown_key),
        n_select, texts={key_of[i]: t for i, t in texts.items()} if texts else None,
        nll_df=nll_df.assign(example_id=nll_df.example_id.map(key_of)) if nll_df is not None else None,
        lengths=dict(zip(pool.shown_key, pool.n_tokens.astype(float), strict=True)) if spec.needs_lengths else None,
        progress=progress)
    ov = load_overrides(ws.store, task, ws.sae_key)
    order = [k for k in ranking.order if k not in ranking.excluded]
    ranked = pd.DataFrame({"example_id": [id_of[k] for k in order],
                           "score": [ranking.scores.get(k, np.nan) for k in order]})
    if by_tokens:
        ranked["n_tokens"] = ranked.example_id.map(dict(zip(pool.example_id, pool.n_tokens, strict=True)))
    cfg = sel_cfg if method != "full" else dataclasses.replace(sel_cfg, ratio=1.0, seed=0)
    chosen = select_from_ranking(ranked, cfg, ov, n_pool=len(pool))
    lin = lineage(ws.store, extract_run, cfg, pool.example_id,
                  {"method": method, "overrides": ov.to_dict(examples_only=True)})
    return save_selection(ws.store, name or baseline_name(task, sel_cfg), task, method, sel_cfg.pool_setting,
                          len(pool), chosen, lin)


def select_task_first(ws: Workspace, task: str, sel_cfg: SelectionConfig, name: str | None = None,
                      extract_cfg: ExtractConfig | None = None) -> str:
    """The task-first oracle (:func:`igds.method.controls.task_first`): the ratio's head of the pool with the task's
    own items first, each part in a ``sel_cfg.seed``-ed order; stored, its id returned."""
    extract_run = ws.extraction_run_id(extract_cfg or ExtractConfig())
    pool = selection_pool(ws.store, task, sel_cfg, extract_run)
    chosen = task_first(pool, task, sel_cfg.ratio, sel_cfg.seed)[["example_id", "score", "rank"]]
    lin = lineage(ws.store, extract_run, sel_cfg, pool.example_id, {"method": "task-first"})
    return save_selection(ws.store, name or f"task-first-{task}-{sel_cfg.ratio:g}", task, "task-first",
                          sel_cfg.pool_setting, len(pool), chosen, lin)


def cached_nll_table(ws: Workspace, examples: list, progress: ProgressFn | None, max_length: int,
                     executor: ExecutorConfig | None = None) -> pd.DataFrame:
    """Base-model NLL with and without prompt per example, computed once per model and stored.

    Args:
        executor: where the missing rows are computed; None: the workspace's executor setting. Each finished part
            is stored as it arrives, so an interrupted table resumes.
    """
    executor = executor or executor_config(ws.store)
    have = ws.store.example_nll(ws.model_key)
    missing = [e for e in examples if e.id not in set(have.example_id)]
    cols = ["model_key", "example_id", "nll_cond", "nll_uncond"]
    if missing:
        new = nll_table(missing, max_length, ws.pool(executor, sae=False), progress=progress,
                        on_part=lambda df: ws.store.add_example_nll(df.assign(model_key=ws.model_key)[cols]))
        have = pd.concat([have, new])
    wanted = {e.id for e in examples}
    return have[have.example_id.isin(wanted)].reset_index(drop=True)


def latest_run(store: ActivationStore, stage: str, task: str, preset: str | None = DEFAULT_PRESET) -> dict | None:
    """The most recently updated run of a stage for a task (config parsed), or None.

    Args:
        preset: only runs recorded under this method preset (runs recorded without one count as
            ``default``); None: any run.
    """
    df = store.query_df("SELECT run_id FROM runs WHERE stage = ? AND json_extract_string(config, '$.task') = ? "
                        "AND (? IS NULL OR coalesce(json_extract_string(config, '$.method_preset'), ?) = ?) "
                        "ORDER BY updated DESC LIMIT 1", [stage, task, preset, DEFAULT_PRESET, preset])
    return store.run(df.run_id.iloc[0]) if not df.empty else None


def latest_effects(store: ActivationStore, task: str, preset: str | None = DEFAULT_PRESET) -> EffectResult:
    """The latest intervention run of a task (under ``preset``, see :func:`latest_run`) with its filter applied.

    Raises:
        ValueError: when recall or interventions have not been run for the task.
    """
    from igds.method.recall import load_recall

    run = latest_run(store, "intervene", task, preset)
    if run is None:
        raise ValueError(f"no intervention run for task {task!r}; run 'igds recall' and 'igds intervene' first")
    recall = load_recall(store, run["config"]["recall_id"])
    cfg = InterventionConfig.from_dict(run["config"]["intervene"])
    return load_effects(store, run["run_id"], recall.candidates, cfg)
