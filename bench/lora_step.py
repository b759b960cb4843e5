"""LoRA step time of ``igds.training.finetune.train_lora`` against plain peft + the Hugging Face Trainer.

Usage: python bench/lora_step.py [--steps 12] [--rounds 2] [--batch 8]

Both train the default model (dtype auto) with the CPU profile's LoRA (r=16 on q/k/v/o) on the same
batch of summarization examples, repeated every step, with the same precision. The plain run uses
``get_peft_model`` + ``Trainer`` + ``DataCollatorForSeq2Seq`` and no checkpoints or callbacks of ours;
ours adds response-only labels, progress callbacks, per-step logging and length grouping. Rounds
alternate (plain, ours, plain, ours, ...) so that drift of the machine hits both. Prints the median step
time of each (first steps excluded as warm-up) and their ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time

from igds.data.corpus import task_pool
from igds.modeling.load import ModelSpec, load_model
from igds.settings import resolve_device
from igds.training.batches import encode_for_training
from igds.training.finetune import FinetuneConfig, resolve_precision, train_lora

WARMUP = 3


def step_times(stamps: list[float]) -> list[float]:
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)][WARMUP - 1:]


def run_ours(examples, cfg: FinetuneConfig) -> list[float]:
    model, tok = load_model(ModelSpec())
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as d:
        train_lora(model, tok, examples, cfg, d, progress=lambda done, total, msg: stamps.append(time.perf_counter())
                   if "loss" not in msg else None, resume=False)
    return step_times(stamps)


def run_plain(examples, cfg: FinetuneConfig) -> list[float]:
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments, set_seed

    model, tok = load_model(ModelSpec())
    rows, _ = encode_for_training(tok, examples, cfg.max_length)
    set_seed(cfg.seed)
    peft_model = get_peft_model(model, LoraConfig(r=cfg.r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.dropout,
                                                  target_modules=list(cfg.target_modules), task_type="CAUSAL_LM"))
    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    device = resolve_device("auto")
    bf16 = resolve_precision(cfg.precision, device) == "bf16"
    with tempfile.TemporaryDirectory() as d:
        args = TrainingArguments(output_dir=d, per_device_train_batch_size=cfg.batch_size, max_steps=cfg.max_steps,
                                 learning_rate=cfg.learning_rate, bf16=bf16,
                                 use_cpu=not device.startswith("cuda"), save_strategy="no", report_to="none",
                                 disable_tqdm=True, remove_unused_columns=False)
        Trainer(model=peft_model, args=args, train_dataset=rows, callbacks=[Stamp()],
                data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)).train()
    return step_times(stamps)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    examples = sorted(task_pool("summarization", "task-only"), key=lambda e: e.id)[: args.batch]
    cfg = dataclasses.replace(FinetuneConfig.cpu_profile(), max_steps=args.steps, batch_size=args.batch,
                              save_steps=10 * args.steps, logging_steps=1)
    plain, ours = [], []
    for r in range(args.rounds):
        plain += run_plain(examples, cfg)
        ours += run_ours(examples, cfg)
        print(f"round {r + 1}: plain median {statistics.median(plain):.3f} s/step, "
              f"ours median {statistics.median(ours):.3f} s/step")
    p, o = statistics.median(plain), statistics.median(ours)
    print(f"same batch of {args.batch} x <= {cfg.max_length} tokens, {len(plain)} + {len(ours)} timed steps: "
          f"plain peft + Trainer {p:.3f} s/step, igds.train_lora {o:.3f} s/step, ratio {o / p:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
