"""Reusable Streamlit widgets: notices, token highlights, tables."""

from __future__ import annotations

import html

import streamlit as st


def token_highlights(tokens: list[str], values: list[float], vmax: float | None = None) -> None:
    """Render tokens with a background whose opacity follows a feature's activation."""
    vmax = vmax or max([v for v in values if v > 0], default=1.0)
    spans = []
    for t, v in zip(tokens, values, strict=True):
        a = min(1.0, max(0.0, v / vmax)) if vmax else 0.0
        title = f"{v:.2f}" if v > 0 else ""
        spans.append(f'<span title="{title}" style="background: rgba(255,140,0,{a:.2f}); border-radius:3px">'
                     f"{html.escape(t)}</span>")
    st.markdown('<div style="font-family: monospace; white-space: pre-wrap; line-height:1.7">'
                + "".join(spans) + "</div>", unsafe_allow_html=True)


def _token_span(token: str, value: float, vmax: float, counted: bool, is_max: bool) -> str:
    text = html.escape(token.replace("\r", "").replace("\n", "↵"))
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
        label = html.escape(f"#{int(r['rank']) + 1} · {float(r['max_act']):.2f} · {r['task']} · {r['example_id']}")
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
