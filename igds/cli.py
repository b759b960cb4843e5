"""``python -m igds``: one CLI whose subcommands drive every stage headless, with tqdm progress.

Flags are generated from the same config dataclasses the dashboard uses, so help text is written once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from igds.config import add_config_arguments, config_from_arguments


def _progress():
    from igds.progress import tqdm_progress

    return tqdm_progress()


def cmd_data_summary(args) -> int:
    from igds.corpus import corpus_summary, format_summary

    t0 = time.perf_counter()
    print(format_summary(corpus_summary(args.corpus_dir)))
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0


def _bootstrap_config(args):
    from igds.extract import ExtractConfig
    from igds.modeling.load import ModelSpec
    from igds.pipeline import BootstrapConfig
    from igds.sae import SaeSpec, SaeTrainConfig

    return BootstrapConfig(
        tasks=tuple(args.tasks), pool_setting=args.pool_setting,
        model=config_from_arguments(ModelSpec, args, "model_"),
        sae=config_from_arguments(SaeSpec, args, "sae_"),
        sae_train=config_from_arguments(SaeTrainConfig, args, "sae_train_"),
        extract=config_from_arguments(ExtractConfig, args),
    )


def cmd_bootstrap(args) -> int:
    from igds.pipeline import bootstrap

    summary = bootstrap(_bootstrap_config(args), progress=_progress())
    print(json.dumps(summary, indent=2))
    return 0


def cmd_extract(args) -> int:
    from igds.pipeline import extract_tasks, ingest_corpus, open_workspace

    cfg = _bootstrap_config(args)
    ws = open_workspace(cfg, progress=_progress())
    ingest_corpus(ws.store)
    res = extract_tasks(ws, cfg.tasks, cfg.extract, cfg.pool_setting, _progress())
    print(json.dumps(res.__dict__, indent=2))
    return 0


def cmd_model_convert(args) -> int:
    from igds.modeling.load import ensure_default_model

    print(ensure_default_model(_progress()))
    return 0


def cmd_sae_info(args) -> int:
    from igds.sae import SaeSpec, load_sae

    _, info = load_sae(config_from_arguments(SaeSpec, args, "sae_"))
    print(json.dumps(info.to_dict(), indent=2, default=str))
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


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every subcommand."""
    from igds.extract import ExtractConfig
    from igds.modeling.load import ModelSpec
    from igds.sae import SaeSpec, SaeTrainConfig

    p = argparse.ArgumentParser(prog="igds", description="Interpretability-guided data selection (IGDS).")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="the demo corpus").add_subparsers(dest="data_cmd", required=True)
    s = data.add_parser("summary", help="examples per task, split and source of the shipped corpus")
    s.add_argument("--corpus-dir", default=None, help="corpus folder (default: the shipped data/corpus)")
    s.set_defaults(func=cmd_data_summary)

    def workspace_args(sp):
        sp.add_argument("--tasks", nargs="+", default=["summarization"], help="tasks to extract")
        sp.add_argument("--pool-setting", default="mixed", choices=["mixed", "task-only"], help="candidate pool")
        add_config_arguments(sp, ModelSpec, "model_")
        add_config_arguments(sp, SaeSpec, "sae_")
        add_config_arguments(sp, SaeTrainConfig, "sae_train_")
        add_config_arguments(sp, ExtractConfig)

    b = sub.add_parser("bootstrap", help="prepare the offline default workspace (model, SAE, store)")
    workspace_args(b)
    b.set_defaults(func=cmd_bootstrap)

    e = sub.add_parser("extract", help="extract SAE activations of tasks' examples into the store")
    workspace_args(e)
    e.set_defaults(func=cmd_extract)

    m = sub.add_parser("model", help="language models").add_subparsers(dest="model_cmd", required=True)
    m.add_parser("convert", help="convert the default GGUF model once").set_defaults(func=cmd_model_convert)

    sa = sub.add_parser("sae", help="sparse autoencoders").add_subparsers(dest="sae_cmd", required=True)
    si = sa.add_parser("info", help="load an SAE and print its identity and quality")
    add_config_arguments(si, SaeSpec, "sae_")
    si.set_defaults(func=cmd_sae_info)

    st = sub.add_parser("store", help="the DuckDB activation store").add_subparsers(dest="store_cmd", required=True)
    st.add_parser("info", help="table sizes and runs").set_defaults(func=cmd_store_info)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m igds``."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
