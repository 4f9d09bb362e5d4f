"""LoRA / LyCORIS networks on the tiny SD1 and SDXL checkpoints: every layer type against its published formula,
exact restore, multipliers, key-name formats, names and aliases, hashes, bad files, and the effect on images."""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from modules import devices, extra_networks, networks, processing, sd_models, shared
from modules.networks import cards, library
from modules.networks.extra_network import ExtraNetworkLora
from modules.networks.patcher import ModelPatcher
from tests import network_files as nf

FIXTURES = Path(__file__).parent / "fixtures"
SDXL_META = {"ss_base_model_version": "sdxl_base_v1-0"}
KINDS = [
    "lora",
    "locon3x3",
    "tucker",
    "loha",
    "lokr",
    "lokr_conv",
    "lokr_decomposed",
    "dora_out",
    "dora_in",
    "full",
    "norm",
    "ia3",
]
TOLERANCE = 1e-5  # fp32 on CPU; the patcher and the formulas here sum in different orders
max_errors: dict[str, float] = {}


@pytest.fixture(scope="module")
def env(tiny_checkpoints):
    devices.configure(shared.cmd_opts)
    sd_models.list_models()
    old_limit = shared.opts.data.get("sd_checkpoints_limit")
    shared.opts.data["sd_checkpoints_limit"] = 2
    extra_networks.register_default_extra_networks()
    yield tiny_checkpoints
    for model in list(sd_models.model_data.loaded_sd_models):
        networks.restore_model(model)
    networks.loaded_networks.clear()
    shared.opts.data["sd_checkpoints_limit"] = old_limit
    if max_errors:
        print("\nmax |patched - expected| per case:", json.dumps(max_errors, indent=1))


def use(env, family: str):
    model = sd_models.load_model(sd_models.find_checkpoint(env[family].name))
    networks.load_networks([])
    return model


def snapshot(model) -> dict[str, torch.Tensor]:
    out = {f"unet.{k}": v.clone() for k, v in model.unet.state_dict().items()}
    for i, enc in enumerate(model.cond_stage_model.encoders):
        out.update({f"te{i}.{k}": v.clone() for k, v in enc.transformer.state_dict().items()})
    return out


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], skip: set[str] = frozenset()) -> None:
    assert a.keys() == b.keys()
    changed = [k for k in a if k not in skip and not torch.equal(a[k], b[k])]
    assert not changed, f"changed: {changed[:5]}"


def param_names(model, spec: nf.LayerSpec) -> set[str]:
    module = nf.module_of(model, spec.part, spec.path)
    if spec.part == "unet":
        root, prefix = model.unet, "unet."
    else:
        root = model.cond_stage_model.encoders[int(spec.part[2:])].transformer
        prefix = f"{spec.part}."
    names = {name for name, m in root.named_modules() if m is module}
    return {f"{prefix}{n}.{p}" for n in names for p in ("weight", "bias")}


def layer_spec(family):
    return nf.SDXL_LAYERS if family == "sdxl" else nf.SD1_LAYERS  # SD2 files use the SD1 (diffusers) names


FAMILY_META = {"sdxl": SDXL_META, "sd2v": {"ss_v2": "True"}}


def write_kind(env, family, kind, name=None, seed=0, **metadata):
    model = use(env, family)
    tensors, deltas = nf.build(model, layer_spec(family), kind, seed=seed)
    name = name or f"{family}-{kind}"
    nf.write(name, tensors, {**FAMILY_META.get(family, {}), **metadata})
    library.list_available_networks()
    return model, name, tensors, deltas


def originals(model, deltas) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """The fp32 weight and bias of every module the file reaches, before any network."""
    out = {}
    for role, (spec, _) in deltas.items():
        module = nf.module_of(model, spec.part, spec.path)
        out[role] = (
            module.weight.detach().float().clone(),
            None if module.bias is None else module.bias.detach().float().clone(),
        )
    return out


def check_applied(model, deltas, base, te, unet, label) -> None:
    worst = 0.0
    for role, (spec, delta) in deltas.items():
        module = nf.module_of(model, spec.part, spec.path)
        w0, b0 = base[role]
        dw, db = delta(w0, b0)
        mult = te if spec.part.startswith("te") else unet
        err = (module.weight.float() - (w0 + mult * dw)).abs().max().item()
        worst = max(worst, err)
        assert err < TOLERANCE, f"{label} {role}: max error {err}"
        if db is not None:
            err = (module.bias.float() - (b0 + mult * db)).abs().max().item()
            worst = max(worst, err)
            assert err < TOLERANCE, f"{label} {role} bias: max error {err}"
    max_errors[label] = worst


@pytest.mark.parametrize(
    "family,kind", [(f, k) for f in ("sd1", "sdxl") for k in KINDS] + [("sd2v", "lora"), ("sd2v", "locon3x3")]
)
def test_patched_weight_is_base_plus_formula_and_restores_exactly(env, family, kind):
    model, name, _, deltas = write_kind(env, family, kind)
    assert deltas, "the test file must reach some layer"
    before = snapshot(model)
    base = originals(model, deltas)
    report = networks.load_networks([name], [0.7], [1.3])
    assert not report.not_found and not report.skipped
    assert networks.error_counts(model) == {}
    check_applied(model, deltas, base, 0.7, 1.3, f"{family}-{kind}")
    touched = set().union(*(param_names(model, spec) for spec, _ in deltas.values()))
    assert_same(before, snapshot(model), skip=touched)  # nothing else moved
    networks.load_networks([])
    assert_same(before, snapshot(model))  # bit-exact restore


def test_sdxl_lora_reaches_both_text_encoders(env):
    model, name, _, deltas = write_kind(env, "sdxl", "lora")
    parts = {spec.part for spec, _ in deltas.values()}
    assert {"te0", "te1", "unet"} <= parts
    before = snapshot(model)
    networks.load_networks([name])
    after = snapshot(model)
    for part in ("te0", "te1", "unet"):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(part + ".")), part


@pytest.mark.parametrize("te,unet", [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)])
def test_zero_multipliers_leave_their_part_bit_exact(env, te, unet):
    model, name, _, deltas = write_kind(env, "sdxl", "lora")
    before = snapshot(model)
    networks.load_networks([name], [te], [unet])
    after = snapshot(model)
    for part, mult in (("te", te), ("unet", unet)):
        keys = [k for k in before if k.startswith(part)]
        changed = [k for k in keys if not torch.equal(before[k], after[k])]
        assert (len(changed) > 0) == (mult != 0), (part, mult, changed[:3])
    networks.load_networks([])
    assert_same(before, snapshot(model))


def test_changing_multiplier_and_network_recomputes_from_the_original(env):
    model, name_a, _, deltas_a = write_kind(env, "sd1", "lora", name="seq-a", seed=1)
    _, name_b, _, deltas_b = write_kind(env, "sd1", "lora", name="seq-b", seed=2)
    before = snapshot(model)
    base = originals(model, deltas_a)
    for mult in (1.0, 0.5, -0.25, 0.5):
        networks.load_networks([name_a], [mult], [mult])
        check_applied(model, deltas_a, base, mult, mult, f"sd1-lora-x{mult}")
    networks.load_networks([name_a, name_b], [0.5, 1.0], [0.5, 1.0])
    for role, (spec, delta_a) in deltas_a.items():
        module = nf.module_of(model, spec.part, spec.path)
        w0 = base[role][0]
        expected = w0 + 0.5 * delta_a(w0, None)[0] + deltas_b[role][1](w0, None)[0]
        assert (module.weight - expected).abs().max() < TOLERANCE
    networks.load_networks([name_b])
    check_applied(model, deltas_b, base, 1.0, 1.0, "sd1-lora-b-after-a")
    networks.load_networks([])
    assert_same(before, snapshot(model))


def test_dora_and_ia3_see_the_weight_with_earlier_networks_applied(env):
    model, name_a, _, deltas_a = write_kind(env, "sd1", "lora", name="first", seed=3)
    _, name_b, _, deltas_b = write_kind(env, "sd1", "dora_out", name="second", seed=4)
    base = originals(model, deltas_a)
    networks.load_networks([name_a, name_b])
    for role, (spec, delta_b) in deltas_b.items():
        module = nf.module_of(model, spec.part, spec.path)
        w1 = base[role][0] + deltas_a[role][1](base[role][0], None)[0]
        expected = w1 + delta_b(w1, None)[0]
        assert (module.weight - expected).abs().max() < TOLERANCE, role
    networks.load_networks([])


def test_dyn_uses_the_first_ranks_only(env):
    model, name, tensors, deltas = write_kind(env, "sd1", "lora", name="dyn")
    spec = nf.SD1_LAYERS["linear"]
    module = nf.module_of(model, spec.part, spec.path)
    w0 = module.weight.detach().clone()
    networks.load_networks([name], [1.0], [1.0], [2])
    up, down = tensors[f"{spec.key}.lora_up.weight"], tensors[f"{spec.key}.lora_down.weight"]
    expected = w0 + (up[:, :2] @ down[:2]) * (nf.ALPHA / nf.RANK)
    assert (module.weight - expected).abs().max() < TOLERANCE
    networks.load_networks([])


def _renamed(tensors: dict[str, torch.Tensor], renames: dict[str, str], parts: dict[str, str]) -> dict:
    out = {}
    for key, value in tensors.items():
        layer, _, part = key.partition(".")
        out[f"{renames[layer]}.{parts.get(part, part)}"] = value
    return out


PEFT = {"lora_down.weight": "lora_A.weight", "lora_up.weight": "lora_B.weight"}
TE = "text_model.encoder.layers.0.self_attn.q_proj"
TO_K = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
FF = "up_blocks.1.attentions.1.transformer_blocks.0.ff.net.2"
# (te, to_k, ff) full key prefixes and how the down/up tensors are called, per naming style
STYLES = {
    "peft": ((f"text_encoder.{TE}", f"unet.{TO_K}", f"unet.{FF}"), ("lora_A.weight", "lora_B.weight")),
    "peft-wrapped": (
        (f"base_model.model.text_encoder.{TE}", f"unet.{TO_K}", f"unet.{FF}"),
        ("lora_A.default.weight", "lora_B.default.weight"),
    ),
    "diffusers-old": ((f"text_encoder.{TE}", f"unet.{TO_K}", f"unet.{FF}"), ("lora.down.weight", "lora.up.weight")),
    "diffusers-te": (
        (f"text_encoder.{TE}", f"unet.{TO_K}", f"unet.{FF}"),
        ("lora_linear_layer.down.weight", "lora_linear_layer.up.weight"),
    ),
    "ldm": (
        (
            "lora_te_" + TE.replace(".", "_"),
            "lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k",
            "lora_unet_output_blocks_3_1_transformer_blocks_0_ff_net_2",
        ),
        ("lora_down.weight", "lora_up.weight"),
    ),
    "compvis": (
        (
            "cond_stage_model.transformer." + TE,
            "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k",
            "diffusion_model_output_blocks_3_1_transformer_blocks_0_ff_net_2",
        ),
        ("lora_down.weight", "lora_up.weight"),
    ),
}


@pytest.mark.parametrize("style", [*STYLES, "processor"])
def test_other_key_formats_give_the_same_weights(env, style):
    model = use(env, "sd1")
    roles = ("te_linear", "linear", "up_linear")
    tensors, _ = nf.build(model, {r: nf.SD1_LAYERS[r] for r in roles}, "lora", seed=5)
    tensors = {k: v for k, v in tensors.items() if not k.endswith(".alpha")}  # alpha-less formats: scale 1
    nf.write("kohya-ref", tensors)
    library.list_available_networks()
    networks.load_networks(["kohya-ref"])
    reference = snapshot(model)
    networks.load_networks([])
    if style == "processor":
        # diffusers' attention-processor LoRA (attn2.processor.to_k_lora.down.weight): attention layers only
        prefix = "unet." + TO_K.rsplit(".", 1)[0] + ".processor.to_k_lora"
        key = nf.SD1_LAYERS["linear"].key
        renamed = {
            f"{prefix}.down.weight": tensors[f"{key}.lora_down.weight"],
            f"{prefix}.up.weight": tensors[f"{key}.lora_up.weight"],
        }
        compared = {"unet." + TO_K + ".weight"}
    else:
        names, (down, up) = STYLES[style]
        renames = dict(zip([nf.SD1_LAYERS[r].key for r in roles], names, strict=True))
        renamed = _renamed(tensors, renames, {"lora_down.weight": down, "lora_up.weight": up})
        compared = set(reference)
    nf.write(f"format-{style}", renamed)
    library.list_available_networks()
    networks.load_networks([f"format-{style}"])
    assert networks.error_counts(model) == {}
    got = snapshot(model)
    for key in compared:
        assert torch.allclose(reference[key], got[key], atol=1e-6, rtol=0), key
    networks.load_networks([])


def test_sdxl_diffusers_names_reach_both_encoders(env):
    model, _, tensors, _ = write_kind(env, "sdxl", "lora", name="sdxl-kohya", seed=6)
    networks.load_networks(["sdxl-kohya"])
    reference = snapshot(model)
    networks.load_networks([])
    renames = {
        nf.SDXL_LAYERS["te_linear"].key: "text_encoder.text_model.encoder.layers.0.self_attn.q_proj",
        nf.SDXL_LAYERS["te2_linear"].key: "text_encoder_2.text_model.encoder.layers.1.mlp.fc1",
    }
    kept = {k: v for k, v in tensors.items() if k.split(".")[0] in renames}
    nf.write("sdxl-peft", _renamed(kept, renames, PEFT))
    library.list_available_networks()
    before = snapshot(model)
    networks.load_networks(["sdxl-peft"])
    got = snapshot(model)
    changed = {k for k in before if not torch.equal(before[k], got[k])}
    assert changed == {"te0.encoder.layers.0.self_attn.q_proj.weight", "te1.text_model.encoder.layers.1.mlp.fc1.weight"}
    for key in changed:
        assert torch.allclose(reference[key], got[key], atol=1e-6, rtol=0)
    networks.load_networks([])


def test_keys_that_match_nothing_are_counted_and_reported(env):
    model, name, tensors, _ = write_kind(env, "sd1", "lora", name="partial")
    tensors["lora_unet_no_such_block_proj.lora_down.weight"] = torch.zeros(4, 8)
    tensors["lora_unet_no_such_block_proj.lora_up.weight"] = torch.zeros(8, 4)
    tensors["lora_unet_down_blocks_0_attentions_0_proj_out.oft_blocks"] = torch.zeros(4, 8, 8)
    tensors["lora_unet_down_blocks_0_resnets_0_conv2.lora_down.weight"] = torch.zeros(4, 7, 3, 3)  # wrong shape
    tensors["lora_unet_down_blocks_0_resnets_0_conv2.lora_up.weight"] = torch.zeros(32, 4, 1, 1)
    nf.write(name, tensors)
    p = fake_p()
    lora = ExtraNetworkLora()
    lora.activate(p, [extra_networks.ExtraNetworkParams([name, "1"])])
    lora.deactivate(p)
    assert networks.error_counts(model) == {name: 3}
    assert "Networks with errors: partial (3)" in p.comments
    networks.load_networks([])


def fake_p(prompts=("a cat",)) -> SimpleNamespace:
    p = SimpleNamespace(
        comments={},
        extra_generation_params={},
        all_prompts=list(prompts),
        prompts=list(prompts),
        iteration=0,
        seeds=[1],
        subseeds=[1],
        scripts=None,
    )
    p.comment = lambda text: p.comments.__setitem__(text, 1)
    return p


def activate(p, *tags: str) -> None:
    extra_networks.activate(p, extra_networks.parse_prompt("".join(tags))[1])


def test_sdxl_lora_on_sd1_is_skipped_with_a_visible_warning(env):
    write_kind(env, "sdxl", "lora", name="xl-style")
    model = use(env, "sd1")
    before = snapshot(model)
    p = fake_p()
    activate(p, "<lora:xl-style:1>")
    assert_same(before, snapshot(model))
    assert networks.loaded_networks == []
    assert any("xl-style skipped" in c and "SDXL" in c and "SD1" in c for c in p.comments), p.comments
    assert p.extra_generation_params["Lora skipped"] == "xl-style (SDXL network, SD1 model)"


def test_missing_names_are_listed(env):
    use(env, "sd1")
    p = fake_p()
    activate(p, "<lora:nothere:1>", "<lora:norhere:0.5>")
    assert "Lora not found: nothere, norhere" in p.comments


def test_file_with_nans_is_refused(env):
    model, name, tensors, _ = write_kind(env, "sd1", "lora", name="nan-lora")
    key = next(k for k in tensors if k.endswith("lora_up.weight"))
    tensors[key] = tensors[key].clone()
    tensors[key][0, 0] = float("nan")
    nf.write(name, tensors)
    before = snapshot(model)
    p = fake_p()
    activate(p, "<lora:nan-lora:1>")
    assert_same(before, snapshot(model))
    (comment,) = [c for c in p.comments if "nan-lora" in c]
    assert "NaN" in comment and "download it again" in comment
    assert p.extra_generation_params["Lora skipped"] == "nan-lora (file damaged)"


def test_truncated_file_is_refused(env):
    model, name, _, _ = write_kind(env, "sd1", "lora", name="cut-lora")
    path = Path(shared.cmd_opts.lora_dir) / "cut-lora.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    library.list_available_networks()
    before = snapshot(model)
    p = fake_p()
    activate(p, "<lora:cut-lora:1>")
    assert_same(before, snapshot(model))
    (comment,) = [c for c in p.comments if "cut-lora" in c]
    assert "cut-lora.safetensors" in comment and ("truncated" in comment or "data area" in comment), comment


def test_bad_multiplier_is_a_clear_error(env):
    use(env, "sd1")
    with pytest.raises(Exception, match="not a number"):
        activate(fake_p(), "<lora:whatever:0.8.1>")


def test_file_changed_on_disk_is_read_again(env):
    model, name, _, deltas = write_kind(env, "sd1", "lora", name="changing", seed=7)
    base = originals(model, deltas)
    networks.load_networks([name])
    check_applied(model, deltas, base, 1.0, 1.0, "changing-v1")
    _, _, _, deltas2 = write_kind(env, "sd1", "lora", name="changing", seed=8)
    path = Path(shared.cmd_opts.lora_dir) / "changing.safetensors"
    later = time.time() + 5
    os.utime(path, (later, later))
    networks.load_networks([name])
    check_applied(model, deltas2, base, 1.0, 1.0, "changing-v2")
    networks.load_networks([])


def test_in_memory_cache_follows_the_limit(env, monkeypatch):
    write_kind(env, "sd1", "lora", name="cache-a", seed=9)
    write_kind(env, "sd1", "lora", name="cache-b", seed=10)
    monkeypatch.setitem(shared.opts.data, "lora_in_memory_limit", 1)
    networks.load_networks(["cache-a"])
    net_a = networks.loaded_networks[0]
    networks.load_networks(["cache-b"])
    networks.load_networks(["cache-a"])
    assert networks.loaded_networks[0] is net_a  # kept in memory
    monkeypatch.setitem(shared.opts.data, "lora_in_memory_limit", 0)
    networks.load_networks(["cache-b"])
    assert [n.network_on_disk.name for n in networks.networks_in_memory.values()] == ["cache-b"]
    networks.load_networks([])


def test_half_precision_weights_patch_and_restore_exactly(env):
    model = copy.deepcopy(use(env, "sd1")).half()
    model.sd_checkpoint_info = None
    tensors, deltas = nf.build(model, nf.SD1_LAYERS, "lora", seed=11)
    nf.write("half", tensors)
    library.list_available_networks()
    net = networks.load_network("half", library.available_networks["half"])
    before = snapshot(model)
    patcher = ModelPatcher(model)
    patcher.apply([net])
    for role, (spec, delta) in deltas.items():
        module = nf.module_of(model, spec.part, spec.path)
        key = next(k for k in param_names(model, spec) if k.endswith(".weight") and k in before)
        w0 = before[key].float()
        expected = (w0 + delta(w0, None)[0]).half()
        assert module.weight.dtype == torch.float16
        assert torch.equal(module.weight, expected), role  # delta in fp32, one rounding to fp16
    patcher.apply([])
    assert_same(before, snapshot(model))


def test_names_aliases_and_forbidden_aliases(env):
    folder = Path(shared.cmd_opts.lyco_dir_backcompat) / "sub" / "deeper"
    model = use(env, "sd1")
    tensors, _ = nf.build(model, nf.SD1_LAYERS, "lora", seed=12)
    nf.write("stem-one", tensors, {"ss_output_name": "Nice Alias"})
    nf.write("stem-two", tensors, {"ss_output_name": "shared"}, folder=str(folder))
    nf.write("stem-three", tensors, {"ss_output_name": "shared"})
    nf.write("stem-four", tensors, {"ss_output_name": "none"})
    library.list_available_networks()
    assert library.lookup("stem-one").name == "stem-one"
    assert library.lookup("Nice Alias").name == "stem-one"
    assert library.available_networks["stem-two"].filename.startswith(str(folder))  # LyCORIS dir, recursively
    assert "shared" in library.forbidden_network_aliases and "none" in library.forbidden_network_aliases
    assert library.lookup("shared") is None  # ambiguous alias: only stems work
    assert library.lookup("stem-three").alias == "shared"
    assert library.available_networks["stem-three"].get_alias() == "stem-three"
    assert library.available_networks["stem-one"].get_alias() == "Nice Alias"
    shared.opts.data["lora_preferred_name"] = "Filename"
    try:
        assert library.available_networks["stem-one"].get_alias() == "stem-one"
    finally:
        shared.opts.data["lora_preferred_name"] = "Alias from file"
    p = fake_p()
    activate(p, "<lora:Nice Alias:0.5>", "<lyco:stem-two:0.5>")
    assert [n.name for n in networks.loaded_networks] == ["Nice Alias", "stem-two"]
    assert p.extra_generation_params["Lora hashes"].startswith("Nice Alias: ")
    networks.load_networks([])


def test_listing_api_and_metadata(env):
    use(env, "sd1")
    tag_frequency = json.dumps({"10_cat": {"cat": 3}})
    nf.write(
        "meta",
        {"lora_unet_x.lora_down.weight": torch.zeros(1, 1), "lora_unet_x.lora_up.weight": torch.zeros(1, 1)},
        {"ss_output_name": "meta-alias", "ss_tag_frequency": tag_frequency, "ss_v2": "False"},
    )
    hidden = Path(shared.cmd_opts.lora_dir) / ".hidden"
    nf.write("secret", {"a.diff": torch.zeros(1)}, folder=str(hidden))
    library.list_available_networks()
    entries = {e["name"]: e for e in networks.api_loras()}
    entry = entries["meta"]
    assert entry["alias"] == "meta-alias"
    assert entry["path"].endswith("meta.safetensors")
    assert entry["metadata"]["ss_tag_frequency"] == {"10_cat": {"cat": 3}}  # JSON values decoded, as A1111
    assert list(entry["metadata"])[0] == "ss_tag_frequency" or "ss_sd_model_name" not in entry["metadata"]
    assert library.available_networks["meta"].sd_version.name == "SD1"
    assert ("secret" in entries) == bool(shared.opts.list_hidden_files)


HASH_CASES = {c["recipe"]["name"]: c for c in json.loads((FIXTURES / "hashes.json").read_text())["cases"]}


def _payload(recipe: dict) -> bytes:
    if recipe["kind"] == "mod251":
        return bytes((i + recipe.get("offset", 0)) % 251 for i in range(recipe["length"]))
    if recipe["kind"] == "lcg":
        out, x = bytearray(recipe["length"]), recipe["seed"]
        for i in range(recipe["length"]):
            x = (1103515245 * x + 12345) & 0x7FFFFFFF
            out[i] = (x >> 16) & 0xFF
        return bytes(out)
    header = recipe["header_json"].encode()
    return len(header).to_bytes(8, "little") + header + _payload(recipe["payload"])


@pytest.mark.parametrize(
    "case,suffix,expected_field",
    [
        ("safetensors_small", ".safetensors", "lora_shorthash12"),
        ("safetensors_big", ".safetensors", "lora_shorthash12"),
        ("mod251_small", ".pt", "sha256_12"),
    ],
)
def test_lora_hash_matches_parity(env, case, suffix, expected_field):
    folder = Path(shared.cmd_opts.lora_dir) / "hashes"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{case}{suffix}").write_bytes(_payload(HASH_CASES[case]["recipe"]))
    library.list_available_networks()
    entry = library.available_networks[case]
    entry.read_hash()
    assert entry.shorthash == HASH_CASES[case][expected_field]
    assert library.available_network_hash_lookup[entry.shorthash] is entry


def test_metadata_hash_wins_and_paste_replaces_aliases_by_hash(env):
    use(env, "sd1")
    nf.write(
        "hashed",
        {"lora_unet_x.diff": torch.zeros(1)},
        {"sshs_model_hash": "0123456789abcdef", "ss_output_name": "local-name"},
    )
    library.list_available_networks()
    assert library.available_networks["hashed"].shorthash == "0123456789ab"
    params = {
        "Prompt": "a <lora:their-name:0.7> and <lora:unknown:1>",
        "Lora hashes": "their-name: 0123456789ab, unknown: ffffffffffff",
    }
    networks.infotext_pasted("", params)
    assert params["Prompt"] == "a <lora:local-name:0.7> and <lora:unknown:1>"


def test_cards_read_the_side_car_and_filter_by_version(env):
    model = use(env, "sd1")
    nf.write("card-xl", {"lora_unet_x.diff": torch.zeros(1)}, SDXL_META)
    path = nf.write("card-sd1", {"lora_unet_x.diff": torch.zeros(1)}, {"ss_output_name": "card"})
    extra_networks.write_user_metadata(
        path,
        {
            "activation text": "trigger word",
            "preferred weight": 0.6,
            "negative text": "bad",
            "notes": "n",
            "description": "d",
        },
    )
    nf.write("card-unknown", {"lora_unet_x.diff": torch.zeros(1)})
    library.list_available_networks()
    card = cards.lora_card("card-sd1", model)
    assert card["prompt"] == "<lora:card:0.6> trigger word"
    assert card["negative_prompt"] == "bad" and card["description"] == "d" and card["sd_version"] == "SD1"
    assert cards.lora_card("card-xl", model) is None
    assert cards.lora_card("card-xl", model, enable_filter=False)["sd_version"] == "SDXL"
    assert cards.lora_card("card-unknown", model) is not None
    shared.opts.data["lora_hide_unknown_for_versions"] = ["SD1"]
    try:
        assert cards.lora_card("card-unknown", model) is None
    finally:
        shared.opts.data["lora_hide_unknown_for_versions"] = []
    extra_networks.write_user_metadata(path, {"sd version": "SDXL"})
    assert cards.lora_card("card-sd1", model) is None


def generate(prompt: str, seed: int = 3):
    p = processing.StableDiffusionProcessingTxt2Img(
        prompt=prompt,
        steps=1,
        width=64,
        height=64,
        seed=seed,
        sampler_name="Euler",
        do_not_save_samples=True,
        do_not_save_grid=True,
    )
    res = processing.process_images(p)
    return np.asarray(res.images[0], dtype=np.int16), res


def test_a_lora_changes_the_image_and_weight_zero_does_not(env):
    model, name, _, _ = write_kind(env, "sd1", "lora", name="image-lora", seed=13)
    before = snapshot(model)
    plain, _ = generate("a cat")
    with_lora, res = generate("a cat <lora:image-lora:1>")
    zero, _ = generate("a cat <lora:image-lora:0>")
    assert np.abs(plain - with_lora).max() > 0
    assert np.array_equal(plain, zero)
    text = res.infotexts[0]
    assert text.startswith("a cat <lora:image-lora:1>\n")  # the infotext keeps the tag
    entry = library.available_networks["image-lora"]
    assert f'Lora hashes: "image-lora: {entry.shorthash}"' in text
    assert entry.shorthash == entry.hash[:12] and len(entry.hash) == 64
    assert res.comments == ""
    networks.load_networks([])
    assert_same(before, snapshot(model))


def test_sd_lora_setting_adds_a_network_to_every_prompt(env, monkeypatch):
    write_kind(env, "sd1", "lora", name="always", seed=14)
    monkeypatch.setitem(shared.opts.data, "sd_lora", "always")
    p = fake_p()
    activate(p)
    assert p.all_prompts == ["a cat<lora:always:1.0>"]
    assert [n.name for n in networks.loaded_networks] == ["always"]
    monkeypatch.setitem(shared.opts.data, "sd_lora", "None")
    activate(fake_p())
    assert networks.loaded_networks == []


def test_no_code_of_ours_runs_during_a_sampling_step(env):
    """Networks cost nothing per step: the weights are already patched, so a UNet call with a LoRA active runs no
    function of modules/networks and the UNet has no hook (tools/bench_networks.py measures the step time)."""
    model, name, _, _ = write_kind(env, "sd1", "lora", name="timing")
    networks.load_networks([name])
    hooks = sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.unet.modules())
    ours = os.path.dirname(networks.__file__)
    calls: list[str] = []

    def profiler(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(ours):
            calls.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")

    x = torch.randn(2, 4, 8, 8)
    cond = {"c_crossattn": [torch.randn(2, 77, 64)]}
    sys.setprofile(profiler)
    try:
        with torch.no_grad():
            model.apply_model(x, torch.tensor([500.0, 500.0]), cond)
    finally:
        sys.setprofile(None)
    assert calls == []
    assert hooks == 0
    networks.load_networks([])


def test_unet_only_sdxl_lora_without_metadata_is_recognised_by_its_shapes(env):
    sdxl = use(env, "sdxl")
    roles = ("linear", "conv1x1", "up_linear")
    tensors, _ = nf.build(sdxl, {r: nf.SDXL_LAYERS[r] for r in roles}, "lora", seed=15)
    nf.write("xl-unet-only", tensors)  # no metadata, no text encoder layers
    model = use(env, "sd1")
    before = snapshot(model)
    p = fake_p()
    activate(p, "<lora:xl-unet-only:1>")
    assert_same(before, snapshot(model))
    assert p.extra_generation_params["Lora skipped"] == "xl-unet-only (text width differs from the SD1 model)"


def test_sd1_file_with_te1_prefix_is_applied(env):
    model = use(env, "sd1")
    tensors, deltas = nf.build(model, {"te_linear": nf.SD1_LAYERS["te_linear"]}, "lora", seed=16)
    tensors = {k.replace("lora_te_", "lora_te1_"): v for k, v in tensors.items()}
    nf.write("te1-sd1", tensors, {"ss_v2": "False"})
    library.list_available_networks()
    base = originals(model, deltas)
    report = networks.load_networks(["te1-sd1"])
    assert not report.skipped
    check_applied(model, deltas, base, 1.0, 1.0, "sd1-te1-prefix")
    networks.load_networks([])


def test_inpainting_input_conv_gets_a_zero_padded_change(env):
    model = sd_models.load_model(sd_models.find_checkpoint(env["sd1_inpaint"].name))
    conv_in = model.unet.conv_in
    w0 = conv_in.weight.detach().clone()
    assert w0.shape[1] == 9
    g = torch.Generator().manual_seed(17)
    down = torch.randn(nf.RANK, 4, 3, 3, generator=g)
    up = torch.randn(w0.shape[0], nf.RANK, 1, 1, generator=g)
    nf.write("conv-in", {"lora_unet_conv_in.lora_down.weight": down, "lora_unet_conv_in.lora_up.weight": up})
    library.list_available_networks()
    networks.load_networks(["conv-in"], [1.0], [0.5])
    delta = torch.einsum("or,rikl->oikl", up.reshape(-1, nf.RANK), down)
    assert (conv_in.weight[:, :4] - (w0[:, :4] + 0.5 * delta)).abs().max() < TOLERANCE
    assert torch.equal(conv_in.weight[:, 4:], w0[:, 4:])  # mask and masked-image channels untouched
    networks.load_networks([])
    assert torch.equal(conv_in.weight, w0)
