"""Task definitions and their registry.

A task fixes prompt formatting, tokenisation with an exact prompt/response boundary, answer
extraction, generation settings and its metric.

Built-in tasks are ``math``, ``summarization`` and ``translation``. A user adds a task for their own
data with :func:`register_custom_task` and loads the data with ``igds.data.corpus.read_records`` or
``igds.data.corpus.load_hf_dataset``; no library code changes.

transformers is only referenced for typing, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from igds.data import metrics

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Used when a tokenizer has no chat template (base models); Alpaca-style, widely understood.
PLAIN_TEMPLATE = "### Instruction:\n{prompt}\n\n### Response:\n"


class UnknownTaskError(KeyError, ValueError):
    """Raised for a task name that is not registered; the message lists the known tasks."""

    def __str__(self) -> str:
        """The plain message."""
        # KeyError would otherwise print the message with quotes around it.
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class EncodedExample:
    """Token ids of one example; ``input_ids[:prompt_len]`` is the prompt, the rest the response."""

    input_ids: list[int]
    prompt_len: int


@dataclass(frozen=True)
class TaskSpec:
    """How one task is prompted, generated and scored.

    Args:
        name: Registry name, also the ``task`` field of its records.
        instruction: Instruction placed before the raw input by :meth:`format_prompt`.
        metric: Name of the metric in ``igds.data.metrics``.
        max_new_tokens: Generation budget for evaluation.
        description: One line for listings and the UI.
    """

    name: str
    instruction: str
    metric: str
    max_new_tokens: int = 64
    description: str = ""

    def format_prompt(self, text: str) -> str:
        """Build the full user message from raw input text (instruction, blank line, text).

        Args:
            text: The raw input, e.g. a package description.

        Returns:
            The user message as stored in a record's ``prompt``.
        """
        return f"{self.instruction}\n\n{text}" if self.instruction else text

    def messages(self, prompt: str, response: str | None = None) -> list[dict[str, str]]:
        """Chat messages for a prompt and, optionally, its response.

        Args:
            prompt: The full user message.
            response: The assistant answer, if any.

        Returns:
            A list of ``{"role", "content"}`` dicts.
        """
        msgs = [{"role": "user", "content": prompt}]
        if response is not None:
            msgs.append({"role": "assistant", "content": response})
        return msgs

    def generation_prompt(self, tokenizer: PreTrainedTokenizerBase, prompt: str) -> str:
        """Prompt text up to where the model starts answering.

        Uses the tokenizer's chat template with ``add_generation_prompt=True`` when it has one,
        else :data:`PLAIN_TEMPLATE`.

        Args:
            tokenizer: A Hugging Face tokenizer.
            prompt: The full user message.

        Returns:
            The formatted prompt text.
        """
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(self.messages(prompt), tokenize=False, add_generation_prompt=True)
        return PLAIN_TEMPLATE.format(prompt=prompt)

    def encode(
        self,
        tokenizer: PreTrainedTokenizerBase,
        prompt: str,
        response: str | None = None,
        max_length: int = 256,
    ) -> EncodedExample:
        """Tokenise an example so the prompt/response boundary is exact.

        The prompt text (see :meth:`generation_prompt`) and the response text are tokenised
        separately without special tokens and concatenated; the response is followed by the
        tokenizer's eos token. If the tokenizer normally starts sequences with BOS, BOS is put in
        front. When too long, the response is capped at half of ``max_length`` and the prompt is
        cut in the middle, keeping its start (template header) and its end (the question and the
        generation prompt), so the response always survives.

        Args:
            tokenizer: A Hugging Face tokenizer.
            prompt: The full user message.
            response: The reference answer; None encodes the prompt only.
            max_length: Maximum number of tokens.

        Returns:
            The token ids and the prompt length.
        """
        if max_length < 2:
            raise ValueError("max_length must be at least 2")
        prompt_ids = _tokenize(tokenizer, self.generation_prompt(tokenizer, prompt))
        bos = getattr(tokenizer, "bos_token_id", None)
        if bos is not None and _adds_bos(tokenizer) and prompt_ids[:1] != [bos]:
            prompt_ids = [bos, *prompt_ids]
        response_ids: list[int] = []
        if response is not None:
            response_ids = _tokenize(tokenizer, response)
            eos = getattr(tokenizer, "eos_token_id", None)
            if eos is not None:
                response_ids.append(eos)
            # A truncated response loses its eos: the model must not learn to stop mid-answer.
            if len(prompt_ids) + len(response_ids) > max_length:
                response_ids = response_ids[: max_length // 2]
        budget = max_length - len(response_ids)
        prompt_ids = _keep_ends(prompt_ids, budget)
        return EncodedExample(input_ids=prompt_ids + response_ids, prompt_len=len(prompt_ids))

    def extract_answer(self, text: str) -> str:
        """Pull the answer out of a model output.

        Exact-match tasks return the final number (canonical form); other tasks return the first
        non-empty line, stripped, since the references are one line.

        Args:
            text: Generated text.

        Returns:
            The extracted answer ("" if none).
        """
        if self.metric == "exact_match":
            return metrics.format_number(metrics.final_number(text))
        for line in text.splitlines():
            if line.strip():
                return line.strip()
        return ""

    def score(self, predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
        """Score model outputs against references with the task's metric.

        :meth:`extract_answer` is applied to each prediction first (it is idempotent, so already
        extracted answers are fine).

        Args:
            predictions: Generated texts.
            references: Reference responses.

        Returns:
            ``{"metric": name, "score": float, "per_example": [float, ...]}``.
        """
        extracted = [self.extract_answer(p) for p in predictions]
        return metrics.get_metric(self.metric)(extracted, list(references))


def _tokenize(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    bos = getattr(tokenizer, "bos_token_id", None)
    return bos is not None and list(tokenizer("", add_special_tokens=True)["input_ids"])[:1] == [bos]


def _keep_ends(ids: list[int], budget: int) -> list[int]:
    """Cut the middle out of ``ids`` so at most ``budget`` remain (a quarter head, the rest tail)."""
    if len(ids) <= budget:
        return ids
    if budget <= 0:
        return []
    head = budget // 4
    return ids[:head] + ids[len(ids) - (budget - head) :]


_TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec, *, overwrite: bool = False) -> TaskSpec:
    """Add a task to the registry.

    Args:
        spec: The task definition; its metric must be registered in ``igds.data.metrics``.
        overwrite: Allow replacing an existing task of the same name.

    Returns:
        The registered spec.

    Raises:
        ValueError: If the name is taken (and not ``overwrite``), is ``general`` (reserved for the
            off-task pool) or the metric is unknown.
    """
    if spec.name == "general":
        raise ValueError("'general' is reserved for the off-task pool records")
    if not spec.name or not spec.name.replace("-", "_").isidentifier():
        raise ValueError(f"task name {spec.name!r} must be a non-empty identifier (letters, digits, _ or -)")
    metrics.get_metric(spec.metric)
    if spec.name in _TASKS and not overwrite and _TASKS[spec.name] != spec:
        raise ValueError(f"task {spec.name!r} is already registered")
    _TASKS[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    """Look a task up by name.

    Args:
        name: Task name, e.g. ``"math"``.

    Returns:
        Its :class:`TaskSpec`.

    Raises:
        UnknownTaskError: If it is not registered (the message lists the known tasks).
    """
    try:
        return _TASKS[name]
    except KeyError:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(list_tasks())}") from None


def list_tasks() -> list[str]:
    """Names of the registered tasks, built-ins first, then custom ones in registration order."""
    return list(_TASKS)


def register_custom_task(
    name: str,
    *,
    metric: str,
    instruction: str = "",
    max_new_tokens: int = 64,
    description: str = "",
    overwrite: bool = False,
) -> TaskSpec:
    """Define a task for user data without touching library code.

    Example: ``register_custom_task("sentiment", metric="exact_match")`` followed by
    ``igds.data.corpus.read_records("my.jsonl", task="sentiment")``.

    Args:
        name: New task name.
        metric: Metric name (see ``igds.data.metrics.list_metrics()``).
        instruction: Instruction text used by :meth:`TaskSpec.format_prompt`.
        max_new_tokens: Generation budget.
        description: One-line description.
        overwrite: Allow replacing an existing task.

    Returns:
        The registered spec.
    """
    spec = TaskSpec(name, instruction, metric, max_new_tokens, description or f"custom task ({metric})")
    return register_task(spec, overwrite=overwrite)


MATH = register_task(
    TaskSpec(
        name="math",
        instruction="Solve this math word problem step by step. Write the final answer after '####'.",
        metric="exact_match",
        max_new_tokens=256,
        description="GSM8K-style word problems (GSM-Symbolic templates); exact match of the final number",
    )
)
SUMMARIZATION = register_task(
    TaskSpec(
        name="summarization",
        instruction="Summarize this software package description in one short line:",
        metric="rouge_l",
        max_new_tokens=32,
        description="Debian package description -> one-line synopsis; ROUGE-L F1",
    )
)
TRANSLATION = register_task(
    TaskSpec(
        name="translation",
        instruction="Translate to English:",
        metric="chrf",
        max_new_tokens=64,
        description="German (Ding) and French (Debian DDTP) -> English; chrF",
    )
)
