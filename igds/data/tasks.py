"""Task definitions and their registry.

Records are content, tasks format them: a task fixes its instruction, an optional system prompt, the
rendering of a record into chat text (with the character span of each part, so the renderer in
``igds.modeling.encoding`` can return token spans), answer extraction, generation settings and its
metric. Records of the off-task pool (task ``general``) render with no instruction
(:func:`record_task`).

Built-in tasks are ``math``, ``summarization`` and ``translation``. A user adds a task for their own
data with :func:`register_custom_task` and loads the data with ``igds.data.corpus.read_records`` or
``igds.data.corpus.load_hf_dataset``; no library code changes.

transformers is only referenced for typing, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from igds.constants import GENERAL
from igds.data import metrics
from igds.scope import STAGE_LENGTH

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Used when a tokenizer has no chat template (base models); Alpaca-style, widely understood.
PLAIN_TEMPLATE = "### Instruction:\n{prompt}\n\n### Response:\n"
# Separates the system prompt, the instruction and the content inside one message.
SEPARATOR = "\n\n"
# Kinds of text in a rendered prompt: everything the template adds (role markers, default or explicit
# system prompt, separators, generation prompt), the task's instruction, the example's own content.
TEMPLATE, INSTRUCTION, CONTENT, RESPONSE = "template", "instruction", "content", "response"
# Stands in for the user message while locating it in the rendered template; a private-use
# character that no chat template rewrites.
_SENTINEL = "\ue000igds-user-message\ue000"


class UnknownTaskError(KeyError, ValueError):
    """Raised for a task name that is not registered; the message lists the known tasks."""

    def __str__(self) -> str:
        """The plain message."""
        # KeyError would otherwise print the message with quotes around it.
        return str(self.args[0]) if self.args else ""


class TemplateRenderError(ValueError):
    """A chat template that cannot render a task's prompt with locatable parts."""


@dataclass(frozen=True)
class EncodedExample:
    """Token ids of one example; ``input_ids[:prompt_len]`` is the prompt, the rest the response."""

    input_ids: list[int]
    prompt_len: int


@dataclass(frozen=True)
class PromptText:
    """A rendered prompt (up to where the model answers) and the kind of every character.

    Args:
        text: The prompt text, exactly as tokenised.
        parts: ``(kind, start, end)`` character ranges covering ``text`` in order; kinds are
            :data:`TEMPLATE`, :data:`INSTRUCTION` and :data:`CONTENT`.
        system_folded: The template refuses a system turn, so the system prompt opens the user message.
    """

    text: str
    parts: tuple[tuple[str, int, int], ...]
    system_folded: bool = False

    def kind_at(self) -> list[str]:
        """The kind of each character of ``text``."""
        kinds: list[str] = []
        for kind, start, end in self.parts:
            kinds.extend([kind] * (end - start))
        return kinds

    def span_text(self, kind: str) -> str:
        """The text of all parts of one kind, concatenated."""
        return "".join(self.text[a:b] for k, a, b in self.parts if k == kind)


# How a task pulls its answer out of a generation: a fixed menu, never user code. ``auto`` is the built-in
# tasks' rule (the final number for exact match, else the first non-empty line).
ANSWER_MODES = ("auto", "last_number", "after_marker", "regex", "first_line", "whole")
# The regexes a task may choose (by name) for ``answer="regex"``; the last match's first group is the answer.
# Every run is possessive (``*+``, ``++``: never given back), so matching is linear in the text: a model that
# emits "answer" and 300,000 newlines cannot stall its evaluation (the greedy ``\s*[:=]?\s*`` of before tried
# every split of the run). Matches differ only where "answer" (with " is", ":" or "=") is followed by nothing but
# blanks up to the end of the text: no match there (before: a blank or the ":" itself, hiding an earlier answer).
ANSWER_PATTERNS = {
    "boxed": r"\\boxed\{([^{}]*+)\}",
    "answer_is": r"(?i)answer(?: is)?+\s*+[:=]?+\s*+([^\n]++)",
    "choice_letter": r"\b([A-E])\b",
    "first_word": r"(\S++)",
    "quoted": r"\"([^\"]++)\"",
}
# Generation budget of a task, in tokens: at least 1, at most this (the dashboard's task form offers the same range).
MAX_NEW_TOKENS = 4096
# Longest reference a task scores against, in characters: about what MAX_NEW_TOKENS tokens of English spell. It
# bounds the metrics' work per example (ROUGE-L's table grows with reference x prediction length).
MAX_REFERENCE_CHARS = 16_384


def check_answer_rule(answer: str, answer_arg: str) -> None:
    """Raise ``ValueError`` for an answer rule outside the menu (:data:`ANSWER_MODES`, :data:`ANSWER_PATTERNS`)."""
    if answer not in ANSWER_MODES:
        raise ValueError(f"answer extraction {answer!r} is not one of {', '.join(ANSWER_MODES)}")
    if answer == "after_marker" and not answer_arg:
        raise ValueError("answer extraction 'after_marker' needs a marker, e.g. '####'")
    if answer == "regex" and answer_arg not in ANSWER_PATTERNS:
        raise ValueError(f"answer extraction 'regex' takes a pattern name from {', '.join(ANSWER_PATTERNS)}; "
                         f"got {answer_arg!r}")


def check_references(rows: Iterable[tuple[str, int, str]]) -> None:
    """Refuse a task whose references are too long to score (:data:`MAX_REFERENCE_CHARS`).

    Args:
        rows: ``(dataset, row number, response)`` of the task's eval items (their responses are the references).

    Raises:
        ValueError: naming the dataset, the row and the field of the first reference over the cap.
    """
    for dataset, row_no, text in rows:
        if len(text) > MAX_REFERENCE_CHARS:
            raise ValueError(f"dataset {dataset!r} row {row_no}: field 'response' has {len(text):,} characters; a "
                             f"task's references (the responses of its eval items) may have at most "
                             f"{MAX_REFERENCE_CHARS:,}. Shorten that row, or take it out of the eval datasets")


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


@dataclass(frozen=True)
class TaskSpec:
    """How one task is prompted, generated and scored.

    Args:
        name: Registry name, also the ``task`` of its records' memberships.
        instruction: Instruction placed before a record's content by :meth:`format_prompt`.
        metric: Name of the metric in ``igds.data.metrics``.
        max_new_tokens: Generation budget for evaluation, 1 to :data:`MAX_NEW_TOKENS`.
        description: One line for listings and the UI.
        system: System prompt; None gives no system turn (a template may then insert its own default,
            e.g. SmolLM2's). Templates that refuse a system role (Gemma-2) get it at the start of the
            user message instead.
        answer: How the answer is pulled out of a generation (:data:`ANSWER_MODES`).
        answer_arg: The marker of ``after_marker`` (e.g. ``####``) or the pattern name of ``regex``
            (:data:`ANSWER_PATTERNS`).
    """

    name: str
    instruction: str
    metric: str
    max_new_tokens: int = 64
    description: str = ""
    system: str | None = None
    answer: str = "auto"
    answer_arg: str = ""

    def __post_init__(self):
        check_answer_rule(self.answer, self.answer_arg)
        if not isinstance(self.max_new_tokens, int) or not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise ValueError(f"task {self.name!r}: max_new_tokens must be a whole number from 1 to "
                             f"{MAX_NEW_TOKENS:,}, got {self.max_new_tokens!r}")

    def to_dict(self) -> dict[str, Any]:
        """The spec as a plain dict (what the workspace's ``tasks`` table stores)."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        """Rebuild a spec from :meth:`to_dict` (unknown keys are refused)."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"TaskSpec: unknown field(s) {sorted(unknown)}")
        return cls(**data)

    def format_prompt(self, content: str) -> str:
        """The user message of a record: instruction, blank line, content (the content alone without instruction).

        Args:
            content: The record's own input text, e.g. a package description.

        Returns:
            The user message.
        """
        return f"{self.instruction}{SEPARATOR}{content}" if self.instruction else content

    def messages(self, content: str, response: str | None = None, *, fold_system: bool = False
                 ) -> list[dict[str, str]]:
        """Chat messages for a record's content and, optionally, its response.

        Args:
            content: The record's own input text.
            response: The assistant answer, if any.
            fold_system: Put the system prompt at the start of the user message instead of a system turn.

        Returns:
            A list of ``{"role", "content"}`` dicts: system (if any, unfolded), user, assistant (if given).
        """
        user = self.format_prompt(content)
        msgs = []
        if self.system is not None and fold_system:
            user = f"{self.system}{SEPARATOR}{user}"
        elif self.system is not None:
            msgs.append({"role": "system", "content": self.system})
        msgs.append({"role": "user", "content": user})
        if response is not None:
            msgs.append({"role": "assistant", "content": response})
        return msgs

    def prompt_frame(self, tokenizer: PreTrainedTokenizerBase) -> tuple[str, str, bool]:
        """What the template puts before and after the user message, read off the rendered template.

        The user message is rendered as a placeholder with the tokenizer's chat template
        (``add_generation_prompt=True``), or with :data:`PLAIN_TEMPLATE` when it has none (a system prompt
        then goes first, followed by a blank line). The frame is the same for every record of the task, so
        callers rendering many records compute it once.

        Args:
            tokenizer: A Hugging Face tokenizer.

        Returns:
            ``(prefix, suffix, system_folded)``; ``system_folded`` when the template refuses a system turn
            (Gemma-2) and the system prompt opens the user message instead.

        Raises:
            TemplateRenderError: If the template renders the user message other than once.
        """
        if not getattr(tokenizer, "chat_template", None):
            prefix, suffix = PLAIN_TEMPLATE.split("{prompt}")
            return (prefix if self.system is None else f"{self.system}{SEPARATOR}{prefix}"), suffix, False

        def marked(fold: bool) -> str:
            msgs = self.messages("", fold_system=fold)
            msgs[-1] = {"role": "user", "content": _SENTINEL}
            return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

        folded = False
        try:
            text = marked(False)
        except Exception as exc:  # jinja2's TemplateError, raised by templates such as Gemma-2's
            if self.system is None or "system" not in str(exc).lower():
                raise
            folded = True
            text = marked(True)
        if text.count(_SENTINEL) != 1:
            raise TemplateRenderError(f"the chat template renders the user message {text.count(_SENTINEL)} times; "
                                      "cannot locate the prompt's parts")
        prefix, suffix = text.split(_SENTINEL)
        return prefix, suffix, folded

    def render_prompt(self, tokenizer: PreTrainedTokenizerBase, content: str,
                      frame: tuple[str, str, bool] | None = None) -> PromptText:
        """Render a record's prompt up to where the model starts answering, with the part of every character.

        The text is what the chat template (or :data:`PLAIN_TEMPLATE`) renders; the parts come from the
        :meth:`prompt_frame` around the user message, which the rendering must consist of (a template
        that trims the message is allowed).

        Args:
            tokenizer: A Hugging Face tokenizer.
            content: The record's own input text.
            frame: :meth:`prompt_frame` of this task and tokenizer, when already known.

        Returns:
            The text and its parts.

        Raises:
            TemplateRenderError: If the template rewrites the user message so its parts cannot be found.
        """
        prefix, suffix, folded = frame or self.prompt_frame(tokenizer)
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(self.messages(content, fold_system=folded), tokenize=False,
                                                 add_generation_prompt=True)
        else:
            text = f"{prefix}{self.format_prompt(content)}{suffix}"
        return PromptText(text, self._parts(text, prefix, suffix, content, folded), folded)

    def _parts(self, text: str, prefix: str, suffix: str, content: str, folded: bool
               ) -> tuple[tuple[str, int, int], ...]:
        """Character parts of ``text`` = ``prefix`` + user message (as the template wrote it) + ``suffix``."""
        pieces = [(TEMPLATE, f"{self.system}{SEPARATOR}")] if folded else []
        if self.instruction:
            pieces += [(INSTRUCTION, self.instruction), (TEMPLATE, SEPARATOR)]
        pieces.append((CONTENT, content))
        message = "".join(p for _, p in pieces)
        end = len(text) - len(suffix)
        written = text[len(prefix):end] if text.startswith(prefix) and text.endswith(suffix) else None
        lead = 0
        if written is not None and written != message and written == message.strip():
            lead = len(message) - len(message.lstrip())  # templates such as Llama-3's trim the message
        elif written != message:
            raise TemplateRenderError("the chat template rewrites the user message; cannot locate the "
                                      "instruction and the content in the rendered prompt")
        parts, pos = [(TEMPLATE, 0, len(prefix))], len(prefix) - lead
        for kind, piece in pieces:
            a, b = max(pos, len(prefix)), min(pos + len(piece), end)
            if b > a:
                parts.append((kind, a, b))
            pos += len(piece)
        parts.append((TEMPLATE, end, len(text)))
        return tuple(p for p in parts if p[2] > p[1])

    def generation_prompt(self, tokenizer: PreTrainedTokenizerBase, content: str) -> str:
        """Prompt text of a record up to where the model starts answering (see :meth:`render_prompt`).

        Args:
            tokenizer: A Hugging Face tokenizer.
            content: The record's own input text.

        Returns:
            The formatted prompt text.
        """
        return self.render_prompt(tokenizer, content).text

    def encode(
        self,
        tokenizer: PreTrainedTokenizerBase,
        content: str,
        response: str | None = None,
        max_length: int = STAGE_LENGTH.max_length,
    ) -> EncodedExample:
        """Tokenise a record so the prompt/response boundary is exact (see :func:`assemble`).

        ``igds.modeling.encoding.render_example`` gives the same ids plus the token spans of each part.

        Args:
            tokenizer: A Hugging Face tokenizer.
            content: The record's own input text (the instruction is added here).
            response: The reference answer; None encodes the prompt only.
            max_length: Maximum number of tokens.

        Returns:
            The token ids and the prompt length.
        """
        ids, prompt_len, _ = assemble(tokenizer, tokenize(tokenizer, self.generation_prompt(tokenizer, content)),
                                      response, max_length)
        return EncodedExample(input_ids=ids, prompt_len=prompt_len)

    def extract_answer(self, text: str) -> str:
        """Pull the answer out of a model output with the task's rule (:attr:`answer`).

        ``auto``: exact-match tasks take the final number (canonical form), other tasks the first
        non-empty line, stripped, since the references are one line. ``last_number``: the final number;
        ``after_marker``: the first line after the last ``answer_arg`` (the whole text's first line when the
        marker is missing); ``regex``: the named pattern's first group in its last match; ``first_line``;
        ``whole``: the stripped text.

        Args:
            text: Generated text.

        Returns:
            The extracted answer ("" if none).
        """
        import re

        mode = self.answer
        if mode == "auto":
            mode = "last_number" if self.metric == "exact_match" else "first_line"
        if mode == "last_number":
            return metrics.format_number(metrics.final_number(text))
        if mode == "after_marker":
            return _first_line(text.rsplit(self.answer_arg, 1)[-1])
        if mode == "regex":
            found = re.findall(ANSWER_PATTERNS[self.answer_arg], text)
            return found[-1].strip() if found else ""
        if mode == "whole":
            return text.strip()
        return _first_line(text)

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


def assistant_header(tokenizer: PreTrainedTokenizerBase) -> str:
    """What the chat template writes between the end of a user turn and an assistant answer.

    Read off the template as the text ``add_generation_prompt=True`` appends to a one-message
    conversation, e.g. ``<|im_start|>assistant\\n`` (ChatML), ``<start_of_turn>model\\n`` (Gemma) or
    ``<|start_header_id|>assistant<|end_header_id|>\\n\\n`` (Llama 3). The prompt-free NLL of the IFD
    baseline conditions on it, so the answer is scored where an answer starts.

    Args:
        tokenizer: A Hugging Face tokenizer.

    Returns:
        The header text; ``""`` when the tokenizer has no chat template, or its template adds nothing
        for a generation prompt (Llama-2 / Mistral style, where the user turn's closing tag is the cue).
    """
    if not getattr(tokenizer, "chat_template", None):
        return ""
    msgs = [{"role": "user", "content": _SENTINEL}]
    bare = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
    prompt = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    if not prompt.startswith(bare) or _SENTINEL in prompt[len(bare):]:
        return ""
    return prompt[len(bare):]


def tokenize(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens (template text already holds its own)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def assemble(
    tokenizer: PreTrainedTokenizerBase, prompt_ids: list[int], response: str | None, max_length: int
) -> tuple[list[int], int, list[int]]:
    """Join tokenised prompt text and a response into one sequence with an exact boundary.

    The response is tokenised on its own and followed by the tokenizer's eos token. If the tokenizer
    normally starts sequences with BOS, BOS is put in front of the prompt. When too long, the response
    is capped at half of ``max_length`` and the prompt is cut in the middle, keeping its start
    (template header) and its end (the question and the generation prompt), so the response always
    survives.

    Args:
        tokenizer: A Hugging Face tokenizer.
        prompt_ids: Token ids of the rendered prompt text.
        response: The reference answer; None gives the prompt only.
        max_length: Maximum number of tokens.

    Returns:
        ``(input_ids, prompt_len, origin)``: ``origin[i]`` is the index in ``prompt_ids`` of prompt token
        ``i`` (-1 for an added BOS).
    """
    if max_length < 2:
        raise ValueError("max_length must be at least 2")
    origin = list(range(len(prompt_ids)))
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None and _adds_bos(tokenizer) and prompt_ids[:1] != [bos]:
        prompt_ids, origin = [bos, *prompt_ids], [-1, *origin]
    response_ids: list[int] = []
    if response is not None:
        response_ids = tokenize(tokenizer, response)
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is not None:
            response_ids.append(eos)
        # A truncated response loses its eos: the model must not learn to stop mid-answer.
        if len(prompt_ids) + len(response_ids) > max_length:
            response_ids = response_ids[: max_length // 2]
    budget = max_length - len(response_ids)
    prompt_ids, origin = _keep_ends(prompt_ids, budget), _keep_ends(origin, budget)
    return prompt_ids + response_ids, len(prompt_ids), origin


def _adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    bos = getattr(tokenizer, "bos_token_id", None)
    return bos is not None and list(tokenizer("", add_special_tokens=True)["input_ids"])[:1] == [bos]


def _keep_ends(ids: list, budget: int) -> list:
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
    if spec.name == GENERAL:
        raise ValueError("'general' is reserved for the off-task pool records")
    if not spec.name or not spec.name.replace("-", "_").isidentifier():
        raise ValueError(f"task name {spec.name!r} must be a non-empty identifier (letters, digits, _ or -)")
    metrics.get_metric(spec.metric)
    if spec.name in _TASKS and not overwrite and _TASKS[spec.name] != spec:
        raise ValueError(f"task {spec.name!r} is already registered")
    _TASKS[spec.name] = spec
    return spec


def unregister_task(name: str) -> None:
    """Forget a task registered in this process (a workspace task that was removed); built-ins stay."""
    if name not in BUILTIN_TASKS:
        _TASKS.pop(name, None)


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


# Formats the off-task pool's records: their content is the whole user message. Not registered (no
# metric: general records are never evaluated).
GENERAL_TASK = TaskSpec(GENERAL, instruction="", metric="", description="off-task pool records (no instruction)")


def record_task(name: str) -> TaskSpec:
    """The spec that renders records of task ``name``: the registered task, else no instruction.

    ``general`` records get :data:`GENERAL_TASK`. A name not registered in this process (e.g. a custom
    task registered by another session that wrote the store) renders its records without instruction
    too, as the pool's subsample key does.

    Args:
        name: A membership's task.

    Returns:
        The spec to render with.
    """
    if name in _TASKS:
        return _TASKS[name]
    return GENERAL_TASK if name == GENERAL else TaskSpec(name, instruction="", metric="")


def register_custom_task(
    name: str,
    *,
    metric: str,
    instruction: str = "",
    max_new_tokens: int = 64,
    description: str = "",
    system: str | None = None,
    overwrite: bool = False,
) -> TaskSpec:
    """Define a task for user data without touching library code.

    Example: ``register_custom_task("sentiment", metric="exact_match")`` followed by
    ``igds.data.corpus.read_records("my.jsonl", task="sentiment")``.

    Args:
        name: New task name.
        metric: Metric name (see ``igds.data.metrics.list_metrics()``).
        instruction: Instruction put before each record's content by :meth:`TaskSpec.format_prompt`.
        max_new_tokens: Generation budget.
        description: One-line description.
        system: System prompt (None: no system turn).
        overwrite: Allow replacing an existing task.

    Returns:
        The registered spec.
    """
    spec = TaskSpec(name, instruction, metric, max_new_tokens, description or f"custom task ({metric})", system)
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

# The tasks shipped with IGDS (with the demo corpus); workspace tasks come after them.
BUILTIN_TASKS = (MATH.name, SUMMARIZATION.name, TRANSLATION.name)
