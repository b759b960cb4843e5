"""Reusable Streamlit widgets: literal user text, notices, token highlights, tables.

User text (a dataset's prompt, response and source, notes, labels, a link's ``?example=``) is shown literally
on every page: inside Markdown through :func:`md_text`, inside the HTML the highlight views build through
:func:`html_text`, and whole prompts and responses as plain text (:func:`example_text`); tables render their cells
as text by themselves.
"""

from __future__ import annotations

import streamlit as st

from igds.scope import STAGE_LENGTH
from igds.ui.text import html_text, md_code, md_text, page_link_url  # noqa: F401 (re-exported for the pages)


def example_text(prompt, response) -> None:
    """An example's prompt and response as plain text (line breaks kept, nothing rendered)."""
    st.markdown("**Prompt**")
    st.text(str(prompt))
    st.markdown("**Response**")
    st.text(str(response))


def token_highlights(tokens: list[str], values: list[float], vmax: float | None = None) -> None:
    """Render tokens with a background whose opacity follows a feature's activation."""
    vmax = vmax or max([v for v in values if v > 0], default=1.0)
    spans = []
    for t, v in zip(tokens, values, strict=True):
        a = min(1.0, max(0.0, v / vmax)) if vmax else 0.0
        title = f"{v:.2f}" if v > 0 else ""
        spans.append(f'<span title="{title}" style="background: rgba(255,140,0,{a:.2f}); border-radius:3px">'
                     f"{html_text(t)}</span>")
    st.markdown('<div style="font-family: monospace; white-space: pre-wrap; line-height:1.7">'
                + "".join(spans) + "</div>", unsafe_allow_html=True)


def _token_span(token: str, value: float, vmax: float, counted: bool, is_max: bool) -> str:
    text = html_text(token.replace("\r", "").replace("\n", "↵"))
    if not counted:  # outside the run's token scope (or BOS / a sink): greyed, never highlighted
        title = f"{value:.2f} (not counted: outside the scope)" if value > 0 else "not counted: outside the scope"
        return f'<span title="{title}" style="color:#9e9e9e">{text}</span>'
    a = min(1.0, max(0.0, value / vmax)) if vmax else 0.0
    style = f"background: rgba(255,140,0,{a:.2f}); border-radius:3px"
    if is_max:
        style += "; font-weight:bold; outline: 2px solid rgb(200,80,0)"
    return f'<span title="{value:.2f}" style="{style}">{text}</span>'


def context_highlights(contexts, vmax: float | None = None) -> None:
    """Render top-activating contexts, one line each: rank, max activation, task and example id, then the
    token window with its activations as highlights, the max token outlined in bold and the tokens the
    run's scope does not count greyed.

    Args:
        contexts: rows of ``igds.workflow.explore.cached_contexts`` for one feature (tokens, acts, in_scope,
            max_pos, start_pos, n_positions, rank, max_act, task, example_id).
        vmax: activation mapped to full colour (default: the largest ``max_act`` shown).
    """
    vmax = vmax or max([float(v) for v in contexts.max_act if v > 0], default=1.0)
    lines = []
    for r in contexts.to_dict("records"):
        mx = int(r["max_pos"]) - int(r["start_pos"])
        spans = [_token_span(t, float(v), vmax, bool(c), i == mx)
                 for i, (t, v, c) in enumerate(zip(r["tokens"], r["acts"], r["in_scope"], strict=True))]
        left = "…" if r["start_pos"] > 0 else ""
        right = "…" if r["start_pos"] + len(r["tokens"]) < r["n_positions"] else ""
        label = html_text(f"#{int(r['rank']) + 1} · {float(r['max_act']):.2f} · {r['task']} · {r['example_id']}")
        lines.append(f'<div style="margin-bottom:4px"><span style="color:#888; font-size:0.8em">{label}</span><br>'
                     f"{left}{''.join(spans)}{right}</div>")
    st.markdown('<div style="font-family: monospace; white-space: pre-wrap; line-height:1.7">' + "".join(lines)
                + "</div>", unsafe_allow_html=True)


def needs(message: str) -> None:
    """A clear 'inputs missing' notice (pages call st.stop() after offering the action)."""
    st.info(message, icon=":material/info:")


def section_table(title: str, df, empty: str = "none yet", **kwargs) -> None:
    """A subheader with a dataframe, or a caption when the frame is empty."""
    st.subheader(title)
    if df is None or len(df) == 0:
        st.caption(empty)
    else:
        st.dataframe(df, width="stretch", **{"hide_index": True, **kwargs})


def show_token_highlights(example: dict, features: list[int], vmax: float | None = None,
                          run_id: str | None = None) -> None:
    """Recompute and render per-token activations of ``features`` on one example (runs the model and SAE of
    ``run_id``, the extraction run the scores came from).

    Args:
        example: a record with id, task, source, prompt (its content), response; rendered through its task.
        features: features to highlight, one line each.
        vmax: activation mapped to full colour (default: the example's own maximum per feature).
    """
    from igds.data.records import Example
    from igds.method.steer import token_activations
    from igds.modeling.encoding import encode_examples
    from igds.ui.resources import MODEL_LOCK, get_workspace

    ws = get_workspace(run_id)
    ex = Example(id=example["id"], task=example["task"], source=example["source"], split="train",
                 prompt=example["prompt"], response=example["response"], meta={})
    with MODEL_LOCK:
        item = encode_examples(ws.tokenizer, [ex], 256)[0]
        toks, acts = token_activations(ws.model, ws.tokenizer, ws.sae, ws.site, item.input_ids, features)
    for i, f in enumerate(features):
        st.caption(f"feature {f} on {example['id']} · max {float(acts[:, i].max()):.2f}")
        token_highlights(toks, acts[:, i].tolist(), vmax=vmax)


def amplification_scatter(pts, y: str, key: str, title: str, **kwargs) -> None:
    """One point per fine-tune: amplification of the task features against a gain, with a least-squares line."""
    import numpy as np
    import plotly.express as px

    pts = pts.dropna(subset=["amplification", y])
    fig = px.scatter(pts, x="amplification", y=y, title=title, **kwargs)
    if len(pts) >= 2 and pts.amplification.nunique() > 1:
        slope, icpt = np.polyfit(pts.amplification, pts[y], 1)
        xs = np.linspace(pts.amplification.min(), pts.amplification.max(), 20)
        fig.add_scatter(x=xs, y=slope * xs + icpt, mode="lines", name="least squares", line={"dash": "dash"})
    st.plotly_chart(fig, key=key)


def correlation_text(r, label: str = "") -> None:
    """A stored correlation row (n, pearson, spearman and their CIs) as one line; nothing below 3 points."""
    import math

    if r.n >= 3 and not math.isnan(r.pearson):
        st.markdown(f"{label}Pearson **{r.pearson:+.2f}** (95% CI {r.pearson_lo:+.2f}..{r.pearson_hi:+.2f}) · "
                    f"Spearman **{r.spearman:+.2f}** (95% CI {r.spearman_lo:+.2f}..{r.spearman_hi:+.2f}) · n = {r.n}")
    else:
        st.caption(f"{label}a correlation needs at least 3 evaluated runs.")


# -- page state in the URL (issue 16) ---------------------------------------------------------------------------
def url_synced(key: str, state_key: str, parse=str, default=None, valid=None) -> None:
    """Before the widget (or state value) ``state_key`` is drawn: take the URL's ``key`` when it changed since
    this session last saw it (someone opened a link), else keep the current value (``default`` when there is
    none). Pair with :func:`url_write` after the widget, so the address bar always links to this view.

    Args:
        parse: the URL's string to the widget's value (a value it cannot parse is ignored).
        valid: a predicate the parsed value must pass (e.g. being one of a selectbox's options).
    """
    from igds.ui.state import url_value

    seen = f"url_seen.{key}.{state_key}"
    raw = url_value(key)
    if raw is not None and raw != st.session_state.get(seen):
        st.session_state[seen] = raw
        try:
            value = parse(raw)
        except (TypeError, ValueError):
            value = None
        if value is not None and (valid is None or valid(value)):
            st.session_state[state_key] = value
            return
    if state_key not in st.session_state and default is not None:
        st.session_state[state_key] = default


def url_write(key: str, state_key: str, value) -> None:
    """Write a view's value into the URL (None removes it) and remember it as seen (see :func:`url_synced`)."""
    from igds.ui.state import set_url

    set_url(**{key: value})
    st.session_state[f"url_seen.{key}.{state_key}"] = None if value is None else str(value)


# -- the text lens ------------------------------------------------------------------------------------------------
def lens_tokens(lens, top_k, fstar=(), candidates=(), focus: int | None = None) -> None:
    """Render a :class:`igds.workflow.lens.TextLens`: each token shaded by its strongest feature's activation (or
    by ``focus``'s), its top-k features in the tooltip (★ validated, ◆ candidate), tokens whose top-k holds a
    validated feature underlined in green, uncounted tokens (BOS, sinks, template) grey.

    Args:
        top_k: ``lens.top_k(k)`` (pos, token, rank, feature, act).
    """
    from igds.workflow.lens import mark

    fstar, candidates = set(fstar), set(candidates)
    by_pos = {int(p): g.sort_values("rank") for p, g in top_k.groupby("pos")}
    values = lens.values(focus) if focus is not None else [
        float(by_pos[i].act.iloc[0]) if i in by_pos else 0.0 for i in range(len(lens.tokens))]
    vmax = max([v for v in values if v > 0], default=1.0)
    spans = []
    for i, tok in enumerate(lens.tokens):
        text = html_text(tok.replace("\r", "").replace("\n", "↵"))
        g = by_pos.get(i)
        tip = " · ".join(f"f{int(r.feature)}{mark(int(r.feature), fstar, candidates)} {r.act:.2f}"
                         for r in g.itertuples()) if g is not None else ""
        if not lens.in_scope[i]:
            spans.append(f'<span title="not counted" style="color:#9e9e9e">{text}</span>')
            continue
        a = min(1.0, max(0.0, values[i] / vmax)) if vmax else 0.0
        style = f"background: rgba(66,133,244,{a:.2f}); border-radius:3px"
        if g is not None and fstar & set(g.feature.astype(int)):
            style += "; border-bottom: 2px solid #2f9e44"
        spans.append(f'<span title="{html_text(tip)}" style="{style}">{text}</span>')
    st.markdown('<div style="font-family: monospace; white-space: pre-wrap; line-height:1.9">' + "".join(spans)
                + "</div>", unsafe_allow_html=True)


def text_lens_of(run_id: str | None, text: str | None = None, example_id: str | None = None,
                 task: str | None = None, max_length: int = STAGE_LENGTH.max_length):
    """The :class:`igds.workflow.lens.TextLens` of pasted ``text`` (rendered as ``task``'s prompt when given) or of a
    stored example, on the model and SAE of extraction run ``run_id``; the last one is kept per session, so moving
    a control does not run the model again."""
    from igds.ui import resources
    from igds.workflow.lens import encode_stored_example, encode_text, text_lens

    key = (run_id, text, example_id, task, max_length)
    cache = st.session_state.setdefault("lens.cache", {})
    if key not in cache:
        ws = resources.get_workspace(run_id)
        with st.spinner("Running the model and SAE on the text…"), resources.MODEL_LOCK:
            item = (encode_stored_example(resources.get_store(), ws.tokenizer, example_id, max_length) if example_id
                    else encode_text(ws.tokenizer, text or "", max_length, task))
            lens = text_lens(ws.model, ws.tokenizer, ws.sae, ws.site, item)
        cache.clear()
        cache[key] = lens
    return cache[key]


def live_selection_settings():
    """``(SelectionConfig, ResonanceConfig)`` of the Selection page's controls where the session has them, the
    defaults elsewhere (the live selection other pages compare against)."""
    from igds.method.resonance import ResonanceConfig
    from igds.method.selection import SelectionConfig

    ss = st.session_state
    res = {f: ss[k] for f, k in (("aggregation", "sel_agg"), ("scale", "sel_scale"), ("weights", "sel_weights"),
                                 ("direction", "sel_direction")) if ss.get(k) is not None}
    sel = {f: ss[k] for f, k in (("ratio", "sel_ratio"), ("pool_setting", "sel_pool")) if ss.get(k) is not None}
    if ss.get("sel_pool_limit") is not None:
        sel["pool_limit"] = int(ss["sel_pool_limit"])
    mode = ss.get("sel_mode", "ratio")
    if mode == "threshold" and ss.get("sel_tau") is not None:
        sel["threshold"] = float(ss["sel_tau"])
    elif mode == "token budget" and ss.get("sel_budget") is not None:
        sel["token_budget"] = int(ss["sel_budget"])
    return SelectionConfig(**sel), ResonanceConfig(**res)


def generations(status: dict) -> None:
    """A finished ``steer`` job's two generations side by side, shown as text (never rendered)."""
    out = status.get("result") or {}
    if status["state"] == "done" and "steered" in out:
        a, b = st.columns(2)
        a.markdown("**Unmodified**")
        a.text(out["base"])
        b.markdown(f"**{out['kind']} f{out['feature']}** (α = {out['alpha']:g})")
        b.text(out["steered"])
