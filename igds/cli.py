"""``python -m igds``: one CLI whose subcommands drive every stage headless, with tqdm progress.

Flags are generated from the same config dataclasses the dashboard uses, so help text is written once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from igds.config import add_config_arguments, config_from_arguments
from igds.jobs.cli import add_job_commands
from igds.method.config import CheckConfig, ExtractConfig, InterventionConfig, RecallConfig
from igds.modeling.config import ModelSpec, SaeSpec, SaeTrainConfig
from igds.training.config import EvalConfig


def _progress():
    from igds.progress import tqdm_progress

    return tqdm_progress()


def cmd_data_summary(args) -> int:
    from igds.data.corpus import corpus_summary, format_summary

    t0 = time.perf_counter()
    print(format_summary(corpus_summary(args.corpus_dir)))
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0


def _bootstrap_config(args):
    """The workspace's chosen model and SAE (``igds workspace use``), the flags given on the command line winning."""
    from igds.store import ActivationStore
    from igds.workflow.workspace import BootstrapConfig, workspace_config

    chosen = workspace_config(ActivationStore())
    return BootstrapConfig(
        tasks=tuple(args.tasks), pool_setting=getattr(args, "pool_setting", None) or "mixed",
        model=config_from_arguments(ModelSpec, args, "model_", base=chosen.model),
        sae=config_from_arguments(SaeSpec, args, "sae_", base=chosen.sae),
        extract=config_from_arguments(ExtractConfig, args),
    )


# -- your own data, tasks, model and SAE ---------------------------------------------------------------
def _mapping(args, source, hub):
    """The column mapping: guessed from the file's columns, the --map-* flags given winning."""
    from igds.data.ingest import ColumnMapping, preview_source

    given = any(getattr(args, "map_" + f, None) is not None for f in ColumnMapping.__dataclass_fields__)
    if not given:
        return None
    guessed = preview_source(source, None, n_show=0, max_problems=0, hub=hub).mapping
    return config_from_arguments(ColumnMapping, args, "map_", base=guessed)


def cmd_data_add(args) -> int:
    from igds.data.ingest import add_dataset, preview_source
    from igds.store import ActivationStore

    hub = (args.hub_config, args.hub_split) if args.hub else None
    mapping = _mapping(args, args.source, hub)
    if args.preview:
        pv = preview_source(args.source, mapping, name=args.name or "", n_show=args.rows, hub=hub)
        print(f"{pv.n_rows:,} rows, {pv.n_records:,} distinct records; columns: {', '.join(pv.columns)}")
        print(f"mapping: {pv.mapping.to_json()}")
        if pv.split_counts and pv.mapping.split:
            print(f"split column {pv.mapping.split!r}: {json.dumps(pv.split_counts)}")
        for r in pv.rows:
            print(f"  row {r['row']}: {r['prompt'][:70]!r} -> {r['response'][:50]!r}")
        for p in pv.problems:
            print(f"problem: {p}")
        return 0 if pv.ok else 1
    res = add_dataset(ActivationStore(), args.source, args.name, mapping, hub=hub, progress=_progress())
    verb = "added" if res.created else "already stored (same file and mapping): nothing written for"
    print(f"{verb} dataset {res.name}: {res.n_rows:,} rows, {res.n_records:,} records ({res.seconds:.1f} s)")
    return 0


def cmd_data_list(args) -> int:
    from igds.store import ActivationStore

    df = ActivationStore().datasets_table()
    print(df.to_string(index=False) if not df.empty else "no datasets yet (add one: igds data add FILE --name NAME)")
    return 0


def cmd_data_show(args) -> int:
    from igds.store import ActivationStore

    store = ActivationStore()
    info = store.dataset(args.name)
    if info is None:
        raise ValueError(f"unknown dataset {args.name!r}; datasets: {', '.join(store.datasets_table().name) or 'none'}")
    print(json.dumps({k: str(v) if k == "created" else v for k, v in info.items()}, indent=2))
    rows = store.dataset_examples(args.name, limit=args.rows)
    for r in rows.itertuples():
        print(f"  row {r.row_no} [{r.split_label or '-'}] {r.prompt[:70]!r} -> {r.response[:50]!r}")
    return 0


def _print_removal(plan, dry_run: bool) -> None:
    """What a removal deletes (or, with --dry-run, would delete)."""
    head, *rest = plan.lines()
    if not plan.allowed:
        raise ValueError(head)
    print(f"{'would remove' if dry_run else 'removed'} {head}:")
    for line in rest:
        print(f"  {line}")


def cmd_data_remove(args) -> int:
    from igds.store import ActivationStore

    store = ActivationStore()
    plan = store.removal_plan("dataset", args.name)
    if not args.dry_run:
        store.remove_dataset(args.name, expect=plan)
    _print_removal(plan, args.dry_run)
    return 0


def cmd_task_add(args) -> int:
    from igds.data.tasks import TaskSpec
    from igds.store import ActivationStore
    from igds.workflow.catalog import TaskData, add_task

    spec = TaskSpec(args.name, args.instruction, args.metric, args.max_new_tokens,
                    args.description or f"workspace task ({args.metric})", args.system, args.answer, args.answer_arg)
    counts = add_task(ActivationStore(), spec, config_from_arguments(TaskData, args))
    print(f"added task {args.name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_task_list(args) -> int:
    from igds.store import ActivationStore
    from igds.workflow.catalog import tasks_table

    print(tasks_table(ActivationStore()).to_string(index=False))
    return 0


def cmd_task_show(args) -> int:
    from igds.data.tasks import get_task
    from igds.store import ActivationStore
    from igds.workflow.catalog import require_task, task_data

    store = ActivationStore()
    require_task(store, args.name)
    data = task_data(store, args.name)
    print(json.dumps({"spec": get_task(args.name).to_dict(), "data": data.to_dict() if data else "shipped corpus"},
                     indent=2))
    return 0


def cmd_task_remove(args) -> int:
    from igds.store import ActivationStore
    from igds.workflow.catalog import remove_task

    store = ActivationStore()
    plan = store.removal_plan("task", args.name)
    if not args.dry_run:
        remove_task(store, args.name, expect=plan)
    _print_removal(plan, args.dry_run)
    return 0


def cmd_workspace_use(args) -> int:
    from igds.store import ActivationStore
    from igds.workflow.workspace import choose_identity

    out = choose_identity(ActivationStore(), config_from_arguments(ModelSpec, args, "model_"),
                          config_from_arguments(SaeSpec, args, "sae_"), args.task, _progress())
    print(json.dumps(out, indent=2, default=str))
    return 0


def cmd_workspace_show(args) -> int:
    from igds.store import ActivationStore
    from igds.workflow.workspace import workspace_config

    cfg = workspace_config(ActivationStore())
    print(json.dumps({"model": cfg.model.to_dict(), "sae": cfg.sae.to_dict()}, indent=2))
    return 0


def cmd_check(args) -> int:
    from igds.method.recall import load_recall
    from igds.modeling.sae import SaeSpec, load_sae
    from igds.store import ActivationStore
    from igds.workflow.checks import check_seed_stability, check_token_injection
    from igds.workflow.stages import latest_effects, latest_run
    from igds.workflow.workspace import resolve_workspace

    store = ActivationStore()
    recall = latest_run(store, "recall", args.task)
    if recall is None:
        raise ValueError(f"no recall for task {args.task!r} yet: run 'igds recall --task {args.task}' first")
    run_id = recall["config"]["extract_run"]
    features = [int(f) for f in args.features] if args.features else load_recall(store, recall["run_id"]).candidates
    try:
        kept = latest_effects(store, args.task).kept
    except ValueError:
        kept = []
    ws = resolve_workspace(store, run_id=run_id, progress=_progress())
    cfg = config_from_arguments(CheckConfig, args, "check_")
    res = check_token_injection(ws, args.task, run_id, features, cfg, _progress())
    res["F*"] = res.feature.isin(kept)
    res["tokens"] = [" ".join(repr(t) for t in d["tokens"]) for d in res.detail]
    res["base_rate"] = [d["base_rate"] for d in res.detail]
    print(f"token injection on {len(res)} features of {args.task} ({cfg.n_texts} reference texts): "
          f"{int(res.flagged.sum())} flagged as token detectors ({int(res.flagged[res['F*']].sum())} of "
          f"{int(res['F*'].sum())} validated)")
    print(res[["feature", "F*", "value", "base_rate", "flagged", "tokens"]].rename(
        columns={"value": "injection_rate", "flagged": "token_detector"}).to_string(index=False))
    if args.seed_sae:
        other, info = load_sae(SaeSpec(source=args.seed_sae, min_explained_variance=-1.0))
        m = check_seed_stability(ws, other, info.name, features, cfg)
        print(f"seed stability against {info.name}: {int((~m.flagged).sum())} of {len(m)} features have a decoder "
              f"match >= {cfg.match_threshold}")
    return 0


def cmd_sae_pretrained(args) -> int:
    from igds.modeling.pretrained import pretrained_saes

    df = pretrained_saes(args.model, args.release, args.limit)
    print(df[["source", "model", "neuronpedia_id"]].to_string(index=False) if not df.empty
          else f"no sae-lens release for a model matching {args.model!r}")
    return 0


def cmd_bootstrap(args) -> int:
    from igds.workflow.bootstrap import bootstrap

    if args.background:
        return _bootstrap_in_background(args)
    summary = bootstrap(_bootstrap_config(args), progress=_progress())
    print(json.dumps(summary, indent=2))
    return 0


def _bootstrap_in_background(args) -> int:
    """Start the bootstrap job unless the workspace is ready or a bootstrap job is already running."""
    from igds.jobs import list_jobs, start_job
    from igds.store import ActivationStore
    from igds.workflow.status import workspace_status

    if workspace_status(ActivationStore()).prepared:
        print("workspace ready: nothing to bootstrap")
        return 0
    running = [j for j in list_jobs() if j["kind"] == "bootstrap" and j["state"] in ("queued", "running")]
    if running:
        print(f"bootstrap already running as job {running[0]['job_id']}")
        return 0
    cfg = _bootstrap_config(args)
    job_id = start_job("bootstrap", {"config": cfg.to_dict()} if cfg != type(cfg)() else {})
    print(f"bootstrap started in the background as job {job_id} (progress on the dashboard's Overview page, "
          f"or: python -m igds job show {job_id})")
    return 0


def cmd_executor_show(args) -> int:
    from igds.executor.config import executor_config
    from igds.store import ActivationStore

    print(json.dumps(executor_config(ActivationStore()).to_dict(), indent=2))
    return 0


def cmd_executor_set(args) -> int:
    import dataclasses

    from igds.executor.config import ExecutorConfig, executor_config, save_executor_config
    from igds.store import ActivationStore

    store = ActivationStore()
    cfg = config_from_arguments(ExecutorConfig, args, base=executor_config(store))
    cfg = dataclasses.replace(cfg, address=cfg.address or None, dashboard_address=cfg.dashboard_address or None)
    from igds.executor.registry import check_executor

    check_executor(cfg, probe=args.check)
    save_executor_config(store, cfg)
    print(json.dumps(cfg.to_dict(), indent=2))
    return 0


def _executor(args, store):
    """The executor a stage command runs on: the workspace setting, ``--executor`` / ``--ray-address`` applied (an
    address alone means ``ray``); a Ray address is probed before any model loads."""
    from igds.executor.config import executor_config

    kind = args.executor or ("ray" if args.ray_address else None)
    cfg = executor_config(store, kind=kind, address=args.ray_address)
    from igds.executor.registry import check_executor

    check_executor(cfg)
    return cfg


def cmd_extract(args) -> int:
    from igds.store import ActivationStore
    from igds.workflow.workspace import extract_tasks

    executor = _executor(args, ActivationStore())
    ws, cfg = _workspace(args)
    res = extract_tasks(ws, cfg.tasks, cfg.extract, cfg.pool_setting, _progress(), executor=executor)
    print(json.dumps(res.__dict__, indent=2))
    return 0


def _workspace(args):
    from igds.workflow.workspace import open_workspace

    cfg = _bootstrap_config(args)
    return open_workspace(cfg, progress=_progress()), cfg


def _method_preset(args):
    from igds.method.presets import method_preset

    return method_preset(args.method_preset)


def cmd_recall(args) -> int:
    from igds.workflow.stages import run_recall

    ws, cfg = _workspace(args)
    mp = _method_preset(args)
    res = run_recall(ws, args.task, config_from_arguments(RecallConfig, args, "recall_", base=mp.recall), cfg.extract,
                     preset=mp.name)
    lens = ws.store.logit_lens_table(ws.sae_key)[["feature", "top_tokens"]]
    table = res.table[res.table.is_candidate].merge(lens, on="feature", how="left")
    print(f"recall {res.recall_id}: {len(res.candidates)} candidates for {args.task}")
    print(table[["rank", "feature", "freq_task", "freq_ref", "lift", "mean_act_task", "top_tokens"]]
          .head(args.show).to_string(index=False))
    return 0


def cmd_intervene(args) -> int:
    from igds.store import ActivationStore
    from igds.workflow.explore import filter_rule
    from igds.workflow.stages import current_recall, run_interventions

    executor = _executor(args, ActivationStore())
    ws, cfg = _workspace(args)
    mp = _method_preset(args)
    recall = current_recall(ws, args.task, cfg.extract, preset=mp.name)
    icfg = config_from_arguments(InterventionConfig, args, "int_", base=mp.intervene)
    res = run_interventions(ws, args.task, recall, icfg, _progress(), max_features=args.max_features, preset=mp.name,
                            executor=executor)
    v = res.verdict.sort_values("effect", ascending=False)
    print(f"interventions {res.effect_id}: {len(res.kept)} of {len(recall.candidates)} candidates kept "
          f"(kept when {filter_rule(icfg)}; {res.power_line}; {res.seconds:.0f} s)")
    print(v.head(args.show).to_string(index=False))
    return 0


def cmd_select(args) -> int:
    from igds.method.arms import ARMS
    from igds.method.resonance import ResonanceConfig
    from igds.method.selection import SelectionConfig, composition, load_selection
    from igds.workflow.stages import latest_effects, select_baseline, select_igds

    ws, cfg = _workspace(args)
    mp = _method_preset(args)
    scfg = config_from_arguments(SelectionConfig, args, ratio=mp.ratio)
    if args.source_task and scfg.method != "wrong-task":
        raise ValueError("--source-task is for --method wrong-task")
    if scfg.method == "igds":
        sid = select_igds(ws.store, ws.extraction_run_id(cfg.extract), args.task,
                          latest_effects(ws.store, args.task, mp.name), scfg,
                          config_from_arguments(ResonanceConfig, args, "res_", base=mp.resonance), ws.sae_key,
                          name=args.name, preset=mp.name)
    elif scfg.method in ARMS:  # the paper's ablation arms: IGDS's pool, FRS and cut over another feature set
        from igds.workflow.arms import select_arm

        sid = select_arm(ws, args.task, scfg.method, scfg,
                         config_from_arguments(ResonanceConfig, args, "res_", base=mp.resonance),
                         extract_cfg=cfg.extract, preset=mp.name, source_task=args.source_task, name=args.name,
                         progress=_progress())
    else:
        sid = select_baseline(ws, args.task, scfg, name=args.name, progress=_progress())
    info, members = load_selection(ws.store, sid)
    print(f"selection {sid} ({info['name']}): {info['n_selected']} of {info['n_pool']} pool examples")
    print(json.dumps(composition(members), indent=2))
    return 0


def cmd_selections(args) -> int:
    from igds.store import ActivationStore

    df = ActivationStore().query_df("SELECT selection_id, name, task, method, pool_setting, n_selected, n_pool, "
                                    "created FROM selections ORDER BY created")
    print(df.to_string(index=False) if not df.empty else "no selections yet")
    return 0


def cmd_export(args) -> int:
    from igds.method.selection import resolve_selection
    from igds.method.vetting import vetting_lineage
    from igds.store import ActivationStore
    from igds.training.export import ExportConfig, default_export_name, export_selection
    from igds.workflow.tune import selection_examples

    store = ActivationStore()
    sid = resolve_selection(store, args.selection)
    info, examples = selection_examples(store, sid)
    lineage = vetting_lineage(store, sid, {"selection_id": sid, "name": info["name"], "method": info["method"],
                                           **info["lineage"]})
    name = args.name or default_export_name(info["name"], sid)  # named from the selection actually exported
    res = export_selection(examples, lineage, ExportConfig(name=name, fmt=args.fmt))
    print(f"exported {res.n_examples} examples to {res.path}")
    return 0


def _run_as_job(kind: str, params: dict, background: bool) -> int:
    """Start a background job; unless ``background``, follow its progress until it ends."""
    from igds.jobs import start_job
    from igds.jobs.cli import report_job, watch_job

    job_id = start_job(kind, params)
    if background:
        print(f"started job {job_id} (python -m igds job show {job_id})")
        return 0
    print(f"job {job_id} (Ctrl-C stops watching; the job keeps running)")
    return report_job(watch_job(job_id))


def cmd_finetune(args) -> int:
    from igds.method.selection import resolve_selection
    from igds.store import ActivationStore
    from igds.training.finetune import FinetuneConfig
    from igds.workflow.tune import default_finetune_config

    sid = resolve_selection(ActivationStore(), args.selection)
    # flags given on the command line override the device's default profile
    given = {k: v for k in FinetuneConfig.__dataclass_fields__ if (v := getattr(args, "ft_" + k, None)) is not None}
    ft = FinetuneConfig.from_dict({**default_finetune_config().to_dict(), **given})
    ev = config_from_arguments(EvalConfig, args, "eval_", n_examples=200)
    return _run_as_job("finetune", {"selection_id": sid, "finetune": ft.to_dict(), "eval": ev.to_dict()},
                       args.background)


def cmd_evaluate(args) -> int:
    ev = config_from_arguments(EvalConfig, args, "eval_", n_examples=200)
    return _run_as_job("evaluate", {"task": args.task, "eval": ev.to_dict()}, args.background)


def _experiment_config(args):
    from igds.experiment import preset

    seeds = tuple(int(x) for x in args.seeds) if args.seeds else None
    return preset("quick" if args.quick else args.preset, tasks=tuple(args.tasks) if args.tasks else None,
                  pool_settings=tuple(args.pools) if args.pools else None, seeds=seeds, pool_limit=args.pool_limit,
                  method_presets=tuple(args.method_preset) if args.method_preset else None,
                  controls=True if getattr(args, "controls", False) else None)


def cmd_experiment(args) -> int:
    from igds import settings
    from igds.experiment import experiments, format_duration, plan_experiment, run_experiment, summarize, write_report
    from igds.store import ActivationStore

    cfg = _experiment_config(args)
    command = "python -m igds " + " ".join(sys.argv[1:] if args.command_line is None else args.command_line)
    if args.dry_run:
        plan = plan_experiment(cfg, ActivationStore())
        eid = plan["experiment_id"] or (f"{cfg.preset}-? (fixed once the method stages of "
                                        f"{', '.join(plan['pending_tasks'])} have run)")
        print(f"experiment {eid}: {len(plan['cells'])} cells, {len(plan['todo'])} to run; about "
              f"{format_duration(plan['seconds'])} on this machine"
              + (f" (a --max-minutes {args.max_minutes:g} run stops starting cells after that)" if args.max_minutes
                 else ""))
        for c in plan["cells"]:
            print(" ", c.label, "" if c in plan["todo"] else "(done)")
        return 0
    if args.report_only:
        store = ActivationStore()
        xs = experiments(store)
        xs = xs[xs.preset == cfg.preset]
        if xs.empty:
            print(f"no {cfg.preset} experiment in the store yet")
            return 1
        eid = args.experiment or xs.experiment_id.iloc[0]
        summarize(store, eid)
        print(f"wrote {write_report(store, eid, settings.REPO_ROOT / args.report)} for {eid}")
        return 0
    if args.background:
        return _run_as_job("experiment", {"config": cfg.to_dict(), "command": command, "max_cells": args.max_cells,
                                          "max_minutes": args.max_minutes, "report": args.report}, True)
    out = run_experiment(cfg, progress=_progress(), command=command, max_cells=args.max_cells, report=args.report,
                         max_minutes=args.max_minutes)
    print(json.dumps(out, indent=2))
    return 0


def cmd_model_convert(args) -> int:
    from igds.modeling.load import ensure_default_model

    print(ensure_default_model(_progress()))
    return 0


def cmd_sae_info(args) -> int:
    from igds.modeling.sae import SaeSpec, load_sae

    _, info = load_sae(config_from_arguments(SaeSpec, args, "sae_"))
    print(json.dumps(info.to_dict(), indent=2, default=str))
    return 0


def cmd_sae_train(args) -> int:
    from pathlib import Path

    from igds import settings
    from igds.modeling.load import ModelSpec, load_model, model_key_of
    from igds.modeling.sae import SaeTrainConfig, file_sha256, trained_sae_dir
    from igds.workflow.workspace import train_default_sae

    settings.apply_offline_env()
    cfg = config_from_arguments(SaeTrainConfig, args, "sae_train_")
    model, tok = load_model(ModelSpec(), _progress())
    # without --out: the folder keyed by recipe and model, trained once (a process training it is waited for);
    # an explicit --out is always retrained
    out = Path(args.out) if args.out else None
    quality = train_default_sae(model, tok, cfg, out, _progress())
    out = out or trained_sae_dir(cfg, model_key_of(model))
    print(json.dumps({"out": str(out), "sha256": file_sha256(out / "sae_weights.safetensors"),
                      **{k: v for k, v in quality.items() if k != "config"}}, indent=2))
    return 0


def cmd_store_info(args) -> int:
    from igds.store import ActivationStore

    store = ActivationStore()
    print(f"store: {store.path}")
    print(json.dumps(store.summary(), indent=2))
    runs = store.query_df("SELECT run_id, stage, status, n_done, n_total, updated FROM runs ORDER BY updated")
    if not runs.empty:
        print(runs.to_string(index=False))
    return 0


# -- results of record (igds.store.record) ---------------------------------------------------------------------
def cmd_record_export(args) -> int:
    from igds.experiment.record import export_experiment
    from igds.store import ActivationStore
    from igds.store.record import export_run

    if args.experiment:
        paths = export_experiment(ActivationStore(), args.experiment, args.out)
        size = sum(p.stat().st_size for p in paths)
        print(f"experiment {args.experiment}: {len(paths)} files written to {paths[0].parent} ({size:,} bytes)")
        return 0
    path = export_run(ActivationStore(), args.run, args.out)
    print(f"run {args.run} written to {path} ({path.stat().st_size:,} bytes)")
    return 0


def cmd_record_import(args) -> int:
    from igds.experiment.record import default_grid_folder, import_grid_records
    from igds.store import ActivationStore
    from igds.store.record import default_folder, import_records

    store = ActivationStore()
    if not args.grid:
        folder = args.folder or default_folder()
        done = import_records(store, folder, force=True)
        for d in done:
            print(f"{d.path.name}: run {d.run_id} {d.status_before or 'new'} -> {d.status_after}, rows added "
                  f"{json.dumps(d.added, sort_keys=True)}")
        print(f"{len(done)} record file(s) read from {folder}")
    if args.grid or not args.folder:
        folder = (args.folder if args.grid else None) or default_grid_folder()
        cells = import_grid_records(store, folder)
        print(f"{len(cells)} grid record file(s) imported from {folder}")
    return 0


def _named(group, command: str, help: str, func):
    """A subcommand of ``group`` taking one positional ``name`` (show / remove a dataset or task)."""
    sp = group.add_parser(command, help=help)
    sp.add_argument("name")
    sp.set_defaults(func=func)
    return sp


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every subcommand."""
    from igds.data.corpus import POOL_SETTINGS
    from igds.executor.config import EXECUTOR_KINDS, ExecutorConfig

    p = argparse.ArgumentParser(prog="igds", description="Interpretability-guided data selection (IGDS).")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="the demo corpus").add_subparsers(dest="data_cmd", required=True)
    s = data.add_parser("summary", help="examples per task, split and source of the shipped corpus")
    s.add_argument("--corpus-dir", default=None, help="corpus folder (default: the shipped data/corpus)")
    s.set_defaults(func=cmd_data_summary)
    from igds.data.ingest import ColumnMapping

    da = data.add_parser("add", help="add a file (JSONL, JSONL.gz, Parquet, CSV) or a hub split as a dataset")
    da.add_argument("source", help="the file, or a hub dataset id with --hub")
    da.add_argument("--name", required=True, help="dataset name in the workspace")
    da.add_argument("--preview", action="store_true", help="show the mapping, the first rows and every problem; "
                                                            "store nothing")
    da.add_argument("--rows", type=int, default=5, help="rows to show with --preview")
    da.add_argument("--hub", action="store_true", help="SOURCE is a Hugging Face dataset id (needs IGDS_OFFLINE=0)")
    da.add_argument("--hub-config", default=None, help="hub dataset configuration")
    da.add_argument("--hub-split", default="train", help="hub dataset split")
    add_config_arguments(da, ColumnMapping, "map_")
    da.set_defaults(func=cmd_data_add)
    data.add_parser("list", help="datasets in the workspace").set_defaults(func=cmd_data_list)
    _named(data, "show", "a dataset's provenance and first rows", cmd_data_show).add_argument(
        "--rows", type=int, default=5, help="rows to show")
    _named(data, "remove", "remove a dataset (not while a task uses it)", cmd_data_remove).add_argument(
        "--dry-run", action="store_true", help="say what it would remove, remove nothing")

    from igds.data.metrics import list_metrics
    from igds.data.tasks import ANSWER_MODES
    from igds.workflow.catalog import TaskData

    tk = sub.add_parser("task", help="tasks of the workspace").add_subparsers(dest="task_cmd", required=True)
    ta = tk.add_parser("add", help="define a task: its spec, its probe/dev/test items and its candidate pool")
    ta.add_argument("name", help="task name (letters, digits, _ or -)")
    ta.add_argument("--metric", required=True, choices=list_metrics(), help="task metric")
    ta.add_argument("--instruction", default="", help="instruction put before each example's content")
    ta.add_argument("--system", default=None, help="system prompt (default: none)")
    ta.add_argument("--answer", default="auto", choices=ANSWER_MODES, help="answer extraction (default: auto)")
    ta.add_argument("--answer-arg", default="", help="the marker of after_marker, or the pattern name of regex")
    ta.add_argument("--max-new-tokens", type=int, default=64, help="generation budget")
    ta.add_argument("--description", default="", help="one line for listings")
    add_config_arguments(ta, TaskData)
    ta.set_defaults(func=cmd_task_add)
    tk.add_parser("list", help="every task with its items per split").set_defaults(func=cmd_task_list)
    _named(tk, "show", "a task's spec and data", cmd_task_show)
    _named(tk, "remove", "remove a workspace task (its runs and selections stay)", cmd_task_remove).add_argument(
        "--dry-run", action="store_true", help="say what it would remove, remove nothing")

    ck = sub.add_parser("check", help="feature checks: token injection (and decoder match against another seed's SAE)")
    ck.add_argument("--task", required=True, help="task whose recall candidates are checked")
    ck.add_argument("--features", nargs="+", default=None, help="features to check (default: the candidates)")
    ck.add_argument("--seed-sae", default=None, help="an SAE folder of the same recipe, another seed")
    add_config_arguments(ck, CheckConfig, "check_")
    ck.set_defaults(func=cmd_check)

    wk = sub.add_parser("workspace", help="the workspace's model and SAE").add_subparsers(dest="ws_cmd", required=True)
    wu = wk.add_parser("use", help="validate a model + SAE and make them the workspace's (every later run uses them)")
    add_config_arguments(wu, ModelSpec, "model_")
    add_config_arguments(wu, SaeSpec, "sae_")
    wu.add_argument("--task", default=None, help="measure the SAE's explained variance on this task's content tokens")
    wu.set_defaults(func=cmd_workspace_use)
    wk.add_parser("show", help="the workspace's model and SAE specs").set_defaults(func=cmd_workspace_show)

    def workspace_args(sp, pool=True):
        sp.add_argument("--tasks", nargs="+", default=["summarization"], help="tasks to extract")
        if pool:
            sp.add_argument("--pool-setting", default="mixed", choices=sorted(POOL_SETTINGS), help="candidate pool")
        add_config_arguments(sp, ModelSpec, "model_")
        add_config_arguments(sp, SaeSpec, "sae_")
        add_config_arguments(sp, ExtractConfig)

    b = sub.add_parser("bootstrap", help="prepare the offline default workspace (model, SAE, store)")
    workspace_args(b)
    b.add_argument("--background", action="store_true", help="run as a background job (skipped when ready)")
    b.set_defaults(func=cmd_bootstrap)

    def executor_args(sp):
        sp.add_argument("--executor", default=None, choices=list(EXECUTOR_KINDS),
                        help="where the heavy work runs (default: the workspace setting, 'igds executor show')")
        sp.add_argument("--ray-address", default=None,
                        help="Ray cluster address (host:6379, ray://host:10001, auto); implies --executor ray")

    e = sub.add_parser("extract", help="extract SAE activations of tasks' examples into the store")
    workspace_args(e)
    executor_args(e)
    e.set_defaults(func=cmd_extract)

    exr = sub.add_parser("executor", help="where extraction, interventions, NLL tables and evaluation run: local or "
                                          "a Ray cluster").add_subparsers(dest="executor_cmd", required=True)
    exr.add_parser("show", help="the workspace's executor setting").set_defaults(func=cmd_executor_show)
    exs = exr.add_parser("set", help="change the workspace's executor setting (flags not given keep their value)")
    add_config_arguments(exs, ExecutorConfig)
    exs.add_argument("--check", action="store_true", help="refuse a Ray address where nothing answers")
    exs.set_defaults(func=cmd_executor_set)

    from igds.method.presets import METHOD_PRESETS
    from igds.method.resonance import ResonanceConfig
    from igds.method.selection import SelectionConfig

    r = sub.add_parser("recall", help="stage 1a: frequency recall of a task's SAE features")
    workspace_args(r)
    r.add_argument("--task", required=True, help="task to recall features for")
    r.add_argument("--show", type=int, default=20, help="candidates to print")
    add_config_arguments(r, RecallConfig, "recall_")
    r.add_argument("--method-preset", default="default", choices=list(METHOD_PRESETS),
                    help="settings of every IGDS stage: default (ours) | paper (the literal reading); flags override")
    r.set_defaults(func=cmd_recall)

    iv = sub.add_parser("intervene", help="stage 1b: amplify/ablate candidates on the dev split (resumable)")
    workspace_args(iv)
    iv.add_argument("--task", required=True, help="task")
    iv.add_argument("--show", type=int, default=20, help="features to print")
    iv.add_argument("--max-features", type=int, default=None, help="stop after this many new features")
    add_config_arguments(iv, InterventionConfig, "int_")
    executor_args(iv)
    iv.add_argument("--method-preset", default="default", choices=list(METHOD_PRESETS),
                    help="settings of every IGDS stage: default (ours) | paper (the literal reading); flags override")
    iv.set_defaults(func=cmd_intervene)

    se = sub.add_parser("select", help="stage 2: select pool examples with IGDS or a baseline")
    workspace_args(se, pool=False)
    se.add_argument("--task", required=True, help="task")
    se.add_argument("--name", default=None, help="name of the stored selection")
    se.add_argument("--source-task", default=None,
                    help="--method wrong-task: the task whose F* scores this task's pool (default: the next shipped "
                         "task)")
    add_config_arguments(se, SelectionConfig)
    add_config_arguments(se, ResonanceConfig, "res_")
    se.add_argument("--method-preset", default="default", choices=list(METHOD_PRESETS),
                    help="settings of every IGDS stage: default (ours) | paper (the literal reading); flags override")
    se.set_defaults(func=cmd_select)

    sub.add_parser("selections", help="list stored selections").set_defaults(func=cmd_selections)

    ex = sub.add_parser("export", help="export a stored selection (JSONL, Parquet or a datasets folder)")
    ex.add_argument("--selection", required=True, help="selection id or name")
    from igds.training.export import EXPORT_FORMATS

    ex.add_argument("--fmt", default="jsonl", choices=list(EXPORT_FORMATS), help="format")
    ex.add_argument("--name", default=None, help="export name (a folder under cache/exports)")
    ex.set_defaults(func=cmd_export)

    add_job_commands(sub)

    from igds.training.finetune import FinetuneConfig

    ft = sub.add_parser("finetune", help="LoRA fine-tune a stored selection, then evaluate it (a background job)")
    ft.add_argument("--selection", required=True, help="selection id or name")
    ft.add_argument("--background", action="store_true", help="start the job and return")
    add_config_arguments(ft, FinetuneConfig, "ft_")
    add_config_arguments(ft, EvalConfig, "eval_")
    ft.set_defaults(func=cmd_finetune)

    ev = sub.add_parser("evaluate", help="evaluate the base model on a task's test split (a background job)")
    ev.add_argument("--task", required=True, help="task")
    ev.add_argument("--background", action="store_true", help="start the job and return")
    add_config_arguments(ev, EvalConfig, "eval_")
    ev.set_defaults(func=cmd_evaluate)

    from igds.experiment import PRESETS

    xp = sub.add_parser("experiment", help="the reproduction grid: select, fine-tune and evaluate every cell "
                                           "(resumable: a rerun skips finished cells)")
    xp.add_argument("--preset", default="demo", choices=list(PRESETS),
                    help="grid size, not the method (that is --method-preset; default: demo)")
    xp.add_argument("--quick", action="store_true", help="the quick preset: one task, one pool, one seed")
    xp.add_argument("--tasks", nargs="+", default=None, help="override the preset's tasks")
    xp.add_argument("--pools", nargs="+", default=None, choices=POOL_SETTINGS, help="override pool settings")
    xp.add_argument("--seeds", nargs="+", default=None, help="override the seeds of IGDS and Random")
    xp.add_argument("--pool-limit", type=int, default=None, help="override the task examples per pool")
    xp.add_argument("--method-preset", nargs="+", default=None, choices=list(METHOD_PRESETS),
                    help="IGDS method presets to compare (default: the grid preset's; demo runs default and paper)")
    xp.add_argument("--controls", action="store_true", help="add the controls: equal token budget, length-stratified "
                    "FRS quartiles, task first (mixed pool)")
    xp.add_argument("--max-cells", type=int, default=None, help="stop after running this many new cells")
    xp.add_argument("--max-minutes", type=float, default=None, help="start no new cell after this many minutes")
    xp.add_argument("--experiment", default=None, help="with --report-only: the experiment id (default: the newest "
                                                       "of the preset)")
    xp.add_argument("--report", default="docs/results.md", help="report to write, relative to the repository")
    xp.add_argument("--dry-run", action="store_true", help="print the cells and the time estimate only")
    xp.add_argument("--report-only", action="store_true", help="re-summarize the stored cells and rewrite the report")
    xp.add_argument("--background", action="store_true", help="run as a background job")
    xp.set_defaults(func=cmd_experiment, command_line=None)

    m = sub.add_parser("model", help="language models").add_subparsers(dest="model_cmd", required=True)
    m.add_parser("convert", help="convert the default GGUF model once").set_defaults(func=cmd_model_convert)

    sa = sub.add_parser("sae", help="sparse autoencoders").add_subparsers(dest="sae_cmd", required=True)
    si = sa.add_parser("info", help="load an SAE and print its identity and quality")
    add_config_arguments(si, SaeSpec, "sae_")
    si.set_defaults(func=cmd_sae_info)
    stn = sa.add_parser("train", help="retrain the default SAE's recipe on the default model (the shipped SAE is "
                                      "never overwritten; use the result with --sae-source DIR)")
    add_config_arguments(stn, SaeTrainConfig, "sae_train_")
    stn.add_argument("--out", default=None, help="output folder (default: cache/saes/<default name>)")
    stn.set_defaults(func=cmd_sae_train)
    sp = sa.add_parser("pretrained", help="browse the sae-lens registry (offline), filtered to a model")
    sp.add_argument("--model", default="", help="model name or hub id, e.g. gpt2 or google/gemma-2-2b")
    sp.add_argument("--release", default="", help="release name contains this")
    sp.add_argument("--limit", type=int, default=50, help="rows to print")
    sp.set_defaults(func=cmd_sae_pretrained)

    st = sub.add_parser("store", help="the DuckDB activation store").add_subparsers(dest="store_cmd", required=True)
    st.add_parser("info", help="table sizes and runs").set_defaults(func=cmd_store_info)

    rc = sub.add_parser("record", help="results of record: filter runs (results/filter/) and grid cells "
                        "(results/grid/) as committed files").add_subparsers(dest="record_cmd", required=True)
    rce = rc.add_parser("export", help="write a run's rows, or an experiment's finished cells, as record files")
    what = rce.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", help="the run id (an intervention run's effect id)")
    what.add_argument("--experiment", help="an experiment id: every finished cell, one file each")
    rce.add_argument("--out", default=None, help="folder or .zip file (default: results/filter/ or results/grid/)")
    rce.set_defaults(func=cmd_record_export)
    rci = rc.add_parser("import", help="import record files the store lacks rows of (idempotent)")
    rci.add_argument("folder", nargs="?", default=None, help="folder or one file (default: results/filter/, then "
                     "results/grid/)")
    rci.add_argument("--grid", action="store_true", help="the folder holds grid cells of record")
    rci.set_defaults(func=cmd_record_import)
    return p


def _require_tasks(args) -> None:
    """Refuse an unknown ``--task`` / ``--tasks`` before anything loads (shipped and workspace tasks are known)."""
    names = [*([args.task] if isinstance(getattr(args, "task", None), str) else []),
             *(getattr(args, "tasks", None) or [])]
    if not names or args.command in ("workspace",):
        return
    from igds.store import ActivationStore
    from igds.workflow.catalog import require_task

    store = ActivationStore()
    for name in names:
        require_task(store, name)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m igds``."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["job", "run"] and len(argv) == 3 and not argv[2].startswith("-"):
        # job processes skip building the full parser, whose config imports pull in torch (~1.5 s)
        from igds.jobs import run_job_process

        return run_job_process(argv[2])
    args = build_parser().parse_args(argv)
    try:
        _require_tasks(args)
        return args.func(args)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
