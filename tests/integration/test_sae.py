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
