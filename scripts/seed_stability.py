"""F* across SAE seeds on the default model: the shipped SAE (seed 0) against one trained with the same recipe and
seed 1 (``python -m igds sae train --sae-train-seed 1``).

Usage: python scripts/seed_stability.py --other cache/saes/trained-... [--tasks summarization translation]

For each task, the second SAE goes through the same extraction (probe, dev and reference items), recall and
interventions (the ``default`` method preset, its null included) as the shipped one did; then each SAE's
candidates and F* are matched to the other's by decoder cosine (``igds.method.checks.decoder_match``) and the
F* overlap is printed both ways. The shipped SAE's candidates get a ``seed_match`` check in the store (the
Features page's "unstable across seeds" badge).
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--other", required=True, help="folder of the seed-1 SAE")
    ap.add_argument("--tasks", nargs="+", default=["summarization", "translation", "math"])
    args = ap.parse_args()

    from igds.data.corpus import reference_set
    from igds.executor.extract import extract_here
    from igds.method.checks import SEED_MATCH, CheckConfig, decoder_match
    from igds.method.config import ExtractConfig
    from igds.method.presets import method_preset
    from igds.modeling.config import SaeSpec
    from igds.modeling.encoding import encode_examples
    from igds.progress import tqdm_progress
    from igds.store import ActivationStore
    from igds.workflow.catalog import task_split
    from igds.workflow.checks import fstar_overlap
    from igds.workflow.stages import latest_effects, prepare_method
    from igds.workflow.workspace import BootstrapConfig, open_workspace

    store = ActivationStore()
    cfg = CheckConfig()
    preset = method_preset("default")
    ws_a = open_workspace(BootstrapConfig(), store)
    ws_b = open_workspace(BootstrapConfig(sae=SaeSpec(source=args.other)), store)
    ecfg = ExtractConfig()
    examples, seen = [], set()
    for task in args.tasks:
        items = [*task_split(store, task, "probe"), *task_split(store, task, "dev"), *reference_set(10**9, task=task)]
        for ex in items:
            if ex.id not in seen:
                seen.add(ex.id)
                examples.append(ex)
    run_b = ws_b.extraction_run_id(ecfg)
    store.start_run(run_b, "extract", {"extract": ecfg.to_dict(), "site": ws_b.site}, ws_b.model_key, ws_b.sae_key,
                    n_total=len(examples))
    extract_here(store, run_b, ws_b.model, ws_b.sae, ws_b.site, encode_examples(ws_b.tokenizer, examples,
                                                                                   ecfg.max_length),
                   ecfg, ws_b.tokenizer.pad_token_id, tqdm_progress())
    out = {}
    for task in args.tasks:
        eff_a = latest_effects(store, task)
        eff_b = prepare_method(ws_b, task, preset, ecfg, tqdm_progress())
        cand_a = sorted(int(f) for f in eff_a.summary.feature.unique())
        cand_b = sorted(int(f) for f in eff_b.summary.feature.unique())
        a_to_b = decoder_match(ws_a.sae, ws_b.sae, cand_a, cfg.match_threshold)
        b_to_a = decoder_match(ws_b.sae, ws_a.sae, cand_b, cfg.match_threshold)
        store.add_feature_checks(ws_a.sae_key, SEED_MATCH, a_to_b.assign(
            detail=[{**d, "other_sae": ws_b.sae_info["name"]} for d in a_to_b.detail]))
        cand_match = fstar_overlap(cand_a, cand_b, a_to_b, cfg.match_threshold)
        out[task] = {
            "fstar_seed0": eff_a.kept, "fstar_seed1": eff_b.kept,
            "fstar_0_in_1": fstar_overlap(eff_a.kept, eff_b.kept, a_to_b, cfg.match_threshold),
            "fstar_1_in_0": fstar_overlap(eff_b.kept, eff_a.kept, b_to_a, cfg.match_threshold),
            "candidates_stable_0_to_1": int((~a_to_b.flagged).sum()), "n_candidates_0": len(cand_a),
            "candidates_0_among_candidates_1": cand_match["n_found"],
            "median_best_cosine_0_to_1": float(a_to_b.value.median()),
        }
        print(task, json.dumps(out[task]))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
