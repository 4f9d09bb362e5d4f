"""NumPy Philox-4x32-10 normal generator that reproduces `torch.randn` on NVIDIA GPUs.

The "NV" random source: the same noise as CUDA's `torch.randn(shape, generator=cuda_generator_seeded(seed))` on
any hardware. Each output element `i` of the `n`-th `randn` call of a generator is the first Box-Muller value of the
Philox-4x32-10 block with counter `(n, 0, i, 0)` and key `(seed low 32 bits, seed high 32 bits)` (Salmon et al.,
"Parallel random numbers: as easy as 1, 2, 3", SC'11; the Box-Muller constants are cuRAND's).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Philox-4x32 multipliers and Weyl key increments (Random123 / cuRAND).
_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint32(0x9E3779B9)
_W1 = np.uint32(0xBB67AE85)
_ROUNDS = 10

# cuRAND's Box-Muller scale factors are float32 constants; the arithmetic itself is done in float64 and only the
# result is rounded to float32, which is what reproduces the reference values bit for bit.
_INV_2POW32 = float(np.float32(2.0**-32))
_INV_2POW32_2PI = float(np.float32(2.0**-32) * np.float32(6.2831855))

_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)


def _mulhilo(a: np.ndarray, m: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    """High and low 32-bit halves of the 64-bit products a * m (a: uint32 array)."""
    product = a.astype(np.uint64) * m
    return (product >> _SHIFT32).astype(np.uint32), (product & _LOW32).astype(np.uint32)


def philox4x32(counter: np.ndarray, key: tuple[int, int], rounds: int = _ROUNDS) -> np.ndarray:
    """Apply Philox-4x32 to a (4, n) uint32 counter array with a (k0, k1) key; returns a new (4, n) array."""
    c0, c1, c2, c3 = (np.asarray(row, dtype=np.uint32) for row in counter)
    k0, k1 = np.uint32(key[0]), np.uint32(key[1])
    for round_index in range(rounds):
        if round_index:
            # uint32 wrap-around is the intended modular key schedule
            with np.errstate(over="ignore"):
                k0, k1 = k0 + _W0, k1 + _W1
        hi0, lo0 = _mulhilo(c0, _M0)
        hi1, lo1 = _mulhilo(c2, _M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return np.stack([c0, c1, c2, c3])


def box_muller(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """cuRAND's Box-Muller transform of two uint32 arrays; returns the sine branch as float32."""
    u = x.astype(np.float64) * _INV_2POW32 + _INV_2POW32 / 2
    v = y.astype(np.float64) * _INV_2POW32_2PI + _INV_2POW32_2PI / 2
    return (np.sqrt(-2.0 * np.log(u)) * np.sin(v)).astype(np.float32)


class Generator:
    """A seeded stream of standard normal tensors; each `randn` call advances the Philox counter by one."""

    def __init__(self, seed: int) -> None:
        # torch accepts negative seeds and reduces them modulo 2**64; do the same
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self.offset = 0

    def randn(self, shape: Sequence[int]) -> np.ndarray:
        """Standard normal float32 array of `shape`, as CUDA's `torch.randn` would give for this call."""
        shape = tuple(int(s) for s in shape)
        n = int(np.prod(shape, dtype=np.int64))
        if n > 0xFFFFFFFF:
            raise ValueError(f"cannot generate {n} values in one call (at most 2**32)")
        counter = np.zeros((4, n), dtype=np.uint32)
        counter[0] = self.offset
        counter[2] = np.arange(n, dtype=np.uint32)
        self.offset += 1
        block = philox4x32(counter, (self.seed & 0xFFFFFFFF, self.seed >> 32))
        return box_muller(block[0], block[1]).reshape(shape)
