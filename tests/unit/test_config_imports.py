"""Configs live in modules that import no torch: importing one is cheap, so imports can sit at the top of files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from igds.method.config import ExtractConfig, InterventionConfig, RecallConfig
from igds.modeling.config import ModelSpec, SaeSpec, SaeTrainConfig
from igds.training.config import EvalConfig
from igds.workflow.config import HighlightConfig

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "peft", "sae_lens")
CONFIG_MODULES = ("igds.method.config", "igds.modeling.config", "igds.training.config", "igds.workflow.config")


@pytest.mark.parametrize("module", CONFIG_MODULES)
def test_a_config_module_imports_no_heavy_library_and_is_fast(module):
    code = (f"import sys, time, json; t = time.perf_counter(); import {module}; dt = time.perf_counter() - t; "
            f"print(json.dumps({{'seconds': dt, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"import {module}: {got['seconds'] * 1000:.1f} ms")
    assert got["heavy"] == []
    assert got["seconds"] < 2


# Stage keys of the default configs, computed before the configs moved out of their stage modules: they are the
# keys of existing stores' runs (ExtractConfig and InterventionConfig of every workspace's first runs), so the
# class names, fields, defaults and to_dict of a config must not change when it moves.
DEFAULT_KEYS = {
    ExtractConfig: "e0c1c66b1a70006d",  # max_length 512, dropped not cut (issue 27)
    InterventionConfig: "11d705a1344f98f3",  # the powered filter (issue 27)
    RecallConfig: "e5af54e66362421c",
    ModelSpec: "f48863032e538184",
    SaeSpec: "e918301ad1bf135a",
    SaeTrainConfig: "b6fc9f6b5eafd5e6",
    EvalConfig: "b753abeaf2be163b",
    HighlightConfig: "e975c1da3e721dd5",
}


@pytest.mark.parametrize("cls", list(DEFAULT_KEYS), ids=lambda c: c.__name__)
def test_the_stage_key_of_a_default_config_is_unchanged(cls):
    assert cls().stage_key("m", "s") == DEFAULT_KEYS[cls]
