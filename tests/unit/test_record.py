"""Results of record (igds.store.record): an intervention run written as one file and imported into a fresh store,
idempotently and resumably, with clear errors for a bad file. Rows are built directly, no model."""

import io
import json
import zipfile

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from igds.store import ActivationStore
from igds.store.record import (
    MANIFEST,
    RecordError,
    export_run,
    import_records,
    import_run,
    read_manifest,
)

RUN, OTHER = "a1b2c3d4e5f60718", "ffffeeeeddddcccc"
DEV = [f"ex{i:02d}" for i in range(5)]
TABLES = ("effects", "effect_summary", "attribution", "null_effects", "null_summary")
KEYS = {"effects": "feature, kind, alpha, example_id", "effect_summary": "feature, kind, alpha",
        "attribution": "feature", "null_effects": "null_id, example_id", "null_summary": "null_id"}


def start(store, run_id=RUN, preset="paper", task="summarization", model_key="m1", sae_key="s1"):
    store.start_run(run_id, "intervene", {"intervene": {"positions": "content", "alphas": [0.5, 1.0]}, "task": task,
                                          "recall_id": "rec0", "compute": "fp32", "method_preset": preset},
                    model_key, sae_key, n_total=4)


def add_feature(store, feature, run_id=RUN, shift=0.0, dev=DEV, n=None):
    nll = [1.0 + 0.1 * i + shift for i in range(len(dev))]
    rows, summ = [], []
    for kind, alpha in (("amplify", 1.0), ("ablate", 0.0)):
        rows.append(pd.DataFrame({"effect_id": run_id, "feature": feature, "kind": kind, "alpha": alpha,
                                  "example_id": dev, "nll_base": nll, "nll_int": [x - 0.01 * feature for x in nll]}))
        summ.append({"effect_id": run_id, "feature": feature, "kind": kind, "alpha": alpha, "n": n or len(dev),
                     "n_fired": 3, "effect": 0.01 * feature + 1e-17 * feature, "ci_low": -0.1, "ci_high": 0.2,
                     "p_value": 0.012345678901234567, "seconds": 0.5})
    store.write_feature_effects(pd.concat(rows, ignore_index=True), pd.DataFrame(summ))


def add_null(store, null_id, run_id=RUN):
    eff = pd.DataFrame({"effect_id": run_id, "null_id": null_id, "example_id": DEV,
                        "nll_base": [1.0] * len(DEV), "nll_int": [1.0 + 1e-9 * null_id] * len(DEV)})
    summ = pd.DataFrame([{"effect_id": run_id, "null_id": null_id, "kind": "direction", "feature": -1, "matched": -1,
                          "edit_norm": 0.3, "n": len(DEV), "n_fired": len(DEV), "effect": -1e-9 * null_id,
                          "ci_low": -0.1, "ci_high": 0.1, "p_value": 0.5, "seconds": 0.2}])
    store.write_null_effect(eff, summ)


def add_attribution(store, run_id=RUN, d_sae=16):
    store.write_attribution(pd.DataFrame({"effect_id": run_id, "feature": range(d_sae),
                                          "mean_act": [0.1 * f for f in range(d_sae)],
                                          "est_amplify": [1 / (f + 3) for f in range(d_sae)],
                                          "est_ablate": [-1 / (f + 7) for f in range(d_sae)]}))


def rows(store, table, run_id=RUN):
    return store.query_df(f"SELECT * FROM {table} WHERE effect_id = ? ORDER BY {KEYS[table]}", [run_id])


def count(store, table, run_id=RUN):
    return int(store.scalar(f"SELECT count(*) FROM {table} WHERE effect_id = ?", [run_id]))


@pytest.fixture
def source(tmp_path):
    """A store holding a finished run RUN (2 features, 2 null elements, attribution) and another run's rows."""
    store = ActivationStore(tmp_path / "source.duckdb")
    start(store)
    add_attribution(store)
    for f in (3, 7):
        add_feature(store, f)
    for i in (0, 1):
        add_null(store, i)
    store.update_run(RUN, status="done", n_done=2, message="1 of 2 kept")
    start(store, OTHER, preset="fast")
    add_feature(store, 3, run_id=OTHER, shift=1.0)
    return store


def test_round_trip_gives_identical_rows_and_runs_row(source, tmp_path):
    path = export_run(source, RUN, tmp_path / "records")
    assert path.name == f"summarization.content.paper.{RUN}.zip"
    manifest = read_manifest(path)
    assert (manifest["run_id"], manifest["stage"], manifest["task"], manifest["scope"], manifest["preset"],
            manifest["status"]) == (RUN, "intervene", "summarization", "content", "paper", "done")
    assert {t: manifest["tables"][t]["rows"] for t in TABLES} == {t: count(source, t) for t in TABLES}
    assert manifest["tables"]["effects"]["rows"] == 20 and manifest["tables"]["runs"]["rows"] == 1
    with zipfile.ZipFile(path) as zf:  # stored dtypes and compression kept
        meta = pq.read_metadata(io.BytesIO(zf.read("tables/effect_summary.parquet")))
        schema = meta.schema.to_arrow_schema()
    assert schema.field("effect").type == pa.float64() and schema.field("feature").type == pa.int32()
    assert meta.row_group(0).column(0).compression == "ZSTD"

    fresh = ActivationStore(tmp_path / "fresh.duckdb")
    done = import_run(fresh, path)
    assert done.added == {**{t: count(source, t) for t in TABLES}, "runs": 1}
    assert (done.status_before, done.status_after) == (None, "done")
    for t in TABLES:
        pd.testing.assert_frame_equal(rows(fresh, t), rows(source, t), check_exact=True)
        assert count(fresh, t, OTHER) == 0  # only the exported run's rows travel
    # the runs row as stored, but for when this store last read the run back (the importing store's own)
    pd.testing.assert_frame_equal(fresh.query_df("SELECT * EXCLUDE (updated) FROM runs WHERE run_id = ?", [RUN]),
                                  source.query_df("SELECT * EXCLUDE (updated) FROM runs WHERE run_id = ?", [RUN]),
                                  check_exact=True)
    assert "updated" not in manifest["tables"]["runs"]["columns"]
    assert fresh.measured_features(RUN) == {3, 7} and fresh.measured_nulls(RUN) == {0, 1}
    assert fresh.run(OTHER) is None


def test_reimport_adds_nothing_and_unchanged_export_keeps_the_file(source, tmp_path):
    folder = tmp_path / "records"
    path = export_run(source, RUN, folder)
    before = path.read_bytes()
    assert export_run(source, RUN, folder) == path and path.read_bytes() == before
    fresh = ActivationStore(tmp_path / "fresh.duckdb")
    first = import_records(fresh, folder)
    assert [d.run_id for d in first] == [RUN] and first[0].changed
    again = import_run(fresh, path)
    assert not again.changed and set(again.added.values()) == {0}
    assert import_records(fresh, folder) == []  # the manifest check finds it up to date: nothing opened
    assert [count(fresh, t) for t in TABLES] == [count(source, t) for t in TABLES]
    assert fresh.scalar("SELECT count(*) FROM runs") == 1


def test_partial_then_more_unions_rows_and_never_moves_status_back(tmp_path):
    src = ActivationStore(tmp_path / "source.duckdb")
    start(src)
    add_attribution(src)
    add_feature(src, 3)
    add_null(src, 0)
    src.update_run(RUN, status="partial", n_done=1)
    partial = export_run(src, RUN, tmp_path / "partial.zip")
    add_feature(src, 7)
    add_feature(src, 9)
    add_null(src, 1)
    src.update_run(RUN, status="done", n_done=3)
    full = export_run(src, RUN, tmp_path / "full.zip")

    dst = ActivationStore(tmp_path / "dest.duckdb")
    start(dst)  # this machine began the same run and measured feature 9 itself (other numbers) and feature 11
    add_feature(dst, 9, shift=0.5)
    add_feature(dst, 11)
    dst.update_run(RUN, status="partial", n_done=2)
    first = import_run(dst, partial)
    assert first.added["effect_summary"] == 2 and first.added["runs"] == 0
    assert (first.status_before, first.status_after) == ("partial", "partial")
    assert dst.measured_features(RUN) == {3, 9, 11} and dst.measured_nulls(RUN) == {0}

    second = import_run(dst, full)
    assert second.added["effect_summary"] == 2 and second.added["effects"] == 10  # feature 7 only; 9 stays ours
    assert (second.status_before, second.status_after) == ("partial", "done")
    assert dst.measured_features(RUN) == {3, 7, 9, 11} and dst.measured_nulls(RUN) == {0, 1}
    run = dst.run(RUN)
    assert run["status"] == "done" and run["n_done"] == 3
    dup = dst.query_df("SELECT feature, kind, alpha, example_id, count(*) AS n FROM effects WHERE effect_id = ? "
                       "GROUP BY ALL HAVING count(*) > 1", [RUN])
    assert dup.empty
    ours = dst.query_df("SELECT nll_base FROM effects WHERE effect_id = ? AND feature = 9 ORDER BY example_id", [RUN])
    assert ours.nll_base.iloc[0] == pytest.approx(1.5)  # the store's own measurement is kept

    back = import_run(dst, partial)  # the older file again: nothing added, done stays done
    assert not back.changed and dst.run(RUN)["status"] == "done"


def test_a_later_look_replaces_the_summary_that_counts_fewer_rows(tmp_path):
    src = ActivationStore(tmp_path / "source.duckdb")
    start(src)
    add_feature(src, 3, dev=DEV[:3])  # the first look: 3 dev items
    src.update_run(RUN, status="partial", n_done=1)
    first = export_run(src, RUN, tmp_path / "look1.zip")
    with src.connect() as con:  # the next look: the same job over 5 items, its summary replacing the first
        con.execute("DELETE FROM effect_summary WHERE effect_id = ? AND feature = 3", [RUN])
    add_feature(src, 3, dev=DEV[3:], n=len(DEV))
    second = export_run(src, RUN, tmp_path / "look2.zip")

    dst = ActivationStore(tmp_path / "dest.duckdb")
    import_run(dst, first)
    assert set(dst.effect_summary(RUN).n) == {3}
    more = import_run(dst, second)
    assert more.added["effects"] == 4 and more.added["effect_summary"] == 0
    assert more.replaced["effect_summary"] == 2 and set(dst.effect_summary(RUN).n) == {5}
    assert count(dst, "effect_summary") == 2 and count(dst, "effects") == 10
    back = import_run(dst, first)  # the earlier look never replaces the later one
    assert not back.changed and set(dst.effect_summary(RUN).n) == {5}


def test_a_running_run_is_written_as_partial(tmp_path):
    src = ActivationStore(tmp_path / "source.duckdb")
    start(src)
    add_feature(src, 3)
    m = read_manifest(export_run(src, RUN, tmp_path / "r.zip"))
    assert (m["status"], m["stored_status"]) == ("partial", "running")
    dst = ActivationStore(tmp_path / "dest.duckdb")
    import_run(dst, tmp_path / "r.zip")
    assert dst.run(RUN)["status"] == "partial" and dst.measured_features(RUN) == {3}


def test_columns_and_tables_added_later_travel(tmp_path):
    src, dst = stores = [ActivationStore(tmp_path / f"{n}.duckdb") for n in ("a", "b")]
    start(src)
    add_feature(src, 3)
    for s in stores:  # what another engineer's later schema adds
        with s.connect() as con:
            con.execute("ALTER TABLE effect_summary ADD COLUMN IF NOT EXISTS q_note VARCHAR")
            con.execute("CREATE TABLE IF NOT EXISTS effect_extra (effect_id VARCHAR NOT NULL, k INTEGER NOT NULL, "
                        "v DOUBLE, PRIMARY KEY (effect_id, k))")
    with src.connect() as con:
        con.execute("UPDATE effect_summary SET q_note = 'kept' WHERE effect_id = ?", [RUN])
        con.execute("INSERT INTO effect_extra VALUES (?, 1, 0.25), (?, 2, 0.5)", [RUN, RUN])
    path = export_run(src, RUN, tmp_path / "r.zip")
    assert read_manifest(path)["tables"]["effect_extra"]["rows"] == 2
    import_run(dst, path)
    assert set(dst.effect_summary(RUN).q_note) == {"kept"}
    assert dst.query_df("SELECT k, v FROM effect_extra ORDER BY k").v.tolist() == [0.25, 0.5]
    plain = ActivationStore(tmp_path / "plain.duckdb")  # a store without the new table says which
    with pytest.raises(RecordError, match=r"r\.zip.*effect_extra"):
        import_run(plain, path)
    assert plain.run(RUN) is None  # nothing half-imported


def rewrite(path, out, manifest=None, drop_column=None, cast=None):
    """A copy of the record ``path`` at ``out`` with its manifest replaced, one column dropped or one cast
    (``(table, column, arrow type)``)."""
    with zipfile.ZipFile(path) as zf, zipfile.ZipFile(out, "w") as zo:
        for name in zf.namelist():
            data = zf.read(name)
            if name == MANIFEST and manifest is not None:
                data = json.dumps(manifest).encode()
            if drop_column and name == f"tables/{drop_column[0]}.parquet":
                t = pq.read_table(io.BytesIO(data)).drop_columns([drop_column[1]])
                buf = io.BytesIO()
                pq.write_table(t, buf)
                data = buf.getvalue()
            if cast and name == f"tables/{cast[0]}.parquet":
                t = pq.read_table(io.BytesIO(data))
                i = t.schema.get_field_index(cast[1])
                t = t.set_column(i, cast[1], t.column(i).cast(cast[2]))
                buf = io.BytesIO()
                pq.write_table(t, buf)
                data = buf.getvalue()
            zo.writestr(name, data)
    return out


def test_malformed_files_name_the_file_and_the_field(source, tmp_path):
    good = export_run(source, RUN, tmp_path / "good.zip")
    manifest = read_manifest(good)
    dst = ActivationStore(tmp_path / "dest.duckdb")

    no_id = rewrite(good, tmp_path / "no_id.zip", {k: v for k, v in manifest.items() if k != "run_id"})
    with pytest.raises(RecordError, match=r"no_id\.zip.*'run_id'"):
        import_run(dst, no_id)
    dropped = rewrite(good, tmp_path / "dropped.zip", drop_column=("effect_summary", "p_value"))
    with pytest.raises(RecordError, match=r"dropped\.zip: column effect_summary\.p_value"):
        import_run(dst, dropped)
    no_table = {**manifest, "tables": {k: v for k, v in manifest["tables"].items() if k != "runs"}}
    with pytest.raises(RecordError, match=r"no_table\.zip.*'runs'"):
        import_run(dst, rewrite(good, tmp_path / "no_table.zip", no_table))
    retyped = rewrite(good, tmp_path / "retyped.zip", cast=("null_summary", "effect", pa.string()))
    with pytest.raises(RecordError, match=r"retyped\.zip: column null_summary\.effect: the file holds VARCHAR"):
        import_run(dst, retyped)
    narrowed = rewrite(good, tmp_path / "narrowed.zip", cast=("effect_summary", "p_value", pa.float32()))
    with pytest.raises(RecordError, match=r"narrowed\.zip: column effect_summary\.p_value: the file holds FLOAT"):
        import_run(dst, narrowed)  # float32 is not the precision of record
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(RecordError, match=r"junk\.zip: not a readable run record"):
        import_run(dst, junk)
    assert dst.run(RUN) is None and count(dst, "effects") == 0  # nothing of a bad file is kept

    folder = tmp_path / "mixed"
    folder.mkdir()
    export_run(source, RUN, folder)
    junk.rename(folder / "junk.zip")
    with pytest.raises(RecordError, match="junk.zip"):
        import_records(dst, folder)
    assert [d.run_id for d in import_records(dst, folder, strict=False)] == [RUN]  # the good one still comes in


def test_folder_import_takes_only_the_workspace_model_and_sae(source, tmp_path):
    folder = tmp_path / "records"
    export_run(source, RUN, folder)
    export_run(source, OTHER, folder)
    with source.connect() as con:
        con.execute("UPDATE runs SET model_key = 'm2' WHERE run_id = ?", [OTHER])
    export_run(source, OTHER, folder)  # the same file, now another model's run
    dst = ActivationStore(tmp_path / "dest.duckdb")
    got = import_records(dst, folder, model_key="m1", sae_key="s1")
    assert [d.run_id for d in got] == [RUN] and dst.run(OTHER) is None


def test_workspace_hook_honours_igds_records(source, tmp_path, monkeypatch):
    from igds.workflow.workspace import import_results_of_record

    folder = tmp_path / "records"
    export_run(source, RUN, folder)
    dst = ActivationStore(tmp_path / "dest.duckdb")
    monkeypatch.setenv("IGDS_RECORDS", "off")
    assert import_results_of_record(dst, "m1", "s1") == [] and dst.run(RUN) is None
    monkeypatch.setenv("IGDS_RECORDS", str(folder))
    assert [d.run_id for d in import_results_of_record(dst, "m1", "s1")] == [RUN]
    assert dst.run(RUN)["status"] == "done"
    assert import_results_of_record(dst, "m1", "s1") == []


def test_cli_exports_and_imports(source, tmp_path, monkeypatch, capsys):
    from igds.cli import main

    out = tmp_path / "records"
    monkeypatch.setenv("IGDS_STORE", str(source.path))
    assert main(["record", "export", "--run", RUN, "--out", str(out)]) == 0
    assert f"{RUN}.zip" in capsys.readouterr().out
    assert main(["record", "export", "--run", "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    monkeypatch.setenv("IGDS_STORE", str(tmp_path / "dest.duckdb"))
    assert main(["record", "import", str(out)]) == 0
    assert "new -> done" in capsys.readouterr().out
    assert ActivationStore(tmp_path / "dest.duckdb").measured_features(RUN) == {3, 7}


def test_a_record_carries_its_recall_so_the_importing_store_can_read_the_run(source, tmp_path):
    from igds.method.recall import load_recall

    source.start_run("rec0", "recall", {"task": "summarization", "recall": {"k_recall": 2}}, "m1", "s1")
    source.update_run("rec0", status="done")
    source.write_recall("rec0", pd.DataFrame({
        "recall_id": "rec0", "task": "summarization", "feature": [3, 7, 9], "freq_task": [0.5, 0.4, 0.1],
        "freq_ref": 0.1, "tok_freq_task": 0.05, "tok_freq_ref": 0.01, "lift": [5.0, 4.0, 1.0], "mean_act_task": 2.0,
        "max_act_task": 9.0, "is_candidate": [True, True, False], "rank": [1, 2, 3]}))
    path = export_run(source, RUN, tmp_path / "records")
    manifest = read_manifest(path)
    assert manifest["tables"]["parent.recall"]["rows"] == 3 and manifest["tables"]["parent.runs"]["rows"] == 1
    fresh = ActivationStore(tmp_path / "fresh.duckdb")
    done = import_run(fresh, path)
    assert done.added["parent.recall"] == 3 and done.added["parent.runs"] == 1
    assert load_recall(fresh, "rec0").candidates == [3, 7] and fresh.run("rec0")["status"] == "done"
    assert import_records(fresh, path.parent) == []  # up to date: run and recall both there
    with fresh.transaction() as con:  # a store that lost the recall takes it from the file again
        con.execute("DELETE FROM recall WHERE recall_id = 'rec0'")
    assert [d.added["parent.recall"] for d in import_records(fresh, path.parent)] == [3]
