"""Build the shipped demo corpus (``data/corpus/*.jsonl.gz``) from upstream packages.

Usage::

    python scripts/build_demo_corpus.py                      # fetch sources, build, write data/corpus
    python scripts/build_demo_corpus.py --save-raw raw.json.gz   # also keep the extracted raw layer
    python scripts/build_demo_corpus.py --from-raw raw.json.gz   # rebuild offline from a raw layer
    python scripts/build_demo_corpus.py --small --out /tmp/c     # tiny in-repo fixture, no network
    python scripts/build_demo_corpus.py --resplit                # re-split the files in --out (offline)

Two layers: ``corpus_sources.py`` fetches packages and reads raw dicts (network, apt, pip); the
``build_*`` functions here turn raw dicts into records with nothing but the seed as input, so the
same raw layer and seed give byte-identical files (``igds.data.corpus.write_records``: sorted keys,
gzip mtime 0). ``--small`` runs the same functions on ``tests/fixtures/corpus/raw_small.json``.

Records hold content only: a record's ``prompt`` is the example's own input (the question, the
package description, the sentence to translate), without the task's instruction, which the task adds
when it renders the prompt. Length limits apply to the rendered user message, so the same records are
kept as when the instruction was stored with them.

Splits are made in two steps. Each task is first cut into consecutive slices with the first corpus's
``dev`` of ``FIRST_DEV`` (64) items and ``train`` of 1,200 (:func:`cut_sizes`); :func:`grow_dev` then
moves a seeded choice of ``train`` records into ``dev`` until ``dev`` has ``SIZES["dev"]`` (256; 192
moved, so ``train`` keeps 1,008). The choice is :func:`igds.data.corpus.stratified_sample` over the
``train`` records (sorted by id, seeded with the build's seed; math stratified by template, the other
files by source), so it depends only on the records and the seed. ``--resplit`` applies the same step
to corpus files already written with the first cut, without the sources: a re-split of the files a
first-cut build wrote is byte-identical to the current build, and a second ``--resplit`` changes nothing.
``probe`` and ``test`` are never touched. Translation is two files (Ding ``DING_SHARE`` of every split,
DDTP French the rest), each grown to its own share of ``dev`` (160 and 96).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from random import Random
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from igds.data.corpus import (  # noqa: E402
    Example,
    example_id,
    read_records,
    reserve_reference,
    stratified_sample,
    write_records,
)
from igds.data.tasks import MATH, SUMMARIZATION  # noqa: E402

SIZES = {"probe": 256, "dev": 256, "train": 1008, "test": 400}
SMALL_SIZES = {"probe": 4, "dev": 3, "train": 5, "test": 4}
# dev as first cut (the corpus's first dev split); grow_dev moves train records into dev up to SIZES["dev"].
FIRST_DEV = 64
SMALL_FIRST_DEV = 2
SPLIT_ORDER = ("probe", "dev", "train", "test", "reference")
# General records reserved as the recall contrast set (split "reference", in no candidate pool).
REFERENCE_SIZE = 512
SMALL_REFERENCE_SIZE = 3
GENERAL_QUOTAS = {"wordnet": 1100, "pydoc": 350, "fortunes": 800, "evals": 25, "freshqa": 400}
SMALL_GENERAL_QUOTAS = {"wordnet": 3, "pydoc": 2, "fortunes": 3, "evals": 2, "freshqa": 2}
# Share of the translation splits that comes from Ding (the rest: DDTP French synopses).
DING_SHARE = 0.625
MAX_CHARS = 800  # prompt + response; extraction runs on CPU, so examples stay short
MATH_MAX_CHARS = 1100  # worked solutions are longer; a tighter cap would drop most multi-step problems

# Benign English `evals` tasks with short reference answers. The LICENSE.md exceptions
# (text_compression, steganography, schelling_point, ballots, sandbagging, theory_of_mind,
# already_said_that) and math-like tasks (they would blur the math task's labels) are left out.
EVALS_TASKS = [
    "ambiguous-sentences", "born_first", "cardinal-directions", "color_theory", "compare-countries-area",
    "counterfactual-reasoning", "crontab", "css-selectors", "day-of-week-from-date", "directions",
    "event_categories", "first-letters", "food", "irony", "largest_country", "logic", "music_theory",
    "premature-conclusions", "proofreader", "quartz", "regex-match", "rhetorical_devices", "security_guide",
    "shared_border", "syntax-check", "test_comp_sci", "tracking-shuffled-objects", "which_is_heavier",
]  # fmt: skip
# Fortune topics used, with the request phrase. Left out: ethnic, men-women and drugs (the
# project's rule), art and ascii-art (pictures), and perl, zippy, knghtbrd, linuxcookie, disclaimer,
# politics, translate-me (in-jokes, politics, non-English text).
FORTUNE_TOPICS = {
    "computers": "a saying about computers", "cookie": "a fortune-cookie saying", "debian": "a saying about Debian",
    "definitions": "a humorous definition", "education": "a saying about education", "food": "a saying about food",
    "fortunes": "a fortune", "goedel": "a paradoxical saying", "humorists": "a quotation from a humorist",
    "kids": "a saying about children", "law": "a humorous law of life", "linux": "a saying about Linux",
    "literature": "a literary quotation", "love": "a saying about love", "magic": "a saying about magic",
    "medicine": "a saying about medicine", "miscellaneous": "a witty remark", "news": "a funny news item",
    "paradoxum": "a paradox", "people": "a quotation about people", "pets": "a saying about pets",
    "platitudes": "a platitude", "pratchett": "a Terry Pratchett quotation", "riddles": "a riddle",
    "science": "a saying about science", "songs-poems": "a short poem or song verse",
    "sports": "a saying about sports", "startrek": "a Star Trek quotation", "tao": "a Taoist saying",
    "wisdom": "a piece of wisdom", "work": "a saying about work",
}  # fmt: skip
BLOCKLIST = re.compile(
    r"\b(fuck\w*|shit\w*|cunt\w*|nigg\w*|fag\w*|dyke|slut\w*|whore\w*|bitch\w*|bastard\w*|dick|cock\w*|"
    r"puss(y|ies)|rape\w*|rapist|porn\w*|sex\w*|nazi\w*|hitler|kike|spic|chink|retard\w*|"
    r"scheiß\w*|scheiss\w*|fotze|hure\w*|schlampe|arsch\w*|fick\w*|neger\w*|schwuchtel)\b",
    re.IGNORECASE,
)
# Fortunes are jokes of mixed origin: beyond the blocklist, skip any that touch ethnicity,
# nationality, religion, gender, sexuality, violence, death, alcohol or drugs (plenty remain).
SENSITIVE = re.compile(
    r"\b(japanese|chinese|jew\w*|mexican\w*|polish|pole|irish\w*|italian\w*|french\w*|german\w*|russian\w*|"
    r"arab\w*|indian\w*|black|white|negro\w*|race|racial|gay|lesbian\w*|homosexual\w*|women|woman|wife|wives|"
    r"girl\w*|husband\w*|mother-in-law|blonde|god|jesus|christ\w*|church|relig\w*|bible|muslim\w*|islam\w*|"
    r"suicide|kill\w*|murder\w*|die|died|dies|dead|death|corpse|gun\w*|war|bomb\w*|drunk\w*|beer|booze|whisk\w*|"
    r"drug\w*|marijuana|cocaine|pregnan\w*|naked|nude|bed|breast\w*|virgin\w*)\b",
    re.IGNORECASE,
)
BOILERPLATE = re.compile(
    r"documentation|development files|header files|debug(ging)? symbols|transitional|dummy|metapackage|"
    r"meta-package|shared librar|static librar|runtime librar|data files|common files|\(data\)|\(common\)|"
    r"architecture.independent|arch.independent|- data$|- doc$|examples?$|plugins?$",
    re.IGNORECASE,
)


def clean(text: str) -> str:
    """Normalise whitespace: strip every line, drop trailing blank lines."""
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def ok_text(*parts: str, limit: int = MAX_CHARS) -> bool:
    """True if the parts together are short enough and contain nothing from the blocklist."""
    return sum(len(p) for p in parts) <= limit and not any(BLOCKLIST.search(p) for p in parts)


def make(task: str, source: str, split: str, content: str, response: str, **meta: Any) -> Example:
    """Create one record (content without instruction) with its content id."""
    return Example(example_id(content, response), task, source, split, content, response, meta)


def interleave(groups: list[list[Any]]) -> list[Any]:
    """Round-robin over groups, so a prefix of the result covers every group evenly."""
    out, depth = [], 0
    while any(depth < len(g) for g in groups):
        out.extend(g[depth] for g in groups if depth < len(g))
        depth += 1
    return out


def cut_sizes(sizes: dict[str, int], first_dev: int) -> dict[str, int]:
    """The sizes of the first cut: ``dev`` of ``first_dev`` items, ``train`` the rest of dev + train."""
    return {**sizes, "dev": first_dev, "train": sizes["train"] + sizes["dev"] - first_dev}


def sort_records(records: Iterable[Example]) -> list[Example]:
    """Records in file order: by split (probe, dev, train, test, reference), then id."""
    rank = {s: i for i, s in enumerate(SPLIT_ORDER)}
    return sorted(records, key=lambda e: (rank[e.split], e.id))


def dev_stratum(ex: Example) -> str:
    """Stratum of the dev draw: a math record's template (dev covers the templates evenly), else its source."""
    return str(ex.meta["template"]) if ex.task == "math" else ex.source


def grow_dev(records: list[Example], n_dev: int, seed: int) -> list[Example]:
    """Move ``train`` records into ``dev`` until ``dev`` holds ``n_dev`` (a file's records, one task).

    The records moved are ``stratified_sample(train, n_dev - len(dev), seed, key=dev_stratum)``: a seeded
    shuffle of each stratum's records sorted by id, so the choice depends on the records and the seed
    only, never on the file order. ``probe``, ``test`` and ``reference`` are left alone; a file whose
    ``dev`` already holds ``n_dev`` comes back unchanged.

    Args:
        records: The records of one corpus file.
        n_dev: The file's ``dev`` size wanted.
        seed: The build's seed.

    Returns:
        The records in file order (:func:`sort_records`).

    Raises:
        ValueError: If ``dev`` already holds more than ``n_dev`` or ``train`` has too few records.
    """
    dev = [ex for ex in records if ex.split == "dev"]
    train = [ex for ex in records if ex.split == "train"]
    need = n_dev - len(dev)
    if need < 0 or need > len(train):
        raise ValueError(f"cannot grow dev from {len(dev)} to {n_dev} with {len(train)} train records")
    moved = {ex.id for ex in stratified_sample(train, need, seed, key=dev_stratum)} if need else set()
    return sort_records(replace(ex, split="dev") if ex.split == "train" and ex.id in moved else ex for ex in records)


def take_splits(items: list[Any], sizes: dict[str, int], order: Iterable[str]) -> dict[str, list[Any]]:
    """Cut consecutive, disjoint slices of ``items`` for the splits in ``order``."""
    out, start = {}, 0
    for split in order:
        out[split] = items[start : start + sizes[split]]
        start += sizes[split]
    return out


# ----------------------------------------------------------------------------- math


def strip_calculator(solution: str) -> str:
    """Remove GSM8K ``<<a*b=c>>`` calculator annotations and tidy the lines."""
    return clean(re.sub(r"<<[^>]*>>", "", solution))


def build_math(raw: list[dict[str, Any]], seed: int, sizes: dict[str, int]) -> list[Example]:
    """GSM-Symbolic problems, split by template.

    A quarter of the templates (stratified by number of solution steps) is held out for ``test``;
    probe/dev/train are variants of the other templates.

    Args:
        raw: Problems from ``corpus_sources.read_gsm``.
        seed: Split seed.
        sizes: Split sizes.

    Returns:
        Math records with ``meta`` ``n_steps``, ``template``, ``answer`` and ``original``.
    """
    rng = Random(seed)
    by_tpl: dict[int, list[dict[str, Any]]] = {}
    for p in raw:
        response = strip_calculator(p["solution"])
        answer = response.rsplit("####", 1)[-1].strip().replace(",", "")
        content = clean(p["question"])
        if "####" not in response or not re.fullmatch(r"-?\d+(\.\d+)?", answer):
            continue
        if not ok_text(MATH.format_prompt(content), response, limit=MATH_MAX_CHARS):
            continue
        by_tpl.setdefault(p["template"], []).append({**p, "prompt": content, "response": response, "answer": answer})
    strata: dict[int, list[int]] = {}
    for tpl in sorted(by_tpl):
        strata.setdefault(min(by_tpl[tpl][0]["n_steps"], 6), []).append(tpl)
    test_tpls = set()
    for steps in sorted(strata):
        members = strata[steps]
        rng.shuffle(members)
        # Hold out a quarter of each stratum (at least one template once a stratum has two).
        test_tpls.update(members[: max(1, round(len(members) / 4)) if len(members) > 1 else 0])

    def ordered(tpls: list[int]) -> list[dict[str, Any]]:
        groups = []
        for tpl in tpls:
            items = sorted(by_tpl[tpl], key=lambda p: (not p["original"], p["prompt"]))
            head, rest = items[:1], items[1:]
            rng.shuffle(rest)
            groups.append(head + rest)  # the original GSM8K problem leads its template's group
        return interleave(groups)

    held_in = sorted(t for t in by_tpl if t not in test_tpls)
    rng.shuffle(held_in)
    parts = take_splits(ordered(held_in), sizes, ["probe", "dev", "train"])
    parts["test"] = ordered(sorted(test_tpls))[: sizes["test"]]
    return [
        make("math", "gsm-symbolic", split, p["prompt"], p["response"], n_steps=p["n_steps"],
             template=p["template"], answer=p["answer"], original=p["original"])
        for split, items in parts.items()
        for p in items
    ]  # fmt: skip


# ----------------------------------------------------------------------------- summarization


def doc_text(paras: list[str]) -> str:
    """Description paragraphs joined by blank lines; bullet markers kept as written."""
    return "\n\n".join(p.strip() for p in paras if p.strip())


def build_summarization(raw: list[dict[str, Any]], seed: int, sizes: dict[str, int]) -> list[Example]:
    """Debian long description -> synopsis, one package per source package.

    Siblings (-dev, -doc, -data ...) share a source package and usually the first paragraph;
    keeping one package per source and deduplicating first paragraphs means no near-copy can
    straddle two splits. Boilerplate synopses and very short or long descriptions are dropped.
    """
    best: dict[str, dict[str, Any]] = {}
    for d in sorted(raw, key=lambda d: (d["source"], d["package"] != d["source"], len(d["package"]), d["package"])):
        doc, syn = doc_text(d["paras"]), clean(d["synopsis"])
        if d["source"] in best or len(doc.split()) < 30 or not 2 <= len(syn.split()) <= 14:
            continue
        if BOILERPLATE.search(syn) or not ok_text(SUMMARIZATION.format_prompt(doc), syn):
            continue
        best[d["source"]] = {**d, "doc": doc, "syn": syn}
    seen_first, items = set(), []
    for src in sorted(best):
        first = best[src]["paras"][0].lower()
        if first not in seen_first:
            seen_first.add(first)
            items.append(best[src])
    Random(seed).shuffle(items)
    parts = take_splits(items, sizes, ["test", "probe", "dev", "train"])
    return [
        make("summarization", "debian-ddtp", split, d["doc"], d["syn"],
             package=d["package"], source_package=d["source"])
        for split, docs in parts.items()
        for d in docs
    ]  # fmt: skip


# ----------------------------------------------------------------------------- translation


def ding_sizes(sizes: dict[str, int]) -> dict[str, int]:
    """Ding's share of every split (``DING_SHARE``, rounded)."""
    return {k: round(v * DING_SHARE) for k, v in sizes.items()}


def ddtp_fr_sizes(sizes: dict[str, int]) -> dict[str, int]:
    """DDTP French's share of every split: what Ding leaves, so the two files add up to ``sizes``."""
    return {k: v - round(v * DING_SHARE) for k, v in sizes.items()}


def build_ding(raw: list[dict[str, str]], seed: int, sizes: dict[str, int]) -> list[Example]:
    """German -> English sentence pairs from Ding; every German and English sentence used once."""
    seen_de, seen_en, items = set(), set(), []
    for p in raw:
        de, en = clean(p["de"]), clean(p["en"])
        key_de, key_en = de.lower(), en.lower()
        if key_de in seen_de or key_en in seen_en or not ok_text(de, en, limit=300):
            continue
        seen_de.add(key_de)
        seen_en.add(key_en)
        items.append((de, en))
    items.sort()
    Random(seed).shuffle(items)
    parts = take_splits(items, ding_sizes(sizes), ["test", "probe", "dev", "train"])
    return [
        make("translation", "ding", split, de, en, src_lang="de")
        for split, pairs in parts.items()
        for de, en in pairs
    ]


def build_ddtp_fr(
    raw: list[dict[str, Any]], seed: int, sizes: dict[str, int], exclude_sources: set[str]
) -> list[Example]:
    """French -> English package synopses (DDTP), one per source package.

    Source packages used by the summarization task are excluded, so an English synopsis never
    appears in both tasks.
    """
    best: dict[str, tuple[str, str, str]] = {}
    seen_fr, seen_en = set(), set()
    for p in sorted(raw, key=lambda d: (d["source"], d["package"] != d["source"], d["package"])):
        fr, en = clean(p["src"]), clean(p["en"])
        if p["source"] in best or p["source"] in exclude_sources or fr.lower() == en.lower():
            continue
        if not (3 <= len(en.split()) <= 14) or BOILERPLATE.search(en) or not ok_text(fr, en, limit=300):
            continue
        if fr.lower() in seen_fr or en.lower() in seen_en:
            continue
        seen_fr.add(fr.lower())
        seen_en.add(en.lower())
        best[p["source"]] = (fr, en, p["package"])
    items = [best[s] for s in sorted(best)]
    Random(seed).shuffle(items)
    parts = take_splits(items, ddtp_fr_sizes(sizes), ["test", "probe", "dev", "train"])
    return [
        make("translation", "debian-ddtp", split, fr, en, src_lang="fr", package=pkg)
        for split, pairs in parts.items()
        for fr, en, pkg in pairs
    ]


# ----------------------------------------------------------------------------- general pool

_OFFENSIVE_GLOSS = re.compile(r"offensive|slur|obscene|vulgar|derogatory|disparaging|ethnic", re.IGNORECASE)


def _sample(items: list[Any], n: int, rng: Random) -> list[Any]:
    return rng.sample(items, min(n, len(items)))


def general_wordnet(raw: list[dict[str, str]], n: int, rng: Random) -> list[Example]:
    """'Define the word X.' -> WordNet gloss (definition part, examples dropped)."""
    items = []
    for r in raw:
        definition = r["gloss"].split('; "')[0].strip().rstrip(";")
        if _OFFENSIVE_GLOSS.search(r["gloss"]) or re.search(r"\d", r["lemma"]) or len(definition.split()) < 4:
            continue
        prompt = f"Define the word '{r['lemma']}'."
        if ok_text(prompt, definition):
            items.append(make("general", "wordnet", "train", prompt, definition, pos=r["pos"]))
    return _sample(items, n, rng)


def general_pydoc(raw: dict[str, str], n: int, rng: Random) -> list[Example]:
    """'Explain the Python topic X.' -> a paragraph-aligned chunk of the reference text."""
    items = []
    for topic, text in raw.items():
        chunk: list[str] = []
        paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()] + [""]
        for para in paras:
            if chunk and (not para or sum(len(c) for c in chunk) + len(para) > 600):
                body = clean("\n\n".join(chunk))
                prompt = f"Explain the Python topic '{topic}'."
                if len(body) >= 150 and ok_text(prompt, body):
                    items.append(make("general", "pydoc", "train", prompt, body, topic=topic))
                chunk = []
            if para and len(para) <= 600:
                chunk.append(para)
    return _sample(items, n, rng)


def general_fortunes(raw: list[dict[str, str]], n: int, rng: Random) -> list[Example]:
    """'Tell me <a saying about topic>.' -> a fortune, from the allow-listed topics only."""
    items = []
    for r in raw:
        if r["topic"] not in FORTUNE_TOPICS:
            continue
        text = clean(r["text"])
        if len(text) < 20 or "\t" in text or re.search(r" {4,}", text) or SENSITIVE.search(text):
            continue  # indented layouts are mostly ASCII art or tables
        prompt = f"Tell me {FORTUNE_TOPICS[r['topic']]}."
        if ok_text(prompt, text, limit=450):
            items.append(make("general", "fortunes", "train", prompt, text, topic=r["topic"]))
    return _sample(items, n, rng)


def general_evals(raw: list[dict[str, Any]], per_task: int, rng: Random) -> list[Example]:
    """System + user messages of an ``evals`` sample -> its ideal answer, at most ``per_task`` each."""
    by_task: dict[str, list[Example]] = {}
    for r in raw:
        msgs = r["messages"]
        ideal = r["ideal"][0] if isinstance(r["ideal"], list) and r["ideal"] else r["ideal"]
        if not isinstance(ideal, str) or not ideal.strip() or any(m.get("role") == "assistant" for m in msgs):
            continue
        prompt = clean("\n\n".join(str(m.get("content", "")).strip() for m in msgs))
        if prompt and ok_text(prompt, ideal) and r["task"] in EVALS_TASKS:
            by_task.setdefault(r["task"], []).append(
                make("general", f"evals:{r['task']}", "train", prompt, clean(ideal), task_name=r["task"])
            )
    return [ex for task in sorted(by_task) for ex in _sample(by_task[task], per_task, rng)]


def general_freshqa(raw: list[dict[str, str]], n: int, rng: Random) -> list[Example]:
    """FreshQA question -> first reference answer."""
    items = [
        make("general", "freshqa", "train", clean(r["question"]), clean(r["answer"]))
        for r in raw
        if ok_text(r["question"], r["answer"])
    ]
    return _sample(items, n, rng)


def build_general(raw: dict[str, Any], seed: int, quotas: dict[str, int], n_reference: int) -> list[Example]:
    """The labelled off-task records: split ``train`` is mixed into every task's pool, ``n_reference``
    of them (stratified by source) form the ``reference`` split, the recall contrast set."""
    rng = Random(seed)
    builders: list[tuple[str, Callable[[Any, int, Random], list[Example]]]] = [
        ("wordnet", general_wordnet), ("pydoc", general_pydoc), ("fortunes", general_fortunes),
        ("evals", general_evals), ("freshqa", general_freshqa),
    ]  # fmt: skip
    out: dict[str, Example] = {}
    for name, fn in builders:
        for ex in fn(raw[name], quotas[name], rng):
            out.setdefault(ex.id, ex)  # identical prompt+response from two entries: keep one
    return reserve_reference(list(out.values()), n_reference, seed)


# ----------------------------------------------------------------------------- assembly


def build_all(raw: dict[str, Any], seed: int = 0, small: bool = False) -> dict[str, list[Example]]:
    """Build every corpus file from the raw layer.

    Args:
        raw: Output of ``corpus_sources.read_all`` (or the small fixture).
        seed: Seed for sampling and splits.
        small: Use the tiny sizes of the test fixture.

    Returns:
        File name -> records, each list ordered by split then id.
    """
    sizes = SMALL_SIZES if small else SIZES
    cut = cut_sizes(sizes, SMALL_FIRST_DEV if small else FIRST_DEV)
    quotas = SMALL_GENERAL_QUOTAS if small else GENERAL_QUOTAS
    summ = build_summarization(raw["summarization"], seed, cut)
    used_sources = {ex.meta["source_package"] for ex in summ}
    files = {
        "math.jsonl.gz": build_math(raw["math"], seed, cut),
        "summarization.jsonl.gz": summ,
        "translation.jsonl.gz": build_ddtp_fr(raw["ddtp_fr"], seed, cut, used_sources),
        "translation-ding.jsonl.gz": build_ding(raw["ding"], seed, cut),
        "general.jsonl.gz": build_general(raw, seed, quotas, SMALL_REFERENCE_SIZE if small else REFERENCE_SIZE),
    }
    return resplit(files, seed, small)


def dev_targets(sizes: dict[str, int]) -> dict[str, int]:
    """File name -> the ``dev`` size it holds (translation's two files share the task's ``dev``)."""
    return {
        "math.jsonl.gz": sizes["dev"],
        "summarization.jsonl.gz": sizes["dev"],
        "translation.jsonl.gz": ddtp_fr_sizes(sizes)["dev"],
        "translation-ding.jsonl.gz": ding_sizes(sizes)["dev"],
    }


def resplit(files: dict[str, list[Example]], seed: int = 0, small: bool = False) -> dict[str, list[Example]]:
    """Grow every task file's ``dev`` to its share of ``SIZES["dev"]`` (:func:`grow_dev`).

    Args:
        files: File name -> records (a first cut, or files already re-split: those come back unchanged).
        seed: The build's seed.
        small: Use the tiny sizes of the test fixture.

    Returns:
        File name -> records, each list ordered by split then id.
    """
    targets = dev_targets(SMALL_SIZES if small else SIZES)
    return {
        name: grow_dev(recs, targets[name], seed) if name in targets else sort_records(recs)
        for name, recs in files.items()
    }


def resplit_folder(folder: Path, seed: int = 0, small: bool = False) -> dict[str, list[Example]]:
    """Re-split the task files in ``folder`` in place (``--resplit``); the general file is not rewritten.

    Raises:
        FileNotFoundError: If a task file is missing.
    """
    names = sorted(dev_targets(SIZES))
    before = {name: read_records(folder / name) for name in names}
    after = resplit(before, seed, small)
    for name in names:
        old = {ex.id: ex.split for ex in before[name]}
        assert {ex.id for ex in after[name]} == set(old), name
        assert all(old[ex.id] == ex.split or (old[ex.id], ex.split) == ("train", "dev") for ex in after[name]), name
    write_corpus(after, folder)
    return after


def write_corpus(files: dict[str, list[Example]], out: Path) -> None:
    """Write every file (deterministic bytes, see ``igds.data.corpus.write_records``)."""
    for name, records in sorted(files.items()):
        write_records(out / name, records)


def load_raw(path: Path) -> dict[str, Any]:
    """Read a raw layer saved with ``--save-raw`` (JSON, optionally gzipped)."""
    data = path.read_bytes()
    return json.loads(gzip.decompress(data) if path.name.endswith(".gz") else data)


def save_raw(raw: dict[str, Any], path: Path) -> None:
    """Save the raw layer so the corpus can be rebuilt without network."""
    data = json.dumps(raw, ensure_ascii=False, sort_keys=True).encode("utf-8")
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "data" / "corpus", help="output folder")
    parser.add_argument("--work", type=Path, default=Path("/tmp/igds-corpus-src"), help="download folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--from-raw", type=Path, help="build from a saved raw layer (offline)")
    parser.add_argument("--save-raw", type=Path, help="save the extracted raw layer here")
    parser.add_argument("--small", action="store_true", help="build the tiny in-repo fixture (no network)")
    parser.add_argument(
        "--resplit",
        action="store_true",
        help="grow dev from train in the task files already in --out, in place (no sources)",
    )
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    if args.resplit:
        for name, recs in sorted(resplit_folder(args.out, args.seed, args.small).items()):
            counts = {s: sum(ex.split == s for ex in recs) for s in SPLIT_ORDER[:4]}
            print(f"{name}: " + ", ".join(f"{s} {n}" for s, n in counts.items()))
        print(f"done in {time.perf_counter() - t0:.1f} s")
        return 0
    if args.small:
        raw = load_raw(REPO / "tests" / "fixtures" / "corpus" / "raw_small.json")
    elif args.from_raw:
        raw = load_raw(args.from_raw)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from corpus_sources import read_all

        raw = read_all(args.work, EVALS_TASKS, seed=args.seed)
    if args.save_raw:
        save_raw(raw, args.save_raw)
    files = build_all(raw, args.seed, small=args.small)
    write_corpus(files, args.out)
    for name, recs in sorted(files.items()):
        size = (args.out / name).stat().st_size
        print(f"{name}: {len(recs)} records, {size / 1e6:.2f} MB")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
