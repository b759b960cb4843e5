"""The reproduction grid on the Results page: run or continue it, its table with intervals, and plots."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st
from plotly.subplots import make_subplots

from igds.experiment import (
    PRESETS,
    correlation_rows,
    empty_cells,
    estimate_seconds,
    experiment_points,
    experiment_provenance,
    experiments,
    format_duration,
    plan_cells,
    quartile_rows,
    results_table,
    source_table,
    verdict,
)
from igds.experiment.primary import PRIMARY_RATIO, power_plan, primary_contrasts
from igds.experiment.record import import_grid_records
from igds.ui.jobs import job_launcher
from igds.ui.widgets import amplification_scatter, correlation_text

TABLE_COLUMNS = ["pool_setting", "method", "ratio", "n_runs", "n_train", "n_dropped", "score", "score_lo", "score_hi",
                 "d_score", "d_score_lo", "d_score_hi", "verdict", "nll", "nll_lo", "nll_hi", "d_nll", "d_nll_lo",
                 "d_nll_hi", "amplification", "control_amplification"]


def experiment_launcher(store) -> None:
    """Start or continue a preset as a background job, with its time estimate."""
    name = st.segmented_control("Preset", list(PRESETS), default="quick", key="exp_preset")
    cfg = PRESETS[name or "quick"]
    cells = plan_cells(cfg)
    st.caption(f"{len(cells)} cells ({', '.join(cfg.tasks)}; {', '.join(cfg.pool_settings)}; method presets "
               f"{', '.join(cfg.method_presets)}); at most {format_duration(estimate_seconds(cfg, cells, store))} on "
               "this machine. Finished cells are reused.")
    job_launcher("experiment", {"config": cfg.to_dict(), "command": f"python -m igds experiment --preset {cfg.preset}"},
                 label=f"Run or continue the {cfg.preset} experiment", key=f"exp_{cfg.preset}",
                 help="select, fine-tune and evaluate every cell of the grid in the background")


def experiment_view(store, task: str) -> None:
    """Results of a stored experiment for one task: the method presets' F*, the table with same-size
    verdicts, per-source metrics, the quartile test and amplification vs. gain with its control."""
    import_grid_records(store, strict=False)  # the committed cells of record (cheap when nothing is new)
    xs = experiments(store)
    experiment_launcher(store)
    if xs.empty:
        st.info("No experiment yet: start one above, or run `python -m igds experiment --quick`.")
        return
    ids = xs.experiment_id.tolist()  # newest first
    demo = [i for i in ids if i.startswith("demo-")]
    exp = st.selectbox("Experiment", ids, index=ids.index(demo[0]) if demo else 0, key="exp_id",
                       format_func=lambda e: f"{e} · {int(xs.set_index('experiment_id').cells_done[e])} cells done")
    primary_view(store, exp, task)
    prov = experiment_provenance(store, exp).get(task, {})
    if prov.get("presets"):
        st.dataframe(pd.DataFrame([{"method preset": name, "candidates": p["n_candidates"], "|F*|": len(p["fstar"]),
                                    "F*": ", ".join(map(str, p["fstar"])) or "none", "intervention run": p["effect_id"]}
                                   for name, p in prov["presets"].items()]), hide_index=True, width="stretch")
    empty = empty_cells(store, exp, task)
    if not empty.empty:
        st.warning(f"{len(empty)} IGDS cells of {task} are empty: " + " ".join(empty.note.unique()))
    res = results_table(store, exp)
    res = res[res.task == task]
    if res.empty:
        st.info(f"No finished cell for {task} in {exp} yet.")
        return
    metric = res.metric.iloc[0]
    c1, c2 = st.columns(2)
    c1.metric(f"Base {metric}", f"{res.base_score.iloc[0]:.4f}")
    c2.metric("Base reference NLL", f"{res.base_nll.iloc[0]:.3f}")
    over = res[res.n_dropped > 0.01 * res.n_selected]
    if not over.empty:
        st.warning(f"{len(over)} rows dropped more than 1% of their selection as longer than the sequence length: "
                   + ", ".join(f"{r.pool_setting} {r.method}@{r.ratio:g} ({r.n_dropped:.0f})"
                               for r in over.itertuples()))
    st.caption("Mean over seeds with 95% bootstrap intervals (seeds and test items resampled); d_ columns are the "
               "paired difference to Random of the same size (same pool and ρ); no difference is drawn between sizes. "
               "Rows with one run have intervals over test items only.")
    table = res.assign(verdict=[verdict(lo, hi) for lo, hi in zip(res.d_score_lo, res.d_score_hi, strict=True)])
    st.dataframe(table[TABLE_COLUMNS], hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.4f") for c in TABLE_COLUMNS[6:]
                                if c != "verdict"})
    src = source_table(store, exp)
    src = src[src.task == task]
    if src.source.nunique() > 1:
        st.markdown(f"**Per source of the test items** ({metric}; the test sample is stratified by source)")
        st.dataframe(src.pivot_table(index=["pool_setting", "method", "ratio"], columns="source", values="score",
                                     sort=False).reset_index(), hide_index=True, width="stretch")
    y = st.segmented_control("Measure", ["score", "nll"], default="score", key="exp_measure") or "score"
    bars = res.assign(cell=res.method + "@" + res.ratio.map("{:g}".format), err_hi=res[f"{y}_hi"] - res[y],
                      err_lo=res[y] - res[f"{y}_lo"])
    st.plotly_chart(px.bar(bars, x="cell", y=y, color="pool_setting", barmode="group", error_y="err_hi",
                           error_y_minus="err_lo", title=f"{task}: {metric if y == 'score' else 'reference NLL'} "
                           "per method (95% CI)"), key="exp_bars")
    quartile_view(res)
    pts = experiment_points(store, exp)
    gain = "metric_gain" if y == "score" else "nll_gain"
    amplification_scatter(pts[pts.task == task], gain, "exp_corr", "Feature amplification vs. gain, one point per cell",
                          color="method", symbol="pool_setting", hover_data=["ratio", "seed", "run_id"])
    corr = correlation_rows(store, exp)
    for r in corr[(corr.task == task) & (corr.y_name.str.startswith(gain))].itertuples():
        correlation_text(r, f"{r.x_name} · {r.subset}" + (f" · partial {r.partial}" if r.partial else "") + ": ")


def primary_view(store, exp: str, task: str) -> None:
    """The pre-registered primary contrast first (``docs/preregistration.md``): IGDS − Random in reference NLL over
    seed means, its interval, Holm's p and the variance components; then the power planner those components feed."""
    st.subheader("Primary contrast (pre-registered)")
    prim = primary_contrasts(store, exp, tasks=(task,))
    row = prim.iloc[0]
    if row.verdict == "not yet run":
        st.caption(f"IGDS − Random at ρ = {PRIMARY_RATIO:g} on the task-only pool needs at least 2 seeds per arm in "
                   f"this experiment ({int(row.n_seeds_igds)} and {int(row.n_seeds_random)} so far): not yet run. "
                   "The design and its analysis are fixed in docs/preregistration.md.")
        return
    st.dataframe(prim.drop(columns=["task"]), hide_index=True, width="stretch")
    st.caption(f"IGDS − Random in mean reference NLL over {int(row.n_items)} test items (lower is better), a Welch "
               f"t-interval over seed means; Holm across the pre-registered tasks. Verdict: **{row.verdict}**. The "
               "detectable effect is a planning figure (80% power), never a bound on the effect.")
    with st.expander("Power planner: seeds per arm for a target difference"):
        sd = float(max(row.seed_sd_igds, row.seed_sd_random))
        target = st.number_input("Target |IGDS − Random| (nats)", min_value=0.001, max_value=1.0, value=0.02,
                                 step=0.005, format="%.3f", key="exp_target")
        plan = power_plan(sd, targets=(target,), n_seeds=int(min(row.n_seeds_igds, row.n_seeds_random)))
        need = plan.seeds_needed.iloc[0]
        st.metric("Seeds per arm needed", "more than 200" if pd.isna(need) else int(need))
        st.caption(f"At the measured seed-mean spread ({sd:.4f} nats, the larger arm's) and 80% power, two-sided "
                   f"0.05; the seeds run so far detect {plan.target.iloc[-1]:.4f} nats.")


def quartile_view(res: pd.DataFrame) -> None:
    """The controlled test: gain and amplification (with the control set's) by FRS quartile, Random dashed."""
    q = quartile_rows(res)
    if q.empty:
        return
    st.markdown("**The controlled test: FRS quartiles of the task-only pool at a fixed size** (q1 = most resonant)")
    base = float(q.base_score.iloc[0])
    blocks = q[q.quartile > 0]
    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"{q.metric.iloc[0]} gain over base (95% CI)",
                                                        "amplification: F* and the control set"))
    fig.add_scatter(x=blocks.method, y=blocks.score - base, mode="lines+markers", name="gain",
                    error_y={"array": blocks.score_hi - blocks.score, "arrayminus": blocks.score - blocks.score_lo},
                    row=1, col=1)
    fig.add_scatter(x=blocks.method, y=blocks.amplification, mode="lines+markers", name="F*", row=1, col=2)
    fig.add_scatter(x=blocks.method, y=blocks.control_amplification, mode="lines+markers", name="control",
                    marker={"symbol": "circle-open"}, row=1, col=2)
    rnd = q[q.quartile == 0]
    if not rnd.empty:
        fig.add_hline(y=float(rnd.score.iloc[0]) - base, line_dash="dash", row=1, col=1, annotation_text="Random")
        fig.add_hline(y=float(rnd.amplification.iloc[0]), line_dash="dash", row=1, col=2, annotation_text="Random")
    st.plotly_chart(fig, key="exp_quartiles")
