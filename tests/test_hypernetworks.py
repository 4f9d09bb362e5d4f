"""Hypernetworks in A1111's .pt format: structure from the file, the attention they change, listing, bad files."""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from modules import devices, extra_networks, hypernetworks, processing, sd_models, shared

SIZE = 64  # the tiny SD1 model's text width and its second level's image-feature width


def mlp_state(g: torch.Generator, dim: int) -> dict[str, torch.Tensor]:
    """Layers of structure [1, 2, 1] with relu, layer norm and dropout 0.3 after the first layer, as A1111 indexes
    them: 0 Linear, 1 ReLU, 2 LayerNorm, 3 Dropout, 4 Linear, 5 LayerNorm."""
    return {
        "linear.0.weight": torch.randn(2 * dim, dim, generator=g) * 0.2,
        "linear.0.bias": torch.randn(2 * dim, generator=g) * 0.1,
        "linear.2.weight": 1 + torch.randn(2 * dim, generator=g) * 0.1,
        "linear.2.bias": torch.randn(2 * dim, generator=g) * 0.1,
        "linear.4.weight": torch.randn(dim, 2 * dim, generator=g) * 0.2,
        "linear.4.bias": torch.randn(dim, generator=g) * 0.1,
        "linear.5.weight": 1 + torch.randn(dim, generator=g) * 0.1,
        "linear.5.bias": torch.randn(dim, generator=g) * 0.1,
    }


def reference_mlp(sd: dict[str, torch.Tensor], x: torch.Tensor, strength: float) -> torch.Tensor:
    def norm(h, w, b):
        mean = h.mean(-1, keepdim=True)
        var = h.var(-1, unbiased=False, keepdim=True)
        return (h - mean) / torch.sqrt(var + 1e-5) * w + b

    h = torch.relu(x @ sd["linear.0.weight"].T + sd["linear.0.bias"])
    h = norm(h, sd["linear.2.weight"], sd["linear.2.bias"])
    h = h @ sd["linear.4.weight"].T + sd["linear.4.bias"]
    h = norm(h, sd["linear.5.weight"], sd["linear.5.bias"])
    return x + h * strength


def write_hypernetwork(name: str, seed: int = 0, sizes=(SIZE,), folder: str | None = None) -> dict:
    g = torch.Generator().manual_seed(seed)
    data: dict = {size: [mlp_state(g, size), mlp_state(g, size)] for size in sizes}
    data.update(
        {
            "layer_structure": [1, 2, 1],
            "activation_func": "relu",
            "is_layer_norm": True,
            "use_dropout": True,
            "dropout_structure": [0, 0.3, 0],
            "activate_output": False,
            "weight_initialization": "Normal",
            "step": 1000,
            "name": name,
            "sd_checkpoint": "abc",
            "sd_checkpoint_name": "tiny",
        }
    )
    folder = folder or shared.cmd_opts.hypernetwork_dir
    os.makedirs(folder, exist_ok=True)
    torch.save(data, os.path.join(folder, f"{name}.pt"))
    return data


@pytest.fixture(scope="module")
def model(tiny_checkpoints):
    devices.configure(shared.cmd_opts)
    sd_models.list_models()
    extra_networks.register_default_extra_networks()
    m = sd_models.load_model(sd_models.find_checkpoint(tiny_checkpoints["sd1"].name))
    yield m
    hypernetworks.load_hypernetworks([])


def attention_reference(attn, hidden, context_k, context_v) -> torch.Tensor:
    """softmax(q·kᵀ/√d)·v per head, then the output projection."""
    q, k, v = attn.to_q(hidden), attn.to_k(context_k), attn.to_v(context_v)
    b, n, inner = q.shape
    d = inner // attn.heads

    def split(t):
        return t.reshape(b, -1, attn.heads, d).permute(0, 2, 1, 3)

    q, k, v = split(q), split(k), split(v)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
    out = (weights @ v).permute(0, 2, 1, 3).reshape(b, n, inner)
    return attn.to_out[0](out)


@pytest.mark.parametrize("which,strength", [("attn2", 1.0), ("attn2", 0.4), ("attn1", 1.0)])
def test_keys_and_values_come_from_the_hypernetwork(model, which, strength):
    data = write_hypernetwork("hn-attn", seed=1)
    hypernetworks.refresh_hypernetworks()
    assert hypernetworks.load_hypernetworks(["hn-attn"], [strength]) == []
    block = "down_blocks.1" if which == "attn1" else "down_blocks.0"  # self-attention needs width 64
    attn = model.unet.get_submodule(f"{block}.attentions.0.transformer_blocks.0.{which}")
    g = torch.Generator().manual_seed(2)
    width = attn.to_q.in_features
    hidden = torch.randn(2, 16, width, generator=g)
    context = torch.randn(2, 77, SIZE, generator=g) if which == "attn2" else None
    with torch.no_grad():
        got = attn(hidden, encoder_hidden_states=context)
        source = hidden if context is None else context
        sd_k, sd_v = data[SIZE]
        expected = attention_reference(
            attn, hidden, reference_mlp(sd_k, source, strength), reference_mlp(sd_v, source, strength)
        )
        hypernetworks.load_hypernetworks([])
        plain = attn(hidden, encoder_hidden_states=context)
    assert (got - expected).abs().max() < 1e-5
    assert (got - plain).abs().max() > 1e-3


def test_widths_without_layers_and_no_hypernetwork_use_the_chosen_processor(model):
    write_hypernetwork("hn-other", seed=3, sizes=(1024,))
    hypernetworks.refresh_hypernetworks()
    attn = model.unet.get_submodule("down_blocks.0.attentions.0.transformer_blocks.0.attn2")
    hidden, context = torch.randn(1, 16, 32), torch.randn(1, 77, SIZE)
    with torch.no_grad():
        plain = attn(hidden, encoder_hidden_states=context)
        hypernetworks.load_hypernetworks(["hn-other"])
        other = attn(hidden, encoder_hidden_states=context)
        hypernetworks.load_hypernetworks([])
    assert torch.equal(plain, other)
    assert isinstance(attn.processor, hypernetworks.HypernetworkAttnProcessor)


def test_file_recipe_is_read(model):
    write_hypernetwork("hn-recipe", seed=4)
    hypernetworks.refresh_hypernetworks()
    hn = hypernetworks.load_hypernetwork("hn-recipe")
    assert hn.layer_structure == [1, 2, 1] and hn.activation_func == "relu" and hn.add_layer_norm
    assert hn.dropout_structure == [0, 0.3, 0] and hn.step == 1000 and hn.sd_checkpoint_name == "tiny"
    kinds = [type(m).__name__ for m in hn.layers[SIZE][0].linear]
    assert kinds == ["Linear", "ReLU", "LayerNorm", "Dropout", "Linear", "LayerNorm"]
    assert hypernetworks.parse_dropout_structure([1, 2, 2, 1], True, False) == [0, 0.3, 0, 0]
    assert hypernetworks.parse_dropout_structure([1, 2, 2, 1], True, True) == [0, 0.3, 0.3, 0]
    assert hypernetworks.parse_dropout_structure([1, 2, 1], False, False) == [0, 0, 0]


def test_oldest_format_with_linear1_linear2(model):
    g = torch.Generator().manual_seed(5)
    pair = [
        {
            "linear1.weight": torch.randn(2 * SIZE, SIZE, generator=g),
            "linear1.bias": torch.zeros(2 * SIZE),
            "linear2.weight": torch.randn(SIZE, 2 * SIZE, generator=g),
            "linear2.bias": torch.zeros(SIZE),
        }
        for _ in range(2)
    ]
    torch.save({SIZE: pair}, os.path.join(shared.cmd_opts.hypernetwork_dir, "hn-old.pt"))
    hypernetworks.refresh_hypernetworks()
    hn = hypernetworks.load_hypernetwork("hn-old")
    x = torch.randn(3, SIZE)
    expected = x + (x @ pair[0]["linear1.weight"].T) @ pair[0]["linear2.weight"].T
    assert (hn.layers[SIZE][0](x) - expected).abs().max() < 1e-4


def test_listing_and_api(model):
    write_hypernetwork("hn-nested", folder=os.path.join(shared.cmd_opts.hypernetwork_dir, "a", "b"))
    write_hypernetwork("None")
    hypernetworks.refresh_hypernetworks()
    assert "hn-nested" in hypernetworks.hypernetworks and "None" not in hypernetworks.hypernetworks
    assert shared.hypernetworks is hypernetworks.hypernetworks
    entry = {e["name"]: e for e in hypernetworks.api_hypernetworks()}["hn-nested"]
    assert entry["path"].endswith(os.path.join("a", "b", "hn-nested.pt"))


def test_prompt_tag_changes_the_image(model):
    write_hypernetwork("hn-image", seed=6)
    hypernetworks.refresh_hypernetworks()

    def generate(prompt):
        p = processing.StableDiffusionProcessingTxt2Img(
            prompt=prompt,
            steps=1,
            width=64,
            height=64,
            seed=5,
            sampler_name="Euler",
            do_not_save_samples=True,
            do_not_save_grid=True,
        )
        res = processing.process_images(p)
        return np.asarray(res.images[0], dtype=np.int16), res

    keys = set(model.unet.state_dict())
    plain, _ = generate("a dog")
    changed, res = generate("a dog <hypernet:hn-image:1>")
    assert set(model.unet.state_dict()) == keys  # the MLPs never become part of the model
    assert np.abs(plain - changed).max() > 0
    assert res.infotexts[0].startswith("a dog <hypernet:hn-image:1>\n")
    assert hypernetworks.loaded_hypernetworks[0].name == "hn-image"
    generate("a dog")
    assert hypernetworks.loaded_hypernetworks == []


def test_bad_files_are_refused_with_a_message(model):
    folder = Path(shared.cmd_opts.hypernetwork_dir)
    (folder / "hn-garbage.pt").write_bytes(b"not a pickle at all")
    torch.save({SIZE: [{"linear.0.weight": torch.zeros(3, 3)}, {}]}, folder / "hn-wrong.pt")
    hypernetworks.refresh_hypernetworks()
    for name in ("hn-garbage", "hn-wrong"):
        with pytest.raises(Exception) as info:
            hypernetworks.load_hypernetwork(name)
        assert name in str(info.value)
    p = SimpleNamespace(
        comments={}, all_prompts=["x"], scripts=None, iteration=0, prompts=["x"], seeds=[1], subseeds=[1]
    )
    p.comment = lambda text: p.comments.__setitem__(text, 1)
    extra_networks.activate(p, extra_networks.parse_prompt("<hypernet:hn-garbage:1><hypernet:missing:1>")[1])
    assert "Hypernetwork not found or not loaded: hn-garbage, missing" in p.comments
    assert hypernetworks.loaded_hypernetworks == []
