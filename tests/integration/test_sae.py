import pytest
import torch

from igds.demo import save_tiny_sae
from igds.modeling.load import ModelLoadError, ModelSpec, load_model
from igds.modeling.sae import SaeError, SaeSpec, SaeTrainConfig, check_quality, check_sae_fits, load_sae, train_sae
from tests.helpers import make_items, tiny_setup


def test_sae_model_width_mismatch_names_both_shapes(tmp_path):
    model, _, _ = tiny_setup()
    save_tiny_sae(tmp_path / "wide", d_in=48)
    sae, info = load_sae(SaeSpec(source=str(tmp_path / "wide")))
    with pytest.raises(SaeError, match=r"d_in=48.*d_model=32"):
        check_sae_fits(sae, model, info.site)


def test_sae_site_out_of_range(tmp_path):
    model, _, _ = tiny_setup()
    save_tiny_sae(tmp_path / "deep", layer=9)
    sae, info = load_sae(SaeSpec(source=str(tmp_path / "deep")))
    with pytest.raises(SaeError, match="out of range"):
        check_sae_fits(sae, model, info.site)


def test_missing_sae_folder_and_bad_source(tmp_path):
    with pytest.raises(SaeError, match="cfg.json is missing"):
        load_sae(SaeSpec(source=str(tmp_path)))
    with pytest.raises(SaeError, match="neither"):
        load_sae(SaeSpec(source="no/such/thing"))
    with pytest.raises(SaeError, match="offline"):
        load_sae(SaeSpec(source="gemma-scope-2b-pt-res::layer_12/width_16k/average_l0_82"))


def test_default_sae_is_shipped_and_verified(tmp_path, monkeypatch):
    import shutil

    from igds.modeling.sae import default_sae_dir, file_sha256

    shipped = default_sae_dir()
    sae, info = load_sae(SaeSpec())
    assert info.quality["positions"] == "content" and info.quality["config"]["max_length"] >= 256
    assert (shipped / "SHA256SUMS").read_text().split()[0] == file_sha256(shipped / "cfg.json")
    # a copy with one flipped byte in the weights is refused, naming the file
    data = tmp_path / "data"
    shutil.copytree(shipped.parent, data / "sae")
    monkeypatch.setenv("IGDS_DATA", str(data))
    weights = default_sae_dir() / "sae_weights.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(SaeError, match="sae_weights.safetensors: sha256 .* differs"):
        load_sae(SaeSpec())
    shutil.rmtree(default_sae_dir())
    with pytest.raises(SaeError, match="git checkout"):
        load_sae(SaeSpec())


def test_missing_model_path_is_clear(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(ModelSpec(name_or_path=str(tmp_path / "nope")))
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(ModelSpec(name_or_path=str(tmp_path)))
    with pytest.raises(ModelLoadError, match="offline"):
        load_model(ModelSpec(name_or_path="someorg/somemodel"))


def test_local_model_folder_roundtrip(tmp_path):
    model, tok, _ = tiny_setup()
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded, ltok = load_model(ModelSpec(name_or_path=str(tmp_path / "m"), dtype="float32", device="cpu"))
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, model(ids).logits, atol=1e-6)
    assert ltok.chat_template == tok.chat_template


def test_train_sae_writes_saelens_folder_with_quality(tmp_path):
    model, tok, _ = tiny_setup()
    items = make_items(tok, repeat=12)
    cfg = SaeTrainConfig(layer=1, d_sae=64, k=4, n_tokens=3000, epochs=2, batch_size=256, dead_tokens=1000)
    q = train_sae(model, items[:-8], items[-8:], cfg, tmp_path / "sae", tok.pad_token_id)
    for k in ("l0", "explained_variance", "dead_fraction", "ce_recovered", "ce_clean", "ce_sae"):
        assert k in q
    # trained and measured on content tokens only; the quality names its scope and held-out texts
    assert q["positions"] == "content" and q["holdout_texts"] == 8
    content_tokens = sum(len(it.input_ids) - 1 for it in items[:-8])  # everything but the BOS template token
    assert q["train_tokens"] <= content_tokens
    from igds.modeling.sae import verify_checksums
    assert len(verify_checksums(tmp_path / "sae")) == 64
    assert q["l0"] <= 4 + 1e-6
    assert 0 < q["explained_variance"] <= 1
    sae, info = load_sae(SaeSpec(source=str(tmp_path / "sae")))
    assert info.site == "blocks.1.hook_resid_post" and info.d_sae == 64
    assert info.quality["explained_variance"] == pytest.approx(q["explained_variance"])
    check_sae_fits(sae, model, info.site)
    with pytest.raises(SaeError, match="explains only"):
        check_quality(info, SaeSpec(source=str(tmp_path / "sae"), min_explained_variance=1.01))


# ----------------------------------------------------------------------------- trained SAEs keyed by their recipe

TINY_RECIPE = dict(d_sae=32, k=4, n_tokens=1500, epochs=1, batch_size=256, dead_tokens=500, holdout_examples=4)


def tiny_texts(n: int = 20):
    """(train, holdout) Example objects for :func:`ensure_trained_sae` on the tiny model."""
    from igds.data.records import Example
    from tests.helpers import TEXTS

    exs = [Example(f"e{i}", "general", "t", "train", f"{TEXTS[i % len(TEXTS)]} ({i})", TEXTS[(i + 3) % len(TEXTS)], {})
           for i in range(n)]
    return exs[4:], exs[:4]


def hold_lock_in_subprocess(out_dir, then_move=None):
    """A child process that takes the SAE training lock of ``out_dir``, says ``locked``, waits for a line on
    stdin, optionally moves folder ``then_move`` to ``out_dir`` (a finished SAE), and exits."""
    import subprocess
    import sys

    code = ("import sys, shutil; from pathlib import Path; from igds.modeling.sae import sae_training_lock\n"
            f"out = Path({str(out_dir)!r})\n"
            "with sae_training_lock(out, 0):\n"
            "    print('locked', flush=True)\n"
            "    sys.stdin.readline()\n"
            f"    src = {str(then_move) if then_move else ''!r}\n"
            "    if src: shutil.move(src, out)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_trained_saes_are_keyed_by_recipe_and_reused(tmp_path):
    import json

    from igds.modeling.load import model_key_of
    from igds.modeling.sae import ensure_trained_sae, finished_sae, trained_sae_dir

    model, tok, _ = tiny_setup()
    key = model_key_of(model)
    texts = tiny_texts()
    cfg1, cfg2 = SaeTrainConfig(layer=1, **TINY_RECIPE), SaeTrainConfig(layer=2, **TINY_RECIPE)
    d1 = ensure_trained_sae(model, tok, cfg1, texts, key)
    d2 = ensure_trained_sae(model, tok, cfg2, texts, key)
    assert d1 == trained_sae_dir(cfg1, key) and d2 == trained_sae_dir(cfg2, key) and d1 != d2
    assert d1.name.startswith(f"trained-{key[:8]}-L1-k4-32-") and d2.name.startswith(f"trained-{key[:8]}-L2-k4-32-")
    for d, layer in ((d1, 1), (d2, 2)):
        assert json.loads((d / "cfg.json").read_text())["metadata"]["hook_name"] == f"blocks.{layer}.hook_resid_post"
        assert finished_sae(d, SaeTrainConfig(layer=layer, **TINY_RECIPE))
        assert load_sae(SaeSpec(source=str(d)))[1].site == f"blocks.{layer}.hook_resid_post"
    assert not finished_sae(d1, cfg2)  # the recipe file says which recipe a folder holds
    # another width or another model: other folders
    assert trained_sae_dir(SaeTrainConfig(layer=1, **{**TINY_RECIPE, "d_sae": 64}), key) != d1
    assert trained_sae_dir(cfg1, "f" * 16) != d1
    # the same recipe again: the folder is reused, nothing retrained
    mtime = (d1 / "sae_weights.safetensors").stat().st_mtime_ns
    assert ensure_trained_sae(model, tok, cfg1, texts, key) == d1
    assert (d1 / "sae_weights.safetensors").stat().st_mtime_ns == mtime
    # no temporary or half folders are left next to the finished ones
    assert sorted(p.name for p in d1.parent.iterdir() if not p.name.endswith(".lock")) == sorted([d1.name, d2.name])


def test_half_trained_folder_is_not_reused(tmp_path, monkeypatch):
    from igds.modeling import sae as sae_mod
    from igds.modeling.load import model_key_of

    model, tok, _ = tiny_setup()
    cfg = SaeTrainConfig(layer=1, **TINY_RECIPE)
    out = sae_mod.trained_sae_dir(cfg, model_key_of(model))
    # a training killed while measuring quality leaves only its hidden temporary folder
    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(sae_mod, "ce_recovered", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        sae_mod.ensure_trained_sae(model, tok, cfg, tiny_texts(), model_key_of(model))
    assert not out.exists() and not list(out.parent.glob(".tmp-*"))
    # a folder without its quality/recipe/checksums (e.g. written by hand half-way) does not count as finished
    save_tiny_sae(out, d_in=32, layer=1)
    assert not sae_mod.finished_sae(out)
    # a SIGKILLed training cannot clean up: the next trainer (holding the lock) removes its leftovers
    stale = save_tiny_sae(out.with_name(f".tmp-{out.name}-99999999"), d_in=32, layer=1)
    assert sae_mod.ensure_trained_sae(model, tok, cfg, tiny_texts(), model_key_of(model)) == out
    assert sae_mod.finished_sae(out, cfg) and not stale.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name, out.name + ".lock"]


def test_a_training_in_another_process_is_waited_for_then_reused(tmp_path, monkeypatch):
    import threading

    from igds.modeling import sae as sae_mod
    from igds.modeling.load import model_key_of

    model, tok, _ = tiny_setup()
    key = model_key_of(model)
    cfg = SaeTrainConfig(layer=1, **TINY_RECIPE)
    out = sae_mod.trained_sae_dir(cfg, key)
    # the other process holds the lock: a short wait fails, naming its pid
    proc = hold_lock_in_subprocess(out)
    try:
        with pytest.raises(SaeError, match=rf"SAE .*{out.name} is being trained by another process "
                                           rf"\(pid {proc.pid}\); waiting timed out after 0.5 s"):
            sae_mod.ensure_trained_sae(model, tok, cfg, tiny_texts(), key, wait_s=0.5)
    finally:
        proc.communicate("\n", timeout=60)
    # once it finishes, the waiter loads what it trained instead of training again
    ready = tmp_path / "ready"
    sae_mod.ensure_trained_sae(model, tok, cfg, tiny_texts(), key, out_dir=ready)
    (ready / "marker").write_text("trained by the other process")
    proc = hold_lock_in_subprocess(out, then_move=ready)
    monkeypatch.setattr(sae_mod, "train_sae", lambda *a, **k: pytest.fail("retrained a finished SAE"))
    result = {}
    waiter = threading.Thread(target=lambda: result.update(
        dir=sae_mod.ensure_trained_sae(model, tok, cfg, tiny_texts(), key, wait_s=60)))
    waiter.start()
    proc.communicate("\n", timeout=60)
    waiter.join(timeout=60)
    assert result["dir"] == out and (out / "marker").exists()
    assert proc.returncode == 0


def test_lock_is_released_by_a_killed_holder(tmp_path):
    from igds.modeling.sae import sae_training_lock

    out = tmp_path / "saes" / "x"
    proc = hold_lock_in_subprocess(out)
    proc.kill()
    proc.wait(timeout=30)
    with sae_training_lock(out, wait_s=5):
        assert (tmp_path / "saes" / "x.lock").read_text() == str(__import__("os").getpid())


def test_sae_train_command_uses_the_keyed_folder(tmp_path, monkeypatch, capsys):
    import json

    from igds import cli
    from igds.modeling import load as load_mod
    from igds.modeling.load import model_key_of
    from igds.modeling.sae import trained_sae_dir
    from igds.workflow import workspace

    model, tok, _ = tiny_setup()
    monkeypatch.setattr(load_mod, "load_model", lambda *a, **k: (model, tok))
    monkeypatch.setattr(workspace, "sae_training_texts", lambda cfg: tiny_texts())
    flags = [f"--sae-train-{k.replace('_', '-')}={v}" for k, v in TINY_RECIPE.items()]
    key = model_key_of(model)
    for layer in (1, 2):  # --sae-train-layer is honoured: one folder per layer
        assert cli.main(["sae", "train", f"--sae-train-layer={layer}", *flags]) == 0
        d = trained_sae_dir(SaeTrainConfig(layer=layer, **TINY_RECIPE), key)
        assert json.loads(capsys.readouterr().out)["out"] == str(d)
        assert json.loads((d / "cfg.json").read_text())["metadata"]["hook_name"] == f"blocks.{layer}.hook_resid_post"
    # the same recipe again reuses its folder; an explicit --out is trained there
    d1 = trained_sae_dir(SaeTrainConfig(layer=1, **TINY_RECIPE), key)
    mtime = (d1 / "sae_weights.safetensors").stat().st_mtime_ns
    q = workspace.train_default_sae(model, tok, SaeTrainConfig(layer=1, **TINY_RECIPE))
    assert (d1 / "sae_weights.safetensors").stat().st_mtime_ns == mtime
    assert q == json.loads((d1 / "igds_quality.json").read_text())
    assert cli.main(["sae", "train", "--sae-train-layer=1", *flags, f"--out={tmp_path / 'mine'}"]) == 0
    assert json.loads(capsys.readouterr().out)["out"] == str(tmp_path / "mine")
    assert (tmp_path / "mine" / "sae_weights.safetensors").exists()
