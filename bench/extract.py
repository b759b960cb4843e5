"""Extraction throughput vs. a bare full forward, on the same tokens, in one run.

Usage: python bench/extract.py [--n 256] [--dtype auto|float32|bfloat16] [--repeat 3] [--browser]

Prints tokens/s of (a) a bare full forward (logits) and (b) extraction = early-exit capture hook +
sink guard + SAE encode + aggregation + store write, and the time ratio (b)/(a). Beside the ratio: the
multiply-adds extraction needs (the forward to the SAE's block and the SAE encoder, from the model's config and
the batches' padded lengths), the GFLOP/s it achieved, and a matmul peak measured in the same run, in the same
dtype and thread count, with the CPU class (``avx512_bf16`` / ``amx_bf16`` when the CPU has them, else ``avx2``)
and torch's CPU capability. Uses the default SAE when it has been trained (``igds bootstrap``), else a random
TopK SAE of the same shape.

With ``--repeat`` the extraction is timed that many times (the median is reported). With ``--browser`` every repeat
times it twice, back to back: with no browser on the dashboard, and with a headless Chromium on its Overview page
while a job is live there (the page then refreshes its job panels); it prints both medians and their ratio, what
watching a job costs the job (target: within 10%).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from igds.data.corpus import task_pool
from igds.executor.extract import extract_here
from igds.method.config import ExtractConfig
from igds.modeling.batching import length_batches, pad_batch
from igds.modeling.encoding import encode_examples
from igds.modeling.load import ModelSpec, load_model
from igds.modeling.sae import SaeError, SaeSpec, load_sae
from igds.store import ActivationStore

SITE = "blocks.15.hook_resid_post"


def cpu_class() -> str:
    """``avx512_bf16`` / ``amx_bf16`` (bf16 instructions) when /proc/cpuinfo lists them, else ``avx2``."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    return ", ".join(sorted(flags & {"avx512_bf16", "amx_bf16"})) or "avx2"


def extraction_macs(config, n_blocks: int, batches, d_sae: int) -> float:
    """Multiply-adds of extraction's padded batches: ``n_blocks`` transformer blocks (projections, MLP and the
    attention scores over each padded row) and the SAE encoder on every position."""
    d, ff, heads = config.hidden_size, config.intermediate_size, config.num_attention_heads
    hd = getattr(config, "head_dim", None) or d // heads
    kv = getattr(config, "num_key_value_heads", heads)
    per_token = d * (heads * hd + 2 * kv * hd) + heads * hd * d + 3 * d * ff
    total = 0.0
    for b in batches:
        width = max(len(it.input_ids) for it in b)
        tokens = width * len(b)
        total += n_blocks * (tokens * per_token + 2 * len(b) * width * width * heads * hd / 2) + tokens * d * d_sae
    return total


def matmul_peak(dtype: torch.dtype, n: int = 2048, k: int = 576, m: int = 1536, repeats: int = 20) -> float:
    """GFLOP/s of ``[n, k] @ [k, m]`` in ``dtype`` on this process's threads (the model's projection shape)."""
    a, b = torch.randn(n, k, dtype=dtype), torch.randn(k, m, dtype=dtype)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n * k * m * repeats / (time.perf_counter() - t0) / 1e9


def time_extraction(model, sae, items, cfg: ExtractConfig, pad_id: int):
    """Seconds of one extraction of ``items`` into a fresh store, and its result."""
    with tempfile.TemporaryDirectory() as d:
        store = ActivationStore(Path(d) / "bench.duckdb")
        store.start_run("bench", "extract", cfg.to_dict())
        t0 = time.perf_counter()
        res = extract_here(store, "bench", model, sae, SITE, items, cfg, pad_id)
        return time.perf_counter() - t0, res


@contextmanager
def watched_dashboard():
    """The dashboard served with a live (sleeping) job and a headless Chromium; yields ``watch(on)``, which puts the
    browser on the Overview (``on``) or on a blank page."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from browser import browser, serve

    from igds import jobs

    job = jobs.start_job("count", {"steps": 100_000, "sleep": 1.0})
    try:
        with serve() as url, browser() as b:
            def watch(on: bool) -> None:
                b.call("Page.navigate", url=url + "/overview" if on else "about:blank")
                time.sleep(8 if on else 2)  # the page is up and refreshing before the clock starts

            yield watch
    finally:
        jobs.cancel_job(job)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256, help="examples from the summarization pool")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--repeat", type=int, default=1, help="extraction timings (the median is printed)")
    ap.add_argument("--browser", action="store_true", help="also time each repeat with a browser on the Overview")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    model, tok = load_model(ModelSpec(dtype=args.dtype))
    try:
        sae, info = load_sae(SaeSpec())
        sae_name = info.name
    except SaeError:
        from sae_lens import TopKSAE, TopKSAEConfig

        sae = TopKSAE(TopKSAEConfig(d_in=576, d_sae=4096, k=32, dtype="float32", device="cpu")).requires_grad_(False)
        sae.cfg.metadata.hook_name = SITE
        sae_name = "random TopK 4096 (default SAE not trained yet)"
    cfg = ExtractConfig()
    items = encode_examples(tok, task_pool("summarization")[: args.n], cfg.max_length)
    n_tokens = sum(len(it.input_ids) for it in items)
    batches = length_batches(items, cfg.batch_tokens)

    with torch.no_grad():  # warm-up
        ids, attn = pad_batch(batches[0], tok.pad_token_id, model.device)
        model(input_ids=ids, attention_mask=attn, use_cache=False)
        t0 = time.perf_counter()
        for b in batches:
            ids, attn = pad_batch(b, tok.pad_token_id, model.device)
            model(input_ids=ids, attention_mask=attn, use_cache=False)
        t_forward = time.perf_counter() - t0

    times, watched = [], []
    if args.browser:
        with watched_dashboard() as watch:
            for _ in range(args.repeat):
                watch(False)
                times.append(time_extraction(model, sae, items, cfg, tok.pad_token_id)[0])
                watch(True)
                watched.append(time_extraction(model, sae, items, cfg, tok.pad_token_id)[0])
    else:
        times = [time_extraction(model, sae, items, cfg, tok.pad_token_id)[0] for _ in range(args.repeat - 1)]
    t_last, res = time_extraction(model, sae, items, cfg, tok.pad_token_id)
    t_extract = statistics.median([*times, t_last])

    print(f"model dtype {next(model.parameters()).dtype}, threads {torch.get_num_threads()}, SAE {sae_name}")
    print(f"{len(items)} examples, {n_tokens} tokens, {len(batches)} batches, {res.n_rows} activation rows")
    print(f"bare full forward : {t_forward:7.2f} s  {n_tokens / t_forward:8.0f} tokens/s")
    print(f"extraction        : {t_extract:7.2f} s  {n_tokens / t_extract:8.0f} tokens/s "
          "(early exit + SAE encode + aggregation + store write)")
    print(f"time ratio extraction / forward = {t_extract / t_forward:.2f}  (target <= 0.5)")
    dtype = next(model.parameters()).dtype
    macs = extraction_macs(model.config, int(SITE.split(".")[1]) + 1, batches, int(sae.cfg.d_sae))
    peak = matmul_peak(dtype)
    achieved = 2 * macs / t_extract / 1e9
    print(f"extraction work   : {2 * macs / 1e9:7.1f} GFLOP ({2 * macs / n_tokens / 1e6:.0f} MFLOP per token, padded)")
    print(f"achieved          : {achieved:7.1f} GFLOP/s = {achieved / peak:.0%} of the matmul peak {peak:.1f} GFLOP/s "
          f"({dtype}, {torch.get_num_threads()} threads; target >= 60%)")
    print(f"CPU class {cpu_class()}, torch CPU capability {torch.backends.cpu.get_cpu_capability()}")
    if watched:
        t_watched = statistics.median(watched)
        print(f"with a browser on the Overview (a job live there): median {t_watched:.2f} s vs {t_extract:.2f} s "
              f"without, ratio {t_watched / t_extract:.3f} (target <= 1.10); runs without "
              f"{', '.join(f'{t:.2f}' for t in times)}, with {', '.join(f'{t:.2f}' for t in watched)}")


if __name__ == "__main__":
    main()
