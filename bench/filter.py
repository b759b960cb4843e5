"""The powered filter against the naive loop, in one run on the same dev items.

The powered filter is the shipped procedure (``igds.workflow.stages.run_interventions`` with the default
``InterventionConfig``: the dev prefix cached once, only the blocks after the SAE's site replayed, rows an edit leaves
unchanged skipped, length buckets, futility looks, sweep and ablation for F* only), run for one task in the default
workspace and timed end to end. Because that run IS the task's filter run of record, it is exported to
``results/filter/`` when it finishes, and ``bench/validity.py`` reads it back instead of measuring it again.

It takes hours on a CPU, so it resumes: each sitting's wall time goes to a ledger
(``results/bench/filter.<run id>.json``, written every 30 s, so a killed sitting loses at most 30 s of its count;
commit it with the partial record, ``igds record export --run <id>``, and a sitting on another machine goes on), and
the powered figure is the sum over sittings (each resumed sitting pays the dev prefix again: a pessimistic figure).
A run already measured without this bench (no ledger) has no wall time here: the bench says so and stops.

The naive loop is what a script without any of that does: for every null element and candidate, a full forward of
every dev item with the edit patched in. It is timed on 8 elements (4 candidates, 4 null features) over all dev
items and extrapolated to the elements the powered run measured; on those 8 the two paths must agree within 1e-4
nats per measured item.

Usage::

    python bench/filter.py [--task translation] [--naive-items N]

Prints the CPU class beside every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extract import cpu_class  # noqa: E402  (bench/extract.py, beside this script)

from igds.method.config import ExtractConfig, RecallConfig  # noqa: E402
from igds.method.intervene import InterventionConfig, compute_mode, dev_sample, feature_acts_at, prepare_dev  # noqa: E402
from igds.modeling.batching import pad_batch  # noqa: E402
from igds.modeling.encoding import encode_examples  # noqa: E402
from igds.modeling.hooks import patch  # noqa: E402
from igds.modeling.sae import decoder_directions  # noqa: E402
from igds.progress import tqdm_progress  # noqa: E402
from igds.scope import UNCUT  # noqa: E402
from igds.store.record import export_run  # noqa: E402
from igds.workflow.catalog import task_split  # noqa: E402
from igds.workflow.stages import effect_id_for, run_interventions, run_recall  # noqa: E402
from igds.workflow.workspace import default_workspace, extract_tasks  # noqa: E402


@torch.no_grad()
def naive_nll(model, site: str, items, edit: torch.Tensor, pad: int) -> np.ndarray:
    """Mean response NLL of each item after a full forward with ``edit`` ``[B, T, d]`` added at ``site``."""
    out = np.full(len(items), np.nan)
    for i, it in enumerate(items):
        ids, attn = pad_batch([it], pad, "cpu")
        e = edit[i : i + 1, : ids.shape[1]]
        with patch(model, site, lambda h, e=e: h + e.to(h.dtype)):
            logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits[0].float()
        t = torch.arange(it.prompt_len - 1, len(it.input_ids) - 1)
        out[i] = torch.nn.functional.cross_entropy(logits[t], ids[0, t + 1]).item()
    return out


class Ledger:
    """Wall seconds of each sitting of one powered run (``results/bench/``, committed with the partial record), written
    every 30 s by a background thread, so a sitting killed at any point loses at most 30 s of its count."""

    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {"sittings": [], "done": False}
        self.t0 = time.perf_counter()
        if not self.data["done"]:
            self.data["sittings"].append(0.0)
            self._stop = threading.Event()
            threading.Thread(target=self._tick_every, args=(30.0,), daemon=True).start()

    def _tick_every(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            self.write()

    def write(self) -> None:
        if not self.data["done"]:
            self.data["sittings"][-1] = time.perf_counter() - self.t0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=1))

    def finish(self) -> float:
        """Close this sitting (a run already finished adds none) and return the seconds over all sittings."""
        if not self.data["done"]:
            self._stop.set()
            self.write()
            self.data["done"] = True
            self.write()
        return float(sum(self.data["sittings"]))


def powered_run(ws, task: str, cfg: InterventionConfig):
    """The task's filter run in the workspace, timed; returns ``(effects, wall seconds, sittings)``."""
    extract_cfg = ExtractConfig()
    bar = tqdm_progress()
    extract_tasks(ws, [task], extract_cfg, "mixed", bar)
    recall = run_recall(ws, task, RecallConfig(), extract_cfg)
    dev_ids = [e.id for e in task_split(ws.store, task, "dev")]
    eid = effect_id_for(ws, recall, dev_ids, cfg, ws.fp32_model())
    ledger_path = ROOT / "results" / "bench" / f"filter.{eid}.json"
    stored = ws.store.run(eid)
    if stored is not None and not ledger_path.exists():
        raise SystemExit(f"the {task} filter run {eid} is already in the store ({stored['status']}) without this "
                         "bench's ledger, so its wall time is unknown here; pick a task whose filter has not run")
    ledger = Ledger(ledger_path)
    effects = run_interventions(ws, task, recall, cfg, bar)
    seconds = ledger.finish()
    export_run(ws.store, effects.effect_id)
    return effects, seconds, len(ledger.data["sittings"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="translation")
    ap.add_argument("--naive-items", type=int, default=None, help="time the naive loop on the first N dev items "
                    "only (per-item time × all items); default: all")
    args = ap.parse_args()
    cfg = InterventionConfig()
    ws = default_workspace()
    model, pad = ws.fp32_model(), ws.tokenizer.pad_token_id
    print(f"CPU class {cpu_class()}, {torch.get_num_threads()} threads, {compute_mode(model, cfg)}; task "
          f"{args.task}, the default filter (dev {cfg.dev_items}, null {cfg.null_features} features + "
          f"{cfg.null_placed} placed per candidate, looks {cfg.looks})")
    res, t_powered, sittings = powered_run(ws, args.task, cfg)
    n_elements = len(res.null) + int((res.summary.n > 0).sum())
    deltas = ws.store.effect_deltas(res.effect_id)
    null_rows = ws.store.null_deltas(res.effect_id)

    items = encode_examples(ws.tokenizer, task_split(ws.store, args.task, "dev"), UNCUT)
    dev, _ = dev_sample(items, cfg)
    timed = dev[: args.naive_items] if args.naive_items else dev
    null_feats = [int(f) for f in res.null[res.null.kind == "feature"].feature][:4]
    eight = [int(f) for f in res.verdict[~res.verdict.untestable].feature][:4] + null_feats
    cache = prepare_dev(model, ws.site, timed, pad, cfg)
    acts = feature_acts_at(ws.sae, cache, eight)
    dirs = decoder_directions(ws.sae, eight)
    t0 = time.perf_counter()
    gaps = []
    for i, f in enumerate(tqdm(eight, desc="naive loop, 8 elements")):
        edit = acts[:, :, i].unsqueeze(-1) * dirs[i]  # the α = 1 scale edit
        naive = naive_nll(model, ws.site, timed, edit, pad)
        got = deltas[(deltas.feature == f) & (deltas.kind == "amplify") & (deltas.alpha == 1.0)]
        if got.empty:
            nid = int(res.null[(res.null.kind == "feature") & (res.null.feature == f)].null_id.iloc[0])
            got = null_rows[null_rows.null_id == nid]
        fast = dict(zip(got.example_id, got.delta, strict=True))
        base = cache.nll_base.numpy()
        for r, it in enumerate(timed):
            if it.example_id in fast:
                gaps.append(abs((base[r] - naive[r]) - fast[it.example_id]))
    t_naive = (time.perf_counter() - t0) / len(eight) * len(dev) / len(timed)
    extrapolated = t_naive * n_elements
    cpu = cpu_class()
    print(f"powered filter, end to end          : {t_powered:8.1f} s over {sittings} sitting(s) ({n_elements} "
          f"elements measured, |F*| = {len(res.kept)}; CPU class {cpu})")
    print(f"naive loop, per element (8 timed on {len(timed)} of {len(dev)} items): {t_naive:8.1f} s × {n_elements} "
          f"= {extrapolated:8.1f} s")
    print(f"speed-up                            : {extrapolated / t_powered:8.2f}x (CPU class {cpu})")
    print(f"|effect powered − effect naive|, 8 elements × their measured items ({len(gaps)}): max {max(gaps):.2e} "
          f"nats ({'within' if max(gaps) <= 1e-4 else 'OUTSIDE'} 1e-4)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
