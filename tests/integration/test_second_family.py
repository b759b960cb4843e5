"""A second model family end to end: a GPT-2 folder and an SAE on ``hook_resid_pre``, chosen as the workspace's
identity, go through every stage (extraction, recall, interventions, IGDS selection, fine-tune, evaluation with
amplification, contexts, steering) while loading the default model raises; every run records that model and SAE."""

import json

import pandas as pd
import pytest

from igds.data.tasks import TaskSpec
from igds.demo import save_tiny_model, save_tiny_sae
from igds.method.config import ExtractConfig
from igds.modeling.config import ModelSpec, SaeSpec
from igds.store import ActivationStore
from igds.training.config import EvalConfig
from tests.integration.test_own_data_cli import chat_rows

SITE = "blocks.1.hook_resid_pre"


@pytest.fixture
def no_default_model(monkeypatch):
    import igds.modeling.load as load

    def refuse(*a, **k):
        raise AssertionError("the default model was loaded")

    monkeypatch.setattr(load, "ensure_default_model", refuse)


def test_gpt2_with_a_resid_pre_sae_runs_every_stage_and_records_its_identity(tmp_path, no_default_model):
    from igds.data.ingest import add_dataset
    from igds.method.presets import method_preset
    from igds.method.selection import SelectionConfig
    from igds.method.steer import generate_steered
    from igds.training.finetune import FinetuneConfig
    from igds.workflow.catalog import TaskData, add_task
    from igds.workflow.explore import ensure_contexts
    from igds.workflow.stages import prepare_method, select_baseline, select_igds
    from igds.workflow.tune import Measured, finetune_selection
    from igds.workflow.workspace import choose_identity, default_workspace, extract_tasks

    model_dir = save_tiny_model(tmp_path / "gpt2-folder", family="gpt2")
    sae_dir = save_tiny_sae(tmp_path / "gpt2-sae", layer=1, hook="hook_resid_pre")
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in chat_rows()))
    store = ActivationStore()
    add_dataset(store, data, "chat")
    add_task(store, TaskSpec("adder", "Answer with a number.", "exact_match", 4),
             TaskData(eval_datasets=("chat",), split_by="column", pool_datasets=("chat",)))

    ident = choose_identity(store, ModelSpec(name_or_path=str(model_dir)),
                            SaeSpec(source=str(sae_dir), min_explained_variance=-1000), task="adder")
    assert ident["site"] == SITE and ident["d_model"] == 32
    assert -1000 < ident["quality"]["explained_variance"] < 1  # measured on the task's content tokens

    ws = default_workspace(store, tasks=("adder",), pool_setting="task-only")
    ecfg = ExtractConfig(max_length=96)
    res = extract_tasks(ws, ["adder"], ecfg, "task-only")
    paper = method_preset("paper")
    effects = prepare_method(ws, "adder", paper, ecfg)
    ensure_contexts(ws, res.run_id, effects.summary.feature.astype(int).head(2).tolist())
    scfg = SelectionConfig(pool_setting="task-only", ratio=0.5)
    if effects.kept:
        sid = select_igds(store, res.run_id, "adder", effects, scfg, paper.resonance, ws.sae_key, preset="paper")
    else:  # nothing passed even the paper's filter on a random model: a baseline still exercises the rest
        sid = select_baseline(ws, "adder", SelectionConfig(method="random", pool_setting="task-only", ratio=0.5),
                              extract_cfg=ecfg)
    out = finetune_selection(store, sid, FinetuneConfig(r=4, lora_alpha=8, target_modules=("c_attn",), max_steps=2,
                                                        batch_size=4, max_length=128, precision="fp32"),
                             EvalConfig(n_examples=6, max_new_tokens=4, batch_size=6),
                             measured=Measured(effects.summary.feature.astype(int).head(3).tolist()))
    assert out["status"] == "done" and out["amplification"] is not None
    steered = generate_steered(ws.model, ws.tokenizer, ws.sae, ws.site, "Add 2 and 3.",
                               int(effects.summary.feature.iloc[0]), "amplify", 2.0, 1.0)
    assert set(steered) >= {"base", "steered"}

    runs = store.query_df("SELECT r.stage, m.name AS model, m.family, s.path AS sae, s.site FROM runs r "
                          "JOIN models m USING (model_key) JOIN saes s USING (sae_key)")
    assert set(runs.stage) >= {"extract", "recall", "intervene", "finetune"}
    assert len(store.query_df("SELECT * FROM runs")) == len(runs)  # every run names a registered model and SAE
    assert (runs.family == "gpt2").all() and runs.model.str.endswith("gpt2-folder").all()
    assert (runs.sae == str(sae_dir.resolve())).all() and (runs.site == SITE).all()
    evals = store.query_df("SELECT run_id, model_key FROM evals WHERE task = 'adder'")
    assert set(evals.run_id) == {"base", out["run_id"]} and evals.model_key.nunique() == 1
    lin = json.loads(store.scalar("SELECT lineage FROM selections WHERE selection_id = ?", [sid]))
    assert lin["site"] == SITE and lin["sae"] == "gpt2-sae"
    assert not pd.isna(store.scalar("SELECT amplification FROM amplification WHERE run_id = ?", [out["run_id"]]))


def test_train_one_sae_source_names_its_recipe():
    from igds.workflow.workspace import train_source_config

    cfg = train_source_config("train:6:2048:16")
    assert (cfg.layer, cfg.d_sae, cfg.k, cfg.positions) == (6, 2048, 16, "content")
    assert train_source_config("train") == train_source_config("train:15:4096:32")  # the default recipe
    for bad in ("train:6:2048", "train:six:2048:16", "trained"):
        with pytest.raises(ValueError, match="SAE source"):
            train_source_config(bad)
