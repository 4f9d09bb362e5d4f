"""Emphasis modes: how `(word:1.2)` weights act on the text encoder's output (setting `emphasis`).

A1111's names and interface (extensions list and add modes here): an `Emphasis` gets the chunk's `tokens`,
`multipliers` [B, 77] and encoder output `z` [B, 77, dim], and `after_transformers()` replaces `z`.
"""

from __future__ import annotations

import torch


class Emphasis:
    """Base mode: the weights are parsed but change nothing."""

    name: str = "Base"
    description: str = ""

    tokens: list[list[int]]
    multipliers: torch.Tensor
    z: torch.Tensor

    def after_transformers(self) -> None:
        pass


class EmphasisNone(Emphasis):
    name = "None"
    description = "disable the mechanism entirely and treat (:.1.1) as literal characters"


class EmphasisIgnore(Emphasis):
    name = "Ignore"
    description = "treat all emphasised words as if they have no emphasis"


class EmphasisOriginal(Emphasis):
    name = "Original"
    description = "the original emphasis implementation"

    def after_transformers(self) -> None:
        # The mean is taken over the whole batch of this chunk, as A1111 does, so other prompts of one encoder call
        # (the texts of a prompt's schedule) share the rescaling.
        original_mean = self.z.mean()
        self.z = self.z * self.multipliers.reshape(self.multipliers.shape + (1,)).expand(self.z.shape)
        new_mean = self.z.mean()
        # a chunk whose mean is exactly 0 would become NaN in A1111 (0/0); it keeps its scale instead
        ratio = torch.where(new_mean == 0, torch.ones_like(new_mean), original_mean / new_mean)
        self.z = self.z * ratio


class EmphasisOriginalNoNorm(EmphasisOriginal):
    name = "No norm"
    description = "same as original, but without normalization (seems to work better for SDXL)"

    def after_transformers(self) -> None:
        self.z = self.z * self.multipliers.reshape(self.multipliers.shape + (1,)).expand(self.z.shape)


def get_current_option(emphasis_option_name: str) -> type[Emphasis]:
    """The mode class for a setting value; unknown names fall back to Original (A1111)."""
    return next((x for x in options if x.name == emphasis_option_name), EmphasisOriginal)


def get_options_descriptions() -> str:
    return ", ".join(f"{x.name}: {x.description}" for x in options)


options: list[type[Emphasis]] = [
    EmphasisNone,
    EmphasisIgnore,
    EmphasisOriginal,
    EmphasisOriginalNoNorm,
]
