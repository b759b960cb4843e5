"""The reproduction grid on the Results page: run or continue it, its table with intervals, and plots."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from igds.experiment import (
    PRESETS,
    correlation_rows,
    empty_cells,
    estimate_seconds,
    experiment_id,
    experiment_points,
    experiments,
    format_duration,
    plan_cells,
    results_table,
)
from igds.ui.jobs import job_launcher
from igds.ui.widgets import amplification_scatter, correlation_text

TABLE_COLUMNS = ["pool_setting", "method", "ratio", "n_runs", "n_train", "score", "score_lo", "score_hi", "d_score",
                 "d_score_lo", "d_score_hi", "nll", "nll_lo", "nll_hi", "d_nll", "d_nll_lo", "d_nll_hi",
                 "amplification"]


def experiment_launcher(store) -> None:
    """Start or continue a preset as a background job, with its time estimate."""
    name = st.segmented_control("Preset", list(PRESETS), default="quick", key="exp_preset")
    cfg = PRESETS[name or "quick"]
    cells = plan_cells(cfg)
    st.caption(f"{len(cells)} cells ({', '.join(cfg.tasks)}; {', '.join(cfg.pool_settings)}); at most "
               f"{format_duration(estimate_seconds(cfg, cells, store))} on this machine. Finished cells are reused.")
    job_launcher("experiment", {"config": cfg.to_dict(), "command": f"python -m igds experiment --preset {cfg.preset}"},
                 label=f"Run or continue the {cfg.preset} experiment", key=f"exp_{cfg.preset}",
                 help="select, fine-tune and evaluate every cell of the grid in the background")


def experiment_view(store, task: str) -> None:
    """Results of a stored experiment for one task: table, methods plot, amplification vs. gain."""
    xs = experiments(store)
    experiment_launcher(store)
    if xs.empty:
        st.info("No experiment yet: start one above, or run `python -m igds experiment --quick`.")
        return
    default = experiment_id(PRESETS["demo"])
    ids = xs.experiment_id.tolist()
    exp = st.selectbox("Experiment", ids, index=ids.index(default) if default in ids else 0, key="exp_id",
                       format_func=lambda e: f"{e} · {int(xs.set_index('experiment_id').cells_done[e])} cells done")
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
    st.caption("Mean over seeds with 95% bootstrap intervals (seeds and test items resampled); d_ columns are the "
               "paired difference to Random at the same pool.")
    st.dataframe(res[TABLE_COLUMNS], hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.4f") for c in TABLE_COLUMNS[5:]})
    y = st.segmented_control("Measure", ["score", "nll"], default="score", key="exp_measure") or "score"
    bars = res.assign(cell=res.method + "@" + res.ratio.map("{:g}".format), err_hi=res[f"{y}_hi"] - res[y],
                      err_lo=res[y] - res[f"{y}_lo"])
    st.plotly_chart(px.bar(bars, x="cell", y=y, color="pool_setting", barmode="group", error_y="err_hi",
                           error_y_minus="err_lo", title=f"{task}: {metric if y == 'score' else 'reference NLL'} "
                           "per method (95% CI)"), key="exp_bars")
    pts = experiment_points(store, exp)
    gain = "metric_gain" if y == "score" else "nll_gain"
    amplification_scatter(pts[pts.task == task], gain, "exp_corr", "Feature amplification vs. gain, one point per cell",
                          color="method", symbol="pool_setting", hover_data=["ratio", "seed", "run_id"])
    corr = correlation_rows(store, exp)
    for r in corr[(corr.task == task) & corr.y_name.str.startswith(gain)].itertuples():
        correlation_text(r, f"{r.y_name}: ")
