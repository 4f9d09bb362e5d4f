"""Upscaling networks and loading them from files: ESRGAN (RRDBNet) and Real-ESRGAN compact (SRVGGNetCompact)
are built in; every other architecture (DAT, SwinIR, HAT, ...) goes through the `spandrel` package when it is
installed.

Recognised ESRGAN key layouts (all load into the same `RRDBNet`):
- "old" (original ESRGAN): ``model.0`` first conv, ``model.1.sub.{i}.RDB{k}.conv{j}.0`` dense blocks,
  ``model.1.sub.{nb}`` trunk conv, then ``model.{3,6,...}`` upsampling convs and the two HR convs;
- "new" (BasicSR / Real-ESRGAN): ``conv_first``, ``body.{i}.rdb{k}.conv{j}``, ``conv_body``, ``conv_up{n}``,
  ``conv_hr``, ``conv_last``;
- the intermediate ESRGAN layout: ``RRDB_trunk``, ``RDB{k}``, ``trunk_conv``, ``upconv{n}``, ``HRconv``.
Real-ESRGAN x2/x1 models take pixel-unshuffled input (12 or 48 input channels).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from modules import model_files, safe
from modules.errors import UserError

log = logging.getLogger(__name__)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, negative_slope=0.2)


class ResidualDenseBlock(nn.Module):
    """Five 3×3 convs, each seeing the block input and every earlier output; residual scaled by 0.2."""

    def __init__(self, nf: int, gc: int):
        super().__init__()
        for j in range(1, 5):
            setattr(self, f"conv{j}", nn.Conv2d(nf + (j - 1) * gc, gc, 3, 1, 1))
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for j in range(1, 5):
            features.append(_lrelu(getattr(self, f"conv{j}")(torch.cat(features, 1))))
        return self.conv5(torch.cat(features, 1)) * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks, residual scaled by 0.2."""

    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(nf, gc)
        self.rdb2 = ResidualDenseBlock(nf, gc)
        self.rdb3 = ResidualDenseBlock(nf, gc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN's generator (Wang et al. 2018) in the BasicSR key layout."""

    def __init__(self, in_nc: int, out_nc: int, nf: int, nb: int, gc: int, n_upsample: int, shuffle_factor: int = 1):
        super().__init__()
        self.shuffle_factor = shuffle_factor
        self.conv_first = nn.Conv2d(in_nc * shuffle_factor**2, nf, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(nf, gc) for _ in range(nb)])
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.n_upsample = n_upsample
        for u in range(1, n_upsample + 1):
            setattr(self, f"conv_up{u}", nn.Conv2d(nf, nf, 3, 1, 1))
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, out_nc, 3, 1, 1)
        self.scale = 2**n_upsample // shuffle_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shuffle_factor > 1:
            x = F.pixel_unshuffle(x, self.shuffle_factor)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for u in range(1, self.n_upsample + 1):
            feat = _lrelu(getattr(self, f"conv_up{u}")(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(_lrelu(self.conv_hr(feat)))


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact network: a plain conv stack at low resolution, a pixel shuffle, plus the nearest-
    neighbour upscaled input. Keys ``body.{i}``: convs at even indices, activations (PReLU weights) between."""

    def __init__(self, num_in_ch: int, num_out_ch: int, num_feat: int, num_conv: int, upscale: int, act_type: str):
        super().__init__()
        self.upscale = upscale
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), self._act(act_type, num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), self._act(act_type, num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.Sequential(*layers)
        self.scale = upscale

    @staticmethod
    def _act(act_type: str, num_feat: int) -> nn.Module:
        if act_type == "prelu":
            return nn.PReLU(num_parameters=num_feat)
        if act_type == "leakyrelu":
            return nn.LeakyReLU(negative_slope=0.1)
        return nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.pixel_shuffle(self.body(x), self.upscale)
        return out + F.interpolate(x, scale_factor=self.upscale, mode="nearest")


_OLD_RDB = re.compile(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$")
_OLD_TRUNK = re.compile(r"model\.1\.sub\.(\d+)\.(weight|bias)$")
_OLD_TOP = re.compile(r"model\.(\d+)\.(weight|bias)$")


def _convert_old_esrgan(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original ESRGAN ("model.N") keys → BasicSR names."""
    top = sorted({int(m.group(1)) for k in sd if (m := _OLD_TOP.match(k))})
    if not top or top[0] != 0:
        raise ValueError("no model.0 convolution")
    last = top[-1]
    n_up = (last - 4) // 3
    names = {0: "conv_first", last - 2: "conv_hr", last: "conv_last"}
    names.update({3 + 3 * u: f"conv_up{u + 1}" for u in range(n_up)})
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if m := _OLD_RDB.match(key):
            out[f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}"] = value
        elif m := _OLD_TRUNK.match(key):
            out[f"conv_body.{m.group(2)}"] = value
        elif (m := _OLD_TOP.match(key)) and int(m.group(1)) in names:
            out[f"{names[int(m.group(1))]}.{m.group(2)}"] = value
        else:
            raise ValueError(f"unexpected key {key}")
    return out


def _convert_esrgan_v2(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ESRGAN repository's RRDB_trunk / trunk_conv / upconv / HRconv names → BasicSR names."""
    out = {}
    for key, value in sd.items():
        key = re.sub(r"^RRDB_trunk\.", "body.", key)
        key = re.sub(r"\.RDB(\d)\.", r".rdb\1.", key)
        key = key.replace("trunk_conv.", "conv_body.").replace("HRconv.", "conv_hr.")
        key = re.sub(r"^upconv(\d)\.", r"conv_up\1.", key)
        out[key] = value
    return out


def _build_rrdbnet(sd: Mapping[str, torch.Tensor]) -> RRDBNet:
    if any(k.startswith("model.") for k in sd):
        sd = _convert_old_esrgan(sd)
    elif any(k.startswith("RRDB_trunk.") for k in sd):
        sd = _convert_esrgan_v2(sd)
    first, last = sd["conv_first.weight"], sd["conv_last.weight"]
    nf, in_ch = first.shape[0], first.shape[1]
    out_nc = last.shape[0]
    shuffle = {out_nc * 4: 2, out_nc * 16: 4}.get(in_ch, 1)
    nb = len({k.split(".")[1] for k in sd if k.startswith("body.")})
    n_up = len({k.split(".")[0] for k in sd if k.startswith("conv_up")})
    gc = sd["body.0.rdb1.conv1.weight"].shape[0] if nb else 32
    net = RRDBNet(in_ch // shuffle**2, out_nc, nf, nb, gc, n_up, shuffle)
    net.load_state_dict(sd, strict=True)
    return net


def _build_compact(sd: Mapping[str, torch.Tensor]) -> SRVGGNetCompact:
    indices = sorted({int(k.split(".")[1]) for k in sd if k.startswith("body.")})
    last = indices[-1]
    first = sd["body.0.weight"]
    num_feat, num_in_ch = first.shape[0], first.shape[1]
    upscale = int(math.isqrt(sd[f"body.{last}.weight"].shape[0] // num_in_ch))
    act_type = "prelu" if "body.1.weight" in sd else "relu"
    net = SRVGGNetCompact(num_in_ch, num_in_ch, num_feat, (last - 2) // 2, upscale, act_type)
    net.load_state_dict(sd, strict=True)
    return net


def build_builtin(sd: Mapping[str, torch.Tensor]) -> nn.Module | None:
    """The network for a state dict in one of the built-in layouts, or None when it is not one of them."""
    try:
        if "conv_first.weight" in sd or "model.0.weight" in sd or "RRDB_trunk.0.RDB1.conv1.weight" in sd:
            return _build_rrdbnet(sd)
        if "body.0.weight" in sd and sd["body.0.weight"].ndim == 4 and "conv_first.weight" not in sd:
            return _build_compact(sd)
    except (KeyError, ValueError, RuntimeError, IndexError) as e:
        log.debug("Not a built-in upscaler layout: %s", e)
    return None


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Weights of an upscaler file (.pth/.pt/.ckpt through the safe loader, or .safetensors), unwrapping the
    `params_ema` / `params` / `state_dict` containers and DataParallel's ``module.`` prefix."""
    if os.path.splitext(path)[1].lower() == ".safetensors":
        sd: Mapping = model_files.read_state_dict(path)
    else:
        sd = safe.load(path, map_location="cpu")
    for key in ("params_ema", "params", "state_dict", "model"):
        if isinstance(sd, Mapping) and isinstance(sd.get(key), Mapping):
            sd = sd[key]
            break
    if not isinstance(sd, Mapping):
        raise UserError(f"{path}: does not contain model weights (it holds a {type(sd).__name__}).")
    tensors = {k.removeprefix("module."): v for k, v in sd.items() if isinstance(k, str) and torch.is_tensor(v)}
    if not tensors:
        raise UserError(f"{path}: does not contain model weights.")
    return tensors


@dataclass
class LoadedUpscaler:
    """A network ready to run: `model(x)` maps (B,3,H,W) in [0, 1] to (B,3,H·scale,W·scale)."""

    model: nn.Module
    scale: int
    architecture: str


def _spandrel_model(sd: dict[str, torch.Tensor]) -> LoadedUpscaler | None:
    try:
        import spandrel
    except ImportError:  # spandrel is optional (it needs torchvision)
        return None
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(sd)
    except Exception as e:  # spandrel raises its own error types for unknown layouts
        log.debug("spandrel could not load the model: %s", e)
        return None
    model = descriptor.model
    model.supports_half = bool(getattr(descriptor, "supports_half", True))
    return LoadedUpscaler(model, int(descriptor.scale), str(descriptor.architecture.name))


def load_model(path: str, device: torch.device, half: bool = False) -> LoadedUpscaler:
    """Load an upscaler file for inference on `device` (fp16 when `half` and the architecture allows it).

    ESRGAN and Real-ESRGAN compact load with the built-in networks; other architectures need spandrel. A file
    that is not a model gives one `UserError` naming it."""
    name = os.path.basename(path)
    try:
        sd = read_state_dict(path)
    except UserError as e:
        raise UserError(f"Upscaler model {name} could not be loaded: {e}") from e
    net = build_builtin(sd)
    if net is not None:
        loaded = LoadedUpscaler(net, net.scale, type(net).__name__)
        net.supports_half = True
    else:
        loaded = _spandrel_model(sd)
        if loaded is None:
            raise UserError(
                f"{name} is not an upscaler model this installation can run: built in are ESRGAN and Real-ESRGAN "
                "models; for DAT, SwinIR, HAT and other architectures install spandrel (pip install spandrel)."
            )
    loaded.model.eval().requires_grad_(False)
    dtype = torch.float16 if half and device.type == "cuda" and loaded.model.supports_half else torch.float32
    loaded.model.to(device=device, dtype=dtype)
    log.info("Loaded upscaler %s (%s, x%d, %s)", name, loaded.architecture, loaded.scale, dtype)
    return loaded
