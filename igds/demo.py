"""Tiny, download-free stand-ins shared by the tests: a random Llama from a config, a byte-level
tokenizer with a chat template, and a seeded sae-lens TopK SAE."""

from __future__ import annotations

from pathlib import Path

import torch

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


def tiny_sae(d_in: int = 32, d_sae: int = 128, k: int = 8, layer: int = 1, seed: int = 0):
    """A seeded sae-lens ``TopKSAE`` reading ``blocks.{layer}.hook_resid_post``."""
    from sae_lens import TopKSAE, TopKSAEConfig

    torch.manual_seed(seed)
    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k, dtype="float32", device="cpu"))
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        sae.b_dec.zero_()
    sae.cfg.metadata.hook_name = f"blocks.{layer}.hook_resid_post"
    sae.requires_grad_(False)
    return sae


def save_tiny_sae(path: Path, **kwargs) -> Path:
    """Write :func:`tiny_sae` as a sae-lens folder (``cfg.json`` + ``sae_weights.safetensors``)."""
    sae = tiny_sae(**kwargs)
    path.mkdir(parents=True, exist_ok=True)
    sae.save_model(str(path))
    return path
