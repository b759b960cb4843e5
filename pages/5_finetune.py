"""Export & fine-tune: export a stored selection, launch LoRA fine-tuning as a job, watch the loss."""

import plotly.express as px
import streamlit as st

from igds.config import field_help
from igds.jobs import read_metrics
from igds.method.selection import composition, load_selection
from igds.method.vetting import vetting_lineage
from igds.settings import resolve_device
from igds.training.export import EXPORT_FORMATS, ExportConfig, default_export_name, export_selection
from igds.training.finetune import FinetuneConfig
from igds.training.results import finetune_runs
from igds.ui.jobs import job_launcher, needs_or_waiting
from igds.ui.resources import get_store
from igds.ui.state import current_task
from igds.ui.widgets import md_text
from igds.workflow.explore import task_state
from igds.workflow.tune import default_finetune_config, selection_examples

task = current_task()
store = get_store()
st.title(f"Export & fine-tune · {task}")
sels = task_state(store, task).selections
if sels.empty:
    needs_or_waiting("No stored selection yet: save one on the Selection page (or run 'igds select').",
                     ("bootstrap", "select"), task, "the stored selections")
    st.stop()
label = {r.selection_id: f"{r.name} · {r.selection_id[:8]} · {r.method} · {r.n_selected}/{r.n_pool} ({r.pool_setting})"
         for r in sels.itertuples()}
sid = st.selectbox("Selection", list(label), format_func=label.get, key="ft_selection")
info, members = load_selection(store, sid)
c1, c2 = st.columns(2)
c1.caption(f"**Composition** of selection `{sid}`: examples by task, source and split")
c1.json(composition(members), expanded=False)
c2.caption("**Lineage**: the settings and runs the selection was made from (the export's manifest keeps it)")
c2.json(info["lineage"], expanded=False)

st.subheader("Export")
if st.session_state.get("exp_name_of") != sid or "exp_name" not in st.session_state:  # never the last one's
    st.session_state["exp_name"], st.session_state["exp_name_of"] = default_export_name(info["name"], sid), sid
e1, e2, e3 = st.columns([2, 1, 1])
name = e1.text_input("Export name", key="exp_name", help="a folder under <home>/exports; by default the "
                     "selection's name and id. A folder holding another selection's export is never replaced.")
fmt = e2.selectbox("Format", EXPORT_FORMATS, key="exp_fmt",
                   help="jsonl / parquet / hf: records with prompt and response; messages and prompt_completion: "
                        "chat JSONL that TRL's SFTTrainer reads; alpaca and sharegpt: LLaMA-Factory files with "
                        "their dataset_info.json")
if e3.button("Export", key="exp_go"):
    try:
        _, examples = selection_examples(store, sid)
        lineage = vetting_lineage(store, sid, {"selection_id": sid, "name": info["name"], "method": info["method"],
                                               **info["lineage"]})  # as the CLI's export, + vetting decisions
        res = export_selection(examples, lineage, ExportConfig(name=name, fmt=fmt))
        again = " (the same selection and content were there already: rewritten)" if res.unchanged else ""
        st.success(f"Exported {res.n_examples} examples of selection `{sid}` to {md_text(res.path)} "
                   f"(manifest.json beside them){again}")
    except ValueError as e:
        st.error(md_text(e))

st.subheader("Fine-tune (LoRA)")
base = default_finetune_config()
device = resolve_device("auto")
st.caption(f"Device: **{device}** · profile **{base.profile}** (bf16 where the hardware has it). "
           "The job trains, then evaluates base and adapter on the test split and records the amplification.")
f1, f2, f3, f4 = st.columns(4)
hint = lambda name: field_help(FinetuneConfig, name)  # noqa: E731 - help text written once, in the config
r = f1.number_input("LoRA r", 1, 256, base.r, key="ft_r", help=hint("r"))
alpha = f2.number_input("LoRA α", 1, 512, base.lora_alpha, key="ft_alpha", help=hint("lora_alpha"))
lr = f3.number_input("Learning rate", 1e-6, 1e-2, base.learning_rate, format="%.1e", key="ft_lr",
                     help=hint("learning_rate"))
epochs = f4.number_input("Epochs", 0.1, 10.0, float(base.epochs), key="ft_epochs", help=hint("epochs"))
modules = st.multiselect("Target modules", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                            "down_proj"], list(base.target_modules), key="ft_modules")
cfg = FinetuneConfig.from_dict({**base.to_dict(), "r": int(r), "lora_alpha": int(alpha), "learning_rate": float(lr),
                                "epochs": float(epochs), "target_modules": modules})


def loss_curve(status: dict) -> None:
    points = read_metrics(status["job_id"], "loss")
    if points:
        st.plotly_chart(px.line(points, x="step", y="value", title="Training loss", labels={"value": "loss"}),
                        key=f"loss_{status['job_id']}_{len(points)}")


job_launcher("finetune", {"selection_id": sid, "finetune": cfg.to_dict()}, label=f"Fine-tune on {info['name']}",
             key="ft_job", help="LoRA on this selection, then evaluation (resumable)", render=loss_curve)

st.subheader("Fine-tunes of this selection")
st.caption("Examples longer than the run's max length are dropped and counted, never cut.")
ft_runs = finetune_runs(store, sid)
if ft_runs.empty:
    st.caption("none yet")
for run in ft_runs.itertuples():
    line = f"`{run.run_id}` · {run.status} · trained on {run.n_train} examples · {run.dropped}"
    if run.warn:
        st.warning(f"{line} (more than 1% of the selection)")
    else:
        st.caption(line)
