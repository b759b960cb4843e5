"""Two heavy jobs started together on this machine: with the local queue vs. free-running, in one run.

Usage: python bench/job_queue.py [--size 1024] [--rounds 60]

Each job is the ``matmul`` job kind (``rounds`` float32 matmuls of ``size`` x ``size`` with torch's threads,
a stand-in for a model forward that keeps every core busy), run as a real job process in a throw-away
workspace. Measured, all in this run:

1. solo: job 1 alone (the reference);
2. queued: job 1 and job 2 started together through the local queue (default: one heavy slot with every
   thread), so job 2 waits for job 1's slot;
3. free-running: the same two jobs with ``heavy: false``, so both skip the queue and each takes every core.

Prints each job's wall time (start_job call to its final state, queue wait included) and the ratios of
job 1's wall time to its solo time (target with the queue: at most 2x). The jobs' torch import is in every
figure alike.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def run_jobs(params_list: list[dict]) -> list[dict]:
    """Start jobs together, wait for all; return their final statuses with ``wall`` seconds added."""
    from igds import jobs

    t0 = time.time()
    ids = [jobs.start_job("matmul", p) for p in params_list]
    out = []
    for job_id in ids:
        st = jobs.wait_job(job_id, timeout=1800, poll_s=0.05)
        if st["state"] != "done":
            raise RuntimeError(f"job {job_id} ended {st['state']}: {st.get('error')}")
        out.append({**st, "wall": st["finished"] - t0})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024, help="matrix side")
    ap.add_argument("--rounds", type=int, default=60, help="matmuls per job")
    args = ap.parse_args()
    os.environ["IGDS_HOME"] = tempfile.mkdtemp(prefix="igds-bench-queue-")  # read at each call: jobs inherit it
    from igds.jobs import queue_config

    work = {"size": args.size, "rounds": args.rounds}
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} cores; queue: {queue_config().slots} slot(s) x {queue_config().threads()} threads; "
          f"job = {args.rounds} matmuls of {args.size}x{args.size} float32")

    (solo,) = run_jobs([work])
    queued = run_jobs([work, work])
    free = run_jobs([{**work, "heavy": False}, {**work, "heavy": False}])

    def row(name: str, sts: list[dict]) -> None:
        walls = ", ".join(f"job {i + 1} {st['wall']:.2f} s (compute {st['result']['seconds']:.2f} s, "
                          f"{st['result']['threads']} threads)" for i, st in enumerate(sts))
        print(f"{name:<13} {walls}")

    row("solo", [solo])
    row("queued", queued)
    row("free-running", free)
    ratio_q, ratio_f = queued[0]["wall"] / solo["wall"], free[0]["wall"] / solo["wall"]
    both_q, both_f = max(s["wall"] for s in queued), max(s["wall"] for s in free)
    print(f"job 1 wall / solo: queued {ratio_q:.2f}x (target <= 2x), free-running {ratio_f:.2f}x")
    print(f"both done after: queued {both_q:.2f} s, free-running {both_f:.2f} s ({both_f / both_q:.2f}x the queued)")


if __name__ == "__main__":
    main()
