"""The workflow layer's configs, free of torch so importing them stays cheap.

:class:`HighlightConfig` and the highlight row budget (:mod:`igds.workflow.highlights`, which re-exports them).
Run ids hash these configs (:meth:`igds.config.ConfigBase.stage_key`): a change of a field, default or class
name changes the keys of existing runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from igds.config import ConfigBase

DEFAULT_MAX_ROWS = 250_000
"""Most highlight rows (``highlight_tokens`` + ``highlight_acts``) stored per pool."""
HIGHLIGHTS_MEASURED = ("a 1,200-example task pool takes 33,206 rows (about 37,600 for 1,360 examples), the "
                       "3,945-example mixed pool 53,405 (default workspace, 32 candidate features)")
"""The measured row counts :mod:`igds.workflow.highlights` and the Selection page quote."""


@dataclass(frozen=True, kw_only=True)
class HighlightConfig(ConfigBase):
    """How a pool's token highlights are stored.

    Args:
        max_rows: the row budget of one pool (tokens rows + activation rows).
        chunk: examples per forward pass and transaction (an interrupted run keeps the chunks written).
    """

    max_rows: int = field(default=DEFAULT_MAX_ROWS, metadata={"help": "most highlight rows stored per pool"})
    chunk: int = field(default=128, metadata={"help": "examples per forward pass and write"})

    def __post_init__(self):
        if self.max_rows < 1 or self.chunk < 1:
            raise ValueError("max_rows and chunk must be >= 1")
