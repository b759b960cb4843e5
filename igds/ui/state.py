"""Namespaced session-state keys and typed accessors. Results live in the store, not here.

Page state also travels in the URL (``?task=…&feature=…``), so the address bar is a link to the view. A link's
value is checked before it is used: one the workspace cannot resolve (an unknown or malformed id) is named in a
message, and the page acts on nothing in its place (:func:`link_value`, :func:`bad_link`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

TASK = "global.task"
# a task a page asks the sidebar to switch to on the next run (the sidebar's widget is already drawn by then)
PENDING_TASK = "global.task_pending"
DEFAULT_TASK = "summarization"
URL_APPLIED = "global.url_task_applied"
SHOWN_CHARS = 60  # a link's value is quoted up to this many characters in a message


def init_state() -> None:
    """Defaults for keys every page may read."""
    st.session_state.setdefault(TASK, DEFAULT_TASK)


def current_task() -> str:
    """The task picked in the sidebar."""
    return st.session_state.get(TASK, DEFAULT_TASK)


def request_task(name: str) -> None:
    """Make ``name`` the sidebar's task from the next run on (call ``st.rerun()`` after it)."""
    st.session_state[PENDING_TASK] = name


def sync_task(tasks: Sequence[str]) -> None:
    """Before the sidebar's task picker is drawn: apply a requested task, and fall back to the first task when
    the selected one is gone (e.g. removed in another session or process). A link's unknown task is not applied
    (see :func:`unknown_linked_task`)."""
    pending = st.session_state.pop(PENDING_TASK, None)
    linked = url_value("task")
    if pending is None and linked in tasks and not st.session_state.get(URL_APPLIED):
        pending = linked  # a link's task, once per session: the sidebar rules after that
        st.session_state[URL_APPLIED] = True
    if pending in tasks:
        st.session_state[TASK] = pending
    elif tasks and st.session_state.get(TASK) not in tasks:
        st.session_state[TASK] = tasks[0]


def unknown_linked_task(tasks: Sequence[str]) -> str | None:
    """The URL's ``?task=`` when the workspace has no such task (a mistyped link, or a task removed since); the
    app then says so and shows no page for another task in its place. None: no task in the URL, or a known one."""
    linked = url_value("task")
    return linked if linked is not None and linked not in tasks else None


def task_picked() -> None:
    """The sidebar's task picker changed: the URL follows it, and the link's ids of the previous task (a feature,
    an example, selections, a run) are dropped with any message about them."""
    set_url(**{key: None for key in URL_KEYS if key != "task"}, task=st.session_state[TASK])
    for key in [k for k in st.session_state if str(k).startswith(_BAD)]:
        del st.session_state[key]


# -- page state in the URL: a link opens exactly what the sender was looking at -------------------------------
URL_KEYS = ("task", "feature", "example", "selection", "compare", "text", "run")
_BAD = "url_bad."  # + key: a link's value the page could not resolve, until the user drops it


def url_value(key: str) -> str | None:
    """A page-state value from the URL's query string (``?task=…&feature=…``), or None."""
    if key not in URL_KEYS:
        raise KeyError(f"{key!r} is not a URL state key ({', '.join(URL_KEYS)})")
    value = st.query_params.get(key)
    return value if value not in (None, "") else None


def set_url(**values) -> None:
    """Write page-state values into the URL (None removes a key), so the address bar is a link to this view."""
    for key, value in values.items():
        if key not in URL_KEYS:
            raise KeyError(f"{key!r} is not a URL state key ({', '.join(URL_KEYS)})")
        if value is None or value == "":
            st.query_params.pop(key, None)
        elif st.query_params.get(key) != str(value):
            st.query_params[key] = str(value)


def link_value(key: str, state_key: str, resolve: Callable[[str], object | None], default=None) -> str | None:
    """Before the widget (or state value) ``state_key`` is drawn: apply the URL's ``key`` when it is new to this
    session (someone opened a link), else keep the current value (``default`` when there is none). Pair with
    ``igds.ui.widgets.url_write`` after the widget, which writes the view back into the URL.

    Unlike ``widgets.url_synced``, a value ``resolve`` cannot map (it returns None or raises ValueError) is never
    replaced by another: it is returned, and stays returned while the URL holds it, so the page shows
    :func:`bad_link` instead of a substitute.

    Args:
        resolve: the URL's string to the widget's value (e.g. a selection's name to its id), None when the
            workspace has nothing by that value.

    Returns:
        The link's value when it cannot be resolved, else None.
    """
    seen, bad = f"url_seen.{key}.{state_key}", _BAD + key
    raw = url_value(key)
    if raw is not None and raw == st.session_state.get(bad):
        return raw
    st.session_state.pop(bad, None)
    if raw is not None and raw != st.session_state.get(seen):
        st.session_state[seen] = raw
        try:
            value = resolve(raw)
        except (TypeError, ValueError):
            value = None
        if value is None:
            st.session_state[bad] = raw
            return raw
        st.session_state[state_key] = value
        return None
    if state_key not in st.session_state and default is not None:
        st.session_state[state_key] = default
    return None


def shown_value(value: str) -> str:
    """A link's value as a message quotes it: literally (escaped Markdown, in quotes), cut to ``SHOWN_CHARS``
    characters."""
    from igds.ui.text import md_text

    value = str(value)
    return f"“{md_text(value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + '…')}”"


def drop_link(*keys: str) -> None:
    """Remove ``keys`` from the URL and forget that their values were refused (a button's callback)."""
    set_url(**dict.fromkeys(keys))
    for key in keys:
        st.session_state.pop(_BAD + key, None)


def bad_link(values: dict[str, str], why: str) -> None:
    """Say that this page's link names something the workspace does not have, offer to open the page without it,
    and stop the page: nothing is shown (or can be acted on) for another value in its place.

    Args:
        values: the link's unresolved values by URL key (``{"selection": "abc"}``), each quoted literally.
        why: what they should have been, e.g. ``"names no stored selection of task summarization"``.
    """
    for key, value in values.items():
        st.error(f"This link's `{key}` is {shown_value(value)}, which {why}. The page shows nothing in "
                 "its place, so that no action applies to something the link did not name.",
                 icon=":material/link_off:")
    st.button("Open this page without " + " and ".join(f"the link's {k}" for k in values), key="drop_link",
              on_click=drop_link, args=tuple(values), type="primary")
    st.stop()


def unused_link_keys(page_keys: Sequence[str]) -> dict[str, str]:
    """The URL's keys this page does not read (besides ``task``, which every page takes), with their values."""
    return {k: v for k, v in st.query_params.items() if k != "task" and k not in page_keys}


def bad_task_link(value: str, tasks: Sequence[str]) -> None:
    """The link's task is not one of ``tasks``: say so, offer the sidebar's task instead, and stop before the
    page (nothing is shown or started for a task the link did not name)."""
    from igds.ui.text import md_text

    known = ", ".join(md_text(t) for t in tasks[:12]) + (f" and {len(tasks) - 12} more" if len(tasks) > 12 else "")
    st.error(f"This link's `task` is {shown_value(value)}, which is not a task of this workspace (its tasks: "
             f"{known or 'none'}). The page is not shown for another task in its place: pick a task in the sidebar, "
             "or open the page on the sidebar's task.", icon=":material/link_off:")
    st.button(f"Open this page on {md_text(current_task())}", key="drop_link_task", type="primary",
              on_click=lambda: set_url(task=current_task()))
    st.stop()


def unused_link_notice(url_path: str) -> None:
    """Name the URL's keys the page at ``url_path`` does not read (``/lens?feature=12``), and where they are read:
    a link's value is never dropped without a word."""
    from igds.ui.pages import PAGE_LINK_KEYS, PAGES
    from igds.ui.text import md_text, page_link_url

    task = url_value("task")
    for key, value in unused_link_keys(PAGE_LINK_KEYS.get(url_path, ())).items():
        readers = [(title, path) for _, title, path, _ in PAGES if key in PAGE_LINK_KEYS.get(path, ())]
        where = " · ".join(f"[open it on {md_text(title)}]({page_link_url(path, task=task, **{key: value})})"
                           for title, path in readers) or "no page reads it"
        st.warning(f"This page does not use the link's {shown_value(key)} ({shown_value(value)}); it is ignored "
                   f"here: {where}.", icon=":material/link_off:")
