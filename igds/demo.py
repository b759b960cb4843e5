"""Tiny, download-free stand-ins shared by the tests: a random Llama from a config, a byte-level
tokenizer with a chat template, and a seeded sae-lens TopK SAE."""

from __future__ import annotations

from pathlib import Path

import torch

from igds.method.config import ExtractConfig, InterventionConfig
from igds.training.config import EvalConfig

# The tiny workspace's filter: keep any candidate whose amplification lowers the dev NLL (no test), over a small
# null that is measured and shown; nothing on a random tiny model beats a real null, and the pages need an F*.
DEMO_INTERVENTION = InterventionConfig(require_significance=False, delta=0.0, null_features=8, null_placed=1,
                                       looks=(), dev_items=0, min_fired=2)

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer(chat_template: bool = True):
    """A byte-level BPE tokenizer with no merges (every byte is a token) plus chat special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    for special in ("<|im_start|>", "<|im_end|>"):
        vocab[special] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  pad_token="<|im_end|>")
    if chat_template:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_model(n_layers: int = 4, hidden: int = 32, seed: int = 0, vocab_size: int = 260):
    """A random ``LlamaForCausalLM`` with ~50k parameters (no download)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).eval()
    model.igds_name = "tiny-llama"
    return model


def tiny_gpt2(n_layers: int = 2, hidden: int = 32, seed: int = 0, vocab_size: int = 260):
    """A random ``GPT2LMHeadModel`` (a second model family: fused ``c_attn``, learned positions, no download)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab_size, n_embd=hidden, n_layer=n_layers, n_head=4, n_positions=512,
                     bos_token_id=256, eos_token_id=257)
    model = GPT2LMHeadModel(cfg).eval()
    model.igds_name = "tiny-gpt2"
    return model


def save_tiny_model(path: Path, family: str = "llama", **kwargs) -> Path:
    """Write a tiny random model (``llama`` or ``gpt2``) with :func:`tiny_tokenizer` as a Hugging Face folder,
    the shape of a user's own local model."""
    model = (tiny_gpt2 if family == "gpt2" else tiny_model)(**kwargs)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def tiny_sae(d_in: int = 32, d_sae: int = 128, k: int = 8, layer: int = 1, seed: int = 0,
             hook: str = "hook_resid_post"):
    """A seeded sae-lens ``TopKSAE`` reading ``blocks.{layer}.{hook}``."""
    from sae_lens import TopKSAE, TopKSAEConfig

    torch.manual_seed(seed)
    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k, dtype="float32", device="cpu"))
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        sae.b_dec.zero_()
    sae.cfg.metadata.hook_name = f"blocks.{layer}.{hook}"
    sae.requires_grad_(False)
    return sae


def save_tiny_sae(path: Path, **kwargs) -> Path:
    """Write :func:`tiny_sae` as a sae-lens folder (``cfg.json`` + ``sae_weights.safetensors``)."""
    sae = tiny_sae(**kwargs)
    path.mkdir(parents=True, exist_ok=True)
    sae.save_model(str(path))
    return path


def build_tiny_workspace(store, task: str = "summarization", n_train: int = 120, n_general: int = 120,
                         n_candidates: int = 8, seed: int = 0, with_runs: bool = False,
                         interventions=None, n_probe: int | None = 48) -> dict:
    """A small but complete workspace on the tiny random model: real corpus examples, extraction,
    recall, interventions, logit lens — every store table the dashboard reads, in seconds.

    ``interventions`` (an ``InterventionConfig``) replaces the default filter, e.g. one no feature passes.
    ``n_probe`` probe examples are extracted (None: the whole probe split, which the method presets'
    recall reads).

    Returns:
        keys of what was built (run ids, model/SAE keys, the tiny model objects).
    """
    from igds.data.corpus import dev_set, load_corpus, probe_set, test_set
    from igds.executor.extract import extract_here
    from igds.executor.intervene import measure_here
    from igds.method.recall import RecallConfig, ensure_logit_lens, recall_features
    from igds.modeling.encoding import encode_examples

    model, tok = tiny_model(), tiny_tokenizer()
    sae = tiny_sae(d_in=model.config.hidden_size, layer=1, seed=seed)
    site = "blocks.1.hook_resid_post"
    probe, dev = probe_set(task)[:n_probe], dev_set(task)[:24]
    train = [e for e in load_corpus([task], ["train"])][:n_train]
    general = [e for e in load_corpus(["general"])][:n_general]
    examples = [*probe, *dev, *train, *general]
    store.add_examples([*examples, *test_set(task)], dataset="tiny-demo")  # test items: evaluated, never extracted
    model_key, sae_key = "tiny-model", "tiny-sae"
    store.register_model(model_key, {"name": "tiny-llama", "family": "llama", "n_layers": 4, "d_model": 32,
                                     "n_params": sum(p.numel() for p in model.parameters())})
    store.register_sae(sae_key, {"name": "tiny-sae", "source": "demo", "site": site, "d_in": 32,
                                 "d_sae": int(sae.cfg.d_sae), "architecture": "topk"},
                       {"explained_variance": 0.8, "l0": 8.0, "dead_fraction": 0.0, "ce_recovered": 0.9})
    ecfg = ExtractConfig(max_length=96, shard_size=256)
    run_id = ecfg.stage_key(model_key, sae_key)
    store.start_run(run_id, "extract", {"extract": ecfg.to_dict(), "site": site}, model_key, sae_key,
                    n_total=len(examples))
    items = encode_examples(tok, examples, ecfg.max_length)
    extract_here(store, run_id, model, sae, site, items, ecfg, tok.pad_token_id)
    ensure_logit_lens(store, sae_key, model, tok, sae)
    rcfg = RecallConfig(min_freq=0.05, dense_ref=1.0, k_recall=n_candidates)
    recall = recall_features(store, run_id, task, [e.id for e in probe], [e.id for e in general[:64]], rcfg)
    # a demo filter (effect > 0, no test): on a random tiny model no feature beats the null, and the pages
    # need an F* to show; a small null is still measured and shown
    icfg = interventions or DEMO_INTERVENTION
    effect_id = icfg.stage_key(recall.recall_id, model_key, sae_key)
    store.start_run(effect_id, "intervene", {"intervene": icfg.to_dict(), "task": task,
                                             "recall_id": recall.recall_id}, model_key, sae_key,
                    n_total=len(recall.candidates))
    from igds.workflow.stages import candidates_of

    res = measure_here(store, effect_id, model, sae, site, encode_examples(tok, dev, 96),
                       candidates_of(recall, int(sae.cfg.d_sae)), icfg, tok.pad_token_id)
    out = {"run_id": run_id, "recall_id": recall.recall_id, "effect_id": effect_id, "kept": res.kept,
           "model_key": model_key, "sae_key": sae_key, "model": model, "tokenizer": tok, "sae": sae, "site": site}
    if with_runs:
        out["runs"] = _tiny_runs(store, task, out)
    return out


def _tiny_runs(store, task: str, ws: dict) -> list[str]:
    """Two stored selections (IGDS and Random, task-only, 50%), each LoRA-tuned for a few steps and
    evaluated with amplification, so the fine-tune and results views have real rows."""
    import tempfile

    from igds.executor.pool import Loaded
    from igds.method.resonance import ResonanceConfig
    from igds.method.selection import SelectionConfig, save_selection, select_from_ranking
    from igds.training.batches import data_max_length
    from igds.training.finetune import FinetuneConfig, train_lora
    from igds.training.results import BASE_RUN, record_finetune
    from igds.workflow.stages import latest_effects, lineage, live_selection
    from igds.workflow.tune import EvalTarget, Measured, evaluate_and_record, selection_examples

    effects = latest_effects(store, task)
    sp, _ = live_selection(store, ws["run_id"], task, effects, SelectionConfig(pool_setting="task-only"),
                           ResonanceConfig())
    ranked = sp.scores.rename(columns={"frs": "score"})
    sel_ids = []
    for method, order in (("igds", ranked), ("random", ranked.sample(frac=1.0, random_state=0))):
        cfg = SelectionConfig(method=method, pool_setting="task-only")
        chosen = select_from_ranking(order, cfg, n_pool=len(ranked))
        lin = lineage(store, ws["run_id"], cfg, ranked.example_id, {"method": method, "features": effects.kept})
        sel_ids.append(save_selection(store, f"{method}-tiny", task, method, "task-only", len(ranked), chosen, lin))
    ev = EvalConfig(n_examples=12, max_new_tokens=8, batch_size=12)
    evaluate_and_record(store, EvalTarget(BASE_RUN, Loaded(ws["model"], ws["tokenizer"], ws["sae"], ws["site"]),
                                          ws["model_key"], ws["sae_key"]), task, ev, Measured(effects.kept))
    runs = []
    for i, sid in enumerate(sel_ids):
        _, examples = selection_examples(store, sid)
        # fitted to the data (capped at 512 byte tokens): the longer examples are dropped and counted
        ft = FinetuneConfig(r=4, lora_alpha=8, target_modules=("q_proj", "v_proj"), max_steps=2 + i, batch_size=4,
                            max_length=data_max_length(ws["tokenizer"], examples[:16]), precision="fp32", seed=i)
        model = tiny_model()  # a fresh base per run: peft injects LoRA layers in place
        run_id = f"ft-tiny-{i}"
        res = train_lora(model, ws["tokenizer"], examples[:16], ft, tempfile.mkdtemp(), resume=False)
        record_finetune(store, run_id, task, res, ft.to_dict(), sid, ws["model_key"])
        evaluate_and_record(store, EvalTarget(run_id, Loaded(res.model, ws["tokenizer"], ws["sae"], ws["site"]),
                                              ws["model_key"], ws["sae_key"]), task, ev, Measured(effects.kept))
        runs.append(run_id)
    return runs


def write_own_data_file(path: Path, n_rows: int = 2000, n_probe: int = 128, n_dev: int = 32, n_test: int = 64,
                        seed: int = 0) -> Path:
    """A researcher's own file, made from the shipped corpus: chat ``messages`` rows (content only, no
    instruction) with a ``split`` column. Package descriptions → synopses give the probe / dev / test items
    and half of the ``train`` rows; general instruction data gives the other half of the pool.

    Used by the own-data bench and the slow test as a stand-in for an upload.
    """
    import json
    import random

    from igds.data.corpus import load_corpus

    rng = random.Random(seed)
    task = [e for e in load_corpus(["summarization"]) if e.split != "reference"]
    general = load_corpus(["general"], ["train"])
    rng.shuffle(task)
    rng.shuffle(general)
    n_eval = n_probe + n_dev + n_test
    n_pool = n_rows - n_eval
    picked = [(e, s) for e, s in zip(task, ["probe"] * n_probe + ["dev"] * n_dev + ["test"] * n_test, strict=False)]
    picked += [(e, "train") for e in task[n_eval: n_eval + n_pool // 2]]
    picked += [(e, "train") for e in general[: n_rows - len(picked)]]
    rng.shuffle(picked)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for e, split in picked:
            row = {"messages": [{"role": "user", "content": e.prompt}, {"role": "assistant", "content": e.response}],
                   "split": split, "source": e.source}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
