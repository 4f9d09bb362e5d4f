"""Text conditioning: prompts → the tensors the UNet is conditioned on.

Each prompt is tokenised without truncation and cut into chunks of 75 tokens; each chunk becomes
BOS + 75 tokens + EOS/padding (77) and is encoded separately; the chunk outputs are concatenated along the token
axis, so a long prompt gives 77·k tokens. Prompts of a batch are padded with empty chunks to the same count.
SDXL concatenates its two encoders' outputs and adds the pooled text and size embeddings (`vector`).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field

import torch
from transformers import CLIPTokenizer

from modules.model_builder import text_model
from modules.model_detection import TextEncoderSpec
from modules.paths_internal import configs_path

log = logging.getLogger(__name__)

CHUNK_LENGTH = 75
BOS_ID = 49406
EOS_ID = 49407

_tokenizer: CLIPTokenizer | None = None


def get_tokenizer() -> CLIPTokenizer:
    """The CLIP BPE tokenizer shipped in configs/tokenizers/clip (shared by CLIP-L and OpenCLIP)."""
    global _tokenizer
    if _tokenizer is None:
        folder = os.path.join(configs_path, "tokenizers", "clip")
        _tokenizer = CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"))
    return _tokenizer


@dataclass
class PromptChunk:
    """75 (or fewer, before padding) token ids with a weight multiplier for each."""

    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)


class TextEncoder(torch.nn.Module):
    """One CLIP or OpenCLIP text encoder and the way A1111 reads its output."""

    def __init__(self, model: torch.nn.Module, spec: TextEncoderSpec):
        super().__init__()
        self.transformer = model
        self.spec = spec
        self.id_start = BOS_ID
        self.id_end = EOS_ID
        self.id_pad = EOS_ID if spec.pad_token < 0 else spec.pad_token

    @property
    def tokenizer(self) -> CLIPTokenizer:
        return get_tokenizer()

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, truncation=False, add_special_tokens=False)["input_ids"]

    def chunk_ids(self, chunk: PromptChunk) -> list[int]:
        body = chunk.tokens[:CHUNK_LENGTH]
        ids = [self.id_start] + body + [self.id_end]
        return ids + [self.id_pad] * (CHUNK_LENGTH + 2 - len(ids))

    def encode_ids(self, ids: torch.Tensor, clip_skip: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Hidden states [B, 77, dim] per A1111's layer choice, and the pooled (projected) output if any."""
        device = next(self.transformer.parameters()).device
        out = self.transformer(input_ids=ids.to(device), output_hidden_states=True)
        hidden_states = out.hidden_states
        if self.spec.layer == "last" and clip_skip <= 1:
            z = out.last_hidden_state if self.spec.final_norm else hidden_states[-1]
        else:
            skip = max(clip_skip, 2 if self.spec.layer == "penultimate" else 1)
            z = hidden_states[-skip]
            if self.spec.final_norm:
                z = text_model(self.transformer).final_layer_norm(z)
        pooled = getattr(out, "text_embeds", None)
        return z, pooled


def split_into_chunks(tokens: list[int]) -> list[PromptChunk]:
    """Cut a token list into chunks of 75; an empty prompt still makes one (empty) chunk."""
    chunks = [
        PromptChunk(tokens[i:i + CHUNK_LENGTH], [1.0] * len(tokens[i:i + CHUNK_LENGTH]))
        for i in range(0, len(tokens), CHUNK_LENGTH)
    ]
    return chunks or [PromptChunk()]


def sdxl_size_embedding(values: torch.Tensor, dim: int) -> torch.Tensor:
    """SGM's sinusoidal embedding of each number in `values` [B, n] → [B, n·dim] (cos half first)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = values.flatten().float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return emb.reshape(values.shape[0], -1)


class Conditioner(torch.nn.Module):
    """The text side of a checkpoint: one encoder (SD1, SD2, SDXL refiner) or two (SDXL)."""

    def __init__(self, encoders: list[TextEncoder], family: str, time_embed_dim: int = 256):
        super().__init__()
        self.encoders = torch.nn.ModuleList(encoders)
        self.family = family
        self.time_embed_dim = time_embed_dim

    def forward(self, batch: list[str]) -> torch.Tensor | dict[str, torch.Tensor]:
        from modules import shared

        clip_skip = int(getattr(shared.opts, "CLIP_stop_at_last_layers", 1))
        texts = list(batch)
        hidden, pooled = [], None
        for encoder in self.encoders:
            z, p = self.encode_with(encoder, texts, clip_skip if self.family == "sd1" else 1)
            hidden.append(z)
            if p is not None:
                pooled = p
        crossattn = torch.cat(hidden, dim=-1) if len(hidden) > 1 else hidden[0]
        if self.family not in ("sdxl", "sdxl-refiner"):
            return crossattn

        if getattr(batch, "is_negative_prompt", False) and all(t == "" for t in texts):
            # SGM zeroes an empty negative prompt's text embeddings (A1111 does the same).
            crossattn = torch.zeros_like(crossattn)
            pooled = torch.zeros_like(pooled)
        vector = torch.cat([pooled, self.size_embeddings(batch, len(texts)).to(pooled)], dim=-1)
        return {"crossattn": crossattn, "vector": vector}

    def size_embeddings(self, batch: list[str], n: int) -> torch.Tensor:
        from modules import shared

        width = getattr(batch, "width", 1024) or 1024
        height = getattr(batch, "height", 1024) or 1024
        crop = [shared.opts.sdxl_crop_top, shared.opts.sdxl_crop_left]
        if self.family == "sdxl-refiner":
            negative = getattr(batch, "is_negative_prompt", False)
            score = shared.opts.sdxl_refiner_low_aesthetic_score if negative else shared.opts.sdxl_refiner_high_aesthetic_score
            numbers = [height, width, *crop, score]
        else:
            numbers = [height, width, *crop, height, width]
        values = torch.tensor([numbers], dtype=torch.float32).repeat(n, 1)
        return sdxl_size_embedding(values, self.time_embed_dim)

    def encode_with(self, encoder: TextEncoder, texts: list[str], clip_skip: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        per_prompt = [split_into_chunks(tokens) for tokens in encoder.tokenize(texts)]
        count = max(len(chunks) for chunks in per_prompt)
        zs, pooled = [], None
        for i in range(count):
            ids = [encoder.chunk_ids(chunks[i] if i < len(chunks) else PromptChunk()) for chunks in per_prompt]
            z, p = encoder.encode_ids(torch.tensor(ids), clip_skip)
            zs.append(z)
            if i == 0:
                pooled = p
        return torch.cat(zs, dim=1), pooled
