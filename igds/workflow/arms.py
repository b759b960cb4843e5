"""The paper's ablation arms (:mod:`igds.method.arms`) as selections over the same pool as IGDS: the arm's feature set
from the task's stored recall and intervention runs (``filter-only`` runs the causal filter on its random features
first, resumably), then FRS with the same resonance config and the same cut, stored with lineage naming the arm,
its features and its seed."""

from __future__ import annotations

from igds.data.tasks import BUILTIN_TASKS
from igds.executor.config import ExecutorConfig
from igds.method.arms import (
    FILTER_ONLY,
    RANDOM_FEATURES,
    RECALL_ONLY,
    SEEDED_ARMS,
    WRONG_TASK,
    ArmError,
    arm_effects,
    default_source_task,
    filter_only_arm,
    filter_only_features,
    random_features,
    recall_only_features,
    require_arm,
    wrong_task_features,
)
from igds.method.extract import ExtractConfig
from igds.method.intervene import EffectResult
from igds.method.presets import DEFAULT_PRESET
from igds.method.recall import RecallResult, load_recall
from igds.method.resonance import ResonanceConfig
from igds.method.selection import Overrides, SelectionConfig, load_overrides, save_selection, select_from_ranking
from igds.progress import ProgressFn
from igds.workflow.stages import latest_effects, lineage, pool_matrix, run_interventions, token_density_vector
from igds.workflow.workspace import Workspace


def arm_name(arm: str, task: str, sel_cfg: SelectionConfig, source_task: str | None = None) -> str:
    """The default name of an arm's selection: ``<arm>-<task>-<share>``, then ``-s<seed>`` for a seeded arm and
    ``-from-<source>`` for ``wrong-task``."""
    name = f"{arm}-{task}-{sel_cfg.ratio:g}"
    if arm in SEEDED_ARMS:
        name += f"-s{sel_cfg.seed}"
    return name + (f"-from-{source_task}" if source_task else "")


def _clipped_effects(effects: EffectResult) -> dict[int, float]:
    """Every measured feature's α = 1 amplification effect clipped at 0 (IGDS's effect weights)."""
    amp = effects.amplification
    return dict(zip(amp.feature.astype(int), amp.effect.clip(lower=0).astype(float), strict=True))


def recall_of(ws: Workspace, effects: EffectResult) -> RecallResult:
    """The recall run an intervention run measured the candidates of."""
    return load_recall(ws.store, ws.store.run(effects.effect_id)["config"]["recall_id"])


def arm_features(ws: Workspace, task: str, arm: str, effects: EffectResult, seed: int = 0,
                 source_task: str | None = None, preset: str = DEFAULT_PRESET, progress: ProgressFn | None = None,
                 executor: ExecutorConfig | None = None) -> tuple[list[int], dict[int, float] | None, dict]:
    """An arm's feature set for ``task`` given the task's IGDS intervention run ``effects``.

    ``filter-only`` runs the causal filter (:func:`igds.workflow.stages.run_interventions` with a
    :class:`~igds.method.arms.FilterArm`, the IGDS run's config) on its random features; a finished run is read back.

    Returns:
        the features, their measured effects (None where the arm measured none) and the lineage entries the arm adds.

    Raises:
        ArmError: the arm has nothing to score with (see :mod:`igds.method.arms`).
    """
    recall = recall_of(ws, effects)
    if arm == RECALL_ONLY:
        return recall_only_features(recall.candidates), _clipped_effects(effects), {}
    density = token_density_vector(recall, int(ws.sae.cfg.d_sae))
    if arm == RANDOM_FEATURES:
        feats = random_features(effects.kept, recall.candidates, density, seed)
        return feats, None, {"seed": int(seed), "matched_to": [int(f) for f in effects.kept]}
    if arm == FILTER_ONLY:
        fa = filter_only_arm(recall.candidates, density, seed)
        if effects.config is None:
            raise ArmError(f"filter-only needs the filter config of intervention run {effects.effect_id}")
        res = run_interventions(ws, task, recall, effects.config, progress, preset=preset, executor=executor, arm=fa)
        kept = res.kept
        feats = filter_only_features(fa, kept, res.effect_id, "" if kept else res.why_none_kept())
        return feats, _clipped_effects(res), {"seed": int(seed), "tested_features": list(fa.features),
                                              "arm_effect_id": res.effect_id}
    if arm == WRONG_TASK:
        from igds.workflow.catalog import require_task

        source = source_task or default_source_task(task, BUILTIN_TASKS)
        require_task(ws.store, source)
        try:
            src = latest_effects(ws.store, source, preset)
        except ValueError as e:
            raise ArmError(f"wrong-task: the source task {source!r} has no F* yet ({e})") from None
        feats = wrong_task_features(task, source, src.kept)
        src_sae = (ws.store.run(src.effect_id) or {}).get("sae_key")
        if src_sae and src_sae != ws.sae_key:
            raise ArmError(f"wrong-task: the source task {source!r}'s F* is of SAE {src_sae}, not the workspace's "
                           f"{ws.sae_key}")
        return feats, _clipped_effects(src), {"source_task": source, "source_effect_id": src.effect_id}
    require_arm(arm)
    raise AssertionError(arm)  # every arm is handled above


def select_arm(ws: Workspace, task: str, arm: str, sel_cfg: SelectionConfig, res_cfg: ResonanceConfig,
               extract_cfg: ExtractConfig | None = None, preset: str = DEFAULT_PRESET, source_task: str | None = None,
               name: str | None = None, progress: ProgressFn | None = None) -> str:
    """Select ``task``'s pool with an ablation arm (``recall-only``, ``filter-only``, ``random-features``,
    ``wrong-task``) and store it; return its id.

    The pool, the cut (``sel_cfg``: ratio, threshold or budget, and the example pins / rejects) and FRS
    (``res_cfg``) are IGDS's; only the features differ. Feature vetoes and pins are not applied (an arm ablates the
    method, not a person's choices). Seeded arms draw with ``sel_cfg.seed``; ``filter-only``'s interventions run
    where the workspace's executor setting says.

    Args:
        extract_cfg: the extraction whose activations FRS reads (default: the default extraction).
        preset: the method preset of the task's recall and intervention runs the arm starts from.
        source_task: ``wrong-task``'s source (default: the shipped task after ``task``).

    Raises:
        ArmError: the arm has nothing to score with, naming why.
        ValueError: the task has no intervention run yet.
    """
    require_arm(arm)
    effects = latest_effects(ws.store, task, preset)
    feats, measured, extra = arm_features(ws, task, arm, effects, sel_cfg.seed, source_task, preset, progress)
    eff = arm_effects(arm, feats, measured, res_cfg.weights)
    extract_run = ws.extraction_run_id(extract_cfg or ExtractConfig())
    matrix = pool_matrix(ws.store, extract_run, task, sel_cfg.pool, feats)
    scores = matrix.score(feats, res_cfg, eff, matrix.scales(feats, res_cfg))  # scales over the pool, as IGDS's
    ov = load_overrides(ws.store, task, ws.sae_key)
    ov = Overrides(pinned_examples=ov.pinned_examples, rejected_examples=ov.rejected_examples)
    chosen = select_from_ranking(scores.rename(columns={"frs": "score"}), sel_cfg, ov, n_pool=len(scores),
                                 higher_first=res_cfg.higher_first)
    lin = lineage(ws.store, extract_run, sel_cfg, scores.example_id, {
        "method": arm, "arm": arm, "features": [int(f) for f in feats], "resonance": res_cfg.to_dict(),
        "effect_id": effects.effect_id, "recall_id": ws.store.run(effects.effect_id)["config"]["recall_id"],
        "overrides": ov.to_dict(examples_only=True), "method_preset": preset, **extra})
    return save_selection(ws.store, name or arm_name(arm, task, sel_cfg, extra.get("source_task")), task, arm,
                          sel_cfg.pool_setting, len(scores), chosen, lin)
