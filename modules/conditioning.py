"""Text conditioning: prompts → the tensors the UNet is conditioned on, as A1111 computes them (a1111-spec §4).

Per text encoder:
1. The prompt is split into weighted segments by `parse_prompt_attention` (setting `emphasis`; "None" takes the
   text literally, brackets and `BREAK` included) and each segment is tokenised with the CLIP BPE after the text
   fixes A1111's tokenizers apply (ftfy; OpenCLIP also unescapes HTML).
2. Tokens fill chunks of 75. When a chunk is full and its last comma is at most `comma_padding_backtrack` tokens
   back, the tokens after the comma move to the next chunk; `BREAK` ends a chunk; an embedding's vectors never
   straddle two chunks. A chunk is BOS + 75 tokens + EOS, padded with EOS; OpenCLIP then puts its pad token (0)
   after the first EOS.
3. Each chunk is encoded on its own (an embedding's vectors replace its placeholder tokens' input embeddings), the
   hidden layer is picked per model and clip skip, the weights multiply the output (emphasis mode), and the
   chunks are concatenated along the token axis: k chunks give 77·k tokens. Prompts of one call are padded with
   empty chunks to the same count.
SDXL concatenates its two encoders' outputs and adds the pooled OpenCLIP output (first chunk) and the size/crop/
target embeddings as `vector`.
"""

from __future__ import annotations

import html
import logging
import math
import os
from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ftfy
import torch
from transformers import CLIPTokenizer

from modules import devices, prompt_parser, sd_emphasis, shared
from modules.errors import UserError
from modules.model_builder import text_model
from modules.model_detection import TextEncoderSpec
from modules.paths_internal import configs_path

log = logging.getLogger(__name__)

CHUNK_LENGTH = 75
BOS_ID = 49406
EOS_ID = 49407
COMMA_ID = 267  # ",</w>"

_tokenizer: CLIPTokenizer | None = None


def get_tokenizer() -> CLIPTokenizer:
    """The CLIP BPE tokenizer shipped in configs/tokenizers/clip (shared by CLIP-L and OpenCLIP)."""
    global _tokenizer
    if _tokenizer is None:
        folder = os.path.join(configs_path, "tokenizers", "clip")
        _tokenizer = CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"))
    return _tokenizer


def tokenize(texts: Sequence[str], layout: str = "clip") -> list[list[int]]:
    """Token ids of each text, without BOS/EOS or truncation.

    A1111's CLIP tokenizer runs ftfy's fixes first (curly quotes, full-width characters and ligatures become
    ASCII, HTML entities are unescaped); open_clip's additionally unescapes HTML twice. Lower-casing and
    whitespace folding are done by the tokenizer itself.
    """
    cleaned = [ftfy.fix_text(text) for text in texts]
    if layout == "openclip":
        cleaned = [html.unescape(html.unescape(text)) for text in cleaned]
    return get_tokenizer()(cleaned, truncation=False, add_special_tokens=False)["input_ids"]


PromptChunkFix = namedtuple("PromptChunkFix", ["offset", "embedding"])
PromptChunkFix.__doc__ = "An embedding whose vectors go after token `offset` of a chunk (offset counts from after BOS)."


@dataclass
class PromptChunk:
    """Token ids with a weight multiplier each, and the embeddings placed in them.

    While being filled it holds up to 75 tokens; finished, it is BOS + 75 + EOS (77).
    """

    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)
    fixes: list[PromptChunkFix] = field(default_factory=list)


def _literal_or_parsed(line: str, parse: bool) -> list[list]:
    if not parse or shared.opts.emphasis == "None":
        return [[line, 1.0]]
    try:
        return prompt_parser.parse_prompt_attention(line)
    except ValueError as e:
        raise UserError(f"Cannot read the prompt {_excerpt(line)!r}: {e}.") from e


def _excerpt(text: str, length: int = 60) -> str:
    return text if len(text) <= length else text[:length] + "..."


def tokenize_line(
    line: str,
    embedding_db: Any = None,
    layout: str = "clip",
    width: int | None = None,
    textual_inversion_key: str | None = None,
    *,
    parse: bool = True,
) -> tuple[list[PromptChunk], int]:
    """A prompt → finished chunks and the token count A1111's counter shows.

    `embedding_db` finds embeddings by token sequence; only those with vectors of `width` for
    `textual_inversion_key` are used (others stay text). `parse=False` takes the text literally.
    """
    backtrack = int(shared.opts.comma_padding_backtrack)
    parsed = _literal_or_parsed(line, parse)
    tokenized = tokenize([text for text, _ in parsed], layout)

    chunks: list[PromptChunk] = []
    chunk = PromptChunk()
    token_count = 0
    last_comma = -1

    def next_chunk(is_last: bool = False) -> None:
        nonlocal chunk, token_count, last_comma
        token_count += len(chunk.tokens) if is_last else CHUNK_LENGTH
        to_add = CHUNK_LENGTH - len(chunk.tokens)
        if to_add > 0:
            chunk.tokens += [EOS_ID] * to_add
            chunk.multipliers += [1.0] * to_add
        chunk.tokens = [BOS_ID] + chunk.tokens + [EOS_ID]
        chunk.multipliers = [1.0] + chunk.multipliers + [1.0]
        last_comma = -1
        chunks.append(chunk)
        chunk = PromptChunk()

    for tokens, (text, weight) in zip(tokenized, parsed, strict=True):
        if text == "BREAK" and weight == -1:
            next_chunk()
            continue
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == COMMA_ID:
                last_comma = len(chunk.tokens)
            elif (
                backtrack != 0
                and len(chunk.tokens) == CHUNK_LENGTH
                and last_comma != -1
                and len(chunk.tokens) - last_comma <= backtrack
            ):
                # the chunk is full and a comma is near its end: the words after the comma start the next chunk
                split = last_comma + 1
                moved_tokens, moved_multipliers = chunk.tokens[split:], chunk.multipliers[split:]
                chunk.tokens, chunk.multipliers = chunk.tokens[:split], chunk.multipliers[:split]
                next_chunk()
                chunk.tokens, chunk.multipliers = moved_tokens, moved_multipliers
            if len(chunk.tokens) == CHUNK_LENGTH:
                next_chunk()

            embedding, length = _embedding_at(embedding_db, tokens, position, width, textual_inversion_key)
            if embedding is None:
                chunk.tokens.append(token)
                chunk.multipliers.append(weight)
                position += 1
                continue
            vectors = int(embedding.vectors)
            if len(chunk.tokens) + vectors > CHUNK_LENGTH:
                next_chunk()
            chunk.fixes.append(PromptChunkFix(len(chunk.tokens), embedding))
            chunk.tokens += [0] * vectors
            chunk.multipliers += [weight] * vectors
            position += length

    if chunk.tokens or not chunks:
        next_chunk(is_last=True)
    return chunks, token_count


def _embedding_at(db: Any, tokens: list[int], position: int, width: int | None, key: str | None) -> tuple[Any, int]:
    if db is None:
        return None, 0
    embedding, length = db.find_embedding_at_position(tokens, position)
    if embedding is None or not 0 < int(embedding.vectors) <= CHUNK_LENGTH:
        return None, 0
    if width is not None and embedding_vectors(embedding, key, width) is None:
        return None, 0
    return embedding, length


def embedding_vectors(embedding: Any, key: str | None, width: int) -> torch.Tensor | None:
    """The embedding's vectors [n, width] for the encoder that reads `key` (SDXL: clip_l / clip_g), or None."""
    vec = embedding.vec
    if isinstance(vec, dict):
        vec = vec.get(key) if key is not None else None
    if not isinstance(vec, torch.Tensor) or vec.ndim != 2 or vec.shape[-1] != width:
        return None
    return vec


def target_token_count(token_count: int) -> int:
    """The chunk limit shown next to a token count: 75, 150, ..."""
    return math.ceil(max(token_count, 1) / CHUNK_LENGTH) * CHUNK_LENGTH


class TextEncoder(torch.nn.Module):
    """One CLIP or OpenCLIP text encoder and the way A1111 reads it (FrozenCLIPEmbedderWithCustomWords)."""

    def __init__(self, model: torch.nn.Module, spec: TextEncoderSpec, textual_inversion_key: str | None = None):
        super().__init__()
        self.transformer = model
        self.spec = spec
        # SDXL embedding files hold vectors per encoder under this key
        self.textual_inversion_key = textual_inversion_key
        self.chunk_length = CHUNK_LENGTH
        self.id_start = BOS_ID
        self.id_end = EOS_ID
        self.id_pad = EOS_ID if spec.pad_token < 0 else spec.pad_token
        self.comma_token = COMMA_ID

    @property
    def width(self) -> int:
        return self.spec.hidden_size

    @property
    def tokenizer(self) -> CLIPTokenizer:
        return get_tokenizer()

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return tokenize(texts, self.spec.layout)

    def empty_chunk(self) -> PromptChunk:
        return PromptChunk([self.id_start] + [self.id_end] * (CHUNK_LENGTH + 1), [1.0] * (CHUNK_LENGTH + 2))

    def get_target_prompt_token_count(self, token_count: int) -> int:
        return target_token_count(token_count)

    def tokenize_line(
        self, line: str, embedding_db: Any = None, *, parse: bool = True
    ) -> tuple[list[PromptChunk], int]:
        return tokenize_line(line, embedding_db, self.spec.layout, self.width, self.textual_inversion_key, parse=parse)

    def process_texts(self, texts: Sequence[str], embedding_db: Any = None) -> tuple[list[list[PromptChunk]], int]:
        """Chunks of each text and the largest token count among them."""
        token_count = 0
        cache: dict[str, list[PromptChunk]] = {}
        batch_chunks = []
        for line in texts:
            if line not in cache:
                cache[line], count = self.tokenize_line(line, embedding_db)
                token_count = max(token_count, count)
            batch_chunks.append(cache[line])
        return batch_chunks, token_count

    def chunk_ids(self, chunk: PromptChunk) -> list[int]:
        """The 77 ids fed to the encoder: OpenCLIP pads with 0 after the first end token."""
        ids = list(chunk.tokens)
        if self.id_pad != self.id_end:
            end = ids.index(self.id_end)
            ids[end + 1 :] = [self.id_pad] * (len(ids) - end - 1)
        return ids

    def pick_layer(self, out: Any, clip_skip: int | None) -> torch.Tensor:
        """The hidden states A1111 conditions on.

        `clip_skip` None means the model's own choice (SD1: last layer; SD2: penultimate + final norm; SDXL:
        penultimate). A number N takes hidden state -N, with the final norm where the model has it.
        """
        if clip_skip is None:
            if self.spec.layer == "last":
                return out.last_hidden_state
            clip_skip = 2
        if clip_skip <= 1 and self.spec.final_norm:
            return out.last_hidden_state
        hidden = out.hidden_states
        z = hidden[-min(clip_skip, len(hidden))]
        return text_model(self.transformer).final_layer_norm(z) if self.spec.final_norm else z

    def encode_chunks(
        self, chunks: Sequence[PromptChunk], clip_skip: int | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encode one chunk per row: hidden states [B, 77, dim] and the pooled (projected) output if any."""
        device = next(self.transformer.parameters()).device
        ids = torch.tensor([self.chunk_ids(chunk) for chunk in chunks], device=device)
        fixes = [chunk.fixes for chunk in chunks]
        token_embedding = text_model(self.transformer).embeddings.token_embedding
        handle = token_embedding.register_forward_hook(self._fixes_hook(fixes)) if any(fixes) else None
        try:
            out = self.transformer(input_ids=ids, output_hidden_states=True)
        finally:
            if handle is not None:
                handle.remove()
        return self.pick_layer(out, clip_skip), getattr(out, "text_embeds", None)

    def _fixes_hook(self, fixes: list[list[PromptChunkFix]]) -> Callable[..., torch.Tensor]:
        """A forward hook for the token embedding that puts each embedding's vectors after its offset."""

        def hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
            output = output.clone()
            for row, row_fixes in enumerate(fixes):
                for offset, embedding in row_fixes:
                    vec = embedding_vectors(embedding, self.textual_inversion_key, self.width)
                    count = min(output.shape[1] - offset - 1, vec.shape[0])
                    output[row, offset + 1 : offset + 1 + count] = vec[:count].to(output)
            return output

        return hook

    def encode(
        self,
        batch_chunks: list[list[PromptChunk]],
        rows: list[int],
        chunk_count: int,
        clip_skip: int | None,
        emphasis: type[sd_emphasis.Emphasis],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encode distinct texts' chunks once, then lay them out as `rows` (indexes into `batch_chunks`) and apply
        the emphasis to that whole batch, chunk by chunk, as A1111 does for the batch it is given."""
        zs, pooled = [], None
        for i in range(chunk_count):
            chunks = [c[i] if i < len(c) else self.empty_chunk() for c in batch_chunks]
            z, p = self.encode_chunks(chunks, clip_skip)
            index = torch.tensor(rows, device=z.device)
            mode = emphasis()
            mode.tokens = [chunks[r].tokens for r in rows]
            mode.multipliers = torch.tensor([chunks[r].multipliers for r in rows], dtype=torch.float32, device=z.device)
            mode.z = z[index]
            mode.after_transformers()
            zs.append(mode.z)
            if i == 0 and p is not None:
                pooled = p[index]
        return torch.cat(zs, dim=1), pooled


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
        if self.is_sdxl:
            for encoder in encoders:
                encoder.textual_inversion_key = "clip_l" if encoder.spec.layout == "clip" else "clip_g"

    @property
    def is_sdxl(self) -> bool:
        return self.family in ("sdxl", "sdxl-refiner")

    @property
    def embedding_db(self) -> Any:
        from modules import sd_hijack

        return sd_hijack.model_hijack.embedding_db

    # -- A1111's token-counting interface (the first encoder's view) ---------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return self.encoders[0].tokenize(texts)

    def process_texts(self, texts: Sequence[str]) -> tuple[list[list[PromptChunk]], int]:
        return self.encoders[0].process_texts(texts, self.embedding_db)

    def get_target_prompt_token_count(self, token_count: int) -> int:
        return target_token_count(token_count)

    def clip_skip_for(self, encoder: TextEncoder) -> int | None:
        """SD1 follows the Clip skip setting; SDXL's CLIP-L only with `sdxl_clip_l_skip`; SD2 and OpenCLIP never."""
        clip_skip = int(shared.opts.CLIP_stop_at_last_layers)
        if self.family == "sd1":
            return clip_skip
        if self.family == "sdxl" and encoder.spec.layout == "clip" and shared.opts.sdxl_clip_l_skip:
            return clip_skip
        return None

    def forward(self, batch: Sequence[str]) -> torch.Tensor | dict[str, torch.Tensor]:
        texts = list(batch)
        distinct = list(dict.fromkeys(texts))
        position = {text: i for i, text in enumerate(distinct)}
        rows = [position[text] for text in texts]
        db = self.embedding_db
        per_encoder = [encoder.process_texts(distinct, db)[0] for encoder in self.encoders]
        # SDXL's encoders can disagree on the chunk count (HTML entities); both get the larger one
        chunk_count = max(len(chunks) for batch_chunks in per_encoder for chunks in batch_chunks)
        emphasis = sd_emphasis.get_current_option(shared.opts.emphasis)

        hidden, pooled = [], None
        for encoder, batch_chunks in zip(self.encoders, per_encoder, strict=True):
            z, p = encoder.encode(batch_chunks, rows, chunk_count, self.clip_skip_for(encoder), emphasis)
            hidden.append(z)
            if p is not None:
                pooled = p
        crossattn = torch.cat(hidden, dim=-1) if len(hidden) > 1 else hidden[0]
        if not self.is_sdxl:
            return crossattn

        if getattr(batch, "is_negative_prompt", False) and all(t == "" for t in texts):
            # SGM zeroes an empty negative prompt's text embeddings (A1111 does the same).
            crossattn = torch.zeros_like(crossattn)
            pooled = torch.zeros_like(pooled)
        vector = torch.cat([pooled, self.size_embeddings(batch, len(texts)).to(pooled)], dim=-1)
        return {"crossattn": crossattn, "vector": vector}

    def size_embeddings(self, batch: Sequence[str], n: int) -> torch.Tensor:
        width = getattr(batch, "width", 1024) or 1024
        height = getattr(batch, "height", 1024) or 1024
        crop = [shared.opts.sdxl_crop_top, shared.opts.sdxl_crop_left]
        if self.family == "sdxl-refiner":
            negative = getattr(batch, "is_negative_prompt", False)
            score = (
                shared.opts.sdxl_refiner_low_aesthetic_score
                if negative
                else shared.opts.sdxl_refiner_high_aesthetic_score
            )
            numbers = [height, width, *crop, score]
        else:
            numbers = [height, width, *crop, height, width]
        values = torch.tensor([numbers], dtype=torch.float32).repeat(n, 1)
        return sdxl_size_embedding(values, self.time_embed_dim)

    # -- infotext --------------------------------------------------------------------------------------------------
    def used_embeddings(self, texts: Sequence[str]) -> list[Any]:
        """Embeddings the texts use, in the order A1111 meets them in one call (chunk by chunk)."""
        batch_chunks, _ = self.process_texts(list(dict.fromkeys(texts)))
        used: dict[str, Any] = {}
        for i in range(max(len(chunks) for chunks in batch_chunks)):
            for chunks in batch_chunks:
                if i < len(chunks):
                    for fix in chunks[i].fixes:
                        used.setdefault(fix.embedding.name, fix.embedding)
        return list(used.values())


def empty_prompt_conditioning(model: Any) -> torch.Tensor:
    """The empty prompt's cross-attention conditioning [1, 77, dim].

    A1111 computes it once when a model loads (no networks active, the clip skip of that moment); with
    `pad_cond_uncond` the CFG denoiser pads the shorter of cond and uncond with it.
    """
    with torch.no_grad(), devices.autocast():
        cond = model.get_learned_conditioning([""])
    return cond["crossattn"] if isinstance(cond, dict) else cond


def infotext_params(
    model: Any,
    prompts: Sequence[str],
    negative_prompts: Sequence[str],
    steps: int,
    hires_steps: int | None = None,
    use_old_scheduling: bool = False,
) -> dict[str, str]:
    """The infotext entries implied by the conditioning of these prompts: `TI hashes` and `Emphasis`, when they
    apply.

    Computed from the prompts rather than recorded while encoding (as A1111 does), so that a cached conditioning
    still gets them. A1111's order is kept -- the prompts' embeddings before the negative prompts', later encoder
    calls first -- without A1111's repeats.
    """
    cond_stage_model = getattr(model, "cond_stage_model", None)
    if not isinstance(cond_stage_model, Conditioner):
        return {}
    _, flat, _ = prompt_parser.get_multicond_prompt_list(list(prompts))
    # one encoder call per distinct (sub-)prompt, negative prompts first (A1111 computes uc before c)
    calls = [*dict.fromkeys(negative_prompts), *flat]
    schedules = prompt_parser.get_learned_conditioning_prompt_schedules(calls, steps, hires_steps, use_old_scheduling)
    texts_per_call = [[text for _, text in schedule] for schedule in schedules]

    params: dict[str, str] = {}
    if shared.opts.textual_inversion_add_hashes_to_infotext:
        entries: dict[str, str] = {}
        for texts in reversed(texts_per_call):
            for embedding in cond_stage_model.used_embeddings(texts):
                if embedding.shorthash:
                    name = embedding.name.replace(":", "").replace(",", "")
                    entries.setdefault(name, f"{name}: {embedding.shorthash}")
        if entries:
            params["TI hashes"] = ", ".join(entries.values())
    emphasis = shared.opts.emphasis
    if emphasis != "Original" and any("(" in t or "[" in t for texts in texts_per_call for t in texts):
        params["Emphasis"] = emphasis
    return params


def prompt_lengths(model: Any, text: str) -> tuple[int, int]:
    """(tokens used, chunk limit) of one prompt text, for the token counter.

    Uses the model's first encoder when a model is given; without one the count is the same except that
    embeddings count with their vectors regardless of width. A prompt whose weights cannot be read is counted
    literally.
    """
    from modules import sd_hijack

    cond_stage_model = getattr(model, "cond_stage_model", None)
    db = sd_hijack.model_hijack.embedding_db
    if isinstance(cond_stage_model, Conditioner):
        encoder = cond_stage_model.encoders[0]

        def count(parse: bool) -> int:
            return encoder.tokenize_line(text, db, parse=parse)[1]
    else:

        def count(parse: bool) -> int:
            return tokenize_line(text, db, parse=parse)[1]

    try:
        tokens = count(True)
    except UserError:
        tokens = count(False)
    return tokens, target_token_count(tokens)
