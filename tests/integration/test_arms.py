"""The ablation arms as stored selections on the tiny demo workspace: recall-only scores with every candidate,
random-features with |F*| seeded density-matched non-candidates, filter-only runs the filter on random features only
(its own, resumable run; never the task's F*) and refuses an empty F*, wrong-task refuses an empty source F* by name;
``igds select --method <arm>`` stores the same selection."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from igds.demo import DEMO_INTERVENTION, build_tiny_workspace
from igds.method.arms import FILTER_ONLY, FILTER_STAGE, RANDOM_FEATURES, RECALL_ONLY, WRONG_TASK, ArmError
from igds.method.config import ExtractConfig
from igds.method.intervene import null_plan
from igds.method.recall import load_recall
from igds.method.resonance import ResonanceConfig
from igds.method.selection import SelectionConfig, load_selection
from igds.store import ActivationStore
from tests.helpers import tiny_workspace

TASK = "summarization"
ECFG = ExtractConfig(max_length=96, shard_size=256)  # the tiny workspace's extraction
SEL = SelectionConfig(ratio=0.5, pool_setting="task-only", pool_limit=0, seed=0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    store = ActivationStore(tmp_path_factory.mktemp("arms") / "igds.duckdb")
    # the tiny SAE has 13 live features: 4 candidates leave enough non-candidates for filter-only's |C| draws;
    # the demo filter (effect > 0) keeps some of them on the random tiny model. Its dev items (byte tokens) are
    # longer than the demo's 96: the workflow's filter-only run drops (never cuts) items over max_length
    parts = build_tiny_workspace(store, n_candidates=4,
                                 interventions=dataclasses.replace(DEMO_INTERVENTION, max_length=512))
    ws = tiny_workspace(store, parts)
    recall = load_recall(store, parts["recall_id"])
    return SimpleNamespace(store=store, ws=ws, parts=parts, candidates=recall.candidates, recall=recall,
                           fstar=parts["kept"])


def select(tiny, arm, sel=SEL, **kwargs):
    from igds.workflow.arms import select_arm

    sid = select_arm(tiny.ws, TASK, arm, sel, ResonanceConfig(), extract_cfg=ECFG, **kwargs)
    return sid, *load_selection(tiny.store, sid)


def test_recall_only_scores_with_every_candidate(tiny):
    from igds.workflow.stages import pool_matrix

    assert set(tiny.fstar) < set(tiny.candidates)  # the tiny filter drops some: recall-only differs from IGDS
    sid, info, members = select(tiny, RECALL_ONLY)
    lin = info["lineage"]
    assert info["method"] == RECALL_ONLY and lin["arm"] == RECALL_ONLY
    assert lin["features"] == tiny.candidates and lin["recall_id"] == tiny.parts["recall_id"]
    assert lin["effect_id"] == tiny.parts["effect_id"]
    # the stored scores are FRS over C (and not over F*), with IGDS's cut
    m = pool_matrix(tiny.store, tiny.parts["run_id"], TASK, SEL.pool, tiny.candidates)
    frs = m.score(tiny.candidates, ResonanceConfig()).set_index("example_id").frs
    assert info["n_selected"] == int(np.ceil(0.5 * info["n_pool"]))
    np.testing.assert_allclose(members.set_index("id").score.loc[list(members.id)], frs.loc[list(members.id)])
    fstar_frs = m.score(tiny.fstar, ResonanceConfig()).set_index("example_id").frs
    assert not np.allclose(frs.loc[list(members.id)], fstar_frs.loc[list(members.id)])


def test_random_features_draw_fstar_many_seeded_non_candidates(tiny):
    from igds.workflow.stages import token_density_vector

    sid, info, _ = select(tiny, RANDOM_FEATURES)
    feats = info["lineage"]["features"]
    assert len(feats) == len(tiny.fstar) and not set(feats) & set(tiny.candidates)
    assert info["lineage"]["seed"] == 0 and info["lineage"]["matched_to"] == tiny.fstar
    density = token_density_vector(tiny.recall, int(tiny.ws.sae.cfg.d_sae))
    assert (density[feats] > 0).all()
    assert select(tiny, RANDOM_FEATURES)[0] == sid  # same seed: the same stored selection
    _, info1, _ = select(tiny, RANDOM_FEATURES, dataclasses.replace(SEL, seed=1))
    assert info1["lineage"]["features"] != feats and info1["name"].endswith("-s1")


def test_filter_only_measures_random_features_in_a_run_of_its_own(tiny, monkeypatch):
    from igds.method.intervene import load_effects
    from igds.workflow import stages
    from igds.workflow.stages import effect_id_for, latest_effects

    seen = []
    real = stages.measure_effects

    def spy(store, effect_id, items, cands, cfg, *args, **kwargs):
        seen.append((effect_id, cands, cfg))
        return real(store, effect_id, items, cands, cfg, *args, **kwargs)

    monkeypatch.setattr(stages, "measure_effects", spy)
    sid, info, _ = select(tiny, FILTER_ONLY)
    (eid, cands, cfg), = seen
    recalled = set(tiny.candidates)
    assert len(cands.features) == len(recalled) and not set(cands.features) & recalled  # never the recalled set
    plan = null_plan(cands.features, cands.density, cfg)  # nor in its null
    assert (plan.kind == "feature").any() and not set(plan.feature[plan.kind == "feature"]) & recalled
    null = tiny.store.null_summary(eid)
    assert not null.empty and not set(null.feature[null.kind == "feature"]) & recalled
    assert set(null.matched[null.matched >= 0]) <= set(cands.features)  # matched to (placed on) its own features
    run = tiny.store.run(eid)
    assert run["stage"] == FILTER_STAGE and run["status"] == "done"
    assert run["config"]["arm"]["candidates"] == list(cands.features) and "recall_id" not in run["config"]
    # its own key: neither the IGDS run's nor the one the recall run would get under the same config
    dev = [e.id for e in stages.task_split(tiny.store, TASK, "dev")]
    recall_eid = effect_id_for(tiny.ws, tiny.recall, dev, cfg, tiny.ws.fp32_model())
    assert eid not in (tiny.parts["effect_id"], recall_eid) and eid.startswith(f"{recall_eid}-{FILTER_ONLY}-s0-")
    lin = info["lineage"]
    assert lin["arm_effect_id"] == eid and lin["tested_features"] == list(cands.features)
    kept = set(lin["features"])
    assert kept and kept <= set(cands.features)
    summary = tiny.store.effect_summary(eid)
    assert kept == set(load_effects(tiny.store, eid, cands.features, cfg).kept)
    assert latest_effects(tiny.store, TASK).effect_id == tiny.parts["effect_id"]  # the task's F* is untouched
    # resumable: a second selection reads the finished run back, measuring nothing new
    assert select(tiny, FILTER_ONLY)[0] == sid
    assert len(tiny.store.effect_summary(eid)) == len(summary)
    assert tiny.store.query_df("SELECT count(*) AS n FROM runs WHERE stage = ?", [FILTER_STAGE]).n.iloc[0] == 1


def test_filter_only_refuses_when_the_filter_keeps_none(tiny, monkeypatch):
    from igds.method.intervene import load_effects
    from igds.workflow import arms

    real = arms.run_interventions

    def strict(ws, task, recall, cfg, *args, **kwargs):  # the same run, read back under a filter nothing passes
        res = real(ws, task, recall, cfg, *args, **kwargs)
        return load_effects(ws.store, res.effect_id, kwargs["arm"].features, dataclasses.replace(cfg, delta=1e6))

    monkeypatch.setattr(arms, "run_interventions", strict)
    before = tiny.store.query_df("SELECT count(*) AS n FROM selections").n.iloc[0]
    with pytest.raises(ArmError, match="filter kept none of the 4 random density-matched features"):
        select(tiny, FILTER_ONLY)
    assert tiny.store.query_df("SELECT count(*) AS n FROM selections").n.iloc[0] == before  # nothing stored


def test_wrong_task_scores_with_the_source_fstar_and_refuses_an_empty_one(tiny):
    from igds.executor.intervene import Candidates, measure_here
    from igds.modeling.encoding import encode_examples
    from igds.workflow.stages import candidates_of, latest_effects, task_split

    cfg = latest_effects(tiny.store, TASK).config
    # translation (the default source after summarization) with an intervention run that measured nothing: empty F*
    tiny.store.start_run("translation-none", "intervene", {"intervene": cfg.to_dict(), "task": "translation",
                                                           "recall_id": tiny.parts["recall_id"]})
    with pytest.raises(ArmError, match="source task 'translation' has an empty F\\*"):
        select(tiny, WRONG_TASK)
    with pytest.raises(ArmError, match="source task 'math' has no F\\* yet"):
        select(tiny, WRONG_TASK, source_task="math")
    # math with a measured F* (three candidates on the tiny dev items, labelled math)
    d_sae = int(tiny.ws.sae.cfg.d_sae)
    full = candidates_of(tiny.recall, d_sae)
    tiny.store.start_run("math-run", "intervene", {"intervene": cfg.to_dict(), "task": "math",
                                                   "recall_id": tiny.parts["recall_id"]},
                         tiny.parts["model_key"], tiny.parts["sae_key"])
    items = encode_examples(tiny.ws.tokenizer, task_split(tiny.store, TASK, "dev"), 96)
    measure_here(tiny.store, "math-run", tiny.ws.model, tiny.ws.sae, tiny.ws.site, items,
                 Candidates(tiny.candidates[:3], full.mean_act, full.density), cfg, tiny.ws.tokenizer.pad_token_id)
    source = latest_effects(tiny.store, "math")
    assert source.kept
    _, info, _ = select(tiny, WRONG_TASK, source_task="math")
    assert info["lineage"]["features"] == source.kept and info["lineage"]["source_task"] == "math"
    assert info["lineage"]["source_effect_id"] == "math-run" and info["name"].endswith("-from-math")


def test_effect_weights_refuse_unmeasured_random_features(tiny):
    from igds.workflow.arms import select_arm

    with pytest.raises(ArmError, match="random-features has no measured effect"):
        select_arm(tiny.ws, TASK, RANDOM_FEATURES, SEL, ResonanceConfig(weights="effect"), extract_cfg=ECFG)


def test_cli_select_method_arm(tiny, monkeypatch, capsys):
    from igds import cli

    monkeypatch.setattr(cli, "_workspace", lambda args: (tiny.ws, SimpleNamespace(extract=ECFG)))
    argv = ["select", "--task", TASK, "--method", RECALL_ONLY, "--pool-setting", "task-only", "--pool-limit", "0",
            "--ratio", "0.5", "--name", "cli-recall-only"]
    assert cli.main(argv) == 0
    sid = capsys.readouterr().out.split()[1]
    info, _ = load_selection(tiny.store, sid)
    assert info["name"] == "cli-recall-only" and info["lineage"]["features"] == tiny.candidates
    assert cli.main([*argv, "--source-task", "math"]) == 2
    assert "--source-task is for --method wrong-task" in capsys.readouterr().err
