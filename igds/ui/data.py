"""The Data page's sections: add a dataset (upload, local file or hub split) with its column mapping and a preview
of every problem, create a task from the workspace's datasets, and remove either (after a confirmation that says
what goes). The model and SAE section is :mod:`igds.ui.identity`.

Every widget has a stable ``key`` and a label (the browser test finds inputs by their aria-label). A preview is
read once per source and mapping and kept in this session (files up to the 200 MB upload limit are read whole).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import streamlit as st

from igds import settings
from igds.constants import GENERAL
from igds.data.ingest import (
    FORMATS,
    MAX_UPLOAD_BYTES,
    ColumnMapping,
    Preview,
    add_dataset,
    check_dataset_name,
    preview_source,
)
from igds.data.records import CorpusError
from igds.progress import ProgressFn
from igds.ui.widgets import md_text

UPLOAD_TYPES = ["jsonl", "gz", "parquet", "csv"]
_PREVIEW = "data.preview"  # {(source signature, mapping json): Preview}, the latest few
_SOURCE = "data.source_sig"  # the source the mapping widgets were last filled for
_UPLOAD = "data.upload"  # (file id, saved path) of the current upload
_FLASH = "data.flash."  # + section: messages shown once, after a rerun
_REMOVE = "data.remove"  # the removal plan a first click on a remove button made, awaiting confirmation
SOURCE_LABELS = {"upload": "Upload a file", "path": "Local file path", "hub": "Hugging Face hub"}
# mapping field -> (widget key, label, optional); the format select comes first
MAP_FIELDS = {
    "prompt": ("data_map_prompt", "Prompt column", False),
    "response": ("data_map_response", "Response column", False),
    "instruction": ("data_map_instruction", "Instruction column", False),
    "input": ("data_map_input", "Input column (optional)", True),
    "output": ("data_map_output", "Output column", False),
    "messages": ("data_map_messages", "Messages column", False),
    "split": ("data_map_split", "Split column (optional)", True),
    "source": ("data_map_source", "Source column (optional)", True),
}
FORMAT_FIELDS = {"prompt_response": ("prompt", "response"), "alpaca": ("instruction", "input", "output"),
                 "messages": ("messages",)}
FORMAT_LABELS = {"prompt_response": "prompt / response columns", "alpaca": "Alpaca (instruction, input, output)",
                 "messages": "chat messages"}
NONE = "(none)"


# -- small helpers -----------------------------------------------------------------------------------------
def error_list(title: str, items: list[str], more: int = 0) -> None:
    """One ``st.error`` with a bullet per item (every item, escaped)."""
    bullets = "\n".join(f"- {md_text(i)}" for i in items)
    tail = f"\n- … and {more:,} more" if more else ""
    st.error(f"**{md_text(title)}**\n\n{bullets}{tail}", icon=":material/error:")


def show_exception(exc: BaseException) -> None:
    """An error message: its first line as the title, further lines (e.g. a CorpusError's problems) as bullets."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
    if len(lines) == 1:
        st.error(md_text(lines[0]), icon=":material/error:")
    else:
        error_list(lines[0], lines[1:])


def flash(section: str, kind: str, message: str) -> None:
    """Show ``message`` (success / info / warning / error) at the top of ``section`` on the next run."""
    st.session_state.setdefault(_FLASH + section, []).append((kind, message))


def show_flash(section: str) -> None:
    for kind, message in st.session_state.pop(_FLASH + section, []):
        getattr(st, kind)(message)


def progress_callback(bar) -> ProgressFn:
    """A library progress callback driving an ``st.progress`` bar (total 0: unknown, the message only)."""

    def update(done: int, total: int, message: str) -> None:
        bar.progress(min(1.0, done / total) if total else 0.0, text=message)

    return update


def default_name(label: str) -> str:
    """A dataset name from a file name or hub id (``data/qa.jsonl.gz`` → ``qa``); empty when none fits."""
    stem = re.split(r"\.(?:jsonl|ndjson|json|csv|parquet|gz)\b", label.rsplit("/", 1)[-1])[0]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:64]
    try:
        return check_dataset_name(name)
    except ValueError:
        return ""


def _safe_filename(name: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).lstrip(".")
    return base or "upload.jsonl"


def save_upload(uploaded) -> Path:
    """The upload as a file in a temporary folder, under its own name (so its suffix, e.g. ``.jsonl.gz``, picks
    the reader and problems name the file the user knows). Written once per upload; the previous one is removed."""
    file_id = getattr(uploaded, "file_id", None) or f"{uploaded.name}:{uploaded.size}"
    held = st.session_state.get(_UPLOAD)
    if held and held[0] == file_id and Path(held[1]).is_file():
        return Path(held[1])
    if held:
        shutil.rmtree(Path(held[1]).parent, ignore_errors=True)
    path = Path(tempfile.mkdtemp(prefix="igds-upload-")) / _safe_filename(uploaded.name)
    uploaded.seek(0)
    with open(path, "wb") as fh:
        shutil.copyfileobj(uploaded, fh)
    st.session_state[_UPLOAD] = (file_id, str(path))
    return path


def session_preview(sig: tuple, mapping: ColumnMapping | None, read: Callable[[], Preview]) -> Preview:
    """A preview read once per source and mapping in this session (the two latest are kept)."""
    cache: dict = st.session_state.setdefault(_PREVIEW, {})
    key = (sig, mapping.to_json() if mapping else None)
    if key not in cache:
        with st.spinner("Reading the whole file…"):
            cache[key] = read()
        while len(cache) > 2:
            cache.pop(next(iter(cache)))
    return cache[key]


def _select(label: str, options: list, key: str, default=None, **kwargs):
    """A selectbox whose state is (re)set to ``default`` when it holds no valid option (a new file, a format
    switched to for the first time), so it never gets both a default and a session-state value."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = default if default in options else (options[0] if options else None)
    return st.selectbox(label, options, key=key, **kwargs)


# -- add a dataset -------------------------------------------------------------------------------------------
def _source() -> tuple[tuple, tuple, str, dict] | None:
    """The chosen source: ``(signature, identity, label, kwargs for preview_source / add_dataset)``, or None. The
    signature changes with the content (a preview is read again), the identity only with another file or hub
    split (the mapping widgets start again from the guess)."""
    kinds = ["upload", "path"] + ([] if settings.offline() else ["hub"])
    kind = st.radio("Source", kinds, format_func=SOURCE_LABELS.get, horizontal=True, key="data_src",
                    help=None if "hub" in kinds else "hub datasets need IGDS_OFFLINE=0")
    if kind == "upload":
        up = st.file_uploader("Dataset file", type=UPLOAD_TYPES, key="data_upload",
                              help=f"JSONL, JSONL.gz, Parquet or CSV, up to {MAX_UPLOAD_BYTES >> 20} MB")
        if up is None:
            return None
        path = save_upload(up)
        sig = ("upload", getattr(up, "file_id", None) or up.name, up.size)
        return sig, ("upload", up.name), up.name, {"source": path, "max_bytes": MAX_UPLOAD_BYTES,
                                                   "origin": f"upload:{up.name}"}
    if kind == "path":
        raw = st.text_input("Local file path", key="data_path", placeholder="/path/to/data.jsonl",
                            help="a JSONL, JSONL.gz, Parquet or CSV file on the machine running IGDS").strip()
        if not raw:
            return None
        path = Path(raw).expanduser()
        stat = path.stat() if path.is_file() else None
        sig = ("path", str(path.resolve()), stat.st_mtime_ns if stat else 0, stat.st_size if stat else -1)
        return sig, sig[:2], path.name, {"source": path}
    c1, c2, c3 = st.columns([2, 1, 1])
    dataset_id = c1.text_input("Hub dataset id", key="data_hub_id", placeholder="org/name").strip()
    config = c2.text_input("Config (optional)", key="data_hub_config").strip()
    split = c3.text_input("Hub split", "train", key="data_hub_split").strip() or "train"
    if not dataset_id:
        return None
    sig = ("hub", dataset_id, config, split)
    return sig, sig, dataset_id, {"source": dataset_id, "hub": (config or None, split)}


def _reset_mapping(guess: ColumnMapping, label: str) -> None:
    """A new source: the mapping widgets start from the guess, the name from the file."""
    for key, _, _ in MAP_FIELDS.values():
        st.session_state.pop(key, None)
    st.session_state["data_map_format"] = guess.format
    st.session_state["data_name"] = default_name(label)


def mapping_widgets(columns: list[str], guess: ColumnMapping) -> ColumnMapping:
    """Format, then the column selects of that format, then the optional split and source columns."""
    fmt = _select("Format", list(FORMATS), "data_map_format", guess.format, format_func=FORMAT_LABELS.get)
    cols = st.columns(4)
    chosen: dict[str, str] = {"format": fmt}
    fields = [*FORMAT_FIELDS[fmt], "split", "source"]
    for i, name in enumerate(fields):
        key, label, optional = MAP_FIELDS[name]
        options = ([""] if optional else []) + columns
        with cols[i % 4]:
            value = _select(label, options, key, getattr(guess, name),
                            format_func=lambda c: c or NONE)
        if value is not None:
            chosen[name] = value
    if fmt == "alpaca" and not chosen.get("input"):
        chosen["input"] = ""  # no input column: every row's content is its instruction
    return ColumnMapping(**chosen)


def preview_view(pv: Preview, name: str) -> None:
    """The first mapped rows, the counts and every problem."""
    rows = pd.DataFrame(pv.rows, columns=["row", "prompt", "response", "split", "source"])
    if name and not pv.mapping.source:
        rows["source"] = name  # a row's source is the dataset name unless a source column gives one
    c1, c2, c3 = st.columns(3)
    c1.metric("Rows read", f"{pv.n_rows:,}")
    c2.metric("Distinct records", f"{pv.n_records:,}")
    c3.metric("Problems", f"{pv.n_problems:,}")
    if pv.mapping.split:
        counts = " · ".join(f"{md_text(k or '(no label)')}: {v:,}" for k, v in sorted(pv.split_counts.items()))
        st.caption(f"Rows per split label ({md_text(pv.mapping.split)}): {counts or 'none'}. A task split by "
                   "this column uses probe, dev (or validation / val) and test; other labels are pool rows.")
    st.dataframe(rows, key="data_preview", hide_index=True, width="stretch",
                 column_config={"row": st.column_config.NumberColumn("row", width="small")})
    st.caption(f"The first {len(rows)} good rows as they would be stored.")
    if pv.problems:
        more = pv.n_problems - len(pv.problems)
        box = st.container(height=360) if len(pv.problems) > 12 else st.container()
        with box:
            error_list(f"{pv.n_problems:,} problem(s): nothing can be stored until every one is fixed",
                       pv.problems, more)


def add_dataset_section(store) -> None:
    """Pick a source, map its columns, preview it, and store it (all or nothing)."""
    st.subheader("Add a dataset")
    show_flash("add")
    src = _source()
    if src is None:
        st.caption("Upload a file or give a path: the columns are mapped and every row checked before anything "
                   "is stored.")
        return
    sig, ident, label, kwargs = src
    try:
        first = session_preview(sig, None, lambda: preview_source(**kwargs, max_problems=1000))
    except CorpusError as exc:  # the file itself: missing, unsupported type, over the limit, hub unreachable
        show_exception(exc)
        return
    if st.session_state.get(_SOURCE) != ident:  # another file: start from its guess (a fixed file keeps the mapping)
        _reset_mapping(first.mapping, label)
        st.session_state[_SOURCE] = ident
    st.markdown("**Column mapping**" + (f" · columns: {md_text(', '.join(first.columns))}"
                                        if first.columns else ""))
    mapping = mapping_widgets(first.columns, first.mapping) if first.columns else first.mapping
    pv = first if mapping == first.mapping else session_preview(
        sig, mapping, lambda: preview_source(**kwargs, mapping=mapping, max_problems=1000))
    name = st.text_input("Dataset name", key="data_name", max_chars=64,
                         help="letters, digits, '.', '_' or '-'; the records' source unless a column gives one")
    name_error = ""
    if name:
        try:
            check_dataset_name(name)
        except ValueError as exc:
            name_error = str(exc)
    preview_view(pv, name if not name_error else "")
    if name_error:
        st.error(md_text(name_error))
    elif name and store.dataset(name) is not None:
        st.warning(f"A dataset named {md_text(name)} exists: the same file and mapping again change nothing, "
                   "other content is refused (remove it below first).")
    blocked = "fix the problems above" if not pv.ok else ("give the dataset a name" if not name or name_error else "")
    if st.button("Add dataset", key="data_add", type="primary", disabled=bool(blocked),
                 help=f"Disabled: {blocked}" if blocked else "validate the whole file again and store it"):
        with st.status(f"Adding dataset {name}…", expanded=True) as status:
            bar = st.progress(0.0, text="reading")
            try:
                res = add_dataset(store, name=name, mapping=mapping, progress=progress_callback(bar), **kwargs)
            except (CorpusError, ValueError) as exc:
                status.update(label="Nothing was stored", state="error")
                show_exception(exc)
                return
            status.update(label=f"Dataset {name} stored", state="complete", expanded=False)
        if res.created:
            st.success(f"Stored dataset **{md_text(res.name)}**: {res.n_rows:,} rows, {res.n_records:,} distinct "
                       f"records in {res.seconds:.1f} s.")
        else:
            st.info(f"Dataset **{md_text(res.name)}** already holds this file with this mapping: nothing changed.")
    elif blocked:
        st.caption(f"Add dataset is disabled: {blocked}.")


def removal_confirmed(kind: str, name: str, key: str) -> bool:
    """The second step of a removal, after a first click on its button planned it (:func:`ask_removal`): what
    removing ``name`` deletes, with *Remove … for good* and *Cancel*. True when the user confirmed; one click on a
    remove button never deletes anything."""
    plan = st.session_state.get(_REMOVE)
    if not plan or (plan.kind, plan.name) != (kind, name):
        return False
    if not plan.allowed:  # e.g. a dataset a task draws from: nothing to confirm
        st.session_state.pop(_REMOVE)
        error_list(f"{kind.capitalize()} {name} cannot be removed", plan.lines())
        return False
    with st.container(border=True):
        st.warning(f"**Remove {kind} {md_text(name)}?** Removing it:", icon=":material/delete:")
        st.markdown("\n".join(f"- {md_text(line)}" for line in plan.lines()[1:]))
        c1, c2 = st.columns(2)
        confirmed = c1.button(f"Remove {kind} {md_text(name)} for good", key=f"{key}_confirm", type="primary")
        if c2.button("Cancel", key=f"{key}_cancel"):
            st.session_state.pop(_REMOVE, None)
            st.rerun()
    return confirmed


def ask_removal(store, kind: str, name: str) -> None:
    """A first click on a remove button: plan the removal (the store counts what it would delete, deleting nothing);
    :func:`removal_confirmed` then asks."""
    st.session_state[_REMOVE] = store.removal_plan(kind, name)


def datasets_section(store) -> list[str]:
    """The workspace's datasets with a remove control (a confirmation shows what it deletes); returns their names."""
    st.subheader("Datasets in this workspace")
    show_flash("datasets")
    df = store.datasets_table()
    if df.empty:
        st.info("No datasets in this workspace yet: add a file above, then create a task from it.",
                icon=":material/info:")
        return []
    st.dataframe(df, key="data_table", hide_index=True, width="stretch")
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    pick = c1.selectbox("Dataset to remove", list(df.name), key="data_rm_pick")
    if c2.button("Remove dataset", key="data_rm", help="shows what it deletes (its rows and the records no task "
                 "uses) and asks to confirm; refused while a task draws items from it"):
        ask_removal(store, "dataset", pick)
    if removal_confirmed("dataset", pick, "data_rm"):
        try:
            n = store.remove_dataset(pick, expect=st.session_state.pop(_REMOVE))
        except ValueError as exc:
            show_exception(exc)
        else:
            flash("datasets", "success", f"Removed dataset {md_text(pick)} ({n:,} rows).")
            st.rerun()
    return list(df.name)


# -- create a task -------------------------------------------------------------------------------------------
def create_task_section(store, datasets: list[str]) -> None:
    """A task of the researcher's own from the workspace's datasets; the sidebar switches to it."""
    from igds.data.metrics import list_metrics
    from igds.data.tasks import ANSWER_MODES, ANSWER_PATTERNS, TaskSpec
    from igds.ui.state import request_task
    from igds.workflow.catalog import SPLIT_MODES, TaskData, add_task

    st.subheader("Create a task")
    show_flash("task")
    if not datasets:
        st.caption("Add a dataset above to create a task from it.")
        return
    c1, c2, c3 = st.columns(3)
    name = c1.text_input("Task name", key="task_new_name", placeholder="my_task",
                         help="letters, digits, _ or -; shown in the sidebar's Task picker").strip()
    metrics = list_metrics()
    with c2:
        metric = _select("Metric", metrics, "task_metric", "exact_match", help="how generations are scored")
    max_new = c3.number_input("Max new tokens", 1, 4096, 64, key="task_max_new", help="generation budget")
    instruction = st.text_area("Instruction (optional)", key="task_instruction", height=80,
                               help="placed before each record's content").strip()
    d1, d2 = st.columns(2)
    system = d1.text_area("System prompt (optional)", key="task_system", height=68).strip()
    description = d2.text_input("Description (optional)", key="task_description").strip()
    a1, a2 = st.columns(2)
    answer = a1.selectbox("Answer extraction", list(ANSWER_MODES), key="task_answer",
                          help="how the answer is pulled out of a generation before scoring")
    answer_arg = ""
    if answer == "after_marker":
        answer_arg = a2.text_input("Answer marker", "####", key="task_marker", help="the text after it is the answer")
    elif answer == "regex":
        answer_arg = a2.selectbox("Answer pattern", list(ANSWER_PATTERNS), key="task_pattern",
                                  format_func=lambda p: f"{p}: {ANSWER_PATTERNS[p]}")
    evals = st.multiselect("Eval datasets", datasets, key="task_eval", help="give the probe, dev and test items")
    split_by = st.radio("Split by", list(SPLIT_MODES), key="task_split", horizontal=True,
                        format_func={"seeded": "seeded shuffle (sizes)", "column": "the split column"}.get)
    sizes = TaskData.__dataclass_fields__
    n_probe, n_dev, n_test, seed = (sizes[f].default for f in ("n_probe", "n_dev", "n_test", "seed"))
    if split_by == "seeded":
        s1, s2, s3, s4 = st.columns(4)
        n_probe = s1.number_input("Probe items", 1, 1_000_000, n_probe, key="task_n_probe")
        n_dev = s2.number_input("Dev items", 1, 1_000_000, n_dev, key="task_n_dev")
        n_test = s3.number_input("Test items", 1, 1_000_000, n_test, key="task_n_test")
        seed = s4.number_input("Seed", 0, 2**31 - 1, seed, key="task_seed")
        table = store.datasets_table().set_index("name")
        have = int(table.n_records.reindex(evals).fillna(0).sum()) if evals else 0
        st.caption(f"The eval datasets hold {have:,} distinct records (at most; shared records count once); the "
                   f"split takes {n_probe + n_dev + n_test:,}.")
    else:
        st.caption("Rows labelled probe, dev (or validation / val) and test become those items; other labels "
                   "are no eval item.")
    pool = st.multiselect("Pool datasets", [*datasets, GENERAL], key="task_pool",
                          format_func=lambda d: "shipped general set" if d == GENERAL else d,
                          help="the candidate pool data is selected from; eval items never enter it. The shipped "
                               "general set is off-task data: chosen, it joins the task's own rows in the mixed "
                               "pool, so selection has examples to reject")
    missing = [w for w, v in (("a name", name), ("eval datasets", evals), ("pool datasets", pool)) if not v]
    if st.button("Create task", key="task_create", type="primary", disabled=bool(missing),
                 help=f"Disabled: give {', '.join(missing)}" if missing else "store the task and its items"):
        try:
            spec = TaskSpec(name=name, instruction=instruction, metric=metric, max_new_tokens=int(max_new),
                            description=description, system=system or None, answer=answer, answer_arg=answer_arg)
            data = TaskData(eval_datasets=tuple(evals), split_by=split_by, n_probe=int(n_probe), n_dev=int(n_dev),
                            n_test=int(n_test), seed=int(seed), pool_datasets=tuple(pool))
            counts = add_task(store, spec, data)
        except ValueError as exc:
            show_exception(exc)
        else:
            flash("task", "success", f"Created task **{md_text(name)}**: {counts['probe']:,} probe, "
                  f"{counts['dev']:,} dev, {counts['test']:,} test items and {pool_note(store, counts, pool)}. "
                  "The sidebar now works on it.")
            request_task(name)
            st.rerun()
    elif missing:
        st.caption(f"Create task is disabled: give {', '.join(missing)}.")


def pool_note(store, counts: dict, pool) -> str:
    """What a new task's pool holds, the shipped general set named either way: ``a pool of 1,750 own rows (from
    fr-en) plus the shipped general set's 1,200 records in the mixed pool (2,950 in all)``, or ``… (the shipped
    general set is not in it: the task-only pool)``."""
    own = [d for d in pool if d != GENERAL]
    text = f"a pool of {counts['train']:,} own rows" + (f" (from {md_text(', '.join(own))})" if own else "")
    if counts.get("overlap"):
        text += f", {counts['overlap']:,} pool rows left out as eval items,"
    if GENERAL not in pool:
        return text + " (the shipped general set is not in it: the task-only pool)"
    sizes = store.task_split_counts()
    n = int(sizes.n[(sizes.task == GENERAL) & (sizes.split == "train")].sum())
    return (text + f" plus the shipped general set's {n:,} records in the mixed pool "
            f"({counts['train'] + n:,} in all)")


def tasks_section(store) -> None:
    """Every task (shipped and the workspace's) with a remove control for the workspace's own."""
    from igds.workflow.catalog import remove_task, tasks_table

    st.subheader("Tasks")
    show_flash("tasks")
    df = tasks_table(store)
    st.dataframe(df, key="task_table", hide_index=True, width="stretch")
    own = list(df.task[df.kind == "workspace"])
    if not own:
        st.caption("No workspace tasks yet: the shipped tasks cannot be removed.")
        return
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    pick = c1.selectbox("Task to remove", own, key="task_rm_pick")
    if c2.button("Remove task", key="task_rm", help="shows what it deletes (its items, and which saved selections "
                 "then no longer load) and asks to confirm; its runs and results stay in the store"):
        ask_removal(store, "task", pick)
    if removal_confirmed("task", pick, "task_rm"):
        try:
            n = remove_task(store, pick, expect=st.session_state.pop(_REMOVE))
        except ValueError as exc:
            show_exception(exc)
        else:
            flash("tasks", "success", f"Removed task {md_text(pick)} ({n:,} items).")
            st.rerun()
