"""Literal user text in Markdown, HTML and code spans: the escapes every page uses for dataset text, labels and
link values, and links to pages (pure string functions; no Streamlit, so the session-state helpers can use them
too)."""

from __future__ import annotations

import html
import re
import string

# every ASCII punctuation character: CommonMark renders a backslash-escaped one as itself, so none of them can start
# emphasis, a link or image, raw HTML, an entity, a table, Streamlit's directives (:blue[...], :material/x:) and
# emoji shortcodes, or LaTeX ($); the line-start markers (#, >, -, +, 1.) and setext underlines (=) included
_MD_SPECIAL = re.compile("([" + re.escape(string.punctuation) + "])")
_HTML_EXTRA = str.maketrans({"$": "&#36;", "\n": "&#10;", "\r": "&#13;", "\\": "&#92;"})


def md_text(text) -> str:
    """``text`` escaped for Streamlit Markdown (``st.markdown``, ``st.caption``, alerts, badges): it renders as
    exactly these characters (no emphasis, links, images, HTML, LaTeX, directives or emoji). Never put the result
    inside a code span, where backslashes are literal."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def html_text(text) -> str:
    """``text`` escaped for the HTML the highlight views pass to ``st.markdown(..., unsafe_allow_html=True)``: HTML
    special characters as entities, and ``$``, backslashes and line breaks as character references, so a line break
    cannot end the HTML block (after which Markdown would render the rest) and LaTeX never sees a dollar sign."""
    return html.escape(str(text), quote=True).translate(_HTML_EXTRA)


def md_code(text) -> str:
    """``text`` as an inline code span (shown literally in monospace): fenced by more backticks than it holds."""
    text = str(text).replace("\n", " ")
    fence = "`" * (max((len(m) for m in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def page_link_url(path: str, **params) -> str:
    """A relative link to a dashboard page with URL state, e.g. ``features?task=…&feature=12`` (for link
    columns: it opens the page in a new tab, on exactly that view)."""
    from urllib.parse import urlencode

    return f"{path}?{urlencode({k: v for k, v in params.items() if v is not None})}"
