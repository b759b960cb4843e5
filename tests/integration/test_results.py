"""Fine-tune/eval/amplification records in the store, readers and the correlation over runs."""

import json
import math

import pytest

from igds.store import ActivationStore
from igds.training.results import (
    base_eval,
    compute_correlations,
    correlations_table,
    eval_outputs,
    record_amplification,
    record_eval,
    record_finetune,
    runs_table,
)


def _eval_result(score: float, nll: float, ids=("e1", "e2")) -> dict:
    return {"task": "summarization", "metric": "rouge_l", "score": score, "n": len(ids), "example_ids": list(ids),
            "raw_outputs": [f"out {i}" for i in ids], "predictions": [f"out {i}" for i in ids],
            "references": [f"ref {i}" for i in ids], "per_example": [score] * len(ids),
            "nll": nll, "nll_per_example": [nll, float("nan")], "slices": {}, "seconds": 1.5}


def test_record_read_back_and_correlate(tmp_path):
    store = ActivationStore(tmp_path / "igds.duckdb")
    base_id = record_eval(store, "base", _eval_result(0.20, 3.0), model_key="m1", config={"batch_size": 16})
    assert base_eval(store, "summarization")["eval_id"] == base_id
    amps = [0.05, 0.10, 0.20, 0.40]
    gains = [0.01, 0.03, 0.02, 0.08]
    for i, (amp, gain) in enumerate(zip(amps, gains, strict=True)):
        run = f"ft{i}"
        record_finetune(store, run, "summarization", {"adapter_dir": f"/x/{run}", "device": "cpu", "seed": i,
                                                      "n_train": 100, "global_step": 13, "train_seconds": 9.0,
                                                      "final_loss": 2.0, "status": "done", "precision": "bf16"},
                        config={"r": 8}, selection_id=f"sel{i}", model_key="m1")
        eid = record_eval(store, run, _eval_result(0.20 + gain, 3.0 - 10 * gain), model_key="m1",
                          config={"batch_size": 16})
        record_amplification(store, eid, run, "summarization", {"A": 1.0 + amp, "features": [3, 7],
                                                                 "per_feature": {3: 0.5, 7: 0.5 + amp}},
                             {"A": 1.0, "features": [3, 7], "per_feature": {3: 0.5, 7: 0.5}},
                             {"amplification": amp, "per_feature": {3: 0.0, 7: 2 * amp}})
    runs = runs_table(store, "summarization")
    assert list(runs["run_id"]) == ["ft0", "ft1", "ft2", "ft3"]
    assert list(runs["selection_id"]) == ["sel0", "sel1", "sel2", "sel3"]
    assert runs["metric_gain"].tolist() == pytest.approx(gains)
    assert runs["nll_gain"].tolist() == pytest.approx([10 * g for g in gains])
    assert runs["amplification"].tolist() == pytest.approx(amps)
    # a run evaluated with other settings (other items, lengths or decoding) has no base to be compared with
    record_eval(store, "ft9", _eval_result(0.5, 1.0), model_key="m1", config={"batch_size": 16, "n_examples": 7})
    other = runs_table(store, "summarization").set_index("run_id")
    assert math.isnan(other.metric_gain["ft9"]) and other.metric_gain["ft0"] == pytest.approx(gains[0])

    out = eval_outputs(store, runs["eval_id"][0])
    assert out["prediction"].tolist() == ["out e1", "out e2"] and out["reference"].tolist() == ["ref e1", "ref e2"]
    assert out["nll"][0] == pytest.approx(3.0 - 0.1) and math.isnan(out["nll"][1])

    corr = compute_correlations(store, "summarization", n_boot=300)
    stored = correlations_table(store, "summarization")
    assert len(stored) == 2 and set(stored["y_name"]) == {"metric_gain", "nll_gain"}
    row = corr.set_index("y_name").loc["metric_gain"]
    assert row["n"] == 4 and row["spearman"] == pytest.approx(0.8)
    assert row["spearman_lo"] <= row["spearman"] <= row["spearman_hi"]
    # re-recording an evaluation replaces it instead of duplicating rows
    record_eval(store, "base", _eval_result(0.20, 3.0), model_key="m1", config={"batch_size": 16})
    assert store.scalar("SELECT count(*) FROM eval_outputs WHERE eval_id = ?", [base_id]) == 2
    assert store.scalar("SELECT count(*) FROM evals") == 6  # base, four runs and the one of other settings
    amp_row = store.query_df("SELECT per_feature FROM amplification WHERE run_id = 'ft3'")
    assert json.loads(amp_row["per_feature"][0]) == {"3": 0.0, "7": 0.8}


def test_correlations_with_too_few_runs_are_nan(tmp_path):
    store = ActivationStore(tmp_path / "igds.duckdb")
    record_eval(store, "base", _eval_result(0.2, 3.0))
    corr = compute_correlations(store, "summarization")
    assert corr["n"].tolist() == [0, 0] and corr["pearson"].isna().all()
    assert runs_table(store, "summarization").empty


def test_a_run_folder_cannot_be_trained_twice_at_once(tmp_path):
    import pytest

    from igds.workflow.tune import run_lock

    with run_lock(tmp_path / "ft-x"), pytest.raises(RuntimeError, match="already running"), run_lock(tmp_path / "ft-x"):
        pass
    with run_lock(tmp_path / "ft-x"):  # released afterwards
        pass
