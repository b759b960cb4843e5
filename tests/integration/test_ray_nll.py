"""The baselines' NLL table through Ray actors (issue 17): the stage reads the workspace's executor setting, the
actors' rows equal the local table's, each chunk is stored once, and a second call computes nothing."""

import numpy as np

from igds.data.corpus import task_pool
from igds.executor.config import ExecutorConfig, save_executor_config
from igds.modeling.nll import nll_table
from igds.workflow.stages import cached_nll_table
from igds.workflow.workspace import Workspace
from tests.integration.test_ray_executor import SITE, tiny_folders, tiny_store  # noqa: F401 (fixture)


def test_nll_table_through_ray_equals_the_local_one_and_is_cached(ray_local, tiny_folders, tmp_path):  # noqa: F811
    store, run_id, model, tok, sae, _ = tiny_store(tmp_path / "s.duckdb", tiny_folders)
    run = store.run(run_id)
    ws = Workspace(store=store, model=model, tokenizer=tok, sae=sae, model_key=run["model_key"],
                   sae_key=run["sae_key"], site=SITE, sae_info={})
    examples = task_pool("summarization")[:10]
    local = nll_table(model, tok, examples, max_length=64)
    save_executor_config(store, ExecutorConfig(kind="ray", actors=2, cpus_per_actor=1.0))
    messages = []
    got = cached_nll_table(ws, examples, lambda d, t, m: messages.append(m), 64)
    assert any("starting 2 Ray actor" in m for m in messages)
    assert list(got.example_id) == list(local.example_id)
    # a chunk pads its own length batches: equal up to float rounding of the padded matmuls
    np.testing.assert_allclose(got.nll_cond, local.nll_cond, rtol=1e-5)
    np.testing.assert_allclose(got.nll_uncond, local.nll_uncond, rtol=1e-5)
    assert store.example_nll(ws.model_key).example_id.is_unique and len(store.example_nll(ws.model_key)) == 10
    messages.clear()
    again = cached_nll_table(ws, examples, lambda d, t, m: messages.append(m), 64)
    assert not messages and len(again) == 10
