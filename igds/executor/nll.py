"""NLL tables (the Loss / IFD baselines' inputs) on Ray actors: the examples are cut into contiguous chunks, each
actor loads the model alone (no SAE) and runs :func:`igds.modeling.nll.nll_table` on a chunk; the driver gets the
rows back in completion order (``on_chunk`` can store each as it arrives, so an interrupted table resumes)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from igds.executor.config import ExecutorConfig
from igds.executor.intervene import CHUNKS_PER_ACTOR, chunks
from igds.executor.pool import WorkerPool
from igds.executor.worker import WorkerSpec, spec_for
from igds.progress import ProgressFn, null_progress


def nll_table_ray(store, model_key: str, examples: Sequence, executor: ExecutorConfig, max_length: int = 256,
                  batch_tokens: int = 4096, progress: ProgressFn | None = None, dtype: str | None = None,
                  on_chunk: Callable[[pd.DataFrame], None] | None = None,
                  spec: WorkerSpec | None = None) -> pd.DataFrame:
    """:func:`igds.modeling.nll.nll_table` of ``examples`` computed by Ray actors loading the stored model.

    Values equal the local table's up to float rounding (a chunk pads its own length batches).

    Returns:
        ``example_id, nll_cond, nll_uncond`` in the order of ``examples``.
    """
    progress = progress or null_progress
    examples = list(examples)
    if len({ex.id for ex in examples}) != len(examples):
        raise ValueError("examples have duplicate ids")
    if not examples:
        return pd.DataFrame({"example_id": [], "nll_cond": [], "nll_uncond": []})
    spec = spec or spec_for(store, model_key, None, dtype=dtype, need_sae=False)
    out, n_done = [], 0
    with WorkerPool(executor, spec, len(examples), progress=progress, stage="nll") as pool:
        parts = chunks(examples, pool.n * CHUNKS_PER_ACTOR)
        for _, df in pool.imap_unordered("nll_table", [(p, max_length, batch_tokens) for p in parts]):
            if on_chunk:
                on_chunk(df)
            out.append(df)
            n_done += len(df)
            progress(n_done, len(examples), f"nll: {n_done}/{len(examples)} examples")
    order = {ex.id: i for i, ex in enumerate(examples)}
    table = pd.concat(out, ignore_index=True)
    return table.sort_values("example_id", key=lambda s: s.map(order)).reset_index(drop=True)
