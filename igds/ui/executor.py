"""Where heavy work runs, set from the dashboard: the executor setting (local or a Ray cluster, its actors, where
background jobs go) and this machine's job queue (slots and their threads). The same settings as
``igds executor set`` and ``igds job queue``."""

from __future__ import annotations

import streamlit as st

from igds.executor.config import EXECUTOR_KINDS, ExecutorConfig, executor_config, save_executor_config
from igds.executor.pool import ExecutorError
from igds.executor.registry import check_executor, pool_kinds
from igds.jobs.queue import QueueConfig, queue_config, save_queue_config, slot_holders, waiting_jobs


def _executor_from_form(cur: ExecutorConfig) -> ExecutorConfig | None:
    c1, c2 = st.columns(2)
    kinds = pool_kinds()
    kind = c1.radio("Stages run", kinds, index=kinds.index(cur.kind) if cur.kind in kinds else 0, horizontal=True,
                    key="exe_kind", help="extraction, interventions, NLL tables and evaluation")
    target = c2.radio("Background jobs run", EXECUTOR_KINDS, index=EXECUTOR_KINDS.index(cur.job_target),
                      horizontal=True, key="exe_target", help="local: a process here, in the queue; ray: the Jobs API")
    address = st.text_input("Ray cluster address", cur.address or "", key="exe_address",
                            placeholder="head-node:6379 (empty: a local Ray on this machine)")
    dashboard = st.text_input("Ray dashboard (Jobs API)", cur.dashboard_address or "", key="exe_dashboard",
                              placeholder="http://head-node:8265 (empty: the address's host, port 8265)")
    c1, c2, c3, c4 = st.columns(4)
    actors = c1.number_input("Actors", 1, 1024, cur.actors, key="exe_actors")
    cpus = c2.number_input("CPUs per actor", 0.25, 256.0, float(cur.cpus_per_actor), 0.25, key="exe_cpus")
    gpus = c3.number_input("GPUs per actor", 0.0, 16.0, float(cur.gpus_per_actor), 0.25, key="exe_gpus")
    retries = c4.number_input("Retries", 0, 100, cur.max_retries, key="exe_retries")
    if not st.button("Save executor setting", key="exe_save"):
        return None
    try:
        cfg = ExecutorConfig.from_dict({**cur.to_dict(), "kind": kind, "job_target": target,
                                        "address": address.strip() or None,
                                        "dashboard_address": dashboard.strip() or None, "actors": int(actors),
                                        "cpus_per_actor": float(cpus), "gpus_per_actor": float(gpus),
                                        "max_retries": int(retries)})
        with st.spinner(f"checking {cfg.address or cfg.kind} …"):
            check_executor(cfg)
    except (ValueError, ExecutorError) as e:
        st.error(f"Not saved: {e}")
        return None
    return cfg


def executor_settings(store) -> None:
    """An expander with the executor setting and the queue's slots, each saved with its own button."""
    with st.expander("Where heavy work runs (executor and job queue)"):
        cfg = _executor_from_form(executor_config(store))
        if cfg is not None:
            save_executor_config(store, cfg)
            st.success(f"Saved: stages run {cfg.kind}, jobs run {cfg.job_target}"
                       + (f", cluster {cfg.address}" if cfg.address else ""))
        q = queue_config()
        c1, c2 = st.columns(2)
        slots = c1.number_input("Heavy jobs at once (slots)", 1, 64, q.slots, key="queue_slots")
        threads = c2.number_input("Threads per slot (0: cores / slots)", 0, 512, q.threads_per_slot,
                                  key="queue_threads")
        st.caption("A saved change applies to the jobs waiting in the queue at once (they re-read it while they "
                   "wait); a running job keeps its slot and threads until it ends.")
        if st.button("Save queue setting", key="queue_save"):
            try:
                new = QueueConfig.from_dict({**q.to_dict(), "slots": int(slots), "threads_per_slot": int(threads)})
            except ValueError as e:
                st.error(f"Not saved: {e}")
            else:
                save_queue_config(new)
                st.success(_saved_queue_text(new))


def _saved_queue_text(cfg: QueueConfig) -> str:
    """What saving the queue setting did, for the waiting and the running jobs."""
    waiting, running = len(waiting_jobs()), sum(1 for h in slot_holders().values() if h)
    text = f"Saved: {cfg.slots} slot(s) × {cfg.threads()} thread(s)."
    if waiting:
        text += (f" The {waiting} waiting job(s) use it: the first starts as soon as fewer than {cfg.slots} "
                 "job(s) hold a slot.")
    if running:
        text += f" {running} running job(s) keep their slot and threads until they end."
    return text
