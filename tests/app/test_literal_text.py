"""User text is text (issue 23): a dataset's prompt, response and source, feature labels and notes, and a link's
``?example=`` value are shown literally on every page: never rendered as Markdown (images, links, emphasis), HTML
or LaTeX. Inside Markdown they go through ``md_text``, inside the highlight views' HTML through ``html_text``, and
whole texts through ``st.text`` / tables / JSON, which render nothing."""

import html
import json
import re
import shutil
from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt

from igds.store import ActivationStore
from igds.ui.widgets import html_text, md_text
from tests.app.test_pages import demo_store_file, tiny_workspace  # noqa: F401 - a module-scoped fixture
from tests.helpers import app_page

HOSTILE = "![x](http://127.0.0.1:9/p.png) <b>b</b> $$x$$"
TASK = "summarization"
# CommonMark with raw HTML and GFM tables / strikethrough: what Streamlit's Markdown parses (its GFM autolinks
# turn bare URLs into links whose text is the URL itself: the characters stay the same, so they are not tested)
MD = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
ATTACKS = [
    HOSTILE,
    "**bold** _it_ ~~del~~ `code` [link](http://127.0.0.1:9/) <img src=x onerror=alert(1)> &lt; &amp;",
    "# heading\n- item\n1. first\n> quote\n---\nsetext\n===\n| a | b |\n|---|---|\n| 1 | 2 |",
    "$x$ \\(y\\) \\[z\\] $$\\frac{1}{2}$$ :smile: :blue[c] :material/home: back\\slash",
    "<script>alert(1)</script><div>\n\n![after a blank line](http://127.0.0.1:9/q.png)</div>",
]


class _Text(HTMLParser):
    """The text and the tags of an HTML fragment."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def parse_html(fragment: str) -> _Text:
    p = _Text()
    p.feed(fragment)
    p.close()
    return p


@pytest.mark.parametrize("text", ATTACKS, ids=["hostile", "inline", "blocks", "latex-emoji", "html-block"])
def test_md_text_renders_as_the_same_characters(text):
    rendered = parse_html(MD.render(md_text(text)))
    assert set(rendered.tags) <= {"p"}, f"rendered as {rendered.tags}"
    # line breaks inside a paragraph are soft breaks: compare the words
    assert "".join(rendered.text).split() == text.split()
    # LaTeX: Streamlit's math plugin takes unescaped dollars only; every one here is escaped
    assert re.search(r"(?<!\\)\$", md_text(text)) is None
    assert re.search(r"(?<!\\):", md_text(text)) is None  # no directive (:blue[...]) and no emoji shortcode


@pytest.mark.parametrize("text", ATTACKS, ids=["hostile", "inline", "blocks", "latex-emoji", "html-block"])
def test_html_text_stays_text_inside_the_highlight_views_html(text):
    block = f'<div style="white-space: pre-wrap"><span>{html_text(text)}</span></div>'
    out = MD.render(block)
    # a line break in the text must not end the HTML block (Markdown would then render the rest)
    assert out.strip() == block and "\n" not in block and "$" not in block
    parsed = parse_html(out)
    assert parsed.tags == ["div", "span"] and "".join(parsed.text) == text


# -- the pages ---------------------------------------------------------------------------------------------------
@pytest.fixture
def hostile_store(demo_store_file, tmp_path, monkeypatch):  # noqa: F811 - the fixture imported above
    """The demo workspace with the hostile text in every prompt, response, source, reference, feature label and
    note."""
    path = tmp_path / "igds.duckdb"
    shutil.copy(demo_store_file, path)
    monkeypatch.setenv("IGDS_STORE", str(path))
    store = ActivationStore(path)
    with store.transaction() as con:
        con.execute("UPDATE records SET prompt = ? || prompt, response = ? || response, source = ?",
                    [HOSTILE + "\n", HOSTILE + "\n", HOSTILE])
        con.execute("UPDATE eval_outputs SET reference = ? || reference", [HOSTILE + "\n"])
    for f in range(128):  # every feature of the tiny SAE
        store.set_feature_label("tiny-sae", f, HOSTILE, HOSTILE)
    return store


def open_page(page: str, **params):
    """The app opened on ``page`` with URL state ``params`` (as a link would)."""
    return app_page(page, 120, **params)


def markdown_bodies(at) -> list[tuple[bool, str]]:
    """``(allows HTML, body)`` of every element Streamlit renders as Markdown."""
    out = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "title", "header", "subheader"):
        out += [(bool(getattr(e.proto, "allow_html", False)), e.value) for e in getattr(at, kind)]
    out += [(False, b.label) for b in at.button] + [(False, e.label) for e in at.expander]
    return out


def literal_values(at) -> list[str]:
    """Everything shown without any rendering: st.text, st.code, st.json and table cells."""
    out = [t.value for t in at.text] + [c.value for c in at.code] + [j.proto.body for j in at.json]
    for d in at.dataframe:
        out += [str(v) for v in d.value.astype(str).to_numpy().ravel()]
    return out


def plotted(at, key: str) -> list[str]:
    """The category and trace names of the plotly chart ``key`` (plotly renders tags such as <b> in them)."""
    spec = json.loads(next(c.proto.spec for c in at.get("plotly_chart") if key in (c.proto.id or "")))
    return [str(v) for t in spec["data"] for v in [*(t.get("x") or []), t.get("name") or ""]]


def check_nothing_rendered(at) -> None:
    """No Markdown body holds the raw text, and none renders an image, a tag or unescaped LaTeX."""
    assert not at.exception, at.exception
    for allows_html, body in markdown_bodies(at):
        assert HOSTILE not in body and "<b>b</b>" not in body and "$$x$$" not in body, body[:300]
        if not allows_html:
            tags = set(parse_html(MD.render(body)).tags)
            assert not tags & {"img", "b", "script", "h1", "ol", "table"}, (tags, body[:300])


def test_every_page_shows_dataset_text_literally(hostile_store, monkeypatch, tmp_path):
    from igds.workflow.explore import quantile_examples, task_state
    from igds.workflow.stages import latest_effects

    ws = tiny_workspace(hostile_store)
    monkeypatch.setattr("igds.ui.resources.get_workspace", lambda run_id=None: ws)
    state = task_state(hostile_store, TASK)
    feature = latest_effects(hostile_store, TASK).kept[0]
    eid = quantile_examples(hostile_store, state.extract_run, feature).example_id.iloc[0]

    # Features: the linked example (its line, prompt and response), the quantile table, the label badge and table
    at = open_page("pages/2_features.py", task=TASK, feature=feature, example=eid)
    check_nothing_rendered(at)
    assert HOSTILE + "\n" in " ".join(t.value for t in at.text)  # prompt and response as plain text
    assert any(md_text(HOSTILE) in m.value and eid in m.value for m in at.markdown)  # source in the example line
    assert any(f":blue-badge[{md_text(HOSTILE)}]" in m.value for m in at.markdown)  # the feature's label
    assert at.text_input(key=f"feat_label_{feature}").value == HOSTILE
    assert HOSTILE in at.dataframe(key=f"feat_quant_{feature}").value.source.tolist()
    assert HOSTILE in at.dataframe(key="feat_table").value.label.tolist()
    # a link's ?example= value that is no example: quoted literally
    at = open_page("pages/2_features.py", task=TASK, feature=feature, example=HOSTILE)
    check_nothing_rendered(at)
    assert any(md_text(repr(HOSTILE)) in w.value for w in at.warning)

    # Text lens: the stored example's tokens (HTML spans), and the ?example= value that is no example
    at = open_page("pages/9_lens.py", task=TASK, example=eid)
    check_nothing_rendered(at)
    spans = next(m.value for m in at.markdown if "rgba(66,133,244" in m.value)
    assert "&lt;</span>" in spans and "&#36;</span>" in spans  # the text's characters, one token each
    assert HOSTILE in literal_values(at)  # the features table's labels
    at = open_page("pages/9_lens.py", task=TASK, example=HOSTILE)
    check_nothing_rendered(at)
    assert at.text_input(key="lens_example").value == HOSTILE
    assert any("no example" in w.value.lower() and md_text("<b>b</b>") in w.value for w in at.warning)

    # Selection: the vetting queue's example (source in its HTML line, prompt and response as text), the table
    at = open_page("pages/4_selection.py", task=TASK)
    check_nothing_rendered(at)
    current = next(m.value for m in at.markdown if 'class="vet-current"' in m.value)
    assert html_text(HOSTILE) in current
    assert HOSTILE + "\n" in " ".join(t.value for t in at.text)
    assert HOSTILE in at.dataframe(key="sel_table").value.source.tolist()
    assert set(plotted(at, "sel_comp")) >= {html_text(HOSTILE)}

    # Compare: the added / removed tables and the composition by source
    at = open_page("pages/8_compare.py", task=TASK)
    check_nothing_rendered(at)
    assert HOSTILE in literal_values(at)
    assert html_text(HOSTILE) in plotted(at, "cmp_source") and HOSTILE not in plotted(at, "cmp_source")

    # Export & fine-tune: the selection's composition by source (JSON); Results: the references of the outputs
    at = open_page("pages/5_finetune.py", task=TASK)
    check_nothing_rendered(at)
    assert any(html.unescape(HOSTILE) in j.proto.body for j in at.json)
    at = open_page("pages/6_results.py", task=TASK)
    check_nothing_rendered(at)
    assert any(v.startswith(HOSTILE) for v in literal_values(at))


def test_data_page_preview_shows_file_text_literally(tmp_path, monkeypatch):
    from tests.app.test_data_page import data_page, from_path, table, write_jsonl

    monkeypatch.setenv("IGDS_STORE", str(tmp_path / "igds.duckdb"))
    path = write_jsonl(tmp_path / "hostile.jsonl", [
        {"prompt": HOSTILE, "response": HOSTILE, "source": HOSTILE},
        {"prompt": "plain", "response": HOSTILE},  # no source: the dataset's name
        {"prompt": "", "response": HOSTILE},  # a problem: its message quotes no content, but is escaped all the same
    ])
    at = from_path(data_page(), path)
    at.selectbox(key="data_map_source").set_value("source").run()
    check_nothing_rendered(at)
    rows = table(at, "prompt")
    assert rows.prompt.iloc[0] == HOSTILE and rows.response.tolist() == [HOSTILE, HOSTILE]
    assert rows.source.iloc[0] == HOSTILE
