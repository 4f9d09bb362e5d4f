"""Network layer types and the weight change each one makes, from the published formulas, computed in fp32.

A layer's tensors (grouped from one file layer name) choose its type, first match wins, in A1111's order:
LoRA/LoCon (`lora_up`/`lora_down` [+ `lora_mid`: Tucker]), LoHa (`hada_*`), IA3 (`weight` [+ `on_input`]),
LoKr (`lokr_*`), full difference (`diff` [+ `diff_b`]), norm (`w_norm` [+ `b_norm`]). Common extras: `alpha`
(scale = alpha / rank), `scale`, `dora_scale` (DoRA weight decomposition). The change is
`delta(W) · scale`, DoRA-decomposed when the layer has a magnitude, times the multiplier.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Suffix of a file key → our name for that tensor of the layer. Longest suffixes are tried first.
PART_NAMES: dict[str, str] = {
    "lora_up.weight": "lora_up.weight",
    "lora_down.weight": "lora_down.weight",
    "lora_mid.weight": "lora_mid.weight",
    "lora_B.weight": "lora_up.weight",
    "lora_A.weight": "lora_down.weight",
    "lora_B.default.weight": "lora_up.weight",
    "lora_A.default.weight": "lora_down.weight",
    "lora.up.weight": "lora_up.weight",
    "lora.down.weight": "lora_down.weight",
    "lora_linear_layer.up.weight": "lora_up.weight",
    "lora_linear_layer.down.weight": "lora_down.weight",
    "lora_magnitude_vector.default.weight": "dora_scale",
    "lora_magnitude_vector.weight": "dora_scale",
    "lora_magnitude_vector.default": "dora_scale",
    "lora_magnitude_vector": "dora_scale",
    "dora_scale": "dora_scale",
    "hada_w1_a": "hada_w1_a",
    "hada_w1_b": "hada_w1_b",
    "hada_w2_a": "hada_w2_a",
    "hada_w2_b": "hada_w2_b",
    "hada_t1": "hada_t1",
    "hada_t2": "hada_t2",
    "lokr_w1": "lokr_w1",
    "lokr_w1_a": "lokr_w1_a",
    "lokr_w1_b": "lokr_w1_b",
    "lokr_w2": "lokr_w2",
    "lokr_w2_a": "lokr_w2_a",
    "lokr_w2_b": "lokr_w2_b",
    "lokr_t2": "lokr_t2",
    "diff_b": "diff_b",
    "diff": "diff",
    "w_norm": "w_norm",
    "b_norm": "b_norm",
    "on_input": "on_input",
    "alpha": "alpha",
    "scale": "scale",
    "weight": "weight",
}
SUFFIXES = sorted(PART_NAMES, key=len, reverse=True)


class ShapeMismatch(ValueError):
    """A layer's change does not fit the module it names (a network for another model)."""


def split_key(key: str) -> tuple[str, str] | None:
    """`lora_unet_x.lora_down.weight` → ("lora_unet_x", "lora_down.weight"); None if no known part ends it.
    diffusers' old attention-processor names (`attn1.processor.to_q_lora.down.weight`) are read too."""
    for old, new in (
        (".processor.to_out_lora.", ".to_out.0.lora."),
        (".processor.to_q_lora.", ".to_q.lora."),
        (".processor.to_k_lora.", ".to_k.lora."),
        (".processor.to_v_lora.", ".to_v.lora."),
    ):
        key = key.replace(old, new)
    for suffix in SUFFIXES:
        if key.endswith("." + suffix) and len(key) > len(suffix) + 1:
            return key[: -len(suffix) - 1], PART_NAMES[suffix]
    return None


def _f32(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    return t.to(device=device, dtype=torch.float32)


def _mat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def rebuild_cp(t: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """Tucker/CP reconstruction: W[o, i, k, l] = Σ_ab t[a, b, k, l] · wa[a, o] · wb[b, i]."""
    return torch.einsum("abkl,ao,bi->oikl", t, _mat(wa), _mat(wb))


def size_fits(out_features: int, numel: int, shape: torch.Size) -> bool:
    """Whether a change with this many rows and elements fits a weight of `shape` (a 4-channel change fits a
    9-channel inpainting input conv, zero-padded)."""
    total = math.prod(shape)
    if out_features != shape[0]:
        return False
    return numel == total or (len(shape) == 4 and shape[1] == 9 and numel * 9 == total * 4)


def fit_to(updown: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Reshape a change to the weight's shape; a 4-channel input conv change is zero-padded for 9-channel
    inpainting models (A1111). Anything else that does not fit raises ShapeMismatch."""
    if updown.shape == shape:
        return updown
    if not size_fits(updown.shape[0], updown.numel(), shape):
        raise ShapeMismatch(f"a change of shape {tuple(updown.shape)} does not fit a weight of shape {tuple(shape)}")
    if updown.numel() == math.prod(shape):
        return updown.reshape(shape)
    return F.pad(updown.reshape(shape[0], 4, *shape[2:]), (0, 0, 0, 0, 0, 5))


def weight_decompose(updown: torch.Tensor, orig: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """DoRA: V = W + ΔW rescaled to the trained magnitude per output row (PEFT, LyCORIS `wd_on_out`) or per input
    column (older LyCORIS, A1111), chosen by the magnitude's shape; returns the change V·m/‖V‖ − W."""
    merged = orig + updown
    m = magnitude.to(device=orig.device, dtype=torch.float32)
    out_features = orig.shape[0]
    trailing = [1] * (orig.dim() - 1)
    if m.shape[0] == out_features and m.numel() == out_features:
        norm = merged.reshape(out_features, -1).norm(dim=1).reshape(out_features, *trailing)
    elif orig.dim() >= 2 and m.numel() == orig.shape[1]:
        in_features = orig.shape[1]
        norm = merged.transpose(0, 1).reshape(in_features, -1).norm(dim=1).reshape(1, in_features, *trailing[1:])
    else:
        raise ShapeMismatch(
            f"a DoRA magnitude of shape {tuple(m.shape)} does not fit a weight of shape {tuple(orig.shape)}"
        )
    return merged * (m.reshape(norm.shape) / norm) - orig


class NetworkModule:
    """One layer of a network: its tensors (as stored in the file) and how they change a weight."""

    kind = ""
    uses: frozenset[str] = frozenset()
    common = frozenset({"alpha", "scale", "dora_scale"})

    def __init__(self, w: dict[str, torch.Tensor]):
        self.w = w
        self.alpha = float(w["alpha"]) if "alpha" in w else None
        self.scale = float(w["scale"]) if "scale" in w else None
        self.dora_scale = w.get("dora_scale")
        self.dim: int | None = None

    def unused_parts(self) -> list[str]:
        return sorted(set(self.w) - self.uses - self.common)

    def change_size(self) -> tuple[int, int]:
        """Rows and elements of the change this layer makes, from its tensors' shapes (nothing computed)."""
        raise NotImplementedError

    def fits(self, shape: torch.Size) -> bool:
        out_features, numel = self.change_size()
        return size_fits(out_features, numel, shape)

    def calc_scale(self) -> float:
        if self.scale is not None:
            return self.scale
        if self.dim is not None and self.alpha is not None:
            return self.alpha / self.dim
        return 1.0

    def updown(self, orig: torch.Tensor, dyn: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The unscaled change of the weight (any shape with the weight's element count) and of the bias."""
        raise NotImplementedError

    def delta(
        self, orig: torch.Tensor, multiplier: float, dyn: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The change to add to `orig` (the current fp32 weight) and to its bias, for this multiplier."""
        updown, ex_bias = self.updown(orig, dyn)
        updown = fit_to(updown, orig.shape) * self.calc_scale()
        if self.dora_scale is not None:
            updown = weight_decompose(updown, orig, self.dora_scale)
        return updown * multiplier, None if ex_bias is None else ex_bias * multiplier


class LoRA(NetworkModule):
    kind = "lora"
    uses = frozenset({"lora_up.weight", "lora_down.weight", "lora_mid.weight"})

    def __init__(self, w: dict[str, torch.Tensor]):
        super().__init__(w)
        self.dim = w["lora_down.weight"].shape[0]

    def change_size(self):
        out_features, down = self.w["lora_up.weight"].shape[0], self.w["lora_down.weight"]
        mid = self.w.get("lora_mid.weight")
        if mid is not None:
            return out_features, out_features * down.shape[1] * math.prod(mid.shape[2:])
        return out_features, out_features * math.prod(down.shape[1:])

    def updown(self, orig, dyn):
        dev = orig.device
        raw_down = self.w["lora_down.weight"]
        up = _mat(_f32(self.w["lora_up.weight"], dev))
        down = _mat(_f32(raw_down, dev))
        mid = self.w.get("lora_mid.weight")
        if mid is not None:
            # Tucker-decomposed LoCon: down 1×1, mid k×k, up 1×1
            return torch.einsum("nmkl,in,mj->ijkl", _f32(mid, dev), up, down), None
        if dyn is not None:
            up, down = up[:, :dyn], down[:dyn]
        updown = up @ down
        if raw_down.dim() == 4:
            updown = updown.reshape(up.shape[0], *raw_down.shape[1:])
        return updown, None


class LoHa(NetworkModule):
    kind = "loha"
    uses = frozenset({"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2"})

    def __init__(self, w):
        super().__init__(w)
        self.dim = w["hada_w1_b"].shape[0]

    def change_size(self):
        w1a, w1b, t1 = self.w["hada_w1_a"], self.w["hada_w1_b"], self.w.get("hada_t1")
        if t1 is not None:
            return w1a.shape[1], w1a.shape[1] * w1b.shape[1] * math.prod(t1.shape[2:])
        return w1a.shape[0], w1a.shape[0] * math.prod(w1b.shape[1:])

    def _factor(
        self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor | None, shape: list[int] | None, dev: torch.device
    ) -> torch.Tensor:
        if t is not None:
            return rebuild_cp(_f32(t, dev), _f32(a, dev), _f32(b, dev))
        product = _mat(_f32(a, dev)) @ _mat(_f32(b, dev))
        return product.reshape(shape) if shape is not None else product

    def updown(self, orig, dyn):
        dev = orig.device
        w1a, w1b = self.w["hada_w1_a"], self.w["hada_w1_b"]
        shape = [w1a.shape[0], *w1b.shape[1:]]
        first = self._factor(w1a, w1b, self.w.get("hada_t1"), shape, dev)
        second = self._factor(self.w["hada_w2_a"], self.w["hada_w2_b"], self.w.get("hada_t2"), list(first.shape), dev)
        return first * second, None


class IA3(NetworkModule):
    kind = "ia3"
    uses = frozenset({"weight", "on_input"})

    @property
    def on_input(self) -> bool:
        return "on_input" in self.w and bool(self.w["on_input"].flatten()[0])

    def fits(self, shape):
        axis = 1 if self.on_input else 0
        return len(shape) > axis and self.w["weight"].numel() == shape[axis]

    def updown(self, orig, dyn):
        w = _f32(self.w["weight"], orig.device).flatten()
        if self.on_input:
            return orig * w.reshape(1, -1, *[1] * (orig.dim() - 2)), None
        return orig * w.reshape(-1, *[1] * (orig.dim() - 1)), None


class LoKr(NetworkModule):
    kind = "lokr"
    uses = frozenset({"lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2"})

    def __init__(self, w):
        super().__init__(w)
        for decomposed in ("lokr_w1_b", "lokr_w2_b"):
            if decomposed in w:
                self.dim = w[decomposed].shape[0]

    def change_size(self):
        w = self.w
        w1 = w["lokr_w1"].shape[:2] if "lokr_w1" in w else (w["lokr_w1_a"].shape[0], w["lokr_w1_b"].shape[1])
        if "lokr_w2" in w:
            w2 = (w["lokr_w2"].shape[0], math.prod(w["lokr_w2"].shape[1:]))
        elif "lokr_t2" in w:
            w2 = (w["lokr_w2_a"].shape[1], w["lokr_w2_b"].shape[1] * math.prod(w["lokr_t2"].shape[2:]))
        else:
            w2 = (w["lokr_w2_a"].shape[0], math.prod(w["lokr_w2_b"].shape[1:]))
        return w1[0] * w2[0], math.prod(w1) * math.prod(w2)

    def updown(self, orig, dyn):
        dev = orig.device
        w = self.w
        w1 = (
            _f32(w["lokr_w1"], dev)
            if "lokr_w1" in w
            else _mat(_f32(w["lokr_w1_a"], dev)) @ _mat(_f32(w["lokr_w1_b"], dev))
        )
        if "lokr_w2" in w:
            w2 = _f32(w["lokr_w2"], dev)
        elif "lokr_t2" in w:
            w2 = rebuild_cp(_f32(w["lokr_t2"], dev), _f32(w["lokr_w2_a"], dev), _f32(w["lokr_w2_b"], dev))
        else:
            w2 = _mat(_f32(w["lokr_w2_a"], dev)) @ _mat(_f32(w["lokr_w2_b"], dev))
        if w2.dim() == 4:
            w1 = w1.reshape(*w1.shape[:2], 1, 1)
        return torch.kron(w1, w2.contiguous()), None


class Full(NetworkModule):
    kind = "full"
    uses = frozenset({"diff", "diff_b"})

    def change_size(self):
        return self.w["diff"].shape[0], self.w["diff"].numel()

    def updown(self, orig, dyn):
        bias = self.w.get("diff_b")
        return _f32(self.w["diff"], orig.device), None if bias is None else _f32(bias, orig.device)


class Norm(NetworkModule):
    kind = "norm"
    uses = frozenset({"w_norm", "b_norm"})

    def change_size(self):
        return self.w["w_norm"].shape[0], self.w["w_norm"].numel()

    def updown(self, orig, dyn):
        bias = self.w.get("b_norm")
        return _f32(self.w["w_norm"], orig.device), None if bias is None else _f32(bias, orig.device)


def create_module(w: dict[str, torch.Tensor]) -> NetworkModule | None:
    """The layer type its tensors name (A1111's order), or None for an unknown set of tensors."""
    if "lora_up.weight" in w and "lora_down.weight" in w:
        return LoRA(w)
    if all(k in w for k in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")):
        return LoHa(w)
    if "weight" in w and w["weight"].dim() == 1:
        return IA3(w)
    has_1 = "lokr_w1" in w or ("lokr_w1_a" in w and "lokr_w1_b" in w)
    has_2 = "lokr_w2" in w or ("lokr_w2_a" in w and "lokr_w2_b" in w)
    if has_1 and has_2:
        return LoKr(w)
    if "diff" in w:
        return Full(w)
    if "w_norm" in w:
        return Norm(w)
    return None
