"""Task specs: rendering a record's content (instruction, system prompt, parts), exact prompt/response token
boundary, extraction, registry."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import tokenizers
from tokenizers import models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from igds.data import tasks
from igds.data.corpus import read_records
from igds.data.tasks import (
    PLAIN_TEMPLATE,
    TaskSpec,
    TemplateRenderError,
    UnknownTaskError,
    get_task,
    record_task,
    register_custom_task,
)
from igds.training.config import EvalConfig

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORDS = ["user", "assistant", "###", "Instruction:", "Response:", "Translate", "to", "English:", "hello", "world"]


def make_tokenizer(chat: bool, bos: bool = False) -> PreTrainedTokenizerFast:
    """A word-level tokenizer built offline: one id per whitespace-separated word."""
    specials = ["[UNK]", "<s>", "<|im_start|>", "<|im_end|>"]
    vocab = {w: i for i, w in enumerate(specials + WORDS + [f"w{i}" for i in range(300)])}
    backend = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if bos:
        from tokenizers import processors

        backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", eos_token="<|im_end|>", bos_token="<s>" if bos else None
    )
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def ids(tok: PreTrainedTokenizerFast, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def test_builtin_tasks() -> None:
    assert tasks.list_tasks()[:3] == ["math", "summarization", "translation"]
    assert (get_task("math").metric, get_task("math").max_new_tokens) == ("exact_match", 256)
    assert (get_task("summarization").metric, get_task("summarization").max_new_tokens) == ("rouge_l", 32)
    assert (get_task("translation").metric, get_task("translation").max_new_tokens) == ("chrf", 64)
    assert get_task("translation").format_prompt("Hallo Welt.") == "Translate to English:\n\nHallo Welt."


def test_messages() -> None:
    spec = get_task("summarization")
    user = "Summarize this software package description in one short line:\n\np"
    assert spec.messages("p") == [{"role": "user", "content": user}]
    assert spec.messages("p", "r")[1] == {"role": "assistant", "content": "r"}
    sys_spec = TaskSpec("s", "Do:", "chrf", system="Be brief.")
    assert sys_spec.messages("p") == [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": "Do:\n\np"}]
    assert sys_spec.messages("p", fold_system=True) == [{"role": "user", "content": "Be brief.\n\nDo:\n\np"}]


def test_general_and_unregistered_tasks_render_without_instruction() -> None:
    assert record_task("general").format_prompt("Tell me a joke.") == "Tell me a joke."
    assert record_task("not_registered_here").format_prompt("x") == "x"
    assert record_task("math") is get_task("math")
    with pytest.raises(UnknownTaskError):
        get_task("general")  # not a registered task: it has no metric


def test_render_prompt_parts() -> None:
    tok = make_tokenizer(chat=True)
    rendered = get_task("translation").render_prompt(tok, "hello")
    assert rendered.text == "<|im_start|>user\nTranslate to English:\n\nhello<|im_end|>\n<|im_start|>assistant\n"
    assert [rendered.text[a:b] for _, a, b in rendered.parts] == [
        "<|im_start|>user\n", "Translate to English:", "\n\n", "hello", "<|im_end|>\n<|im_start|>assistant\n"]
    assert [k for k, _, _ in rendered.parts] == ["template", "instruction", "template", "content", "template"]
    assert len(rendered.kind_at()) == len(rendered.text)
    plain = TaskSpec("p", "Do:", "chrf", system="Be brief.").render_prompt(make_tokenizer(chat=False), "x y")
    assert plain.text == "Be brief.\n\n" + PLAIN_TEMPLATE.format(prompt="Do:\n\nx y")
    assert (plain.span_text("instruction"), plain.span_text("content")) == ("Do:", "x y")
    assert plain.span_text("template") == "Be brief.\n\n### Instruction:\n\n\n\n\n### Response:\n"


def test_render_prompt_template_variants() -> None:
    tok = make_tokenizer(chat=True)
    spec = TaskSpec("s", "Do:", "chrf", system="Be brief.")
    # a template that trims the message (Llama-3 and Gemma templates do)
    tok.chat_template = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] | trim }}{% endfor %}[assistant]"
    rendered = spec.render_prompt(tok, "  padded content \n")
    assert rendered.text == "[system]Be brief.[user]Do:\n\n  padded content[assistant]"
    assert (rendered.span_text("instruction"), rendered.span_text("content")) == ("Do:", "  padded content")
    rendered = record_task("general").render_prompt(tok, "  padded content \n")
    assert rendered.text == "[user]padded content[assistant]" and rendered.span_text("content") == "padded content"
    # a template that refuses the system role: the system prompt opens the user message
    tok.chat_template = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
                         "{% endif %}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<model>")
    rendered = spec.render_prompt(tok, "x")
    assert rendered.system_folded and rendered.text == "<user>Be brief.\n\nDo:\n\nx<model>"
    assert rendered.span_text("template") == "<user>Be brief.\n\n\n\n<model>"
    plain = TaskSpec("s", "Do:", "chrf").render_prompt(tok, "x")  # no system prompt: nothing to fold
    assert not plain.system_folded and plain.text == "<user>Do:\n\nx<model>"
    tok.chat_template = "{{ raise_exception('Conversation roles must alternate') }}"
    with pytest.raises(Exception, match="roles must alternate"):  # other template errors are not swallowed
        spec.render_prompt(tok, "x")
    # templates that rewrite the message or repeat it cannot be read
    tok.chat_template = "{% for m in messages %}{{ m['content'] | replace('\\n\\n', ' ') }}{% endfor %}"
    with pytest.raises(TemplateRenderError, match="rewrites the user message"):
        spec.render_prompt(tok, "x")
    tok.chat_template = "{% for m in messages %}{{ m['content'] | upper }}{% endfor %}"
    with pytest.raises(TemplateRenderError, match="0 times"):
        spec.render_prompt(tok, "x")
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{{ m['content'] }}{% endfor %}"
    with pytest.raises(TemplateRenderError, match="2 times"):
        get_task("math").render_prompt(tok, "x")


def test_encode_with_chat_template_has_exact_boundary() -> None:
    tok = make_tokenizer(chat=True)
    spec = get_task("translation")
    prompt, response = "hello", "hello world"
    text = spec.generation_prompt(tok, prompt)
    assert text == "<|im_start|>user\nTranslate to English:\n\nhello<|im_end|>\n<|im_start|>assistant\n"
    enc = spec.encode(tok, prompt, response)
    assert enc.input_ids[: enc.prompt_len] == ids(tok, text)
    assert enc.input_ids[enc.prompt_len :] == [*ids(tok, response), tok.eos_token_id]
    assert enc.input_ids[-1] == tok.convert_tokens_to_ids("<|im_end|>")
    assert spec.encode(tok, prompt).input_ids == ids(tok, text)  # no response: prompt only


def test_encode_plain_template_and_bos() -> None:
    tok = make_tokenizer(chat=False, bos=True)
    spec = get_task("summarization")
    text = spec.generation_prompt(tok, "hello")
    assert text == PLAIN_TEMPLATE.format(prompt=spec.format_prompt("hello"))
    enc = spec.encode(tok, "hello", "world")
    assert enc.input_ids[0] == tok.bos_token_id
    assert enc.input_ids[1 : enc.prompt_len] == ids(tok, text)
    assert enc.input_ids[enc.prompt_len :] == [ids(tok, "world")[0], tok.eos_token_id]


def test_encode_truncates_prompt_middle_and_keeps_response() -> None:
    tok = make_tokenizer(chat=False)
    spec = get_task("translation")
    prompt = " ".join(f"w{i}" for i in range(200))
    enc = spec.encode(tok, prompt, "w250 w251", max_length=40)
    assert len(enc.input_ids) == 40
    full = ids(tok, spec.generation_prompt(tok, prompt))
    kept = enc.input_ids[: enc.prompt_len]
    assert enc.prompt_len == 40 - 3
    assert kept[: len(kept) // 4] == full[: len(kept) // 4]  # template head survives
    assert kept[-5:] == full[-5:]  # end of the question and "### Response:" survive
    assert enc.input_ids[enc.prompt_len :] == [*ids(tok, "w250 w251"), tok.eos_token_id]


def test_encode_caps_long_response() -> None:
    tok = make_tokenizer(chat=True)
    response = " ".join(f"w{i}" for i in range(100))
    enc = get_task("translation").encode(tok, "hello", response, max_length=32)
    assert len(enc.input_ids) <= 32
    assert enc.input_ids[enc.prompt_len :] == ids(tok, response)[:16]  # capped to half, no eos


def test_extract_answer() -> None:
    assert get_task("math").extract_answer("So 3 * 400 = 1,200\n#### 1,200") == "1200"
    assert get_task("math").extract_answer("no number") == ""
    assert get_task("summarization").extract_answer("\n\n  Tool for X \nmore text") == "Tool for X"
    assert get_task("translation").extract_answer("   ") == ""


def test_score_extracts_first() -> None:
    out = get_task("summarization").score(["the cat sat\nextra words that would lower precision"], ["the cat sat"])
    assert out["metric"] == "rouge_l"
    assert out["score"] == pytest.approx(1.0)
    math = get_task("math").score(["... so #### 12", "#### 5"], ["a = 12\n#### 12", "#### 6"])
    assert math["per_example"] == [1.0, 0.0]


def test_unknown_task_message() -> None:
    with pytest.raises(UnknownTaskError, match="unknown task 'poetry'; known tasks: math, summarization"):
        get_task("poetry")
    with pytest.raises(KeyError):
        get_task("poetry")


def test_register_rules() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        tasks.register_task(TaskSpec("bad_metric_task", "", "meteor"))
    with pytest.raises(ValueError, match="reserved"):
        register_custom_task("general", metric="chrf")
    with pytest.raises(ValueError, match="already registered"):
        tasks.register_task(TaskSpec("math", "other", "chrf"))


def test_custom_task_with_user_data(tmp_path) -> None:
    spec = register_custom_task("sentiment_demo", metric="exact_match", instruction="Rate 1-5:", overwrite=True)
    assert get_task("sentiment_demo") is spec
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"prompt": "great film", "response": "5"}) + "\n")  # content only
    (ex,) = read_records(path, task="sentiment_demo", split="test")
    assert (ex.task, ex.split, ex.source) == ("sentiment_demo", "test", "mine.jsonl")
    assert spec.format_prompt(ex.content) == "Rate 1-5:\n\ngreat film"
    assert spec.score(["I'd say 5"], [ex.response])["score"] == 1.0


def test_import_is_light() -> None:
    code = "import sys, igds.data.tasks, igds.data.corpus; print('transformers' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# -- bounded extraction and caps at task creation (issue 23) -------------------------------------------------
RUN = 300_000
LONG_OUTPUTS = {  # model outputs that made a backtracking pattern quadratic, and plain long ones
    "spaces": " " * RUN,
    "digits_and_spaces": "1 " * (RUN // 2),
    "marker_then_blanks": "#### " + " " * RUN + "x",
    "boxed_then_blanks": "\\boxed{" + " " * RUN + "x",
    "answer_then_newlines": "answer" + "\n" * RUN,
}
EXTRACTORS = {
    "auto_exact_match": TaskSpec("t", "", "exact_match"),
    "auto_chrf": TaskSpec("t", "", "chrf"),
    "last_number": TaskSpec("t", "", "chrf", answer="last_number"),
    "after_marker": TaskSpec("t", "", "chrf", answer="after_marker", answer_arg="####"),
    "first_line": TaskSpec("t", "", "chrf", answer="first_line"),
    "whole": TaskSpec("t", "", "chrf", answer="whole"),
    **{f"regex_{name}": TaskSpec("t", "", "chrf", answer="regex", answer_arg=name) for name in tasks.ANSWER_PATTERNS},
}
EXPECTED = {  # (extractor, output) -> answer, where the answer says something
    ("last_number", "digits_and_spaces"): "1",
    ("last_number", "marker_then_blanks"): "",
    ("last_number", "boxed_then_blanks"): "",
    ("auto_exact_match", "marker_then_blanks"): "",
    ("after_marker", "marker_then_blanks"): "x",
    ("regex_answer_is", "answer_then_newlines"): "",
    ("regex_boxed", "boxed_then_blanks"): "",  # no closing brace
    ("regex_first_word", "digits_and_spaces"): "1",
    ("regex_choice_letter", "digits_and_spaces"): "",
    ("whole", "spaces"): "",
    ("first_line", "answer_then_newlines"): "answer",
}


@pytest.mark.timeout(5, method="signal", func_only=True)  # interrupts the regex engine: a regression fails, not hangs
@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_every_extractor_is_linear_on_long_outputs(extractor: str) -> None:
    # before: 'last_number' took 2.7 s on 10,000 blanks after the marker and 'answer_is' 1.1 s on 10,000 newlines,
    # growing quadratically (300,000 are 900x that)
    spec = EXTRACTORS[extractor]
    for name, text in LONG_OUTPUTS.items():
        got = spec.extract_answer(text)
        if (extractor, name) in EXPECTED:
            assert got == EXPECTED[extractor, name], name


def test_answer_patterns_keep_their_matches() -> None:
    def regex(name: str, text: str) -> str:
        return TaskSpec("t", "", "chrf", answer="regex", answer_arg=name).extract_answer(text)

    assert regex("boxed", r"\boxed{1} then \boxed{ 7 }") == "7"
    assert regex("answer_is", "The answer is: 12\nnext") == "12"
    assert regex("answer_is", "Answer = 3") == "3"
    assert regex("answer_is", "the answer is 5.\nFinal answer:   \n\n") == "5."  # blanks to the end are no answer
    assert regex("answer_is", "answer:\n\nB") == "B"
    assert regex("answer_is", "answer is 4\nmy answer is") == "4"
    assert regex("choice_letter", "I pick (C), not D or F") == "D"
    assert regex("first_word", "  alpha beta ") == "beta"  # the last match, as for every pattern
    assert regex("quoted", 'say "yes" or "no" then "') == "no"


def test_max_new_tokens_is_positive_and_bounded() -> None:
    assert TaskSpec("t", "", "chrf", max_new_tokens=tasks.MAX_NEW_TOKENS).max_new_tokens == tasks.MAX_NEW_TOKENS
    for bad in (0, -1, tasks.MAX_NEW_TOKENS + 1, 2.5):
        with pytest.raises(ValueError, match=f"max_new_tokens must be a whole number from 1 to 4,096, got {bad}"):
            TaskSpec("t", "", "chrf", max_new_tokens=bad)
    with pytest.raises(ValueError, match="max_new_tokens"):
        register_custom_task("too_long_task", metric="chrf", max_new_tokens=10**6)
    with pytest.raises(UnknownTaskError):
        get_task("too_long_task")
    with pytest.raises(ValueError, match="max_new_tokens"):
        TaskSpec.from_dict({**get_task("math").to_dict(), "max_new_tokens": 0})


def test_long_references_are_refused_at_task_creation(tmp_path) -> None:
    from igds.data.ingest import add_dataset
    from igds.store import ActivationStore
    from igds.workflow.catalog import TaskData, add_task, tasks_table

    cap = tasks.MAX_REFERENCE_CHARS
    rows = [{"prompt": f"Q{i}?", "response": f"#### {i}"} for i in range(12)]
    rows[7]["response"] = "#### " + " " * cap + "7"  # over the cap by a few characters
    rows[3]["response"] = "#### " + " " * (cap - 6) + "3"  # exactly at the cap: fine
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = ActivationStore()
    add_dataset(store, path, "long")
    spec = TaskSpec("long_refs", "", "exact_match")
    data = TaskData(eval_datasets=("long",), n_probe=4, n_dev=4, n_test=4, pool_datasets=("general",))
    with pytest.raises(ValueError, match=r"dataset 'long' row 8: field 'response' has 16,390 characters; a task's "
                                         r"references .* at most 16,384"):
        add_task(store, spec, data)
    assert "long_refs" not in tasks_table(store).task.tolist()
    # the same rows as pool data only are no references: the task is created
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r is not rows[7]))
    add_dataset(store, path, "short")
    counts = add_task(store, spec, TaskData(eval_datasets=("short",), n_probe=4, n_dev=3, n_test=4,
                                            pool_datasets=("long",)))
    assert counts["train"] == 1  # row 8 of 'long', the one eval items do not hold


def test_an_evaluation_budget_is_bounded_like_a_task_budget():
    from igds.data.tasks import MAX_NEW_TOKENS

    assert EvalConfig(max_new_tokens=MAX_NEW_TOKENS).max_new_tokens == MAX_NEW_TOKENS
    with pytest.raises(ValueError, match="at most 4,096"):
        EvalConfig(max_new_tokens=MAX_NEW_TOKENS + 1)
