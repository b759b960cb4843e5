"""``igds job ...``: start, watch, cancel and resume background jobs from the command line.

It calls the package's names (``jobs.start_job``, ...) rather than its rooms, so that a test patching
``igds.jobs.start_job`` reaches the CLI too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from igds import jobs


def _fmt_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _fmt_progress(st: dict) -> str:
    p = st.get("progress") or {}
    if not p:
        return "-"
    eta = p.get("eta_seconds")
    eta_s = f" eta {eta:.0f}s" if eta is not None and st["state"] == "running" else ""
    return f"{p.get('done', 0)}/{p.get('total', 0) or '?'}{eta_s}"


def watch_job(job_id: str) -> dict:
    """Wait for a job, drawing its progress with the library's tqdm callback; return the final status."""
    from igds.progress import tqdm_progress

    bar = tqdm_progress(job_id)
    last: list = [None]

    def show(st: dict) -> None:
        p = st.get("progress")
        key = p and (p["done"], p["total"], p["message"])
        if p and key != last[0]:
            last[0] = key
            bar(p["done"], p["total"], p["message"])

    return jobs.wait_job(job_id, on_status=show)


def report_job(st: dict) -> int:
    print(f"{st['job_id']}: {st['state']}")
    if st.get("error"):
        print(f"error: {st['error']['type']}: {st['error']['message']}", file=sys.stderr)
    elif st.get("result") is not None:
        print(json.dumps(st["result"], indent=1, default=str))
    return {"done": 0, "cancelled": jobs.EXIT_CANCELLED}.get(st["state"], jobs.EXIT_FAILED)


def cmd_job_run(args) -> int:
    return jobs.run_job_process(args.job_id)


def cmd_job_list(args) -> int:
    rows = jobs.list_jobs()
    if not rows:
        print(f"no jobs in {jobs.jobs_dir()}")
    for st in rows:
        q, slot = st.get("queue"), st.get("slot") if st["state"] in ("running", "stalled") else None
        where = f"place {q['place']} of {q['of']}" if q else (f"slot {slot['index']}" if slot else "")
        if st["state"] == "stalled":
            where = f"silent {st['stalled_s']:.0f}s" + (f", slot {slot['index']}" if slot else "")
        print(f"{st['job_id']:<40} {st['state']:<9} {where:<14} {_fmt_progress(st):<20} "
              f"attempt {st.get('attempt', 1)}  {st.get('target', 'local'):<5}  updated {_fmt_time(st.get('updated'))}")
    return 0


def cmd_job_show(args) -> int:
    st = jobs.job_status(args.job_id)
    shown = {k: v for k, v in st.items() if k not in ("log_tail", "error")}
    print(json.dumps(shown, indent=1, default=str))
    if st["state"] == "stalled":
        print(f"stalled: process {st['pid']} is alive but has not reported for {st['stalled_s']:.0f} s (stopped or "
              f"swapping?); it may go on. `igds job resume --force {st['job_id']}` stops it and resumes.")
    if st.get("error"):
        print(f"error: {st['error']['type']}: {st['error']['message']}\n{st['error'].get('traceback', '')}")
    print(f"--- last {args.lines} log lines ---")
    print("\n".join(jobs.read_log(args.job_id, args.lines)))
    return 0


def cmd_job_queue(args) -> int:
    """Show the local queue (slots, holders, waiting jobs); with options, save a new queue setting first."""
    if args.slots is not None or args.threads is not None or args.gpus is not None:
        cur = jobs.queue_config()
        cfg = jobs.QueueConfig(slots=cur.slots if args.slots is None else args.slots,
                               threads_per_slot=cur.threads_per_slot if args.threads is None else args.threads,
                               gpu_ids=cur.gpu_ids if args.gpus is None else tuple(args.gpus))
        jobs.save_queue_config(cfg)
    cfg = jobs.queue_config()
    print(f"{cfg.slots} slot(s) x {cfg.threads()} thread(s)" + (f", GPUs {list(cfg.gpu_ids)}" if cfg.gpu_ids else ""))
    for i, holder in jobs.slot_holders().items():
        print(f"slot {i}: {holder or 'free'}")
    for place, job_id in enumerate(jobs.waiting_jobs(), 1):
        print(f"waiting {place}: {job_id}")
    return 0


def cmd_job_cancel(args) -> int:
    st = jobs.cancel_job(args.job_id, grace_s=args.grace, wait=not args.no_wait)
    print(f"{st['job_id']}: {st['state']}")
    return 0


def cmd_job_resume(args) -> int:
    job_id = jobs.resume_job(args.job_id, force=args.force, grace_s=args.grace, say=print)
    return report_job(watch_job(job_id)) if args.wait else (print(job_id) or 0)


def cmd_job_start(args) -> int:
    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as e:
        raise ValueError(f"--params is not JSON: {e}") from e
    if args.foreground:
        from igds.progress import tqdm_progress

        return report_job(jobs.run_job_inline(args.kind, params, job_id=args.job_id, progress=tqdm_progress(args.kind)))
    job_id = jobs.start_job(args.kind, params, job_id=args.job_id, target=args.target,
                            dashboard_address=args.dashboard)
    return report_job(watch_job(job_id)) if args.wait else (print(job_id) or 0)


def add_job_commands(sub: argparse._SubParsersAction) -> None:
    """Add the ``job`` subcommand group to the top-level subparsers."""
    job = sub.add_parser("job", help="background jobs: start, list, show, cancel, resume")
    js = job.add_subparsers(dest="job_cmd", required=True)

    r = js.add_parser("run", help="(internal) run a prepared job in this process")
    r.add_argument("job_id")
    r.set_defaults(func=cmd_job_run)

    js.add_parser("list", help="all jobs, newest first").set_defaults(func=cmd_job_list)

    s = js.add_parser("show", help="status and last log lines of a job")
    s.add_argument("job_id")
    s.add_argument("--lines", type=int, default=20, help="log lines to print")
    s.set_defaults(func=cmd_job_show)

    q = js.add_parser("queue", help="the local queue of heavy jobs; options save a new slot setting")
    q.add_argument("--slots", type=int, default=None, help="heavy jobs that run at once")
    q.add_argument("--threads", type=int, default=None, help="CPU threads per slot (0 = cores / slots)")
    q.add_argument("--gpus", nargs="*", default=None, help="CUDA_VISIBLE_DEVICES per slot, e.g. --gpus 0 1")
    q.set_defaults(func=cmd_job_queue)

    c = js.add_parser("cancel", help="ask a job to stop (SIGTERM after a grace period)")
    c.add_argument("job_id")
    c.add_argument("--grace", type=float, default=jobs.CANCEL_GRACE_S, help="seconds before SIGTERM")
    c.add_argument("--no-wait", action="store_true", help="return once the request is recorded")
    c.set_defaults(func=cmd_job_cancel)

    re = js.add_parser("resume", help="relaunch a dead, failed or cancelled job from its checkpoint")
    re.add_argument("job_id")
    re.add_argument("--force", action="store_true",
                    help="stop the job's process first if it still runs (stalled: stopped or swapping)")
    re.add_argument("--grace", type=float, default=jobs.CANCEL_GRACE_S,
                    help="with --force: seconds between SIGTERM and SIGKILL")
    re.add_argument("--wait", action="store_true", help="wait, showing progress")
    re.set_defaults(func=cmd_job_resume)

    st = js.add_parser("start", help="start a job in the background")
    st.add_argument("kind", choices=jobs.job_kinds(), metavar="kind", help="job kind (e.g. count)")
    st.add_argument("--params", default="{}", help="JSON object of parameters")
    st.add_argument("--job-id", default=None, help="explicit job id (default: <kind>-<time>-<hex>)")
    st.add_argument("--wait", action="store_true", help="wait, showing progress")
    st.add_argument("--foreground", action="store_true", help="run in this process instead (bypasses the queue)")
    st.add_argument("--target", choices=("local", "ray"), default=None,
                    help="local process or Ray cluster (default: the workspace's executor setting job_target)")
    st.add_argument("--dashboard", default=None, help="Ray dashboard address for --target ray (default: setting)")
    st.set_defaults(func=cmd_job_start)
