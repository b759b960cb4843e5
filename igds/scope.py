"""Three value objects every stage shares, each defined once: which tokens count (:class:`TokenScope`), where an
example is cut (:class:`LengthRule`) and which examples a selection ranks (:class:`PoolSpec`).

A run carries them in its config (``ExtractConfig.positions`` / ``max_length``, ``InterventionConfig.positions`` /
``max_length``, ``SelectionConfig.pool_setting`` / ``pool_limit``: flat fields, so stored run keys keep their
values), and a later stage reads the run's own, never a default of its own: ``tests/unit/test_value_objects.py``
checks that no function in ``igds/`` defaults ``positions``, ``max_length`` or ``pool_limit``, and that config fields
take their defaults from here. Torch-free and at the bottom of the layers, so every layer may import it.
"""

from __future__ import annotations

from dataclasses import dataclass

POSITION_SCOPES = ("content", "prompt_content", "response", "last_prompt_token", "all")
"""Token scopes every stage honours (SAE training, extraction, recall, FRS, edits, amplification):

- ``content``: the example's own prompt content and its response (default; never template or instruction);
- ``prompt_content``: the example's own prompt content only;
- ``response``: the response (and its eos token);
- ``last_prompt_token``: the last token of the prompt content, before the template closes the user turn;
- ``all``: every real token (template, system prompt and instruction included).
"""

POOL_SETTINGS = ("task-only", "mixed", "noisy")
"""``task-only``: the task's ``train`` items; ``mixed``: those plus every general record (off-task data to reject);
``noisy``: the task's ``train`` items with 30% of them corrupted (:mod:`igds.data.noise`, a positive control)."""


def check_positions(positions: str) -> None:
    """Raise ``ValueError`` for a scope outside :data:`POSITION_SCOPES`."""
    if positions not in POSITION_SCOPES:
        raise ValueError(f"positions must be one of {', '.join(POSITION_SCOPES)}, not {positions!r}")


def check_pool_setting(setting: str) -> None:
    """Raise ``ValueError`` for a setting outside :data:`POOL_SETTINGS`."""
    if setting not in POOL_SETTINGS:
        raise ValueError(f"unknown pool setting {setting!r}; use one of {', '.join(POOL_SETTINGS)}")


@dataclass(frozen=True)
class TokenScope:
    """Which token positions of an example count (:data:`POSITION_SCOPES`)."""

    positions: str = "content"

    def __post_init__(self):
        check_positions(self.positions)

    @classmethod
    def of_run(cls, run: dict | None, stage: str = "extract") -> TokenScope:
        """The scope a stored run of ``stage`` was made with (its config's ``positions``); a run stored before the
        field existed was made with :data:`CONTENT`."""
        cfg = ((run or {}).get("config") or {}).get(stage) or {}
        return cls(cfg.get("positions") or CONTENT.positions)


@dataclass(frozen=True)
class LengthRule:
    """Where an example is cut: at most ``max_length`` tokens, prompt and response together."""

    max_length: int = 512

    def __post_init__(self):
        if self.max_length < 2:
            raise ValueError(f"max_length must be >= 2, not {self.max_length}")


@dataclass(frozen=True)
class PoolSpec:
    """The candidate pool of a task: its ``setting`` (:data:`POOL_SETTINGS`) and ``limit`` (that many examples of
    each task, chosen by content hash, :func:`igds.method.pool.limit_frame`; 0: all). Which datasets form the pool
    is the task's catalog entry (``TaskData.pool_datasets``); ``mixed`` adds the general set."""

    setting: str = "mixed"
    limit: int = 0

    def __post_init__(self):
        check_pool_setting(self.setting)
        if self.limit < 0:
            raise ValueError("pool_limit must be >= 0")


class Scoped:
    """A run config that carries a token scope and a length rule as its flat ``positions`` and ``max_length``
    fields (the stored run keys hash those): ``cfg.scope`` and ``cfg.length`` give them as value objects."""

    positions: str
    max_length: int

    @property
    def scope(self) -> TokenScope:
        """Which tokens count (extraction) or where edits act (interventions): ``positions``."""
        return TokenScope(self.positions)

    @property
    def length(self) -> LengthRule:
        """Where an example is cut: ``max_length``."""
        return LengthRule(self.max_length)


CONTENT = TokenScope()
"""The default scope of extraction, recall, FRS, SAE training and amplification."""
STAGE_LENGTH = LengthRule()
"""The cap of extraction, the NLL tables, checks and amplification (512 tokens): extraction and the NLL tables drop
longer examples and count them, never cut (no shipped example reaches it; math's longest has 328)."""
NO_CUT = STAGE_LENGTH
"""The cap of interventions' dev items: longer ones are dropped and counted, never cut."""
EVAL_LENGTH = LengthRule(512)
"""The cap of evaluation's prompts and teacher-forced references."""
UNCUT = 1 << 20
"""A cap no example reaches: encode whole, then apply a stage's rule (drop, never cut)."""
DEFAULT_POOL = PoolSpec()
"""The mixed pool, unlimited."""
TRAIN_LENGTH = LengthRule(256)
"""The cap of LoRA training sequences (the CPU profile fits it to the data)."""
SAE_TRAIN_LENGTH = LengthRule(256)
"""The sequence length SAE training reads (the shipped SAE's recipe)."""
ALL_TOKENS = TokenScope("all")
"""Every real token: the scope of SAE training's activation buffer and of its reconstruction check."""
GRID_POOL = PoolSpec(limit=300)
"""The experiment grid's pools: 300 examples of the task (and 300 general ones in ``mixed``)."""


def pool_of(params: dict) -> PoolSpec:
    """The pool a job's or a URL's parameters name (``pool_setting``, ``pool_limit``; :data:`DEFAULT_POOL`'s where
    absent)."""
    return PoolSpec(params.get("pool_setting") or DEFAULT_POOL.setting,
                    int(params.get("pool_limit") or DEFAULT_POOL.limit))
