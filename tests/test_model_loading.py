"""Checkpoint discovery, titles and hashes, family detection, building, switching, and bad files."""

from __future__ import annotations

import os

import pytest
import torch

from modules import checkpoint_factory, devices, hashes, ldm_layout, model_detection, sd_models, sd_vae, shared
from modules.errors import NotFoundError, UnsafeFileError, UserError


@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    devices.configure(shared.cmd_opts)
    sd_models.list_models()
    sd_vae.refresh_vae_list()
    yield tiny_checkpoints
    sd_models.unload_model_weights()


def export_back(model) -> dict[str, torch.Tensor]:
    """The loaded model's weights in A1111 layout again (inverse conversion)."""
    spec = model.spec
    out = ldm_layout.unet_to_ldm(model.unet.state_dict(), spec.unet_config)
    out.update(ldm_layout.vae_to_ldm(model.first_stage_model.state_dict(), spec.vae_config))
    for enc in model.cond_stage_model.encoders:
        weights = enc.transformer.state_dict()
        if enc.spec.layout == "clip":
            out.update(ldm_layout.clip_to_ldm(weights, enc.spec.prefix))
        else:
            out.update(ldm_layout.clip_to_openclip(weights, enc.spec.prefix))
    return out


@pytest.mark.parametrize("key,family,prediction,inpaint", [
    ("sd1", "sd1", "eps", False),
    ("sd1_ckpt", "sd1", "eps", False),
    ("sd2v", "sd2", "v", False),
    ("sdxl", "sdxl", "eps", False),
    ("sd1_inpaint", "sd1", "eps", True),
])
def test_load_detects_family_and_keeps_every_weight(models, key, family, prediction, inpaint):
    path = models[key]
    model = sd_models.load_model(sd_models.find_checkpoint(path.name))
    assert model.spec.family == family
    assert model.parameterization == prediction
    assert model.is_inpaint == inpaint
    assert model.unet.config.in_channels == (9 if inpaint else 4)
    original = sd_models.read_state_dict(str(path))
    back = export_back(model)
    compared = [k for k in original if k != "alphas_cumprod"]
    assert set(compared) == set(back)
    for k in compared:
        assert torch.equal(original[k].float(), back[k].reshape(original[k].shape).float()), k
    assert not any(p.is_meta for p in model.parameters())


def test_ckpt_and_safetensors_twins_load_the_same_way(models):
    a = sd_models.read_state_dict(str(models["sd1_ckpt"]))
    spec = model_detection.resolve_spec(a, str(models["sd1_ckpt"]))
    assert spec.family == "sd1" and spec.config_source.endswith(".yaml")


def test_titles_hashes_and_lookup(models):
    path = models["sd1"]
    info = sd_models.find_checkpoint(path.name)
    sha = hashes.calculate_sha256(str(path))
    info.calculate_shorthash()
    assert info.sha256 == sha
    assert info.title == f"{path.name} [{sha[:10]}]"
    assert len(info.hash) == 8 and info.hash == hashes.model_hash(str(path))
    for alias in (info.title, path.name, path.stem, sha[:10], sha, info.hash):
        assert sd_models.get_closet_checkpoint_match(alias) is info, alias
    # the hash is cached persistently: a fresh listing knows the title at once
    sd_models.list_models()
    assert f"{path.name} [{sha[:10]}]" in sd_models.checkpoint_tiles()


def test_unknown_checkpoint_title_is_a_clear_error(models):
    with pytest.raises(NotFoundError, match="Checkpoint 'no-such-model' not found"):
        sd_models.find_checkpoint("no-such-model")


def test_switching_frees_the_previous_model(models):
    import gc
    import weakref

    shared.opts.sd_checkpoints_limit = 1
    first = weakref.ref(sd_models.load_model(sd_models.find_checkpoint(models["sd1"].name)))
    second = sd_models.load_model(sd_models.find_checkpoint(models["sdxl"].name))
    assert sd_models.model_data.loaded_sd_models == [second]
    assert shared.opts.sd_model_checkpoint == second.sd_checkpoint_info.title
    gc.collect()
    assert first() is None, "the previous model is still referenced somewhere"


def test_a_file_that_cannot_be_loaded_keeps_the_current_model(models, tmp_path):
    current = sd_models.load_model(sd_models.find_checkpoint(models["sd1"].name))
    from safetensors.torch import save_file

    bad = models["sd1"].parent / "not-a-model.safetensors"
    save_file({"just.a.tensor": torch.zeros(2)}, str(bad))
    try:
        sd_models.list_models()
        with pytest.raises(UserError, match="not a Stable Diffusion"):
            sd_models.load_model(sd_models.find_checkpoint(bad.name))
        assert shared.sd_model is current
    finally:
        bad.unlink()
        sd_models.list_models()


def test_cache_keeps_two_models_with_limit_two(models):
    shared.opts.sd_checkpoints_limit = 2
    try:
        a = sd_models.load_model(sd_models.find_checkpoint(models["sd1"].name))
        b = sd_models.load_model(sd_models.find_checkpoint(models["sd2v"].name))
        assert sd_models.load_model(sd_models.find_checkpoint(models["sd1"].name)) is a
        assert len(sd_models.model_data.loaded_sd_models) == 2 and b in sd_models.model_data.loaded_sd_models
    finally:
        shared.opts.sd_checkpoints_limit = 1


# -- bad input ----------------------------------------------------------------------------------------------


def test_truncated_safetensors_is_refused(models, tmp_path):
    data = models["sd1"].read_bytes()
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated.safetensors"):
        sd_models.read_state_dict(str(bad))


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_ckpt_never_executes(models, tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": Evil(marker)}, bad, _use_new_zipfile_serialization=True)
    with pytest.raises(UnsafeFileError, match="forbidden"):
        sd_models.read_state_dict(str(bad))
    assert not marker.exists()


def test_unknown_architecture_is_named(models, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "lora-like.safetensors"
    save_file({"lora_unet_down_blocks_0.lora_up.weight": torch.zeros(4, 2)}, str(path))
    state = sd_models.read_state_dict(str(path))
    with pytest.raises(UserError, match="not a Stable Diffusion .* checkpoint.*LoRA"):
        model_detection.detect_family(state, str(path))


def test_vae_that_does_not_fit_keeps_the_current_vae(models, tmp_path):
    model = sd_models.load_model(sd_models.find_checkpoint(models["sd1"].name))
    before = {k: v.clone() for k, v in model.first_stage_model.state_dict().items()}
    from safetensors.torch import save_file

    bad = tmp_path / "wrong.vae.safetensors"
    wrong = checkpoint_factory.build_state_dict("sd1")
    vae_sd = {k[len("first_stage_model."):]: v for k, v in wrong.items() if k.startswith("first_stage_model.")}
    vae_sd["decoder.conv_in.weight"] = torch.zeros(8, 4, 3, 3)
    save_file(vae_sd, str(bad))
    with pytest.raises(UserError, match="does not fit"):
        sd_vae.load_vae(model, str(bad))
    after = model.first_stage_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_vae_next_to_checkpoint_is_used_automatically(models, tmp_path):
    model = sd_models.load_model(sd_models.find_checkpoint(models["sd1"].name))
    other = checkpoint_factory.build_state_dict("sd1", seed=123)
    vae_sd = {k[len("first_stage_model."):]: v for k, v in other.items() if k.startswith("first_stage_model.")}
    from safetensors.torch import save_file

    near = models["sd1"].with_name(models["sd1"].stem + ".vae.safetensors")
    save_file(vae_sd, str(near))
    try:
        sd_vae.refresh_vae_list()
        assert sd_vae.resolve_vae(str(models["sd1"]))[0] == str(near)
        sd_vae.reload_vae_weights(model)
        assert model.loaded_vae_file == str(near)
        name, short = sd_vae.vae_name_and_hash(model)
        assert name == near.name and len(short) == 10
        shared.opts.sd_vae = "None"
        sd_vae.reload_vae_weights(model)
        assert model.loaded_vae_file is None
        base = model.base_vae_state
        assert all(torch.equal(base[k], v) for k, v in model.first_stage_model.state_dict().items())
    finally:
        shared.opts.sd_vae = "Automatic"
        near.unlink()
        sd_vae.refresh_vae_list()
