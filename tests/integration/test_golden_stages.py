"""The four pooled stages end to end on the tiny model, locally and on the local Ray, against a golden fixture.

Extraction, recall, interventions, the Loss / IFD NLL tables, the selections and evaluation run through the
workspace entry points a page or the CLI calls, with the executor the workspace's setting names. The fixture
``tests/golden/stages.json`` was taken before the stage drivers became one driver per stage over a pool (issue 25)
and must keep holding after it: selections identical, F* identical, effects and evaluation metrics within 1e-6
locally and 1e-5 on Ray (a Ray actor replays rows in batches of its own chunk).

Floating-point results depend on the CPU's instruction set (AVX-512 and AVX2 kernels round differently); the fixture
records the torch CPU capability it was taken with, and on another one the numeric tolerance is 1e-4 (selections and
F* stay exact). Regenerate only on purpose: ``IGDS_UPDATE_GOLDEN=1 pytest <this file>`` (both tiers).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from igds.method.config import PAPER_INTERVENTION, ExtractConfig, RecallConfig
from igds.training.config import EvalConfig

GOLDEN = Path(__file__).parents[1] / "golden" / "stages.json"
TASK = "summarization"
SITE = "blocks.1.hook_resid_post"
TOL = {"local": 1e-6, "ray": 1e-5}
OTHER_CPU_TOL = 1e-4


def cpu_capability() -> str:
    return torch.backends.cpu.get_cpu_capability()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from igds.demo import save_tiny_model, save_tiny_sae

    root = tmp_path_factory.mktemp("golden-stages")
    return save_tiny_model(root / "model"), save_tiny_sae(root / "sae", d_in=32, layer=1)


def run_stages(path: Path, folders, executor, dtype: str = "float32", precision: str = "fp32") -> dict:
    """Every pooled stage on a fresh store at ``path`` (the model loaded in ``dtype``, interventions in
    ``precision``); returns what the fixture holds."""
    from igds.data.corpus import dev_set, load_corpus, probe_set, test_set
    from igds.executor.config import save_executor_config
    from igds.executor.pool import Loaded
    from igds.method.resonance import ResonanceConfig
    from igds.method.selection import SelectionConfig, load_selection
    from igds.training.results import BASE_RUN
    from igds.workflow.stages import run_interventions, run_recall, select_baseline, select_igds
    from igds.workflow.tune import EvalTarget, Measured, evaluate_and_record
    from igds.workflow.workspace import Workspace, extract_tasks
    from tests.helpers import registered_store

    torch.set_num_threads(1)
    store, model, tok, sae, mkey, skey = registered_store(path, folders, SITE, dtype)
    save_executor_config(store, executor)
    train = [e for e in load_corpus([TASK], ["train"])][:48]
    general = [e for e in load_corpus(["general"], ["train"])][:48]
    store.add_examples([*probe_set(TASK)[:40], *dev_set(TASK)[:16], *train, *general, *test_set(TASK)[:8]],
                       dataset="tiny")
    ws = Workspace(store=store, model=model, tokenizer=tok, sae=sae, model_key=mkey, sae_key=skey, site=SITE,
                   sae_info={})
    ecfg = ExtractConfig(max_length=512, shard_size=64, batch_tokens=2048)
    ext = extract_tasks(ws, [TASK], ecfg, "mixed")
    acts = store.query_df("SELECT example_id, feature, max_act, sum_act, n_active FROM feature_acts WHERE run_id = ? "
                          "ORDER BY example_id, feature", [ext.run_id])
    recall = run_recall(ws, TASK, RecallConfig(min_freq=0.05, dense_ref=1.0, k_recall=6), ecfg)
    icfg = replace(PAPER_INTERVENTION, null_directions=4, null_features=2, null_placed=1, precision=precision,
                   sweep_top=2, batch_rows=16, max_length=512, min_fired=2, looks=(), require_significance=False,
                   delta=0.0)
    eff = run_interventions(ws, TASK, recall, icfg)
    summary = eff.summary.sort_values(["feature", "kind", "alpha"])
    null = eff.null.sort_values("null_id")
    selections = {}
    for method in ("igds", "random", "loss", "ifd"):
        cfg = SelectionConfig(method=method, ratio=0.5, pool_setting="mixed", seed=0)
        if method == "igds":
            sid = select_igds(store, ext.run_id, TASK, eff, cfg, ResonanceConfig(), skey)
        else:
            sid = select_baseline(ws, TASK, cfg, extract_cfg=ecfg)
        selections[method] = [str(i) for i in load_selection(store, sid)[1].id]
    features = [int(f) for f in (eff.kept or recall.candidates[:2])]
    out = evaluate_and_record(store, EvalTarget(BASE_RUN, Loaded(model, tok, sae, SITE), mkey, skey), TASK,
                              EvalConfig(n_examples=8, max_new_tokens=6, batch_size=4), Measured(features))
    base = out["base"][1]
    return {
        "extract": {"rows": len(acts), "max_act": float(acts.max_act.sum()), "sum_act": float(acts.sum_act.sum()),
                    "n_active": int(acts.n_active.sum())},
        "candidates": [int(f) for f in recall.candidates],
        "fstar": [int(f) for f in eff.kept],
        "effects": {"key": summary[["feature", "kind", "alpha"]].astype(str).agg("/".join, axis=1).tolist(),
                    "effect": summary.effect.astype(float).tolist(),
                    "p_value": summary.p_value.astype(float).tolist(),
                    "null": null.effect.astype(float).tolist()},
        "selections": selections,
        "eval": {"score": float(base["result"]["score"]), "nll": float(base["result"]["nll"]),
                 "outputs": [str(o) for o in base["result"]["raw_outputs"]],
                 "activation": {str(k): float(v) for k, v in sorted(base["activation"]["per_feature"].items())}},
    }


def check(got: dict, side: str, tol: float | None = None) -> None:
    """``got`` against the fixture's ``side``, within ``tol`` (default: the side's, or 1e-4 on another CPU)."""
    if tol is None and os.environ.get("IGDS_UPDATE_GOLDEN") == "1":
        fixture = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        fixture[side] = {**got, "cpu_capability": cpu_capability()}
        GOLDEN.write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")
    want = json.loads(GOLDEN.read_text())[side]
    same_cpu = want["cpu_capability"] == cpu_capability()
    tol = max(tol or 0.0, TOL[side] if same_cpu else OTHER_CPU_TOL)
    assert got["selections"] == want["selections"]
    assert got["candidates"] == want["candidates"] and got["fstar"] == want["fstar"]
    assert got["extract"]["rows"] == want["extract"]["rows"]
    assert got["extract"]["n_active"] == want["extract"]["n_active"]
    for k in ("max_act", "sum_act"):  # sums over every stored row: relative to their size
        assert got["extract"][k] == pytest.approx(want["extract"][k], rel=tol), k
    assert got["effects"]["key"] == want["effects"]["key"]
    for k in ("effect", "p_value", "null"):
        np.testing.assert_allclose(got["effects"][k], want["effects"][k], atol=tol, rtol=0, err_msg=k)
    assert got["eval"]["outputs"] == want["eval"]["outputs"]
    assert got["eval"]["score"] == pytest.approx(want["eval"]["score"], abs=tol)
    assert got["eval"]["nll"] == pytest.approx(want["eval"]["nll"], abs=tol)
    assert got["eval"]["activation"].keys() == want["eval"]["activation"].keys()
    for f, v in want["eval"]["activation"].items():
        assert got["eval"]["activation"][f] == pytest.approx(v, abs=tol), f


def test_local_stages_match_the_golden_fixture(folders, tmp_path):
    from igds.executor.config import ExecutorConfig

    check(run_stages(tmp_path / "local.duckdb", folders, ExecutorConfig(kind="local")), "local")


def test_ray_stages_match_the_golden_fixture(ray_local, folders, tmp_path):
    from igds.executor.config import ExecutorConfig

    check(run_stages(tmp_path / "ray.duckdb", folders, ExecutorConfig(kind="ray", actors=2, cpus_per_actor=1.0)),
          "ray")
