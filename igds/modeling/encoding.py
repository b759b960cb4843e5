"""Examples to model inputs: chat-template formatting and tokenization into :class:`EncodedItem` s."""

from __future__ import annotations

from collections.abc import Sequence

from igds.modeling.batching import EncodedItem


def encode_examples(tokenizer, examples: Sequence, max_length: int) -> list[EncodedItem]:
    """Format (chat template) and tokenize examples into :class:`EncodedItem` s."""
    from igds.data.tasks import get_task, list_tasks

    known = set(list_tasks())
    items = []
    for ex in examples:
        # The prompt already holds the instruction, so any task's formatting applies; custom
        # tasks registered by users may add their own.
        spec = get_task(ex.task if ex.task in known else "summarization")
        enc = spec.encode(tokenizer, ex.prompt, ex.response, max_length=max_length)
        items.append(EncodedItem(example_id=ex.id, input_ids=list(enc.input_ids), prompt_len=int(enc.prompt_len)))
    return items
