"""Reload a stored fine-tune's adapter with peft onto a freshly loaded base model and re-evaluate it
on the same test examples; prints the stored and the recomputed metric and NLL.

Usage: python scripts/verify_adapter.py <run_id>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peft import PeftModel  # noqa: E402

from igds.data.corpus import test_set  # noqa: E402
from igds.data.tasks import get_task  # noqa: E402
from igds.modeling.load import ModelSpec, load_model  # noqa: E402
from igds.store import ActivationStore  # noqa: E402
from igds.training.evaluate import EvalConfig, evaluate_model  # noqa: E402


def main(run_id: str) -> None:
    store = ActivationStore()
    ft = store.query_df("SELECT task, adapter_path FROM finetunes WHERE run_id = ?", [run_id])
    ev = store.query_df("SELECT eval_id, score, nll, n, config FROM evals WHERE run_id = ? "
                        "ORDER BY created DESC LIMIT 1", [run_id])
    if ft.empty or ev.empty:
        raise SystemExit(f"no evaluated fine-tune {run_id!r}")
    cfg = EvalConfig.from_dict(json.loads(ev.config.iloc[0]))
    model, tok = load_model(ModelSpec())
    model = PeftModel.from_pretrained(model, ft.adapter_path.iloc[0]).eval()
    task = ft.task.iloc[0]
    # exactly the examples the stored evaluation scored (its sample, whichever rule drew it)
    scored = set(store.eval_outputs(ev.eval_id.iloc[0]).example_id)
    examples = [ex for ex in test_set(task) if ex.id in scored]
    res = evaluate_model(model, tok, get_task(task), examples, cfg)
    print(f"{run_id} ({task}, n={len(examples)}): stored {res['metric']} {ev.score.iloc[0]:.6f} / NLL "
          f"{ev.nll.iloc[0]:.6f}; reloaded {res['score']:.6f} / NLL {res['nll']:.6f}")


if __name__ == "__main__":
    main(sys.argv[1])
