"""Examples to model inputs: render each record through its task at use, tokenize it, and say which
tokens are template, instruction, content and response.

The prompt is rendered by the task (:meth:`igds.data.tasks.TaskSpec.render_prompt`: chat template or
the plain template, with the character range of every part), tokenized once with offsets, and each
token takes the kind of the characters it covers. The ids and the prompt length are exactly those of
:meth:`TaskSpec.encode <igds.data.tasks.TaskSpec.encode>` (same text, same :func:`igds.data.tasks.assemble`).

Span kinds (:data:`SPAN_KINDS`), as half-open token ranges ``[start, end)`` into ``input_ids``:

- ``template``: what the chat template adds — BOS, role markers, a system prompt (the task's or one the
  template inserts by default, as SmolLM2's does), the blank line after the instruction, the end of turn
  and the generation prompt. Usually several ranges.
- ``instruction``: the task's fixed instruction (no range for ``general`` records).
- ``content``: the example's own input text (one range; when truncation cut the prompt's middle, the kept
  head and tail of the content are adjacent).
- ``response``: the reference answer and its eos token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from igds.modeling.batching import EncodedItem
from igds.scope import STAGE_LENGTH

SPAN_KINDS = ("template", "instruction", "content", "response")
Spans = Mapping[str, tuple[tuple[int, int], ...]]


def render_example(tokenizer, task, content: str, response: str | None = None,
                   max_length: int = STAGE_LENGTH.max_length,
                   example_id: str = "", frame: tuple[str, str, bool] | None = None) -> EncodedItem:
    """Render one record through a task and tokenize it, with the token spans of every part.

    Args:
        tokenizer: A Hugging Face tokenizer (spans need a fast tokenizer; a slow one gives no spans).
        task: A :class:`igds.data.tasks.TaskSpec` or a task name (``general`` included).
        content: The record's own input text.
        response: The reference answer; None gives the prompt only.
        max_length: Maximum number of tokens (truncation as in :func:`igds.data.tasks.assemble`).
        example_id: Id stored on the item.
        frame: The task's ``prompt_frame(tokenizer)`` when already known (saves a template rendering).

    Returns:
        The item: ``input_ids``, ``prompt_len`` and ``spans`` (every kind of :data:`SPAN_KINDS` as a key).
    """
    from igds.data.tasks import RESPONSE, TEMPLATE, assemble, record_task

    spec = record_task(task) if isinstance(task, str) else task
    prompt = spec.render_prompt(tokenizer, content, frame)
    prompt_ids, labels = _tokenize_with_kinds(tokenizer, prompt.text, prompt.kind_at())
    ids, prompt_len, origin = assemble(tokenizer, prompt_ids, response, max_length)
    spans: dict[str, tuple[tuple[int, int], ...]] = {}
    if labels is not None:
        kinds = [TEMPLATE if i < 0 else labels[i] for i in origin] + [RESPONSE] * (len(ids) - prompt_len)
        spans = _ranges(kinds)
    return EncodedItem(example_id, ids, prompt_len, spans)


def _tokenize_with_kinds(tokenizer, text: str, char_kinds: list[str]) -> tuple[list[int], list[str] | None]:
    """Token ids of ``text`` (as ``igds.data.tasks.tokenize`` gives them) and the kind of each token.

    A token takes the kind most of its characters have (ties: the first); a token without characters
    (e.g. an inserted special token) takes the kind of the character at its start.
    """
    from igds.data.tasks import tokenize

    if not getattr(tokenizer, "is_fast", False):
        return tokenize(tokenizer, text), None
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    for start, end in enc["offset_mapping"]:
        covered = char_kinds[start:end] or char_kinds[min(start, len(char_kinds) - 1):][:1]
        labels.append(max(dict.fromkeys(covered), key=covered.count))
    return list(enc["input_ids"]), labels


def _ranges(kinds: Sequence[str]) -> dict[str, tuple[tuple[int, int], ...]]:
    """Runs of equal kinds as ``{kind: ((start, end), ...)}``, every kind of :data:`SPAN_KINDS` present."""
    out: dict[str, list[tuple[int, int]]] = {k: [] for k in SPAN_KINDS}
    start = 0
    for i in range(1, len(kinds) + 1):
        if i == len(kinds) or kinds[i] != kinds[start]:
            out.setdefault(kinds[start], []).append((start, i))
            start = i
    return {k: tuple(v) for k, v in out.items()}


def span_positions(spans: Spans, *kinds: str) -> list[int]:
    """Token positions covered by the given span kinds, ascending.

    Args:
        spans: An item's ``spans``.
        kinds: Kinds to include, e.g. ``"content", "response"``.

    Returns:
        Sorted positions.
    """
    return sorted(p for k in kinds for a, b in spans.get(k, ()) for p in range(a, b))


def encode_examples(tokenizer, examples: Sequence, max_length: int) -> list[EncodedItem]:
    """Render every example through its task (``general``: no instruction) into :class:`EncodedItem` s.

    Args:
        tokenizer: A Hugging Face tokenizer.
        examples: Objects with ``id``, ``task``, ``prompt`` (the content) and ``response``.
        max_length: Maximum number of tokens per example.

    Returns:
        One item per example, in order, with token spans.
    """
    from igds.data.tasks import record_task

    frames: dict[str, tuple[str, str, bool]] = {}
    items = []
    for ex in examples:
        spec = record_task(ex.task)
        if ex.task not in frames:
            frames[ex.task] = spec.prompt_frame(tokenizer)
        items.append(render_example(tokenizer, spec, ex.prompt, ex.response, max_length, ex.id, frames[ex.task]))
    return items
