"""Seeded noise: per-image generators, variation seeds (slerp), seed resize, ENSD and the GPU/CPU/NV sources.

The functions keep A1111's names, signatures and side effects (extensions call them): `randn` and `manual_seed`
re-seed the *global* generator (torch's, or the module's NV generator), and `randn_like` / `randn_without_seed`
draw from it when no generator is given. The random source, ENSD and output device come from an `RngSettings`
passed as the `settings` keyword, or from the module default set with `set_default_settings` (the application
keeps that in step with its options).

Sources:
- ``GPU``: `torch.randn` on the CUDA device with CUDA generators. Without CUDA (or on any other device, e.g. MPS,
  as A1111 does) the noise is generated on the CPU instead, which then equals the ``CPU`` source.
- ``CPU``: generated on the CPU, then moved to the output device; identical on every machine.
- ``NV``: `modules.rng_philox`, a NumPy reimplementation of CUDA's generator: GPU-identical noise on any machine.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from modules import rng_philox
from modules.errors import UserError

log = logging.getLogger(__name__)

SOURCES = ("GPU", "CPU", "NV")

Generator = torch.Generator | rng_philox.Generator


@dataclass(frozen=True)
class RngSettings:
    """Where noise comes from. `device` None means CUDA when available, else the CPU."""

    source: str = "GPU"
    eta_noise_seed_delta: int = 0
    device: torch.device | str | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise UserError(f"Unknown random number source {self.source!r}: use one of {', '.join(SOURCES)}")

    @property
    def output_device(self) -> torch.device:
        if self.device is not None:
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @property
    def generation_device(self) -> torch.device:
        """The device torch generators live on: the CUDA output device for the GPU source, else the CPU."""
        device = self.output_device
        if self.source == "GPU" and device.type == "cuda":
            return device
        return torch.device("cpu")


_default_settings = RngSettings()
_nv_global = rng_philox.Generator(0)


def set_default_settings(settings: RngSettings) -> None:
    """Settings used by every call that passes no `settings` (the application's current options)."""
    global _default_settings
    _default_settings = settings


def default_settings() -> RngSettings:
    return _default_settings


def _resolve(settings: RngSettings | None) -> RngSettings:
    return _default_settings if settings is None else settings


def _shape(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(s) for s in shape)


def manual_seed(seed: int, *, settings: RngSettings | None = None) -> None:
    """Re-seed the global generator of the current source."""
    global _nv_global
    if _resolve(settings).source == "NV":
        _nv_global = rng_philox.Generator(seed)
    else:
        torch.manual_seed(int(seed))


def create_generator(seed: int, *, settings: RngSettings | None = None) -> Generator:
    """A new generator seeded with `seed` for the current source (a Philox generator for NV)."""
    settings = _resolve(settings)
    if settings.source == "NV":
        return rng_philox.Generator(seed)
    return torch.Generator(settings.generation_device).manual_seed(int(seed))


def _to_device(noise: torch.Tensor, device: torch.device) -> torch.Tensor:
    """CPU noise onto the output device. To CUDA it goes through pinned memory asynchronously: a plain copy from
    pageable memory would wait for the GPU to finish its queued work at every sampler step."""
    if device.type == "cuda" and noise.device.type == "cpu":
        return noise.pin_memory().to(device, non_blocking=True)
    return noise.to(device)


def _draw(shape: tuple[int, ...], generator: Generator | None, settings: RngSettings) -> torch.Tensor:
    if settings.source == "NV":
        values = (generator or _nv_global).randn(shape)
        return _to_device(torch.from_numpy(values), settings.output_device)
    noise = torch.randn(shape, device=settings.generation_device, generator=generator)
    return _to_device(noise, settings.output_device)


def randn(
    seed: int, shape: Sequence[int], generator: Generator | None = None, *, settings: RngSettings | None = None
) -> torch.Tensor:
    """Seed the global generator with `seed`, then draw `shape` from `generator` (or, if None, the global one)."""
    settings = _resolve(settings)
    manual_seed(seed, settings=settings)
    return _draw(_shape(shape), generator, settings)


def randn_local(seed: int, shape: Sequence[int], *, settings: RngSettings | None = None) -> torch.Tensor:
    """The first tensor of `seed`'s stream, without touching the global generator."""
    settings = _resolve(settings)
    return _draw(_shape(shape), create_generator(seed, settings=settings), settings)


def randn_without_seed(
    shape: Sequence[int], generator: Generator | None = None, *, settings: RngSettings | None = None
) -> torch.Tensor:
    """Draw `shape` from `generator`, or from the global generator as last seeded."""
    return _draw(_shape(shape), generator, _resolve(settings))


def randn_like(x: torch.Tensor, *, settings: RngSettings | None = None) -> torch.Tensor:
    """Noise shaped like `x` (same dtype and device) from the global generator."""
    settings = _resolve(settings)
    if settings.source == "NV":
        return torch.asarray(_nv_global.randn(x.shape), device=x.device, dtype=x.dtype)
    if settings.source == "CPU" or x.device.type not in ("cpu", "cuda"):
        return torch.randn_like(x, device="cpu").to(x.device)
    return torch.randn_like(x)


def slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """A1111's variation-seed blend of `low` (noise) towards `high` (subseed noise) by `val`.

    Norms and dot products are taken over dim 1, as A1111 does. When the inputs are nearly parallel it falls back
    to `low * val + high * (1 - val)` -- the weights are swapped compared with the spherical branch, but that is
    what A1111 computes, and images must match.
    """
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    low_weight = (torch.sin((1.0 - val) * omega) / so).unsqueeze(1)
    high_weight = (torch.sin(val * omega) / so).unsqueeze(1)
    return low_weight * low + high_weight * high


def _paste_centred(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Copy `source` (C, h, w) into the centre of `target` (C, H, W), cropping whichever is larger."""
    dy = (target.shape[1] - source.shape[1]) // 2
    dx = (target.shape[2] - source.shape[2]) // 2
    h = source.shape[1] if dy >= 0 else source.shape[1] + 2 * dy
    w = source.shape[2] if dx >= 0 else source.shape[2] + 2 * dx
    ty, tx = max(dy, 0), max(dx, 0)
    sy, sx = max(-dy, 0), max(-dx, 0)
    target[:, ty : ty + h, tx : tx + w] = source[:, sy : sy + h, sx : sx + w]
    return target


class ImageRNG:
    """Noise for a batch where every image has its own generator, so a batch reproduces each image made alone.

    `first()` gives the initial latent noise (with variation seeds and seed resize applied); later calls of
    `next()` give the per-step noise of ancestral/SDE samplers, continuing each image's generator (re-created
    with `seed + ENSD` after the first noise when ENSD is non-zero). The first `next()` call returns `first()`.
    """

    is_tensor = True

    def __init__(
        self,
        shape: Sequence[int],
        seeds: Sequence[int],
        subseeds: Sequence[int] | None = None,
        subseed_strength: float = 0.0,
        seed_resize_from_h: int = 0,
        seed_resize_from_w: int = 0,
        *,
        settings: RngSettings | None = None,
    ) -> None:
        self.shape = _shape(shape)
        self.seeds = list(seeds)
        self.subseeds = subseeds
        self.subseed_strength = subseed_strength
        self.seed_resize_from_h = seed_resize_from_h
        self.seed_resize_from_w = seed_resize_from_w
        self.settings = _resolve(settings)
        self.generators = [create_generator(seed, settings=self.settings) for seed in self.seeds]
        self.is_first = True

    def _seed_noise_shape(self) -> tuple[int, ...]:
        if self.seed_resize_from_h <= 0 or self.seed_resize_from_w <= 0:
            return self.shape
        return (self.shape[0], int(self.seed_resize_from_h) // 8, int(self.seed_resize_from_w) // 8)

    def first(self) -> torch.Tensor:
        settings = self.settings
        noise_shape = self._seed_noise_shape()
        resized = noise_shape != self.shape
        xs = []
        for i, (seed, generator) in enumerate(zip(self.seeds, self.generators, strict=True)):
            subnoise = None
            if self.subseeds is not None and self.subseed_strength != 0:
                subseed = self.subseeds[i] if i < len(self.subseeds) else 0
                subnoise = randn(subseed, noise_shape, settings=settings)
            if resized:
                noise = randn(seed, noise_shape, settings=settings)
            else:
                noise = randn(seed, self.shape, generator, settings=settings)
            if subnoise is not None:
                noise = slerp(self.subseed_strength, noise, subnoise)
            if resized:
                # the image's own generator still supplies the full-size noise around the pasted seed noise
                noise = _paste_centred(randn(seed, self.shape, generator, settings=settings), noise)
            xs.append(noise)

        delta = settings.eta_noise_seed_delta or 0
        if delta:
            self.generators = [create_generator(seed + delta, settings=settings) for seed in self.seeds]
        return torch.stack(xs).to(settings.output_device)

    def next(self) -> torch.Tensor:
        if self.is_first:
            self.is_first = False
            return self.first()
        xs = [randn_without_seed(self.shape, generator, settings=self.settings) for generator in self.generators]
        return torch.stack(xs).to(self.settings.output_device)

    def next_for_image(self, index: int) -> torch.Tensor:
        """The next noise of image `index` alone, shaped `[1, *shape]`, for samplers that run image by image;
        its generator continues exactly as `next()` would continue it."""
        if self.is_first:
            raise RuntimeError("ImageRNG.next_for_image needs the first noise drawn (first() or next())")
        noise = randn_without_seed(self.shape, self.generators[index], settings=self.settings)
        return noise.unsqueeze(0).to(self.settings.output_device)
