"""Does the shipped SAE reconstruct positions it never saw in training? It was trained on examples cut at 256 tokens;
extraction and interventions now read examples whole (no cut). This compares the SAE's explained variance on the
content tokens before position 256 with those at 256 and beyond, over every shipped task example longer than 256
tokens (probe, dev, train, test), and over a same-size sample of positions < 256 from the same examples.

Usage: ``python bench/sae_positions.py`` (the default model and SAE, offline). Prints both figures, the drop, and
whether it exceeds 0.05 (the threshold that calls for retraining the shipped recipe on uncut examples).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extract import cpu_class  # noqa: E402  (bench/extract.py, beside this script)

from igds.data.corpus import load_corpus  # noqa: E402
from igds.modeling.batching import scope_positions  # noqa: E402
from igds.modeling.encoding import encode_examples  # noqa: E402
from igds.modeling.hooks import run_until  # noqa: E402
from igds.modeling.sae import reconstruction_quality  # noqa: E402
from igds.scope import UNCUT  # noqa: E402
from igds.workflow.workspace import BootstrapConfig, open_workspace  # noqa: E402

CUT = 256


@torch.no_grad()
def main() -> int:
    t0 = time.perf_counter()
    ws = open_workspace(BootstrapConfig())
    examples = load_corpus(["math", "summarization", "translation"])
    items = [it for it in encode_examples(ws.tokenizer, examples, UNCUT) if len(it.input_ids) > CUT]
    early, late = [], []
    for it in items:
        h = run_until(ws.model, ws.site, torch.tensor([it.input_ids]))[0].float()
        pos = torch.tensor(scope_positions(it, "content"))
        pos = pos[pos > 0]
        early.append(h[pos[pos < CUT]])
        late.append(h[pos[pos >= CUT]])
    early_t, late_t = torch.cat(early), torch.cat(late)
    q_early, q_late = reconstruction_quality(ws.sae, early_t), reconstruction_quality(ws.sae, late_t)
    drop = q_early["explained_variance"] - q_late["explained_variance"]
    print(f"CPU class: {cpu_class()}; {len(items)} shipped examples longer than {CUT} tokens "
          f"(longest {max(len(it.input_ids) for it in items)}); {time.perf_counter() - t0:.0f} s")
    print(f"explained variance, content positions < {CUT}: {q_early['explained_variance']:.4f} "
          f"({len(early_t)} tokens); >= {CUT}: {q_late['explained_variance']:.4f} ({len(late_t)} tokens)")
    print(f"drop {drop:+.4f}; retrain the shipped recipe on uncut examples: "
          f"{'yes' if drop > 0.05 else 'no'} (threshold 0.05)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
