from pathlib import Path

from streamlit.testing.v1 import AppTest

from igds.data.corpus import load_corpus
from igds.store import ActivationStore
from igds.ui.widgets import md_text

ROOT = Path(__file__).resolve().parents[2]


def test_fresh_workspace_shows_bootstrap_button_not_a_blank_page():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "IGDS workspace"
    assert any("not prepared" in i.value for i in at.info)
    assert at.button(key="bootstrap_start").label == "Start"


def test_bootstrap_button_starts_a_background_job(monkeypatch):
    started = []
    monkeypatch.setattr("igds.jobs.start_job", lambda kind, params: started.append((kind, params)) or "job-1")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.button(key="bootstrap_start").click().run()
    assert not at.exception
    assert started == [("bootstrap", {})]


def test_running_bootstrap_job_shows_its_progress():
    from igds.jobs import JobContext, _new_job

    job_id = _new_job("bootstrap", {}, None)
    ctx = JobContext(job_id, detached=False)
    ctx.progress(30, 100, "train SAE: step 90/292")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    texts = [p.proto.text for p in at.get("progress")]
    assert any(md_text("train SAE: step 90/292 · no estimate yet") in t for t in texts)  # shown as text


def test_populated_store_lists_corpus_and_sae_quality():
    store = ActivationStore()
    examples = load_corpus(tasks=["math"], splits=["probe"])
    store.add_examples(examples, dataset="demo")
    store.register_sae("k1", {"name": "sae-x", "source": "default", "site": "blocks.1.hook_resid_post",
                              "d_in": 32, "d_sae": 64, "architecture": "topk"},
                       {"explained_variance": 0.81, "l0": 32.0, "dead_fraction": 0.1, "ce_recovered": 0.9})
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert at.metric[0].value == f"{len(examples):,}"
    frames = [df.value for df in at.dataframe]
    sae_df = next(f for f in frames if "explained_variance" in getattr(f, "columns", []))
    assert sae_df["explained_variance"].iloc[0] == 0.81
    corpus_df = next(f for f in frames if "probe" in getattr(f, "columns", []))
    assert int(corpus_df.loc["math", "probe"]) == len(examples)
