"""NLL tables' one driver (the Loss / IFD baselines' inputs): the examples go to the pool's workers in contiguous
parts, each worker runs :func:`igds.modeling.nll.nll_table` on its part (the model alone, no SAE), and the driver
gets the rows back as parts finish (``on_part`` can store each as it arrives, so an interrupted table resumes)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from igds.executor.pool import PoolRequest
from igds.executor.registry import Opener
from igds.progress import ProgressFn, null_progress


def nll_table(examples: Sequence, max_length: int, pool: Opener, batch_tokens: int = 4096,
              progress: ProgressFn | None = None,
              on_part: Callable[[pd.DataFrame], None] | None = None) -> pd.DataFrame:
    """:func:`igds.modeling.nll.nll_table` of ``examples`` computed on a pool.

    A local pool runs one part, so its batches are what one call would make; on a remote pool each part pads its
    own length batches, so values agree up to float rounding.

    Returns:
        ``example_id, nll_cond, nll_uncond`` in the order of ``examples``.
    """
    progress = progress or null_progress
    examples = list(examples)
    if len({ex.id for ex in examples}) != len(examples):
        raise ValueError("examples have duplicate ids")
    if not examples:
        return pd.DataFrame({"example_id": [], "nll_cond": [], "nll_uncond": []})
    out, n_done = [], 0
    with pool(PoolRequest("nll", len(examples), progress=progress)) as workers:
        parts = workers.parts(examples)
        for _, df in workers.imap("nll_table", [(p, max_length, batch_tokens) for p in parts]):
            if on_part:
                on_part(df)
            out.append(df)
            n_done += len(df)
            progress(n_done, len(examples), f"nll: {n_done}/{len(examples)} examples")
    order = {ex.id: i for i, ex in enumerate(examples)}
    table = pd.concat(out, ignore_index=True)
    return table.sort_values("example_id", key=lambda s: s.map(order)).reset_index(drop=True)
