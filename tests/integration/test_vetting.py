"""Vetting (issue 16): the queue starts around the cut, decisions re-rank the session's selection, undo takes back
the latest action, bulk decisions by filter, applying decisions as task overrides, the export manifest lists the
decisions, and the pool's token highlights are stored within their row budget."""

import functools
import json
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from igds.method.pool import pool_records
from igds.method.resonance import ResonanceConfig
from igds.method.selection import SelectionConfig, load_overrides, load_selection
from igds.method.vetting import (
    VetFilter,
    apply_decisions,
    apply_to_overrides,
    bulk_decide,
    decide,
    open_session,
    queue_order,
    undo,
    vetting_counts,
    vetting_lineage,
)
from igds.ranking import rank_key
from igds.store import ActivationStore
from igds.workflow.explore import task_state
from igds.workflow.stages import latest_effects, live_selection

TASK = "summarization"
SEL = SelectionConfig(ratio=0.5)
RES = ResonanceConfig()


def tiny_workspace(store: ActivationStore) -> SimpleNamespace:
    """The tiny model, tokenizer and SAE :func:`igds.demo.build_tiny_workspace` stores, as a workspace."""
    from igds.demo import tiny_model, tiny_sae, tiny_tokenizer

    model = tiny_model()
    sae = tiny_sae(d_in=model.config.hidden_size, layer=1, seed=0)
    return SimpleNamespace(store=store, model=model, tokenizer=tiny_tokenizer(), sae=sae, sae_key="tiny-sae",
                           site="blocks.1.hook_resid_post")


@functools.cache
def vetting_store_file() -> Path:
    """A tiny workspace with the summarization pool's highlights stored, built once per test process (the page
    and browser tests copy it too)."""
    import torch

    from igds.demo import build_tiny_workspace
    from igds.workflow.highlights import ensure_pool_highlights

    torch.set_num_threads(1)
    path = Path(tempfile.mkdtemp(prefix="igds-vetting-")) / "igds.duckdb"
    store = ActivationStore(path)
    keys = build_tiny_workspace(store)
    ensure_pool_highlights(tiny_workspace(store), keys["run_id"], TASK)
    return path


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "igds.duckdb"
    shutil.copy(vetting_store_file(), path)
    return ActivationStore(path)


def live(store):
    state = task_state(store, TASK)
    sp, chosen = live_selection(store, state.extract_run, TASK, latest_effects(store, TASK), SEL, RES, state.sae_key)
    return state, sp, chosen


def test_queue_starts_around_the_cut_then_by_uncertainty(store):
    _, sp, chosen = live(store)
    ids, inside = list(sp.scores.example_id), set(chosen.example_id)
    k = len(chosen)
    assert ids[:k] == list(chosen.example_id)  # no overrides: the selection is the ranking's head
    q = queue_order(sp.scores, chosen.example_id, "around the cut")
    assert q[:6] == [ids[k - 1], ids[k], ids[k - 2], ids[k + 1], ids[k - 3], ids[k + 2]]
    assert sorted(q) == sorted(ids)  # every example, once
    assert [e in inside for e in q[:6]] == [True, False] * 3
    u = queue_order(sp.scores, chosen.example_id, "by uncertainty")
    # the defined order: |FRS - cut| at the ranking resolution, ties in ranking order
    frs = dict(zip(ids, rank_key(sp.scores.frs), strict=True))
    cut = (frs[ids[k - 1]] + frs[ids[k]]) / 2
    dist = list(rank_key([abs(frs[e] - cut) for e in u]))
    pos = {e: i for i, e in enumerate(ids)}
    assert dist == sorted(dist)
    assert all(pos[a] < pos[b] for a, b, da, db in zip(u, u[1:], dist, dist[1:], strict=False) if da == db)
    nearest = {e for e, d in zip(u, dist, strict=True) if d == dist[0]}
    assert {ids[k - 1], ids[k]} <= nearest  # both sides of the cut are the nearest (with any exact ties)
    # a filter queues what it matches, in ranking order; task overrides are decided already
    general = queue_order(sp.scores, chosen.example_id, "filter", flt=VetFilter(sources=("debian-ddtp",)))
    src = dict(zip(sp.scores.example_id, sp.scores.source, strict=True))
    assert len(general) == 120 and all(src[e] == "debian-ddtp" for e in general)
    assert general == [e for e in ids if e in set(general)]
    from igds.method.selection import Overrides

    ov = Overrides(pinned_examples=frozenset([ids[k - 1]]))
    assert ids[k - 1] not in queue_order(sp.scores, chosen.example_id, "around the cut", overrides=ov)


def test_decisions_rerank_the_session_selection_undo_and_redecide(store):
    state, sp, chosen = live(store)
    ids, k = list(sp.scores.example_id), len(chosen)
    sid = open_session(store, TASK, user="ada", extract_run=state.extract_run, pool_setting="mixed")
    below, weakest, top = ids[k], ids[k - 1], ids[0]
    decide(store, sid, [below], "accept", note="on topic")
    decide(store, sid, [top], "reject", note="a duplicate")
    d = store.session_decisions(sid)
    vetted = apply_decisions(sp.scores, SEL, sp.overrides, d, RES.higher_first)
    assert len(vetted) == k  # the ratio still holds
    assert below in set(vetted.example_id) and top not in set(vetted.example_id)
    assert set(vetted.example_id) == (set(ids[:k]) - {top}) | {below}  # the accept took the weakest's place...
    assert weakest in set(vetted.example_id) and vetted.example_id.iloc[0] == below  # ...the reject freed one
    # the task's overrides did not change: another selection does not see the session
    assert load_overrides(store, TASK) == sp.overrides
    assert list(d.decision) == ["accept", "reject"] and list(d.user_name) == ["ada", "ada"]
    assert list(d.note) == ["on topic", "a duplicate"]

    assert undo(store, sid) == [top]
    d = store.session_decisions(sid)
    assert list(d.example_id) == [below]
    assert top in set(apply_decisions(sp.scores, SEL, sp.overrides, d, True).example_id)
    # re-deciding replaces the decision; the history keeps both, the undone one marked
    decide(store, sid, [below], "reject")
    d = store.session_decisions(sid)
    assert list(d.decision) == ["reject"] and below not in set(apply_decisions(sp.scores, SEL, sp.overrides, d,
                                                                                True).example_id)
    hist = store.decision_history(sid)
    assert len(hist) == 3 and hist.undone_seq.notna().sum() == 1
    assert list(store.session_decisions(sid, as_of=1).decision) == ["accept"]  # as they stood after action 1
    c = vetting_counts(store.session_decisions(sid), queue_order(sp.scores, chosen.example_id))
    assert (c.decided, c.accepted, c.rejected, c.queue) == (1, 0, 1, len(ids))


def test_bulk_decision_by_filter_is_one_action(store):
    state, sp, chosen = live(store)
    sid = open_session(store, TASK, extract_run=state.extract_run, pool_setting="mixed")
    general = set(sp.scores.example_id[sp.scores.task == "general"])
    sources = tuple(sorted(set(sp.scores.source[sp.scores.task == "general"])))  # the off-task data's sources
    done = bulk_decide(store, sid, sp.scores, VetFilter(sources=sources), "reject", matrix=sp.matrix)
    assert set(done) == general
    d = store.session_decisions(sid)
    assert d.seq.nunique() == 1 and d.note.iloc[0].startswith(f"bulk: source {sources[0]} | ")
    vetted = apply_decisions(sp.scores, SEL, sp.overrides, d, True)
    assert not set(vetted.example_id) & general and len(vetted) == len(chosen)
    assert set(undo(store, sid)) == general and store.session_decisions(sid).empty  # one undo takes it all back
    # length, score and feature filters
    s = sp.scores
    lo, hi = float(s.n_tokens.quantile(0.25)), float(s.n_tokens.quantile(0.75))
    m = VetFilter(min_tokens=lo, max_tokens=hi, min_score=0.0).mask(s)
    assert m.sum() and ((s.n_tokens[m] >= lo) & (s.n_tokens[m] <= hi) & (s.frs[m] >= 0)).all()
    f = sp.features[0]
    fired = VetFilter(feature=f).mask(s, sp.matrix)
    col = sp.matrix.features.index(f)
    rows = sp.matrix.pool.example_id.tolist()
    want = {rows[i] for i in np.flatnonzero(np.nan_to_num(sp.matrix.max_act[:, col]) > 0)}
    assert set(s.example_id[fired]) == want
    with pytest.raises(ValueError, match="not a column"):
        VetFilter(feature=10**6).mask(s, sp.matrix)


def test_apply_to_task_overrides_pins_accepts_and_rejects_rejects(store):
    state, sp, chosen = live(store)
    ids, k = list(sp.scores.example_id), len(chosen)
    sid = open_session(store, TASK, extract_run=state.extract_run, pool_setting="mixed")
    decide(store, sid, [ids[k + 5]], "accept")
    decide(store, sid, [ids[2]], "reject")
    decide(store, sid, [ids[3]], "skip")
    assert apply_to_overrides(store, TASK, sid) == {"pinned": 1, "rejected": 1}
    ov = load_overrides(store, TASK)
    assert ov.pinned_examples == {ids[k + 5]} and ov.rejected_examples == {ids[2]}
    _, _, after = live(store)  # every later selection follows them now, without the session
    assert ids[k + 5] in set(after.example_id) and ids[2] not in set(after.example_id)


def test_saved_vetted_selection_and_its_export_manifest_list_the_decisions(store, tmp_path, monkeypatch, capsys):
    from igds.cli import main
    from igds.training.export import ExportConfig, export_selection
    from igds.workflow.tune import selection_examples
    from igds.workflow.vetting import save_vetted_selection

    state, sp, chosen = live(store)
    ids, k = list(sp.scores.example_id), len(chosen)
    sid = open_session(store, TASK, user="ada", extract_run=state.extract_run, pool_setting="mixed")
    decide(store, sid, [ids[k + 1]], "accept", note="keep")
    decide(store, sid, [ids[0]], "reject")
    decide(store, sid, [ids[1]], "skip")
    effects = latest_effects(store, TASK)
    sel = save_vetted_selection(store, state.extract_run, TASK, effects, SEL, RES, sid, state.sae_key)
    info, members = load_selection(store, sel)
    want = apply_decisions(sp.scores, SEL, sp.overrides, store.session_decisions(sid), True)
    assert list(members.id) == list(want.example_id)
    assert info["lineage"]["vetting_session"] == sid and store.vetting_session(sid)["selection_id"] == sel
    decide(store, sid, [ids[2]], "reject")  # after the save: not what the saved selection holds

    lin = vetting_lineage(store, sel, {"selection_id": sel, **info["lineage"]})
    _, examples = selection_examples(store, sel)
    manifest = export_selection(examples, lin, ExportConfig(name="vetted"), tmp_path).manifest
    vet = manifest["lineage"]["vetting"]
    assert [(d["example_id"], d["decision"], d["note"], d["user"]) for d in vet["decisions"]] == [
        (ids[k + 1], "accept", "keep", "ada"), (ids[0], "reject", None, "ada"), (ids[1], "skip", None, "ada")]
    assert all(d["time"] for d in vet["decisions"]) and vet["counts"] == {"accept": 1, "reject": 1, "skip": 1}
    # the CLI's export carries the same entry
    monkeypatch.setenv("IGDS_STORE", str(store.path))
    assert main(["export", "--selection", sel, "--name", "vetted-cli"]) == 0
    out = Path(capsys.readouterr().out.split(" to ")[-1].strip())
    assert json.loads((out / "manifest.json").read_text())["lineage"]["vetting"]["decisions"] == vet["decisions"]
    # a selection without a session exports as before
    assert "vetting" not in vetting_lineage(store, "no-such", {"selection_id": "no-such"})


def test_highlights_are_stored_within_the_row_budget_and_match_the_model(store):
    from igds.method.steer import token_activations
    from igds.modeling.encoding import encode_examples
    from igds.workflow.highlights import HighlightConfig, ensure_pool_highlights

    state, sp, chosen = live(store)
    pool = list(sp.matrix.pool.example_id)
    full = store.highlight_rows(state.extract_run, TASK, pool)
    assert full["examples"] == len(pool) == 240 and full["rows"] <= HighlightConfig().max_rows
    ws = tiny_workspace(store)
    assert ensure_pool_highlights(ws, state.extract_run, TASK)["rows"] == 0  # stored: nothing to do
    # stored values are the model's: one example through the single-example path of the Features page
    eid = chosen.example_id.iloc[0]
    got = store.example_highlights(state.extract_run, TASK, eid)
    ex = next(e for e in pool_records(sp.matrix.pool) if e.id == eid)
    item = encode_examples(ws.tokenizer, [ex], 96)[0]
    toks, acts = token_activations(ws.model, ws.tokenizer, ws.sae, ws.site, item.input_ids, got["features"])
    assert got["tokens"] == toks and len(got["in_scope"]) == len(toks)
    for j, f in enumerate(got["features"]):
        dense = np.zeros(len(toks))
        if f in got["acts"]:
            pos, vals = got["acts"][f]
            dense[pos] = vals
        assert np.allclose(dense, acts[:, j].numpy(), atol=1e-4)
    assert not got["in_scope"][0]  # BOS is never counted
    # a budget: the examples nearest the cut first, nothing past it
    small = ActivationStore(store.path.parent / "small.duckdb")
    shutil.copy(vetting_store_file(), small.path)
    with small.connect() as con:
        con.execute("DELETE FROM highlight_tokens")
        con.execute("DELETE FROM highlight_acts")
    out = ensure_pool_highlights(tiny_workspace(small), state.extract_run, TASK, cfg=HighlightConfig(max_rows=300))
    rows = small.highlight_rows(state.extract_run, TASK, pool)
    assert 0 < rows["rows"] <= 300 and out["over_budget"] == len(pool) - rows["examples"] > 0
    first = queue_order(sp.scores, chosen.example_id, "by uncertainty")[: rows["examples"]]
    assert small.highlighted_examples(state.extract_run, TASK) == set(first)
