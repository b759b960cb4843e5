"""Evaluation on remote workers (issues 17 and 25): a fine-tune run's evaluation (base model, then the LoRA-tuned model,
then the amplification) on a pool of worker processes stores what the local pool stores, one output row per example.

The workers (the test's process pool, :mod:`tests.integration.test_pools`; Ray actors run the same driver and worker
code) load the tiny random Llama and the tiny SAE from folders through the store's specs and the adapter from its
folder, as on a cluster with a shared filesystem; the driver only plans batches and writes the store."""

import json
import math

import pytest
import torch

from igds.executor.config import ExecutorConfig
from igds.executor.pool import Loaded
from igds.training.evaluate import EvalConfig, load_adapter
from igds.training.results import BASE_RUN
from igds.workflow.tune import EvalTarget, Measured, evaluate_and_record
from tests.integration.test_pools import KIND, OPENED, procs_kind  # noqa: F401 (fixture)
from tests.integration.test_ray_executor import SITE, tiny_folders, tiny_store  # noqa: F401 (fixture)

TASK = "math"
RUN = "ft-remote-eval"
# 10 items in 3 generation batches and several NLL batches: the driver plans the batches and ships whole ones
EVAL = EvalConfig(n_examples=10, sample_seed=1, max_new_tokens=6, batch_size=4, max_length=96, batch_tokens=192)
FEATURES, CONTROL = list(range(0, 128, 3)), list(range(1, 128, 3))  # the control fires too: a number
# same batches, fp32 weights and one torch thread on both sides: metric, NLL and activations were equal bit for bit
# here (checked with TOL = 0); the tolerance leaves room for float rounding on other hardware. Texts compare exactly.
TOL = dict(rel=1e-5, abs=1e-6)


def _adapter(model_dir, out):
    """A LoRA adapter that changes the model: random A and B (peft leaves B at zero, a no-op)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"])
    peft_model = get_peft_model(load_model_dir(model_dir), lora)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    peft_model.save_pretrained(out)
    return out


def _store(path, folders):
    """A store with the tiny model's and SAE's specs and the task's test split: ``(store, run, tokenizer, sae)``."""
    from igds.data.corpus import load_corpus

    store, run_id, _, tok, sae, _ = tiny_store(path, folders)
    # the task's test split is all the evaluation reads (the whole corpus takes 4 s to store)
    store.sync_dataset([e for e in load_corpus() if e.task == TASK and e.split == "test"], dataset="demo")
    return store, store.run(run_id), tok, sae  # the extraction run names the model and SAE keys


def load_model_dir(model_dir):
    from igds.modeling.load import ModelSpec, load_model

    return load_model(ModelSpec(name_or_path=str(model_dir), dtype="float32", device="cpu"))[0]


def _evaluate(prepared, folders, adapter_dir, executor, progress=None) -> dict:
    """``evaluate_and_record`` of the tuned run (its base evaluation too when the store has none)."""
    store, run, tok, sae = prepared
    tuned = load_adapter(load_model_dir(folders[0]), adapter_dir)
    target = EvalTarget(RUN, Loaded(tuned, tok, sae, SITE), run["model_key"], run["sae_key"], str(adapter_dir))
    return evaluate_and_record(store, target, TASK, EVAL, Measured(FEATURES, CONTROL), progress, executor)


def _stored(store, eval_id):
    summary = store.query_df("SELECT run_id, model_key, task, split, metric, score, nll, n, slice_scores, config "
                             "FROM evals WHERE eval_id = ?", [eval_id]).iloc[0].to_dict()
    return summary, store.eval_outputs(eval_id)


def test_evaluation_on_remote_workers_stores_the_local_rows(procs_kind, tiny_folders, tmp_path):  # noqa: F811
    adapter_dir = _adapter(tiny_folders[0], tmp_path / "adapter")
    local_prepared, ray_prepared = (_store(tmp_path / f"{n}.duckdb", tiny_folders) for n in ("local", "remote"))
    local_store, ray_store = local_prepared[0], ray_prepared[0]
    local = _evaluate(local_prepared, tiny_folders, adapter_dir, ExecutorConfig())
    OPENED.clear()
    got = _evaluate(ray_prepared, tiny_folders, adapter_dir, ExecutorConfig(kind=KIND, actors=2))
    # one set of workers served the base and the tuned evaluation
    assert [(p.stage, p.n) for p in OPENED] == [("evaluate", 2)]
    assert set(got) == set(local) == {"base", "tuned", "amplification"}

    for which in ("base", "tuned"):
        (eid, out), (leid, lout) = got[which], local[which]
        res, lres = out["result"], lout["result"]
        assert eid == leid  # same content id: same run, task, model and settings
        assert res["example_ids"] == lres["example_ids"] and res["n"] == EVAL.n_examples
        # same generated text for every example, same metric, same reference NLL
        assert res["raw_outputs"] == lres["raw_outputs"] and res["predictions"] == lres["predictions"]
        assert res["per_example"] == pytest.approx(lres["per_example"], **TOL)
        assert res["nll_per_example"] == pytest.approx(lres["nll_per_example"], **TOL)
        assert all(math.isfinite(v) for v in res["nll_per_example"])
        assert res["score"] == pytest.approx(lres["score"], **TOL) and res["nll"] == pytest.approx(lres["nll"], **TOL)
        assert res["slices"] == lres["slices"]
        act, lact = got[which][1]["activation"], local[which][1]["activation"]
        assert act["n"] == lact["n"] == EVAL.n_examples and act["A"] > 0
        assert act["A"] == pytest.approx(lact["A"], **TOL)
        assert act["per_feature"] == pytest.approx(lact["per_feature"], **TOL)
        # the driver stored one row per example, the local rows
        summary, rows = _stored(ray_store, eid)
        lsummary, lrows = _stored(local_store, leid)
        assert len(rows) == rows.example_id.nunique() == EVAL.n_examples
        assert summary["run_id"] == (BASE_RUN if which == "base" else RUN)
        assert {k: v for k, v in summary.items() if k not in ("score", "nll")} == \
            {k: v for k, v in lsummary.items() if k not in ("score", "nll")}
        assert summary["score"] == pytest.approx(lsummary["score"], **TOL)
        assert summary["nll"] == pytest.approx(lsummary["nll"], **TOL)
        assert list(rows.prediction) == list(lrows.prediction) and list(rows.reference) == list(lrows.reference)
        assert list(rows.score) == pytest.approx(list(lrows.score), **TOL)
        assert list(rows.nll) == pytest.approx(list(lrows.nll), **TOL)
    # the adapter was applied on the workers: the tuned model answers and scores differently from the base model
    assert got["tuned"][1]["result"]["raw_outputs"] != got["base"][1]["result"]["raw_outputs"]
    assert got["tuned"][1]["result"]["nll"] != pytest.approx(got["base"][1]["result"]["nll"], rel=1e-3)
    assert got["amplification"] == pytest.approx(local["amplification"], **TOL) and got["amplification"] != 0
    amp = ray_store.query_df("SELECT * FROM amplification").iloc[0]
    lamp = local_store.query_df("SELECT * FROM amplification").iloc[0]
    assert amp.eval_id == lamp.eval_id and json.loads(amp.control_features) == CONTROL
    for col in ("a_model", "a_base", "amplification", "control_amplification"):
        assert math.isfinite(amp[col]) and amp[col] == pytest.approx(lamp[col], **TOL)
    per, lper = json.loads(amp.per_feature), json.loads(lamp.per_feature)  # NaN (base 0) stored as null
    assert per.keys() == lper.keys() and [k for k, v in per.items() if v is None] == \
        [k for k, v in lper.items() if v is None]
    assert {k: v for k, v in per.items() if v is not None} == \
        pytest.approx({k: v for k, v in lper.items() if v is not None}, **TOL)

    # the base model alone (the "evaluate base" job, the experiment's base row): workers without adapter or SAE; the
    # evaluation replaces the stored one under its id, one row per example still
    store, run, tok, _ = ray_prepared
    OPENED.clear()
    plain = evaluate_and_record(store, EvalTarget(BASE_RUN, Loaded(load_model_dir(tiny_folders[0]), tok, None, SITE),
                                                  run["model_key"]), TASK, EVAL, Measured(), None,
                                ExecutorConfig(kind=KIND, actors=1))
    assert [(p.stage, p.n, p.spec["sae"], p.spec["adapter"]) for p in OPENED] == [("evaluate", 1, None, None)]
    eid, out = plain["base"]
    assert set(plain) == {"base"} and eid == local["base"][0] and out["activation"] is None
    assert out["result"]["raw_outputs"] == local["base"][1]["result"]["raw_outputs"]
    assert out["result"]["nll_per_example"] == pytest.approx(local["base"][1]["result"]["nll_per_example"], **TOL)
    assert len(store.eval_outputs(eid)) == EVAL.n_examples
    assert store.scalar("SELECT count(*) FROM evals WHERE run_id = ?", [BASE_RUN]) == 1
