"""The only reader of environment variables; resolves workspace paths and the compute device."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def home() -> Path:
    """Workspace root holding the store, models, SAEs and run folders (``IGDS_HOME``, default ``cache/``)."""
    return Path(os.environ.get("IGDS_HOME", REPO_ROOT / "cache")).resolve()


def data_dir() -> Path:
    """Folder with the shipped demo corpus (``IGDS_DATA``, default ``data/`` in the repository)."""
    return Path(os.environ.get("IGDS_DATA", REPO_ROOT / "data")).resolve()


def store_path() -> Path:
    """Path of the DuckDB activation store (``IGDS_STORE``, default ``<home>/igds.duckdb``)."""
    return Path(os.environ.get("IGDS_STORE", home() / "igds.duckdb")).resolve()


def shard_location() -> str | None:
    """Where a new store keeps its activation shards (``IGDS_SHARDS``; None: ``shards/`` next to the store file).

    A local folder (made absolute here) or an object-storage URI (``s3://bucket/prefix``, ``gs://...``), which
    needs DuckDB's ``httpfs`` extension (see :mod:`igds.store.shards`). A store records its location when it is
    created; a different value on a later open is refused.
    """
    value = os.environ.get("IGDS_SHARDS", "").strip()
    if not value:
        return None
    return value if "://" in value else str(Path(value).expanduser().resolve())


def records_dir() -> Path | None:
    """Folder of the committed results of record a workspace imports when it opens (``IGDS_RECORDS``, default
    ``results/filter/`` in the repository; ``off`` turns the import off). See :mod:`igds.store.record`."""
    value = os.environ.get("IGDS_RECORDS", "").strip()
    if value.lower() in ("off", "0", "none", "false"):
        return None
    return Path(value).expanduser().resolve() if value else REPO_ROOT / "results" / "filter"


def grid_records_dir() -> Path | None:
    """Folder of the committed grid cells of record (``IGDS_GRID_RECORDS``, default ``results/grid/``; None when
    ``IGDS_RECORDS=off``). See :mod:`igds.experiment.record`."""
    if records_dir() is None:
        return None
    value = os.environ.get("IGDS_GRID_RECORDS", "").strip()
    return Path(value).expanduser().resolve() if value else REPO_ROOT / "results" / "grid"


def offline() -> bool:
    """True unless ``IGDS_OFFLINE=0``: the default path never touches a model or dataset hub."""
    return os.environ.get("IGDS_OFFLINE", "1") != "0"


def apply_offline_env() -> None:
    """Tell huggingface libraries not to reach the hub when running offline."""
    if offline():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def user_name() -> str | None:
    """Who is vetting, recorded with each vetting decision (``IGDS_USER``; None when unset)."""
    return os.environ.get("IGDS_USER", "").strip() or None


JOB_DEAD_AFTER_S = 15.0  # default: a running job whose heartbeat (every 2 s) is older than this has stopped beating


def job_dead_after_s() -> float:
    """Seconds without a heartbeat after which a running job reads ``stalled`` or ``dead`` (``IGDS_JOB_DEAD_AFTER_S``).

    Its process still alive: ``stalled`` (stopped, swapping); gone: ``dead``. Jobs beat every 2 s, so a value
    much below 5 s makes a busy machine's healthy jobs read ``stalled``.
    """
    raw = os.environ.get("IGDS_JOB_DEAD_AFTER_S", "").strip()
    if not raw:
        return JOB_DEAD_AFTER_S
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):  # also refuses nan
        raise ValueError(f"IGDS_JOB_DEAD_AFTER_S={raw!r}: give a positive number of seconds")
    return value


def requested_device() -> str:
    """Device requested through ``IGDS_DEVICE`` (default ``auto``)."""
    return os.environ.get("IGDS_DEVICE", "auto")


@lru_cache
def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 instructions (avx512_bf16 / amx), where bf16 runs fast.

    ``IGDS_CPU_BF16=0`` (or ``1``) overrides the check: e.g. to run a bf16 machine as the float32 class does.
    """
    forced = os.environ.get("IGDS_CPU_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def fast_bf16_by_default(device: str) -> bool:
    """The precision of record: whether ``auto`` computes in bf16 on ``device``. Only on CUDA. Every CPU computes
    the results of record (extraction, recall, interventions, FRS, fine-tunes and their evaluations) in float32,
    whether or not it has bf16 instructions, so F*, selections and grid cells from CPUs of both classes are the
    same and pool. bf16 on a CPU is there when asked for by name (``--dtype bfloat16``, ``precision bf16``)."""
    return device.startswith("cuda")


def resolve_device(device: str = "auto") -> str:
    """Turn ``auto`` into ``cuda`` when available, else ``mps`` (Apple silicon, where torch has it; float32, the
    precision of record), else ``cpu``."""
    if device == "auto":
        device = requested_device()
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"
