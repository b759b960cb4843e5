"""The Features page's feature panel (Neuronpedia / SAEDashboard level): badges, the effect against the null and its
dose–response, veto / pin, label and note, top-activating contexts, logit lens, activation density, examples from
several activation quantiles and a highlighted example. Page state (feature, example) lives in the URL."""

from __future__ import annotations

import getpass

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from igds.ui.widgets import example_text, md_text, page_link_url, url_synced, url_write

FEATURE_KEY = "feat_id"
EXAMPLE_KEY = "feat_example"
LINK_PROBLEM = "feat.link_problem"  # why the link's ?feature= names no feature (the input is left empty)
_LABEL_REMOVE = "feat.label_remove"  # (sae_key, feature) whose label an empty save would remove, awaiting confirmation
NUMBER_COLUMNS = ("freq_task", "freq_ref", "lift", "mean_act_task", "amp_effect", "abl_effect", "q_value", "p_fitted",
                  "rank_p", "attribution", "tok_freq_task", "tok_freq_ref")


def table_config() -> dict:
    """Column settings of the features table."""
    config = {c: st.column_config.NumberColumn(format="%.3f") for c in NUMBER_COLUMNS}
    config["contexts"] = st.column_config.TextColumn(help="Max tokens of the top-activating contexts (×n: repeated)")
    config["stability"] = st.column_config.NumberColumn(
        format="%.2f", help="Share of 200 bootstrap resamples of the dev items in which the feature stays in F*")
    config["label"] = st.column_config.TextColumn(help="Your label (set it in the feature panel below)")
    config["token_detector"] = st.column_config.CheckboxColumn(
        help="Token-injection check: fires on reference texts once its top tokens are inserted")
    config["seed_stable"] = st.column_config.CheckboxColumn(
        help="Cross-seed check: an SAE trained with another seed has a matching feature")
    return config


def filter_table(table, query: str):
    """Rows whose feature id equals ``query`` or whose promoted tokens, context tokens or label contain it."""
    if not query:
        return table
    hit = table.feature.astype(str).eq(query)
    for col in ("promotes", "contexts", "label"):
        if col in table:
            hit |= table[col].fillna("").astype(str).str.contains(query, case=False, regex=False)
    return table[hit]


def _check_link(d_sae: int | None) -> None:
    """A link's ``feature`` that names no feature of the SAE (``?feature=abc``, ``?feature=999999`` past its width)
    empties the feature input and leaves a message (:data:`LINK_PROBLEM`) instead of showing another feature."""
    from igds.ui.state import url_value
    from igds.workflow.explore import feature_link_problem

    raw, seen = url_value("feature"), f"url_seen.feature.{FEATURE_KEY}"
    if raw is None:  # the link was dropped (e.g. another task picked): so is what was said about it
        st.session_state.pop(LINK_PROBLEM, None)
    if raw is None or raw == st.session_state.get(seen):
        return
    if problem := feature_link_problem(raw, d_sae):
        st.session_state[seen] = raw  # url_synced leaves it alone
        st.session_state[LINK_PROBLEM] = problem
        st.session_state[FEATURE_KEY] = None
    else:
        st.session_state.pop(LINK_PROBLEM, None)


def pick_feature(table, shown, d_sae: int | None = None) -> int | None:
    """The feature number input, following (in this order) a row clicked in the table, a link's ``feature`` and the
    last value; opens on the first validated feature. Writes the choice into the URL. None (the input empty) after
    a link that names no feature of the SAE (``d_sae`` wide), until the user picks one."""
    picked = st.session_state.get("feat_table", {}).get("selection", {}).get("rows", [])
    row = int(shown.feature.iloc[picked[0]]) if picked and len(shown) > picked[0] else None
    if row is not None and row != st.session_state.get("feat_table_row"):
        st.session_state[FEATURE_KEY] = row
        st.session_state.pop(LINK_PROBLEM, None)
    st.session_state["feat_table_row"] = row
    _check_link(d_sae)
    kept = table[table.verdict == "kept"] if "verdict" in table else table.iloc[:0]
    first = int((kept if len(kept) else table).feature.iloc[0])  # open on a validated feature when there is one
    current = st.session_state.get(FEATURE_KEY)
    if current is not None and d_sae is not None and current >= d_sae:  # a wider SAE's feature (another task)
        st.session_state[FEATURE_KEY] = first
    url_synced("feature", FEATURE_KEY, parse=int, default=first,
               valid=lambda f: f >= 0 and (d_sae is None or f < d_sae))
    value = st.number_input("Feature", min_value=0, max_value=d_sae - 1 if d_sae else None, step=1, key=FEATURE_KEY,
                            placeholder="a feature number", on_change=st.session_state.pop, args=(LINK_PROBLEM, None))
    if value is None:
        return None  # the address bar keeps the link as it was opened
    url_write("feature", FEATURE_KEY, int(value))
    return int(value)


def _override(store, task: str, sae_key: str | None, feature: int, action: str | None) -> None:
    """Veto / Pin / Clear callback: stored before the rerun, so the counts and the Selection page follow at once."""
    from igds.method.selection import set_feature_override
    from igds.ui.ways_on import FLASH

    set_feature_override(store, task, sae_key, feature, action)
    st.session_state[FLASH] = {"pin": f"Pinned f{feature}: the Selection page scores the pool with it now",
                               "veto": f"Vetoed f{feature}: the Selection page leaves it out now",
                               None: f"Cleared f{feature}'s veto or pin"}[action]


def header(store, task: str, state, table, feature: int | None) -> None:
    """Title, badges (verdict, F*, pinned / vetoed, feature checks, label), the effect figures and the veto / pin
    buttons; for no feature (a link naming none), why, with the buttons disabled."""
    from igds.method.selection import load_overrides
    from igds.ui.ways_on import flash
    from igds.workflow.explore import feature_badges

    flash()
    if feature is None:
        st.header("Feature")
        problem = st.session_state.get(LINK_PROBLEM)
        st.warning((f"The link's {md_text(problem)}. " if problem else "")
                   + "No feature is shown: pick one in the table or type its number.", icon=":material/link_off:")
        for col, label in zip(st.columns(6)[:3], ("Veto", "Pin", "Clear"), strict=True):
            col.button(label, key=f"feat_{label.lower()}", disabled=True)
        return
    st.header(f"Feature {feature}")
    row = table[table.feature == feature]
    r = row.iloc[0] if len(row) else None
    ov = load_overrides(store, task, state.sae_key)
    action = "pin" if feature in ov.pinned_features else "veto" if feature in ov.vetoed_features else None
    badges = []
    if r is not None and "verdict" in row:
        badges.append(":green-badge[★ validated (F*)]" if r.verdict == "kept" else f":gray-badge[{r.verdict}]")
    elif r is None:
        badges.append(":gray-badge[not a candidate of this task]")
    if action:
        badges.append(":violet-badge[pinned: the selection scores with it]" if action == "pin" else
                      ":red-badge[vetoed: the selection leaves it out]")
    badges += [f":orange-badge[{b}]" for b in feature_badges(store, state.sae_key, feature)]
    if r is not None and r.get("label"):
        badges.append(f":blue-badge[{md_text(r.label)}]")
    st.markdown(" ".join(badges))
    left, right = st.columns(2)
    if r is not None and "amp_effect" in row:
        stability = f" · **stability** {r.stability:.2f}" if "stability" in row else ""
        left.markdown(f"**Amplification effect** {r.amp_effect:+.4f} nats "
                      f"(95% CI {r.amp_ci_low:+.4f}..{r.amp_ci_high:+.4f}) · "
                      f"**attribution estimate** {r.attribution:+.4f} · **ablation** {r.abl_effect:+.4f} · "
                      f"**verdict** {r.verdict}{stability}")
    b1, b2, b3 = right.columns(3)
    for col, label, act in ((b1, "Veto", "veto"), (b2, "Pin", "pin"), (b3, "Clear", None)):
        col.button(label, key=f"feat_{label.lower()}", disabled=act == action, on_click=_override,
                   args=(store, task, state.sae_key, feature, act))


def effect_chart(store, task: str, feature: int) -> None:
    """The feature's α = 1 amplification and ablation effects (95% CI) against the null's elements and cut, and its
    dose–response when it was swept."""
    from igds.workflow.explore import feature_effect

    eff = feature_effect(store, task, feature)
    if eff is None:
        st.caption("No intervention effect measured for this feature (only the task's recall candidates are).")
        return
    q = f"fitted null p{100 * eff['null_level']:g}"
    fig = go.Figure()
    for kind in ("amplify", "ablate"):
        if (r := eff[kind]) is not None:
            fig.add_trace(go.Scatter(x=[f"f{feature} {kind}"], y=[r["effect"]], mode="markers", name=kind,
                                     marker={"size": 12, "color": "#2f9e44" if eff["kept"] else "#495057"},
                                     error_y={"type": "data", "symmetric": False, "array": [r["ci_high"] - r["effect"]],
                                              "arrayminus": [r["effect"] - r["ci_low"]]}))
    null = eff["null"]
    for kind, color in (("direction", "#868e96"), ("feature", "#f08c00"), ("placed", "#1c7ed6")):
        part = null[null.kind == kind] if len(null) else null
        if len(part):
            fig.add_trace(go.Box(x=[f"null: {kind}s"] * len(part), y=part.effect, name=f"null ({kind}s)",
                                 boxpoints="all", jitter=0.5, marker_color=color))
    if len(null):
        fig.add_hline(y=eff["null_cut"], line_dash="dash", line_color="#e03131",
                      annotation_text=f"{q} {eff['null_cut']:+.4f}")
    fig.update_layout(title="Effect on dev NLL (nats, 95% CI) against the null", showlegend=False,
                      xaxis_type="category")
    left, right = st.columns(2)
    left.plotly_chart(fig, key="feat_effect")
    if eff["swept"]:
        dose = px.line(eff["dose"], x="alpha", y="effect", error_y=eff["dose"].ci_high - eff["dose"].effect,
                       markers=True, title=f"Dose–response of f{feature} (amplification α)")
        if len(null):
            dose.add_hline(y=eff["null_cut"], line_dash="dash", line_color="#e03131", annotation_text=f"{q} (α=1)")
        right.plotly_chart(dose, key="feat_dose")
    else:
        right.caption("Dose–response: this feature was measured at α = 1 only (the strongest candidates are swept).")


def label_form(store, sae_key: str | None, feature: int) -> None:
    """The feature's label and note (one per SAE feature, shared by every task), saved in the workspace. Saving
    both empty removes them, after a confirmation."""
    labels = store.feature_labels(sae_key, [feature])
    cur = labels.iloc[0] if len(labels) else None
    c1, c2 = st.columns([1, 2])
    c1.text_input("Label", value=cur.label if cur is not None else "", key=f"feat_label_{feature}",
                  placeholder="e.g. package names")
    c2.text_area("Note", value=(cur.note or "") if cur is not None else "", key=f"feat_note_{feature}",
                 height=68)
    st.button("Save label and note", key="feat_label_save", on_click=_save_label,
              args=(store, sae_key, feature, f"feat_label_{feature}", f"feat_note_{feature}"))
    if cur is not None and st.session_state.get(_LABEL_REMOVE) == (sae_key, feature):
        st.warning(f"Both fields are empty: this removes the label “{md_text(cur.label)}” and the note of feature "
                   f"{feature} for every task.", icon=":material/delete:")
        b1, b2 = st.columns(2)
        b1.button("Remove label and note", key="feat_label_remove", type="primary", on_click=_remove_label,
                  args=(store, sae_key, feature))
        b2.button("Keep them", key="feat_label_keep", on_click=st.session_state.pop, args=(_LABEL_REMOVE, None))
    if cur is not None:
        st.caption(f"saved by {md_text(cur.author or 'unknown')} · {cur.updated:%Y-%m-%d %H:%M}")


def _author() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _save_label(store, sae_key: str | None, feature: int, label_key: str, note_key: str) -> None:
    """Before the rerun the click starts, so the whole page shows the saved label. Empty fields over a stored label
    ask for a confirmation instead of removing it."""
    label, note = st.session_state.get(label_key, ""), st.session_state.get(note_key, "")
    if not (label or "").strip() and not (note or "").strip() and len(store.feature_labels(sae_key, [feature])):
        st.session_state[_LABEL_REMOVE] = (sae_key, feature)
        return
    st.session_state.pop(_LABEL_REMOVE, None)
    store.set_feature_label(sae_key, feature, label, note, _author())


def _remove_label(store, sae_key: str | None, feature: int) -> None:
    st.session_state.pop(_LABEL_REMOVE, None)
    store.set_feature_label(sae_key, feature, "", "", _author())


def density(store, run_id: str, feature: int) -> None:
    """Share of examples and tokens the feature fires on; per-example token density and max activation."""
    from igds.workflow.explore import feature_density

    d = feature_density(store, run_id, feature)
    per = d["examples"]
    c1, c2, c3 = st.columns(3)
    c1.metric("Examples it fires on", f"{d['example_share']:.2%}", help=f"{len(per):,} of {d['n_examples']:,}")
    c2.metric("Tokens it fires on", f"{d['token_share']:.3%}",
              help=f"{int(per.n_active.sum()):,} of {d['n_tokens']:,} kept tokens")
    c3.metric("Mean activation where it fires", f"{per.mean_act.mean():.2f}" if len(per) else "–")
    if per.empty:
        st.caption("The feature fires on no example of this run.")
        return
    left, right = st.columns(2)
    left.plotly_chart(px.histogram(per, x="density", color="task", nbins=40, barmode="overlay",
                                   title="Activation density: share of an example's tokens it fires on"),
                      key="feat_density")
    right.plotly_chart(px.histogram(per, x="max_act", color="task", nbins=40, barmode="overlay",
                                    title="Max activation per example where it fires"), key="feat_hist")


def quantiles(store, task: str, run_id: str, feature: int) -> None:
    """Two examples from each of the top, 90th, 75th and 50th percentile of the per-example max activation;
    clicking one highlights it below."""
    from igds.workflow.explore import quantile_examples

    q = quantile_examples(store, run_id, feature)
    if q.empty:
        st.caption("No example to show.")
        return
    q = q.assign(lens=[page_link_url("lens", task=task, example=e) for e in q.example_id])
    cols = ["interval", "position", "example_id", "max_act", "mean_act", "n_active", "task", "source", "prompt", "lens"]
    st.caption(f"Of the {int(q.n.iloc[0]):,} examples it fires on, ranked by max activation (position 0 = strongest); "
               "click a row to highlight it.")
    event = st.dataframe(q[cols], hide_index=True, width="stretch", key=f"feat_quant_{feature}", on_select="rerun",
                         selection_mode="single-row", column_config={
                             "max_act": st.column_config.NumberColumn(format="%.2f"),
                             "mean_act": st.column_config.NumberColumn(format="%.2f"),
                             "lens": st.column_config.LinkColumn(display_text="text lens")})
    rows = event.selection.rows if event else []
    eid = q.example_id.iloc[rows[0]] if rows else None
    if eid is not None and eid != st.session_state.get(f"feat_quant_row_{feature}"):
        st.session_state[EXAMPLE_KEY] = eid
    st.session_state[f"feat_quant_row_{feature}"] = eid


def highlighted_example(store, task: str, run_id: str, feature: int) -> None:
    """The example a link or a click points at: its stored activation of this feature, its text and (on demand)
    the feature's token activations on it."""
    from igds.ui.widgets import show_token_highlights
    from igds.workflow.explore import example_activation

    url_synced("example", EXAMPLE_KEY)
    eid = st.session_state.get(EXAMPLE_KEY)
    url_write("example", EXAMPLE_KEY, eid)
    if not eid:
        return
    st.subheader("Highlighted example")
    try:
        ex = example_activation(store, run_id, eid, feature)
    except ValueError:
        st.warning(f"No example {md_text(repr(eid))} in this workspace.")
        return
    where = f"rank {ex['rank']:,} of the examples it fires on" if ex["rank"] else "it does not fire here"
    st.markdown(f"**{md_text(eid)}** · {md_text(ex['task'])} · {md_text(ex['source'])} · max activation "
                f"**{ex['max_act']:.2f}** ({where}) · fires on {ex['n_active']} tokens · "
                f"[open in the text lens]({page_link_url('lens', task=task, example=eid)})")
    with st.expander("Prompt and response", expanded=not ex["n_active"]):
        example_text(ex["prompt"], ex["response"])
    if st.toggle("Token activations of this feature (runs the model)", key="feat_ex_tokens"):
        show_token_highlights(ex, [feature], run_id=run_id)
    if st.button("Clear highlighted example", key="feat_ex_clear"):
        st.session_state[EXAMPLE_KEY] = None
        url_write("example", EXAMPLE_KEY, None)
        st.rerun()


def quick_look(store, task: str, state) -> None:
    """The first run's quick look while the full filter has not decided F*: the strongest candidates' α = 1 effects
    against a small null, with the detectable effect, labelled as the preview it is."""
    from igds.workflow.stages import latest_quick_look

    if state.effect_status == "done" or (look := latest_quick_look(store, task)) is None:
        return
    cfg = look.config
    with st.container(border=True):
        st.markdown(f"**Quick look (a preview: feeds no F\\*, ranking or selection).** α = 1 amplification of the "
                    f"{len(look.table)} strongest candidates by attribution on {look.n_items} dev items, against a "
                    f"small null of {len(look.null)} random edits of the same size; the full filter "
                    "(every candidate, α sweep, ablation, a larger null and the test) decides F\\*.")
        st.markdown(f"**Detectable effect** ±{look.detectable:.4f} nats: the smallest mean effect these dev items "
                    f"would show with {cfg.power:.0%} power at a two-sided {cfg.level:.0%} level, a planning figure, "
                    "not a bound: an effect inside it is not evidence of none.")
        st.dataframe(look.table.rename(columns={"beyond_null": "above every null edit"}), hide_index=True,
                     width="stretch", column_config={c: st.column_config.NumberColumn(format="%+.4f") for c in
                                                     ("attribution", "effect", "ci_low", "ci_high", "detectable")})
        null = look.null.effect
        st.caption(f"Small null: effects {null.min():+.4f} … {null.max():+.4f} nats (median {null.median():+.4f}).")


def power(store, task: str, state) -> None:
    """The filter's power for the task: dev items, testable candidates, the smallest detectable effect; so an empty
    F* reads "nothing that large" or "cannot tell", never a bare "none"."""
    from igds.workflow.explore import latest_effects

    if not state.n_measured:
        return
    res = latest_effects(store, task)
    st.caption(f"Filter power: {res.power_line}. Candidates below the detectable size are not ruled out; "
               "\"untestable\" rows fire on too few dev items to test and are not rejections.")


def contexts_caption(table, state) -> None:
    """How many candidates have their top-activating contexts cached (a first run computes them right after recall)."""
    n = int(table.contexts.notna().sum()) if "contexts" in table else 0
    st.caption(f"Candidates with their top contexts cached: {n} of {state.n_candidates} (the contexts column).")
