"""Network files for the tests, in the key formats real trainers write, and the change each layer should make.

Every layer type builds random tensors for a target weight shape and computes its expected (unmultiplied) change
directly from the published formula — written here independently of modules/networks/types.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from safetensors.torch import save_file

from modules import shared
from modules.model_builder import text_model

RANK = 4
ALPHA = 2.0


@dataclass
class LayerSpec:
    """One layer of a test file: its name in the file, the module of our model it must reach."""

    key: str
    part: str  # "unet", "te0", "te1"
    path: str  # module path under the UNet, or under the text encoder's transformer stack (text_model)


def module_of(model, part: str, path: str) -> torch.nn.Module:
    if part == "unet":
        return model.unet.get_submodule(path)
    encoder = model.cond_stage_model.encoders[int(part[2:])].transformer
    return text_model(encoder).get_submodule(path)


# Layers of the tiny checkpoints, by kind of module, named as kohya writes them.
SD1_LAYERS = {
    "linear": LayerSpec(
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k",
        "unet",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k",
    ),
    "te_linear": LayerSpec(
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj", "te0", "encoder.layers.0.self_attn.q_proj"
    ),
    "conv1x1": LayerSpec("lora_unet_down_blocks_0_attentions_0_proj_in", "unet", "down_blocks.0.attentions.0.proj_in"),
    "conv3x3": LayerSpec("lora_unet_down_blocks_0_resnets_0_conv1", "unet", "down_blocks.0.resnets.0.conv1"),
    "up_linear": LayerSpec(
        "lora_unet_up_blocks_1_attentions_1_transformer_blocks_0_ff_net_2",
        "unet",
        "up_blocks.1.attentions.1.transformer_blocks.0.ff.net.2",
    ),
    "layernorm": LayerSpec(
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_norm1",
        "unet",
        "down_blocks.0.attentions.0.transformer_blocks.0.norm1",
    ),
    "groupnorm": LayerSpec("lora_unet_down_blocks_0_resnets_0_norm1", "unet", "down_blocks.0.resnets.0.norm1"),
    "te_layernorm": LayerSpec("lora_te_text_model_encoder_layers_1_layer_norm2", "te0", "encoder.layers.1.layer_norm2"),
}

# SDXL files name UNet layers by their SGM paths (the tiny UNet has one resnet per level, so input block 1 is the
# first level's resnet+attention, 2 its downsampler, 3 the second level; output blocks 0-1 the first up level).
SDXL_LAYERS = {
    "linear": LayerSpec(
        "lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k",
        "unet",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k",
    ),
    "te_linear": LayerSpec(
        "lora_te1_text_model_encoder_layers_0_self_attn_q_proj", "te0", "encoder.layers.0.self_attn.q_proj"
    ),
    "te2_linear": LayerSpec("lora_te2_text_model_encoder_layers_1_mlp_fc1", "te1", "encoder.layers.1.mlp.fc1"),
    "conv3x3": LayerSpec("lora_unet_input_blocks_1_0_in_layers_2", "unet", "down_blocks.0.resnets.0.conv1"),
    "conv1x1": LayerSpec("lora_unet_input_blocks_3_0_skip_connection", "unet", "down_blocks.1.resnets.0.conv_shortcut"),
    "up_linear": LayerSpec("lora_unet_output_blocks_3_1_proj_out", "unet", "up_blocks.1.attentions.1.proj_out"),
    "mid_linear": LayerSpec("lora_unet_middle_block_2_emb_layers_1", "unet", "mid_block.resnets.1.time_emb_proj"),
    "upsampler": LayerSpec("lora_unet_output_blocks_1_2_conv", "unet", "up_blocks.0.upsamplers.0.conv"),
    "time": LayerSpec("lora_unet_time_embed_0", "unet", "time_embedding.linear_1"),
    "label": LayerSpec("lora_unet_label_emb_0_0", "unet", "add_embedding.linear_1"),
    "layernorm": LayerSpec(
        "lora_unet_input_blocks_1_1_transformer_blocks_0_norm2",
        "unet",
        "down_blocks.0.attentions.0.transformer_blocks.0.norm2",
    ),
}


@dataclass
class Built:
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    # layer spec → function(original fp32 weight, original fp32 bias) → (weight change, bias change or None)
    deltas: dict[str, object] = field(default_factory=dict)


def lora_layer(g: torch.Generator, w: torch.Tensor, *, mid: bool = False, dora: str | None = None):
    """LoRA (Linear, 1×1 conv), LoCon (k×k conv: k×k down, 1×1 up) or Tucker LoCon (1×1 down, k×k mid, 1×1 up),
    with alpha; `dora` = "out" or "in" adds a DoRA magnitude on that axis."""
    out_ch, in_ch = w.shape[0], w.shape[1]
    kernel = tuple(w.shape[2:])
    t: dict[str, torch.Tensor] = {"alpha": torch.tensor(ALPHA)}
    if mid:
        t["lora_down.weight"] = torch.randn(RANK, in_ch, 1, 1, generator=g) * 0.1
        t["lora_mid.weight"] = torch.randn(RANK, RANK, *kernel, generator=g) * 0.1
        t["lora_up.weight"] = torch.randn(out_ch, RANK, 1, 1, generator=g) * 0.1
    else:
        t["lora_down.weight"] = torch.randn(RANK, in_ch, *kernel, generator=g) * 0.1
        t["lora_up.weight"] = torch.randn(out_ch, RANK, *([1] * len(kernel)), generator=g) * 0.1
    if dora == "out":
        t["dora_scale"] = torch.rand(out_ch, *([1] * (w.dim() - 1)), generator=g) + 0.5
    elif dora == "in":
        t["dora_scale"] = torch.rand(1, in_ch, *([1] * (w.dim() - 2)), generator=g) + 0.5

    def delta(w0: torch.Tensor, b0):
        up = t["lora_up.weight"].reshape(out_ch, RANK)
        if mid:
            down = t["lora_down.weight"].reshape(RANK, in_ch)
            d = torch.einsum("or,rskl,si->oikl", up, t["lora_mid.weight"], down)
        elif kernel:
            d = torch.einsum("or,rikl->oikl", up, t["lora_down.weight"].reshape(RANK, in_ch, *kernel))
        else:
            d = up @ t["lora_down.weight"]
        d = d.reshape(w0.shape) * (ALPHA / RANK)
        if dora is None:
            return d, None
        v = w0 + d
        if dora == "out":
            norm = v.reshape(out_ch, -1).norm(dim=1).reshape(out_ch, *([1] * (w0.dim() - 1)))
        else:
            norm = v.transpose(0, 1).reshape(in_ch, -1).norm(dim=1).reshape(1, in_ch, *([1] * (w0.dim() - 2)))
        return t["dora_scale"] * v / norm - w0, None

    return t, delta


def loha_layer(g: torch.Generator, w: torch.Tensor):
    out_ch, rest = w.shape[0], w[0].numel()
    t = {"alpha": torch.tensor(ALPHA)}
    for name, shape in (
        ("hada_w1_a", (out_ch, RANK)),
        ("hada_w1_b", (RANK, rest)),
        ("hada_w2_a", (out_ch, RANK)),
        ("hada_w2_b", (RANK, rest)),
    ):
        t[name] = torch.randn(*shape, generator=g) * 0.2

    def delta(w0, b0):
        d = (t["hada_w1_a"] @ t["hada_w1_b"]) * (t["hada_w2_a"] @ t["hada_w2_b"])
        return d.reshape(w0.shape) * (ALPHA / RANK), None

    return t, delta


def _kron(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Kronecker product written out: K[i·p + k, j·q + l] = a[i, j] · b[k, l] (b may have k×k trailing dims)."""
    out = torch.einsum("ij,kl...->ikjl...", a, b)
    return out.reshape(a.shape[0] * b.shape[0], a.shape[1] * b.shape[1], *b.shape[2:])


def lokr_layer(g: torch.Generator, w: torch.Tensor, *, decomposed: bool):
    """LoKr with w1 = [2, 2]; w2 full (alpha then does not scale) or as w2_a·w2_b (scaled by alpha / rank)."""
    out_ch, in_ch = w.shape[0], w.shape[1]
    kernel = tuple(w.shape[2:])
    t = {"alpha": torch.tensor(ALPHA), "lokr_w1": torch.randn(2, 2, generator=g)}
    c, d = out_ch // 2, in_ch // 2
    if decomposed:
        t["lokr_w2_a"] = torch.randn(c, RANK, generator=g) * 0.2
        t["lokr_w2_b"] = torch.randn(RANK, d * max(1, torch.Size(kernel).numel()), generator=g) * 0.2
    else:
        t["lokr_w2"] = torch.randn(c, d, *kernel, generator=g) * 0.2

    def delta(w0, b0):
        if decomposed:
            w2 = (t["lokr_w2_a"] @ t["lokr_w2_b"]).reshape(c, d, *kernel)
            scale = ALPHA / RANK
        else:
            w2 = t["lokr_w2"]
            scale = 1.0
        return _kron(t["lokr_w1"], w2).reshape(w0.shape) * scale, None

    return t, delta


def full_layer(g: torch.Generator, w: torch.Tensor, bias: torch.Tensor | None):
    t = {"diff": torch.randn(*w.shape, generator=g) * 0.05}
    if bias is not None:
        t["diff_b"] = torch.randn(*bias.shape, generator=g) * 0.05
    return t, lambda w0, b0: (t["diff"], t.get("diff_b"))


def norm_layer(g: torch.Generator, w: torch.Tensor):
    t = {"w_norm": torch.randn(*w.shape, generator=g) * 0.1, "b_norm": torch.randn(*w.shape, generator=g) * 0.1}
    return t, lambda w0, b0: (t["w_norm"], t["b_norm"])


def ia3_layer(g: torch.Generator, w: torch.Tensor):
    t = {"weight": torch.randn(w.shape[0], generator=g) * 0.3, "on_input": torch.tensor(False)}
    return t, lambda w0, b0: (w0 * t["weight"].reshape(-1, *[1] * (w0.dim() - 1)), None)


def build(model, layers: dict[str, LayerSpec], kind: str, seed: int = 0) -> tuple[dict, dict]:
    """A file's tensors (kohya names) for the layers that suit `kind`, and the expected change per layer."""
    g = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    deltas = {}
    for role, spec in layers.items():
        module = module_of(model, spec.part, spec.path)
        w = module.weight.detach().float()
        is_norm = isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm))
        is_conv3 = w.dim() == 4 and w.shape[2] > 1
        if kind == "norm" and not is_norm or kind != "norm" and is_norm:
            continue
        if kind in ("lora", "dora_out", "dora_in", "loha", "lokr", "lokr_decomposed", "ia3") and is_conv3:
            continue
        if kind in ("locon3x3", "tucker", "lokr_conv") and not is_conv3:
            continue
        if kind in ("lokr", "lokr_decomposed") and (w.shape[0] % 2 or w.shape[1] % 2):
            continue
        if kind in ("lora", "locon3x3"):
            t, delta = lora_layer(g, w)
        elif kind == "tucker":
            t, delta = lora_layer(g, w, mid=True)
        elif kind == "dora_out":
            t, delta = lora_layer(g, w, dora="out")
        elif kind == "dora_in":
            t, delta = lora_layer(g, w, dora="in")
        elif kind == "loha":
            t, delta = loha_layer(g, w)
        elif kind == "lokr":
            t, delta = lokr_layer(g, w, decomposed=False)
        elif kind == "lokr_conv":
            t, delta = lokr_layer(g, w, decomposed=False)
        elif kind == "lokr_decomposed":
            t, delta = lokr_layer(g, w, decomposed=True)
        elif kind == "full":
            t, delta = full_layer(g, w, module.bias)
        elif kind == "norm":
            t, delta = norm_layer(g, w)
        elif kind == "ia3":
            t, delta = ia3_layer(g, w)
        else:
            raise AssertionError(kind)
        for part, tensor in t.items():
            tensors[f"{spec.key}.{part}"] = tensor.contiguous()
        deltas[role] = (spec, delta)
    return tensors, deltas


def write(
    name: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None, folder: str | None = None
) -> str:
    folder = folder or shared.cmd_opts.lora_dir
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.safetensors")
    save_file(tensors, path, metadata=metadata)
    return path
