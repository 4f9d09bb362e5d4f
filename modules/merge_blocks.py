"""Block-weighted merging: a multiplier per UNet block instead of one for the whole model (the semantics of the
"merge-block-weighted" extension for A1111).

UNet keys are assigned to blocks by their A1111 single-file name: `model.diffusion_model.input_blocks.N.*` → INnn,
`model.diffusion_model.middle_block.*` → M00, `model.diffusion_model.output_blocks.N.*` → OUTnn. Every other key
(the UNet's time embedding and final output layers, the text encoders, the VAE) takes the base alpha.

Layouts: SD 1.x, SD 2.x and the SDXL refiner have 12 input and 12 output blocks (25 weights: IN00–IN11, M00,
OUT00–OUT11); SDXL has 9 and 9 (19 weights: IN00–IN08, M00, OUT00–OUT08). A weight string lists the values in
that order, comma-separated, or names a preset (`PRESETS`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from modules.errors import UserError

UNET_PREFIX = "model.diffusion_model."
_BLOCK_RE = re.compile(r"(input_blocks|middle_block|output_blocks)\.(\d+)\.")

LAYOUTS: dict[str, tuple[int, int]] = {"sd1": (12, 12), "sd2": (12, 12), "sdxl-refiner": (12, 12), "sdxl": (9, 9)}
FAMILY_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL", "sdxl-refiner": "SDXL refiner"}


def block_names(family: str) -> list[str]:
    """IN00…, M00, OUT00… for a model family."""
    if family not in LAYOUTS:
        raise UserError(f"Block-weighted merging does not know the UNet blocks of {family} models.")
    n_in, n_out = LAYOUTS[family]
    return [f"IN{i:02d}" for i in range(n_in)] + ["M00"] + [f"OUT{i:02d}" for i in range(n_out)]


def block_of(key: str) -> str | None:
    """The block a checkpoint key belongs to, or None for keys that take the base alpha."""
    if not key.startswith(UNET_PREFIX):
        return None
    m = _BLOCK_RE.match(key, len(UNET_PREFIX))
    if m is None:
        return None
    kind, number = m.group(1), int(m.group(2))
    if kind == "middle_block":
        return "M00"
    return f"{'IN' if kind == 'input_blocks' else 'OUT'}{number:02d}"


def _grad_v(n_in: int, n_out: int) -> list[float]:
    """1 at both ends falling linearly to 0 at the middle block."""
    return [1 - i / n_in for i in range(n_in)] + [0.0] + [(i + 1) / n_out for i in range(n_out)]


def _smoothstep(n: int) -> list[float]:
    return [x * x * (3 - 2 * x) for x in (i / (n - 1) for i in range(n))]


def _cosine(n: int) -> list[float]:
    return [0.5 - 0.5 * math.cos(math.pi * i / (n - 1)) for i in range(n)]


PRESETS: dict[str, Callable[[int, int], list[float]]] = {
    "ALL_A": lambda n_in, n_out: [0.0] * (n_in + 1 + n_out),
    "ALL_B": lambda n_in, n_out: [1.0] * (n_in + 1 + n_out),
    "FLAT_25": lambda n_in, n_out: [0.25] * (n_in + 1 + n_out),
    "FLAT_75": lambda n_in, n_out: [0.75] * (n_in + 1 + n_out),
    "GRAD_V": _grad_v,
    "GRAD_A": lambda n_in, n_out: [1 - w for w in _grad_v(n_in, n_out)],
    "SMOOTHSTEP": lambda n_in, n_out: _smoothstep(n_in + 1 + n_out),
    "REVERSE-SMOOTHSTEP": lambda n_in, n_out: [1 - w for w in _smoothstep(n_in + 1 + n_out)],
    "COSINE": lambda n_in, n_out: _cosine(n_in + 1 + n_out),
    "REVERSE-COSINE": lambda n_in, n_out: [1 - w for w in _cosine(n_in + 1 + n_out)],
    "IN_ONLY": lambda n_in, n_out: [1.0] * n_in + [0.0] * (1 + n_out),
    "MID_ONLY": lambda n_in, n_out: [0.0] * n_in + [1.0] + [0.0] * n_out,
    "OUT_ONLY": lambda n_in, n_out: [0.0] * (n_in + 1) + [1.0] * n_out,
}
"""Named weight curves, from IN00 (first) to the last OUT block: 0 keeps model A, 1 takes model B (weighted sum)."""


def preset(name: str, family: str) -> list[float]:
    block_names(family)  # refuses unknown families
    return PRESETS[name.upper()](*LAYOUTS[family])


def parse_block_weights(text: str | None, family: str) -> list[float] | None:
    """Weights per block from a comma-separated list or a preset name; None when empty (no block weighting)."""
    text = (text or "").strip()
    if not text:
        return None
    names = block_names(family)
    if text.upper() in PRESETS:
        return preset(text, family)
    parts = [x for x in re.split(r"[,\s]+", text) if x]
    values = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise UserError(f"Block weights: '{part}' is not a number. Give {len(names)} comma-separated numbers "
                            f"or a preset name ({', '.join(PRESETS)}).") from None
        if not math.isfinite(value):
            raise UserError(f"Block weights: '{part}' is not a finite number.")
        values.append(value)
    if len(values) != len(names):
        raise UserError(f"Block weights: {len(values)} values given, but {FAMILY_NAMES.get(family, family)} models "
                        f"have {len(names)} blocks ({names[0]}–{names[len(names) // 2 - 1]}, M00, OUT00–{names[-1]}); "
                        f"give one value per block or a preset name ({', '.join(PRESETS)}).")
    return values


def alpha_for(key: str, base_alpha: float, weights: list[float] | None, family: str) -> float:
    """The multiplier of one key: its block's weight, or the base alpha outside the blocks."""
    if weights is None:
        return base_alpha
    block = block_of(key)
    if block is None:
        return base_alpha
    names = block_names(family)
    if block not in names:
        raise UserError(f"Block-weighted merge: {key} is in block {block}, which {FAMILY_NAMES.get(family, family)} "
                        "models do not have.")
    return weights[names.index(block)]


def format_weights(weights: list[float]) -> str:
    return ",".join(f"{w:g}" for w in weights)
