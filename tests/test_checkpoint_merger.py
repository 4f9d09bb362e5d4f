"""Checkpoint merger: every method against arithmetic done here, fp16, VAE baking, discarding and EMA pruning,
inpainting A with a normal B, block weights and their key → block layout (SD1, SDXL), A1111's metadata, the
streamed safetensors layout, bounded memory, a merged model that loads and generates, and bad input."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

from modules import checkpoint_factory, extras_merge, merge_blocks, sd_models, sd_vae, shared
from modules.errors import NotFoundError, UserError

POSITION_IDS = "cond_stage_model.transformer.text_model.embeddings.position_ids"
SKIP = {POSITION_IDS}


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory, tiny_checkpoints):
    """A --ckpt-dir of our own (the merge results land there) with tiny SD1 models A, B, C (fp32, with EMA and
    position_ids entries like real SD1.5 files), an fp16 pair, a .ckpt twin, an inpainting model, and SDXL."""
    folder = tmp_path_factory.mktemp("merge-ckpts")
    models = {}
    for name, family, seed in (("m_a", "sd1", 11), ("m_b", "sd1", 12), ("m_c", "sd1", 13),
                               ("m_inpaint", "sd1-inpaint", 14), ("m_xl", "sdxl", 15)):
        path = folder / f"{name}.safetensors"
        checkpoint_factory.write_checkpoint(str(path), family, seed=seed)
        models[name] = path
    for name in ("m_a", "m_b", "m_c"):  # extra entries real SD1.5 checkpoints have
        sd = safetensors.torch.load_file(models[name])
        sd[POSITION_IDS] = torch.arange(77, dtype=torch.int64)[None]
        sd["model_ema.decay"] = torch.tensor(0.9999)
        sd["model_ema.num_updates"] = torch.tensor(1000 + int(name[-1], 36), dtype=torch.int32)
        sd["model_ema.diffusion_modelout0weight"] = torch.randn(32)
        safetensors.torch.save_file(sd, models[name], metadata={"format": "pt"})
    for name, src in (("m_a16", "m_a"), ("m_b16", "m_b")):
        sd = {k: v.half() if v.dtype == torch.float32 else v for k, v in safetensors.torch.load_file(models[src]).items()}
        models[name] = folder / f"{name}.safetensors"
        safetensors.torch.save_file(sd, models[name], metadata={"format": "pt", "note": "half"})
        (folder / f"{name}.yaml").write_bytes(Path(str(models[src])[:-12] + ".yaml").read_bytes())
    ckpt = folder / "m_b_pickle.ckpt"
    torch.save({"state_dict": safetensors.torch.load_file(models["m_b"])}, ckpt)
    models["m_b_pickle"] = ckpt

    mp = pytest.MonkeyPatch()
    mp.setattr(shared.cmd_opts, "ckpt_dir", str(folder))
    sd_models.list_models()
    yield folder, models
    mp.undo()
    sd_models.list_models()


def load(path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(path))


def merge(**kwargs) -> str:
    args = dict(save_metadata=True, add_merge_recipe=True, copy_metadata_fields=True, metadata_json="{}")
    args.update(kwargs)
    return extras_merge.merge_checkpoints(**args)


def expected_merge(a, b, method, alpha_of, c=None, save_as_half=False):
    """A1111's rule written out: only keys containing "model" that B has (position_ids aside) are merged."""
    out = {}
    for key, ta in a.items():
        t = ta
        if "model" in key and key in b and key not in SKIP:
            alpha = alpha_of(key)
            if method == "Weighted sum":
                t = ((1 - alpha) * ta) + (alpha * b[key])
            else:
                diff = b[key] - c[key] if key in c else torch.zeros_like(b[key])
                t = ta + (alpha * diff)
            if save_as_half and t.dtype == torch.float32:
                t = t.half()
        out[key] = t
    return out


def assert_same(result: dict, expected: dict) -> None:
    assert set(result) == set(expected)
    for key, t in expected.items():
        assert result[key].dtype == t.dtype, key
        assert torch.equal(result[key], t), key


def test_weighted_sum_is_a1111_arithmetic_with_its_metadata_and_layout(ckpt_dir):
    folder, models = ckpt_dir
    out = merge(primary_model_name="m_a", secondary_model_name="m_b", interp_method="Weighted sum", multiplier=0.3)
    assert os.path.basename(out) == "0.7(m_a) + 0.3(m_b).safetensors"
    a, b = load(models["m_a"]), load(models["m_b"])
    result = load(out)
    assert_same(result, expected_merge(a, b, "Weighted sum", lambda key: 0.3))
    assert torch.equal(result[POSITION_IDS], a[POSITION_IDS])  # never merged
    assert result["model_ema.num_updates"].dtype == torch.float32  # A1111 merges it like any "model" key

    # The file is what safetensors itself writes for these tensors (metadata aside, whose order it randomises).
    raw = Path(out).read_bytes()
    reference = safetensors.torch.save(result)
    n, n_ref = struct.unpack("<Q", raw[:8])[0], struct.unpack("<Q", reference[:8])[0]
    header, header_ref = json.loads(raw[8:8 + n]), json.loads(reference[8:8 + n_ref])
    metadata = header.pop("__metadata__")
    assert header == header_ref
    assert raw[8 + n:] == reference[8 + n_ref:]

    infos = {i.name_for_extra: i for i in sd_models.checkpoints_list.values()}
    assert "0.7(m_a) + 0.3(m_b)" in infos  # listed at once
    recipe = json.loads(metadata["sd_merge_recipe"])
    a_info, b_info = infos["m_a"], infos["m_b"]
    assert recipe == {
        "type": "webui", "primary_model_hash": a_info.sha256, "secondary_model_hash": b_info.sha256,
        "tertiary_model_hash": None, "interp_method": "Weighted sum", "multiplier": 0.3, "save_as_half": False,
        "custom_name": "", "config_source": 0, "bake_in_vae": "None", "discard_weights": "", "is_inpainting": False,
        "is_instruct_pix2pix": False,
    }
    assert list(recipe) == ["type", "primary_model_hash", "secondary_model_hash", "tertiary_model_hash",
                            "interp_method", "multiplier", "save_as_half", "custom_name", "config_source",
                            "bake_in_vae", "discard_weights", "is_inpainting", "is_instruct_pix2pix"]
    assert json.loads(metadata["sd_merge_models"]) == {
        a_info.sha256: {"name": "m_a.safetensors", "legacy_hash": a_info.hash, "sd_merge_recipe": None},
        b_info.sha256: {"name": "m_b.safetensors", "legacy_hash": b_info.hash, "sd_merge_recipe": None},
    }
    assert metadata["format"] == "pt"
    assert (folder / "0.7(m_a) + 0.3(m_b).yaml").read_bytes() == (folder / "m_a.yaml").read_bytes()

    # A merge of the merge records its parent's recipe (A1111's sd_merge_models chain).
    out2 = merge(primary_model_name="0.7(m_a) + 0.3(m_b)", secondary_model_name="m_c", multiplier=0.5,
                 custom_name="second")
    models2 = json.loads(safetensors.safe_open(out2, "pt").metadata()["sd_merge_models"])
    parent = sd_models.get_closet_checkpoint_match("0.7(m_a) + 0.3(m_b)")
    assert models2[parent.sha256]["sd_merge_recipe"] == recipe
    assert a_info.sha256 in models2 and b_info.sha256 in models2


def test_add_difference_with_a_pickle_input_and_ckpt_output(ckpt_dir):
    folder, models = ckpt_dir
    out = merge(primary_model_name="m_a", secondary_model_name="m_b_pickle", tertiary_model_name="m_c",
                interp_method="Add difference", multiplier=0.7, checkpoint_format="ckpt")
    assert os.path.basename(out) == "m_a + 0.7(m_b_pickle - m_c).ckpt"
    result = torch.load(out, weights_only=True)  # a flat dict, as A1111 writes it
    expected = expected_merge(load(models["m_a"]), load(models["m_b"]), "Add difference", lambda key: 0.7,
                              c=load(models["m_c"]))
    assert_same(result, expected)


def test_no_interpolation_halves_everything_and_fp16_inputs_merge_in_fp16(ckpt_dir):
    folder, models = ckpt_dir
    out = merge(primary_model_name="m_a", interp_method="No interpolation", save_as_half=True, custom_name="a-half",
                add_merge_recipe=False, metadata_json='{"author": "me", "n": 3}')
    a = load(models["m_a"])
    result = load(out)
    assert_same(result, {k: v.half() if v.dtype == torch.float32 else v for k, v in a.items()})
    metadata = safetensors.safe_open(out, "pt").metadata()
    assert metadata == {"format": "pt", "author": "me", "n": "3"}  # copied from A ({"format": "pt"}) plus the JSON

    # save as half in a weighted sum: merged keys become fp16, the rest keep their dtype (A1111)
    out = merge(primary_model_name="m_a", secondary_model_name="m_b", multiplier=0.25, save_as_half=True,
                custom_name="ws-half")
    result = load(out)
    assert_same(result, expected_merge(a, load(models["m_b"]), "Weighted sum", lambda k: 0.25, save_as_half=True))
    assert result["alphas_cumprod"].dtype == torch.float32

    # fp16 inputs: computed in fp16 like A1111; within fp16 rounding of the exact result
    out = merge(primary_model_name="m_a16", secondary_model_name="m_b16", multiplier=0.4, custom_name="ws16")
    a16, b16 = load(models["m_a16"]), load(models["m_b16"])
    result = load(out)
    assert_same(result, expected_merge(a16, b16, "Weighted sum", lambda k: 0.4))
    key = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight"
    exact = 0.6 * a16[key].double() + 0.4 * b16[key].double()
    assert (result[key].double() - exact).abs().max() <= 2 * 2 ** -10 * exact.abs().max()
    assert safetensors.safe_open(out, "pt").metadata()["note"] == "half"  # "Copy metadata from merged models"


def test_bake_vae_discard_and_prune_ema(ckpt_dir, data_dir):
    folder, models = ckpt_dir
    donor = load(models["m_c"])
    vae = {k[len("first_stage_model."):]: v for k, v in donor.items() if k.startswith("first_stage_model.")}
    vae_dir = Path(sd_vae.vae_path)
    vae_dir.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(vae, vae_dir / "tiny-vae.safetensors")
    try:
        out = merge(primary_model_name="m_a", secondary_model_name="m_b", multiplier=0.5, custom_name="baked",
                    bake_in_vae="tiny-vae.safetensors", discard_weights=r"decoder\.up\.0\.", prune_ema=True)
    finally:
        (vae_dir / "tiny-vae.safetensors").unlink()
        sd_vae.refresh_vae_list()
    a, b = load(models["m_a"]), load(models["m_b"])
    expected = expected_merge(a, b, "Weighted sum", lambda k: 0.5)
    for k, v in vae.items():
        expected["first_stage_model." + k] = v
    expected = {k: v for k, v in expected.items()
                if not re.search(r"decoder\.up\.0\.", k) and not k.startswith("model_ema.")}
    result = load(out)
    assert_same(result, expected)
    assert any(k.startswith("first_stage_model.decoder.up.1.") for k in result)
    recipe = json.loads(safetensors.safe_open(out, "pt").metadata()["sd_merge_recipe"])
    assert recipe["bake_in_vae"] == "tiny-vae.safetensors" and recipe["discard_weights"] == r"decoder\.up\.0\."
    assert recipe["prune_ema"] is True


def test_inpainting_a_merges_its_first_four_input_channels(ckpt_dir):
    folder, models = ckpt_dir
    out = merge(primary_model_name="m_inpaint", secondary_model_name="m_b", tertiary_model_name="m_c",
                interp_method="Add difference", multiplier=1.0)
    assert os.path.basename(out) == "m_inpaint + 1.0(m_b - m_c).inpainting.safetensors"
    a, b, c = load(models["m_inpaint"]), load(models["m_b"]), load(models["m_c"])
    result = load(out)
    key = "model.diffusion_model.input_blocks.0.0.weight"
    assert result[key].shape[1] == 9
    assert torch.equal(result[key][:, 4:], a[key][:, 4:])
    assert torch.equal(result[key][:, :4], a[key][:, :4] + (1.0 * (b[key] - c[key])))
    other = "model.diffusion_model.out.2.weight"
    assert torch.equal(result[other], a[other] + (1.0 * (b[other] - c[other])))
    assert json.loads(safetensors.safe_open(out, "pt").metadata()["sd_merge_recipe"])["is_inpainting"] is True

    with pytest.raises(UserError, match="A must be the inpainting model"):
        merge(primary_model_name="m_b", secondary_model_name="m_inpaint", custom_name="wrong-way")
    assert not (folder / "wrong-way.safetensors").exists()


def independent_block(key: str) -> str | None:
    parts = key.split(".")
    if parts[:2] != ["model", "diffusion_model"]:
        return None
    if parts[2] == "input_blocks":
        return f"IN{int(parts[3]):02d}"
    if parts[2] == "middle_block":
        return "M00"
    if parts[2] == "output_blocks":
        return f"OUT{int(parts[3]):02d}"
    return None


def test_block_weighted_merge(ckpt_dir):
    weights = [0.0] * 25
    names = merge_blocks.block_names("sd1")
    weights[names.index("IN01")] = 1.0
    weights[names.index("M00")] = 0.25
    weights[names.index("OUT02")] = 0.5
    out = merge(primary_model_name="m_a", secondary_model_name="m_b", multiplier=1.0, custom_name="blocks",
                block_weights=",".join(str(w) for w in weights))
    folder, models = ckpt_dir

    def alpha(key):
        block = independent_block(key)
        return 1.0 if block is None else weights[names.index(block)]

    assert_same(load(out), expected_merge(load(models["m_a"]), load(models["m_b"]), "Weighted sum", alpha))
    recipe = json.loads(safetensors.safe_open(out, "pt").metadata()["sd_merge_recipe"])
    assert recipe["block_weights"] == ",".join(f"{w:g}" for w in weights) and recipe["multiplier"] == 1.0

    out = merge(primary_model_name="m_a", secondary_model_name="m_b", multiplier=0.5, custom_name="gradv",
                block_weights="grad_v")
    grad_v = [1 - i / 12 for i in range(12)] + [0.0] + [(i + 1) / 12 for i in range(12)]
    assert grad_v[0] == 1.0 and grad_v[12] == 0.0 and grad_v[-1] == 1.0

    def alpha_v(key):
        block = independent_block(key)
        return 0.5 if block is None else grad_v[names.index(block)]

    assert_same(load(out), expected_merge(load(models["m_a"]), load(models["m_b"]), "Weighted sum", alpha_v))


def _unet_keys(family: str) -> list[str]:
    from diffusers import UNet2DConditionModel

    from modules import ldm_layout, model_detection

    config = model_detection._read_shipped(family, "unet")
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
    return list(ldm_layout.unet_to_ldm(unet.state_dict(), config))


@pytest.mark.parametrize(("family", "blocks_per_side"), [("sd1", 12), ("sdxl", 9)])
def test_every_full_size_unet_key_is_in_its_documented_block(family, blocks_per_side):
    keys = _unet_keys(family)
    seen = set()
    for key in keys:
        block = merge_blocks.block_of(key)
        assert block == independent_block(key), key
        seen.add(block)
    names = merge_blocks.block_names(family)
    assert names == ([f"IN{i:02d}" for i in range(blocks_per_side)] + ["M00"]
                     + [f"OUT{i:02d}" for i in range(blocks_per_side)])
    assert seen - {None} == set(names)  # every block exists in the real model, no other does
    outside = sorted(k for k in keys if merge_blocks.block_of(k) is None)
    assert all(re.match(r"model\.diffusion_model\.(time_embed|label_emb\.0|out)\.", k) for k in outside)
    assert merge_blocks.block_of("cond_stage_model.transformer.text_model.final_layer_norm.weight") is None
    assert merge_blocks.block_of("first_stage_model.decoder.up.0.block.0.conv1.weight") is None
    assert len(merge_blocks.parse_block_weights("SMOOTHSTEP", family)) == len(names)


def test_bad_input_gives_one_clear_message(ckpt_dir):
    folder, models = ckpt_dir
    before = sorted(os.listdir(folder))
    cases = [
        (dict(primary_model_name="m_a", secondary_model_name="m_xl"), UserError, "different families"),
        (dict(primary_model_name="m_a", secondary_model_name="nope"), NotFoundError, "secondary model.*'nope' not found"),
        (dict(primary_model_name="", secondary_model_name="m_b"), UserError, "requires a primary model"),
        (dict(primary_model_name="m_a", secondary_model_name=""), UserError, "requires a secondary model"),
        (dict(primary_model_name="m_a", secondary_model_name="m_b", interp_method="Add difference"), UserError,
         "requires a tertiary model"),
        (dict(primary_model_name="m_a", secondary_model_name="m_b", block_weights="1,0,1"), UserError,
         "3 values given, but SD 1.x models have 25 blocks"),
        (dict(primary_model_name="m_xl", secondary_model_name="m_xl", block_weights=",".join(["1"] * 25)), UserError,
         "SDXL models have 19 blocks"),
        (dict(primary_model_name="m_a", secondary_model_name="m_b", block_weights="0.5,x"), UserError,
         "'x' is not a number"),
        (dict(primary_model_name="m_a", secondary_model_name="m_b", discard_weights="(unclosed"), UserError,
         "not a valid regular expression"),
        (dict(primary_model_name="m_a", secondary_model_name="m_b", interp_method="Average"), UserError,
         "unknown interpolation method"),
        (dict(primary_model_name="m_a", secondary_model_name="m_b", custom_name="../escape"), UserError,
         "plain file name"),
        (dict(primary_model_name="m_a", secondary_model_name="m_b", custom_name="m_b"), UserError,
         "would replace input model B"),
        (dict(primary_model_name="m_a", secondary_model_name="m_b", bake_in_vae="missing.pt"), NotFoundError,
         "VAE 'missing.pt' not found"),
        (dict(primary_model_name="m_a", secondary_model_name="m_b", metadata_json="{bad"), UserError,
         "metadata is not valid JSON"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            merge(**kwargs)
    assert sorted(os.listdir(folder)) == before  # nothing written, no temp files left


def test_merged_model_loads_and_generates(ckpt_dir):
    from modules import devices, processing

    out = extras_merge.run_modelmerger(None, "m_a", "m_b", "", "Weighted sum", 0.5, False, "loadable",
                                       "safetensors", 0, "None", "", True, True, True, "{}")
    assert out.startswith("Checkpoint saved to ") and out.endswith("loadable.safetensors")
    devices.configure(shared.cmd_opts)
    info = sd_models.find_checkpoint("loadable")
    model = sd_models.reload_model_weights(info=info)
    assert model.sd_checkpoint_info.filename == info.filename
    p = processing.StableDiffusionProcessingTxt2Img(prompt="a cat", steps=2, width=64, height=64, seed=1,
                                                    sampler_name="Euler", do_not_save_samples=True,
                                                    do_not_save_grid=True)
    res = processing.process_images(p)
    assert res.images[0].size == (64, 64)
    assert "Model: loadable" in res.infotexts[0]


MEMORY_PROBE = r"""
import os, re, sys
os.environ["SD_WEBUI_DATA_DIR"] = sys.argv[1]
os.environ["IGNORE_CMD_ARGS_ERRORS"] = "1"
sys.path.insert(0, sys.argv[2])
from modules import extras_merge, sd_models


def status(field):
    with open("/proc/self/status") as f:
        return int(re.search(field + r":\s+(\d+) kB", f.read()).group(1)) * 1024


sd_models.list_models()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current resident size
base = status("VmRSS")
extras_merge.merge_checkpoints("a", "b", "c", "Add difference", 0.5, save_metadata=False)
print(base, status("VmHWM"))
"""


def test_merging_streams_tensors_instead_of_loading_models(tmp_path):
    """Three ~220 MB models merge with the resident memory of a few tensors (the largest here is the 12.6 MB token
    embedding: A, B, C, B - C and the result), not of a model. Measured in a fresh process whose peak is reset
    just before the merge."""
    data = tmp_path / "data"
    folder = data / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    for i, name in enumerate("abc"):
        sd = checkpoint_factory.build_state_dict("sd1", seed=i)
        g = torch.Generator().manual_seed(i)
        for n in range(192):  # 192 x 1 MB of extra UNet weights
            sd[f"model.diffusion_model.input_blocks.1.extra{n}.weight"] = torch.randn(512, 512, generator=g)
        safetensors.torch.save_file(sd, folder / f"{name}.safetensors")
    size = os.path.getsize(folder / "a.safetensors")
    script = tmp_path / "probe.py"
    script.write_text(MEMORY_PROBE)
    root = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run([sys.executable, str(script), str(data), root], capture_output=True, text=True,
                          timeout=300, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    base, peak = map(int, done.stdout.split()[-2:])
    assert size > 200_000_000
    assert peak - base < size / 2, (size, base, peak)
    assert (folder / "a + 0.5(b - c).safetensors").stat().st_size == size


def test_checkpoint_merger_tab(ckpt_dir):
    import gradio as gr

    from modules import gradio_compat, ui_checkpoint_merger

    gradio_compat.install()
    with gr.Blocks():
        dummy = gr.Textbox(visible=False)
        checkpoint = gr.Dropdown(choices=[])
        ui = ui_checkpoint_merger.UiCheckpointMerger()
        ui.setup_ui(dummy_component=dummy, sd_model_checkpoint_component=checkpoint)
    assert ui.primary_model_name.elem_id == "modelmerger_primary_model_name"
    assert ui.modelmerger_merge.elem_id == "modelmerger_merge" and ui.interp_amount.value == 0.3
    assert "m_a.safetensors" in " ".join(c[0] for c in ui.primary_model_name.choices)
    values = [None, "m_a", "m_b", "", "Weighted sum", 0.6, False, "from-tab", "safetensors", 0, "None", "", True,
              True, True, "{}", "FLAT_25", False]
    assert len(values) == len(ui.merge_inputs(dummy))
    *updates, message = ui_checkpoint_merger.modelmerger(*values)
    assert message.startswith("Checkpoint saved to ") and message.endswith("from-tab.safetensors")
    assert len(updates) == 4 and any("from-tab" in c for c in updates[0]["choices"])
    assert json.loads(safetensors.safe_open(message[len("Checkpoint saved to "):], "pt").metadata()[
        "sd_merge_recipe"])["block_weights"] == ",".join(["0.25"] * 25)
    *_, message = ui_checkpoint_merger.modelmerger(None, "m_a", "", "", "Weighted sum", 0.5, False, "", "safetensors",
                                                  0, "None", "", True, True, True, "{}", "", False)
    assert message == "Failed: Merging requires a secondary model."
    assert ui_checkpoint_merger.update_interp_description("Add difference").count("A + (B - C) * M") == 1
    assert json.loads(extras_merge.read_metadata("m_a16", "m_b", None)) == {"format": "pt", "note": "half"}
