"""Interventions through Ray actors (issue 17): the candidate features and the null elements split over two
actors, each with its own cached dev prefix, give the local executor's effects; the driver writes them."""

import numpy as np
import pandas as pd
import pytest

from igds.executor.config import ExecutorConfig
from igds.executor.intervene import chunks, measure_effects_ray
from igds.method.intervene import InterventionConfig, feature_acts_at, measure_effects, prepare_dev
from tests.helpers import make_items
from tests.integration.test_ray_executor import SITE, tiny_folders, tiny_store  # noqa: F401 (fixture)

# fp32 (no autocast) so both sides compute in the same mode; 6 candidates, 4 + 2 null elements
ICFG = InterventionConfig(null_directions=4, null_features=2, precision="fp32", sweep_top=2, batch_rows=16)
# a chunk of features replays its rows in batches of its own: matmuls over other row counts differ in the last bits
ATOL = 1e-5


def setup_run(path, folders):
    store, _, model, tok, sae, _ = tiny_store(path, folders)
    items = make_items(tok, repeat=2)
    cache = prepare_dev(model, SITE, items, tok.pad_token_id, ICFG)
    acts = feature_acts_at(sae, cache, range(int(sae.cfg.d_sae)))
    count = (acts > 0).sum((0, 1))
    cands = [int(f) for f in np.argsort(-count.numpy(), kind="stable")[:6]]
    density = (acts > 0).float().mean((0, 1)).numpy()
    mean_act = np.where(density > 0, 1.0, np.nan)
    mkey = store.query_df("SELECT model_key FROM models").model_key[0]
    skey = store.query_df("SELECT sae_key FROM saes").sae_key[0]
    store.start_run("e", "intervene", {"intervene": ICFG.to_dict(), "compute": "fp32"}, mkey, skey,
                    n_total=len(cands))
    return store, model, tok, sae, items, cands, density, mean_act


def test_chunks_cut_in_order_without_loss():
    assert chunks(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert chunks([1], 4) == [[1]] and chunks([], 4) == []


def test_interventions_through_ray_give_the_local_effects(ray_local, tiny_folders, tmp_path):  # noqa: F811
    store, model, tok, sae, items, cands, density, mean_act = setup_run(tmp_path / "local.duckdb", tiny_folders)
    local = measure_effects(store, "e", model, sae, SITE, items, cands, mean_act, ICFG, tok.pad_token_id,
                            density=density)
    rstore, _, tok, _, items, cands_r, density_r, mean_act = setup_run(tmp_path / "ray.duckdb", tiny_folders)
    assert cands_r == cands
    messages = []
    got = measure_effects_ray(rstore, "e", SITE, items, cands, mean_act, ICFG, tok.pad_token_id,
                              ExecutorConfig(kind="ray", actors=2, cpus_per_actor=1.0), density=density_r,
                              progress=lambda d, t, m: messages.append(m))
    assert rstore.run("e")["status"] == "done" and any("starting 2 Ray actor" in m for m in messages)
    # the same rows: every (feature, kind, alpha) job and every null element, once
    key = ["feature", "kind", "alpha"]
    a, b = local.summary.sort_values(key).reset_index(drop=True), got.summary.sort_values(key).reset_index(drop=True)
    assert len(a) == len(b) == 6 * 2 + 2 * 2 and a[key].equals(b[key])
    np.testing.assert_allclose(b.effect, a.effect, atol=ATOL)
    np.testing.assert_allclose(b.p_value, a.p_value, atol=1e-4)
    assert (a.n_fired == b.n_fired).all()
    assert len(got.null) == len(local.null) == 6
    pd.testing.assert_frame_equal(local.null[["null_id", "kind", "feature", "matched"]],
                                  got.null[["null_id", "kind", "feature", "matched"]])
    np.testing.assert_allclose(got.null.edit_norm, local.null.edit_norm, rtol=1e-6)
    np.testing.assert_allclose(got.null.effect, local.null.effect, atol=ATOL)
    np.testing.assert_allclose(got.attribution.est_amplify, local.attribution.est_amplify, rtol=1e-5, atol=1e-7)
    assert got.kept == local.kept and got.null_cut == pytest.approx(local.null_cut, abs=ATOL)
    n = rstore.scalar("SELECT count(*) FROM effects WHERE effect_id = 'e'")
    assert n == store.scalar("SELECT count(*) FROM effects WHERE effect_id = 'e'") == len(a) * len(items)
    # a rerun finds everything stored and starts no actor
    messages.clear()
    again = measure_effects_ray(rstore, "e", SITE, items, cands, mean_act, ICFG, tok.pad_token_id,
                                ExecutorConfig(kind="ray"), density=density_r,
                                progress=lambda d, t, m: messages.append(m))
    assert not messages and len(again.summary) == len(a)
    assert rstore.scalar("SELECT count(*) FROM effects WHERE effect_id = 'e'") == n
