"""A vetting session over the live selection: its re-ranked selection, and saving it with its decisions'
lineage (the library is :mod:`igds.method.vetting`)."""

from __future__ import annotations

from igds.method.intervene import EffectResult
from igds.method.presets import DEFAULT_PRESET
from igds.method.resonance import ResonanceConfig, ResonanceMatrix
from igds.method.selection import SelectionConfig, save_selection
from igds.method.vetting import apply_decisions
from igds.store import ActivationStore
from igds.workflow.stages import igds_lineage, live_selection, require_features


def save_vetted_selection(store: ActivationStore, run_id: str, task: str, effects: EffectResult,
                          sel_cfg: SelectionConfig, res_cfg: ResonanceConfig, session_id: str,
                          sae_key: str | None = None, matrix: ResonanceMatrix | None = None,
                          name: str | None = None, preset: str = DEFAULT_PRESET) -> str:
    """Store the live selection with a vetting session's decisions applied (what the Selection page shows while
    the session is open) and return its id.

    The lineage is :func:`~igds.workflow.stages.select_igds`'s plus ``vetting_session`` and ``vetting_seq`` (the
    session's latest action), so an export lists the decisions as they stood at the save
    (:func:`igds.method.vetting.vetting_lineage`); the session records the selection.

    Raises:
        NoValidatedFeatures: when no feature is left to score with.
    """
    sp, _ = live_selection(store, run_id, task, effects, sel_cfg, res_cfg, sae_key, matrix)
    require_features(sp, effects, task)
    seq = store.vetting_seq(session_id)
    chosen = apply_decisions(sp.scores, sel_cfg, sp.overrides, store.session_decisions(session_id, seq),
                             res_cfg.higher_first)
    lin = igds_lineage(store, run_id, sel_cfg, sp, res_cfg, effects, preset, vetting_session=session_id,
                       vetting_seq=seq)
    kind = "igds" if res_cfg.higher_first else "igds-hard"
    sid = save_selection(store, name or f"{kind}-{task}-{sel_cfg.ratio:g}-vetted", task, "igds",
                         sel_cfg.pool_setting, len(sp.scores), chosen, lin)
    store.set_vetting_selection(session_id, sid)
    return sid
