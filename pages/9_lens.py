"""Text lens: paste any text (or pick a stored example) and see, token by token, the features of the workspace's SAE
that fire on it, validated ones (★) and candidates (◆) marked; the features firing most on it with their logit lens
and labels; and search features by a promoted token, by text they fire on or by label. ``?text=…`` (short texts)
or ``?example=…`` links here."""

import streamlit as st

from igds.ui.jobs import needs_or_waiting
from igds.ui.resources import get_store
from igds.ui.state import current_task, shown_value
from igds.ui.widgets import (
    lens_tokens,
    md_text,
    page_link_url,
    text_lens_of,
    token_highlights,
    url_synced,
    url_write,
)
from igds.workflow.explore import task_state
from igds.workflow.lens import (
    SEARCH_KINDS,
    annotate_features,
    example_exists,
    feature_marks,
    run_label,
    search_features,
)

URL_TEXT_CHARS = 300  # longer texts are not put in the address bar
task = current_task()
store = get_store()
st.title(f"Text lens · {task}")
state = task_state(store, task)
if not state.extract_run:
    needs_or_waiting("No activations yet: bootstrap the workspace on the Overview page first (the lens uses the "
                     "model and SAE of the task's extraction run).", ("bootstrap", "extract"), task,
                     "the activations")
    st.stop()
url_synced("text", "lens_text")
url_synced("example", "lens_example")
url_synced("example", "lens_mode", parse=lambda _: "stored example", default="text")
mode = st.segmented_control("Input", ["text", "stored example"], key="lens_mode")
c1, c2 = st.columns([3, 1])
if mode == "stored example":
    example_id = c1.text_input("Example id", key="lens_example", placeholder="e.g. from the Features or Compare page")
    text, as_task = None, False
else:
    text = c1.text_area("Text", key="lens_text", height=120, placeholder="Paste any text…")
    example_id = None
    as_task = c2.toggle("Render as this task's prompt", key="lens_as_task",
                        help="Through the task's chat template and instruction; only the text's own tokens count")
k = c2.slider("Top features per token", 1, 10, 5, key="lens_k")
url_write("example", "lens_example", example_id or None)
url_write("text", "lens_text", text if text and len(text) <= URL_TEXT_CHARS else None)
fstar, cands = feature_marks(store, task)

if example_id and not example_exists(store, example_id):  # a link's or a typed id: said before any model runs
    st.warning(f"There is no example {shown_value(example_id)} in this workspace: give a stored example's id (the "
               "Features and Compare pages link them here).", icon=":material/link_off:")
    st.stop()
if example_id or text:
    try:
        lens = text_lens_of(state.extract_run, text=text, example_id=example_id, task=task if as_task else None)
    except ValueError as exc:
        st.warning(md_text(exc))  # it may quote a link's ?example= value
        st.stop()
    top_k = lens.top_k(k)
    feats = annotate_features(store, task, state.sae_key, lens.top_features(30))
    st.caption(f"{len(lens.tokens)} tokens through the model and SAE of {md_text(task)}'s extraction run "
               f"({md_text(run_label(store, state.extract_run))}) · shade = the strongest feature's activation "
               "(hover a token for its top features) · green underline = a validated feature in its top features · "
               "grey = not counted (BOS, attention sinks, template).")
    if st.session_state.get("lens_focus") not in feats.feature.tolist():
        st.session_state.pop("lens_focus", None)  # a feature of the previous text
    focus = st.selectbox("Shade by", [None, *feats.feature.tolist()], key="lens_focus",
                         format_func=lambda f: "the strongest feature at each token" if f is None else
                         f"feature {f}{'★' if f in fstar else '◆' if f in cands else ''}")
    if focus is None:
        lens_tokens(lens, top_k, fstar, cands)
    else:
        token_highlights(lens.tokens, lens.values(focus))
    st.subheader("Features firing most on this text")
    feats = feats.assign(open=[page_link_url("features", task=task, feature=f) for f in feats.feature])
    number = st.column_config.NumberColumn(format="%.2f")
    st.dataframe(feats, hide_index=True, width="stretch", key="lens_features", column_config={
        "max_act": number, "mean_act": number, "open": st.column_config.LinkColumn(display_text="feature page")})
    with st.expander(f"Top {k} features of every token"):
        per = top_k.assign(mark=[("★" if f in fstar else "◆" if f in cands else "") for f in top_k.feature])
        st.dataframe(per, hide_index=True, width="stretch", key="lens_tokens")
else:
    st.caption("Paste a text or give an example id to see its features.")

st.subheader("Search features")
c1, c2 = st.columns([1, 3])
by = c1.selectbox("By", SEARCH_KINDS, key="lens_search_by")
query = c2.text_input("Search", key="lens_search", placeholder="a token, a piece of text, a label")
if query:
    hits = search_features(store, task, state.sae_key, state.extract_run, query, by)
    hits = hits.assign(open=[page_link_url("features", task=task, feature=f) for f in hits.feature])
    st.dataframe(hits, hide_index=True, width="stretch", key="lens_hits",
                 column_config={"open": st.column_config.LinkColumn(display_text="feature page")})
    if hits.empty:
        st.caption("No feature matches" + (" (contexts are searched where they are cached: open a feature's page to "
                                           "compute its contexts)" if by == "text it fires on" else "") + ".")
