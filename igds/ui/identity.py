"""The Data page's model and SAE section: the workspace's current choice, a new one from a local folder, the hub,
the sae-lens registry or *train one*, validated (and, for *train one*, trained) by a background job of kind
``identity``, which makes it the workspace's when it passes. Nothing heavy runs in the server process.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from igds import jobs, settings
from igds.modeling.config import ModelSpec, SaeSpec, SaeTrainConfig
from igds.ui.data import show_exception, show_flash
from igds.ui.jobs import job_view, just_finished, newest_job
from igds.ui.widgets import md_text


@st.cache_data(show_spinner="Loading the sae-lens registry…", max_entries=8)
def registry(model: str, release: str) -> pd.DataFrame:
    """The sae-lens pretrained SAEs for a model (offline: the registry ships with sae-lens)."""
    from igds.modeling.pretrained import pretrained_saes

    return pretrained_saes(model=model, release=release).drop(columns=["path"], errors="ignore")


def _model_input():
    """The model chosen in the form, as a spec, and its name for the registry filter."""

    kinds = ["default", "folder"] + ([] if settings.offline() else ["hub"])
    labels = {"default": "default (SmolLM2-135M-Instruct)", "folder": "local folder", "hub": "hub id"}
    kind = st.radio("Model source", kinds, format_func=labels.get, key="id_model_kind", horizontal=True,
                    help=None if "hub" in kinds else "hub models need IGDS_OFFLINE=0")
    if kind == "folder":
        path = st.text_input("Model folder", key="id_model_path", placeholder="/path/to/hf-model").strip()
        return (ModelSpec(name_or_path=path) if path else None), Path(path).name
    if kind == "hub":
        hub_id = st.text_input("Hub model id", key="id_model_hub", placeholder="google/gemma-2-2b").strip()
        return (ModelSpec(name_or_path=hub_id) if hub_id else None), hub_id
    return ModelSpec(), ""


def _sae_input() -> str:
    """The SAE source string chosen in the form ('' while incomplete)."""

    labels = {"default": "default (shipped)", "folder": "local sae-lens folder", "release": "sae-lens release::id",
              "train": "train one"}
    kind = st.radio("SAE source", list(labels), format_func=labels.get, key="id_sae_kind", horizontal=True)
    if kind == "folder":
        return st.text_input("SAE folder", key="id_sae_path", placeholder="/path/to/sae (cfg.json + weights)").strip()
    if kind == "release":
        return st.text_input("sae-lens release::id", key="id_sae_release",
                             placeholder="gpt2-small-res-jb::blocks.8.hook_resid_pre",
                             help="or pick a row of the registry below").strip()
    if kind == "train":
        base = SaeTrainConfig()
        t1, t2, t3 = st.columns(3)
        layer = t1.number_input("Layer", 0, 512, base.layer, key="id_train_layer",
                                help="residual stream after this block")
        width = t2.number_input("Width (d_sae)", 16, 1 << 20, base.d_sae, key="id_train_width")
        k = t3.number_input("k (active latents)", 1, 4096, base.k, key="id_train_k")
        st.caption("Trained once on the corpus texts for this model and recipe (minutes on a CPU), then reused.")
        return f"train:{int(layer)}:{int(width)}:{int(k)}"
    return "default"


def _registry_browser(model_name: str) -> None:
    """A registry table; selecting a row fills the SAE source with its ``release::id``."""
    if not st.toggle("Browse the sae-lens registry", key="id_registry",
                     help="pretrained SAEs sae-lens knows (offline list; loading one needs IGDS_OFFLINE=0)"):
        return
    release = st.text_input("Release contains", key="id_reg_release", placeholder="res-jb").strip()
    df = registry(model_name, release)
    sources = list(df.source)

    def fill() -> None:
        rows = st.session_state["id_registry_table"]["selection"]["rows"]
        if rows and rows[0] < len(sources):
            st.session_state["id_sae_kind"] = "release"
            st.session_state["id_sae_release"] = sources[rows[0]]

    st.caption(f"{len(df):,} SAEs" + (f" for models matching {md_text(model_name)}" if model_name else "")
               + ". Select a row to use its source.")
    st.dataframe(df, key="id_registry_table", hide_index=True, width="stretch", height=300,
                 on_select=fill, selection_mode="single-row")


IDENTITY_JOB = "identity"  # the job kind that validates (and, for a ``train`` source, first trains) and uses


def identity_section(store, task: str) -> None:
    """The workspace's model and SAE: the current choice, and a new one validated (an SAE of source ``train``
    trained first) by a background job, which makes it the workspace's when it passes."""
    from igds.workflow.workspace import model_spec_record, workspace_config

    st.subheader("Model and SAE")
    show_flash("identity")
    cfg = workspace_config(store)
    st.markdown(f"Current: model **{md_text(cfg.model.name_or_path)}** · SAE **{md_text(cfg.sae.source)}**")
    m_col, s_col = st.columns(2)
    with m_col:
        model, model_name = _model_input()
    with s_col:
        source = _sae_input()
        min_ev = st.number_input("Minimum explained variance", 0.0, 1.0, SaeSpec().min_explained_variance, 0.05,
                                 key="id_min_ev", help="refuse an SAE reconstructing less on the task's tokens")
    _registry_browser(model_name)
    st.caption(f"Validating loads both, checks the SAE's width and hook site against the model and measures the "
               f"explained variance on the probe items of the sidebar task ({md_text(task)}). It runs as a "
               "background job (training an SAE first for *train one*); the workspace switches when it passes.")
    latest = newest_job(IDENTITY_JOB)
    busy = "a validation job is still running" if latest and latest["state"] in jobs.LIVE else ""
    missing = "a model folder or id" if model is None else ("an SAE source" if not source else "")
    blocked = missing and f"give {missing}" or busy
    if st.button("Validate and use", key="id_use", type="primary", disabled=bool(blocked),
                 help=f"Disabled: {blocked}" if blocked else "starts a background job; you can leave this page"):
        try:
            sae = SaeSpec(source=source, min_explained_variance=float(min_ev))
            jobs.start_job(IDENTITY_JOB, {"model": model_spec_record(model), "sae": sae.to_dict(), "task": task})
        except ValueError as exc:
            show_exception(exc)
        else:
            st.rerun()
    identity_job_panel()


def identity_job_panel() -> None:
    """The newest validation job, live: its progress, then the model and SAE it made the workspace's (the pages'
    cached model is dropped then) or why it refused them."""
    from igds.ui.resources import get_workspace

    @st.fragment(run_every=2.0)
    def panel() -> None:
        status = newest_job(IDENTITY_JOB)
        if status is None:
            return
        running = status["state"] in jobs.LIVE
        head, cancel = st.columns([4, 1])
        if running and cancel.button("Cancel", key="id_job_cancel"):
            jobs.cancel_job(status["job_id"])
            st.rerun()
        job_view(status, "Validate and use", head=head)
        res = status.get("result") if status["state"] == "done" else None
        if res:
            st.success(_identity_message(res))
        elif status["state"] in ("failed", "dead", "cancelled"):
            st.caption("Not used: the workspace keeps its model and SAE.")
        if just_finished(status):
            get_workspace.clear()  # pages load the new identity
            st.rerun(scope="app")

    panel()


def _identity_message(res: dict) -> str:
    q = res.get("quality") or {}
    ev = (f"explained variance **{q['explained_variance']:.3f}** on {md_text(q.get('task', ''))}'s content tokens "
          f"({q.get('n_examples', 0)} probe items)") if q.get("explained_variance") is not None else "no EV measured"
    return (f"Now using **{md_text(res['model'])}** + SAE **{md_text(res['sae'])}** at {md_text(res['site'])} "
            f"(d_model {res['d_model']}, d_sae {res['d_sae']}): {ev}.")
