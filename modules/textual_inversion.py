"""Textual-inversion embeddings: files in embeddings/ whose vectors stand in for a word, the file's stem.

Formats (a1111-spec §4), in .pt/.bin (through the allow-list unpickler) or .safetensors:
- A1111's: `{"string_to_param": {"*": [n, dim]}, "name", "step", "sd_checkpoint", "sd_checkpoint_name"}` (also the
  original implementation's ParameterDict);
- a single named tensor: diffusers' concept files `{"<token>": [dim] or [n, dim]}`, safetensors `emb_params`;
- SDXL: `{"clip_l": [n, 768], "clip_g": [n, 1280]}`.
An embedding is usable when its width matches the loaded model's text encoders (A1111's rule: its total width equals
theirs); the others are listed as skipped with the reason, as are embeddings with NaN/inf values (one warning per
file) or more vectors than a prompt chunk holds. Folders are rescanned when a file in them changes or the model's
encoder widths change.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

import torch

from modules import conditioning, hashes, model_files, safe, sd_models, shared
from modules.errors import UserError

log = logging.getLogger(__name__)

EMBEDDING_EXTENSIONS = (".pt", ".bin", ".safetensors")


class Embedding:
    """One embedding: `vec` is a tensor [vectors, width], or for SDXL a dict of them by encoder (clip_l, clip_g)."""

    def __init__(self, vec: torch.Tensor | dict[str, torch.Tensor], name: str, step: int | None = None):
        self.vec = vec
        self.name = name
        self.step = step
        self.shape: int = 0  # total width over encoders
        self.vectors: int = 0
        self.sd_checkpoint: str | None = None
        self.sd_checkpoint_name: str | None = None
        self.filename: str | None = None
        self.hash: str | None = None
        self.shorthash: str | None = None
        self.skip_reason: str | None = None

    def set_hash(self, value: str) -> None:
        self.hash = value
        self.shorthash = value[:12]

    def __repr__(self) -> str:
        return f"Embedding({self.name!r}, vectors={self.vectors}, shape={self.shape})"


def _as_matrix(value: Any, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise UserError(f"{what} is not a floating-point tensor")
    vec = value.detach().to("cpu", torch.float32)
    if vec.ndim == 1:
        vec = vec.unsqueeze(0)
    if vec.ndim != 2 or vec.shape[0] == 0:
        raise UserError(f"{what} has shape {tuple(value.shape)}; expected [vectors, width]")
    return vec


def create_embedding_from_data(
    data: Any, name: str, filename: str = "unknown embedding file", filepath: str | None = None
) -> Embedding:
    """An Embedding from a loaded file's contents. Raises UserError if the format is not one of the known ones."""
    if not isinstance(data, dict):
        raise UserError(f"{filename}: not a textual-inversion embedding (it holds a {type(data).__name__})")
    if "string_to_param" in data:
        params = data["string_to_param"]
        params = getattr(params, "_parameters", params)  # the original implementation saved a ParameterDict
        if not isinstance(params, dict) or len(params) != 1:
            raise UserError(f"{filename}: an embedding file must hold exactly one term in string_to_param")
        vec: torch.Tensor | dict[str, torch.Tensor] = _as_matrix(next(iter(params.values())), f"{filename}: the vector")
        shape, vectors = vec.shape[-1], vec.shape[0]
    elif "clip_g" in data and "clip_l" in data:
        vec = {k: _as_matrix(data[k], f"{filename}: {k}") for k in ("clip_l", "clip_g")}
        if vec["clip_l"].shape[0] != vec["clip_g"].shape[0]:
            raise UserError(f"{filename}: clip_l and clip_g have different numbers of vectors")
        shape, vectors = vec["clip_g"].shape[-1] + vec["clip_l"].shape[-1], vec["clip_g"].shape[0]
    elif data and all(isinstance(v, torch.Tensor) for v in data.values()):
        if len(data) != 1:
            raise UserError(f"{filename}: an embedding file must hold exactly one tensor (it has {len(data)})")
        vec = _as_matrix(next(iter(data.values())), f"{filename}: the vector")
        shape, vectors = vec.shape[-1], vec.shape[0]
    else:
        raise UserError(f"{filename}: not recognised as a textual-inversion embedding or a diffusers concept")

    embedding = Embedding(vec, name)
    step = data.get("step")
    embedding.step = step if isinstance(step, int) else None
    for key in ("sd_checkpoint", "sd_checkpoint_name"):
        value = data.get(key)
        setattr(embedding, key, value if isinstance(value, str) else None)
    embedding.shape = int(shape)
    embedding.vectors = int(vectors)
    if filepath:
        embedding.filename = filepath
        sha = hashes.sha256(filepath, "textual_inversion/" + name, no_hashing=shared.cmd_opts.no_hashing)
        embedding.set_hash(sha or "")
    return embedding


def read_embedding_file(path: str) -> Any:
    """A file's contents, loaded safely: safetensors, or pickles through the allow-list unpickler."""
    if path.lower().endswith(".safetensors"):
        return model_files.read_state_dict(path)
    return safe.load(path, map_location="cpu", allow_unsafe=shared.cmd_opts.disable_safe_unpickle)


def _has_bad_values(embedding: Embedding) -> bool:
    vecs = embedding.vec.values() if isinstance(embedding.vec, dict) else [embedding.vec]
    return any(not torch.isfinite(v).all() for v in vecs)


class DirWithTextualInversionEmbeddings:
    """One embeddings folder; `has_changed()` compares the files' names, sizes and times with the last load."""

    def __init__(self, path: str):
        self.path = path
        self.signature: tuple | None = None

    def files(self) -> list[str]:
        """Embedding files under the folder, recursively, in a stable order (hidden ones per list_hidden_files)."""
        hidden = bool(shared.opts.list_hidden_files)
        found = []
        for root, dirs, names in os.walk(self.path, followlinks=True):
            dirs[:] = sorted(d for d in dirs if hidden or not d.startswith("."))
            for name in sorted(names):
                if (hidden or not name.startswith(".")) and name.lower().endswith(EMBEDDING_EXTENSIONS):
                    found.append(os.path.join(root, name))
        return found

    def scan(self) -> tuple:
        stamps = []
        for path in self.files():
            try:
                st = os.stat(path)
            except OSError:
                continue
            stamps.append((path, st.st_size, st.st_mtime_ns))
        return tuple(stamps)

    def has_changed(self) -> bool:
        return self.scan() != self.signature


class EmbeddingDatabase:
    """The embeddings known to prompts (A1111's names: `word_embeddings`, `skipped_embeddings`, `ids_lookup`)."""

    def __init__(self) -> None:
        self.ids_lookup: dict[int, list[tuple[list[int], Embedding]]] = {}
        self.word_embeddings: dict[str, Embedding] = {}
        self.skipped_embeddings: dict[str, Embedding] = {}
        self.expected_shape = -1
        self.embedding_dirs: dict[str, DirWithTextualInversionEmbeddings] = {}
        self.previously_displayed_embeddings: tuple = ()
        # (key, width) per encoder of the model the embeddings were checked against; None: no model
        self.expected_widths: list[tuple[str | None, int]] | None = None
        # bumped on every (re)load, so that cached conditioning is recomputed
        self.version = 0
        self._loaded_for: Any = ()
        self._warned: set[tuple[str, int]] = set()
        self._lock = threading.RLock()

    def add_embedding_dir(self, path: str) -> None:
        self.embedding_dirs[path] = DirWithTextualInversionEmbeddings(path)

    def clear_embedding_dirs(self) -> None:
        self.embedding_dirs.clear()

    # -- registry ----------------------------------------------------------------------------------------------
    def register_embedding(self, embedding: Embedding, model: Any = None) -> Embedding:
        return self.register_embedding_by_name(embedding, model, embedding.name)

    def register_embedding_by_name(self, embedding: Embedding | None, model: Any, name: str) -> Embedding | None:
        """Make `name` (its token sequence) stand for `embedding`; None unregisters the name."""
        with self._lock:
            ids = conditioning.tokenize([name])[0]
            if not ids:
                return None
            first_id = ids[0]
            lookup = [x for x in self.ids_lookup.get(first_id, []) if x[1].name != name]
            if embedding is not None:
                lookup.append((ids, embedding))
            if lookup:
                # longest token sequence first, so that "cat-large" wins over "cat"
                self.ids_lookup[first_id] = sorted(lookup, key=lambda x: len(x[0]), reverse=True)
            else:
                self.ids_lookup.pop(first_id, None)
            if embedding is None:
                self.word_embeddings.pop(name, None)
                return None
            self.word_embeddings[name] = embedding
            self.version += 1
            return embedding

    def find_embedding_at_position(self, tokens: list[int], offset: int) -> tuple[Embedding | None, int | None]:
        """The embedding whose name's tokens start at `tokens[offset]`, and how many tokens the name has."""
        for ids, embedding in self.ids_lookup.get(tokens[offset], ()):
            if tokens[offset : offset + len(ids)] == ids:
                return embedding, len(ids)
        return None, None

    # -- loading -----------------------------------------------------------------------------------------------
    def get_expected_shape(self) -> int:
        """The total text-encoder width of the loaded model (what an embedding's width must be), -1 without one."""
        widths = _model_widths()
        return sum(width for _, width in widths) if widths else -1

    def skip_reason(self, embedding: Embedding) -> str | None:
        """Why `embedding` cannot be used with the current model's encoders, or None."""
        if embedding.vectors > conditioning.CHUNK_LENGTH:
            return f"it has {embedding.vectors} vectors; at most {conditioning.CHUNK_LENGTH} fit in a prompt chunk"
        if _has_bad_values(embedding):
            return "its vectors contain NaN or infinite values"
        widths = self.expected_widths
        if not widths:
            return None
        # A1111's rule is the total width; each encoder must also find its own vectors (else A1111 fails later)
        fits = all(conditioning.embedding_vectors(embedding, key, width) is not None for key, width in widths)
        if embedding.shape != sum(width for _, width in widths) or not fits:
            if isinstance(embedding.vec, dict):
                have = " + ".join(f"{key} {vec.shape[-1]}" for key, vec in embedding.vec.items())
            else:
                have = str(embedding.shape)
            want = " + ".join(f"{key} {width}" if key else str(width) for key, width in widths)
            return f"its vectors are {have} wide; the loaded model's text encoders take {want}"
        return None

    def load_from_file(self, path: str, filename: str) -> None:
        """Load one file and register it (name: the file's stem) or list it as skipped."""
        name, ext = os.path.splitext(filename)
        if ext.lower() not in EMBEDDING_EXTENSIONS:
            return
        embedding = create_embedding_from_data(read_embedding_file(path), name, filename=filename, filepath=path)
        reason = self.skip_reason(embedding)
        if reason is None:
            self.register_embedding(embedding)
            self.skipped_embeddings.pop(name, None)
            return
        embedding.skip_reason = reason
        self.skipped_embeddings[name] = embedding
        if _has_bad_values(embedding):
            self._warn_once(path, f"Embedding {path} was not loaded: {reason}.")
        else:
            log.debug("Embedding %s skipped: %s", name, reason)

    def load_from_dir(self, embdir: DirWithTextualInversionEmbeddings) -> None:
        for path in embdir.files():
            try:
                if os.stat(path).st_size == 0:
                    continue
                self.load_from_file(path, os.path.basename(path))
            except Exception as e:  # one bad file must not hide the others
                self._warn_once(path, f"Could not load embedding {path}: {e}")

    def load_textual_inversion_embeddings(self, force_reload: bool = False) -> None:
        """Scan the folders again if a file changed, the model's encoder widths changed, or `force_reload`."""
        with self._lock:
            widths = _model_widths()
            if (
                not force_reload
                and widths == self._loaded_for
                and not any(d.has_changed() for d in self.embedding_dirs.values())
            ):
                return
            self.ids_lookup.clear()
            self.word_embeddings.clear()
            self.skipped_embeddings.clear()
            self.expected_widths = widths
            self.expected_shape = sum(width for _, width in widths) if widths else -1
            for embdir in self.embedding_dirs.values():
                signature = embdir.scan()
                self.load_from_dir(embdir)
                embdir.signature = signature
            self._loaded_for = widths
            self.version += 1

            # sorted by name (case-insensitive), updated in place: extensions may hold a reference to the dict
            ordered = sorted(self.word_embeddings.values(), key=lambda e: e.name.lower())
            self.word_embeddings.clear()
            self.word_embeddings.update((e.name, e) for e in ordered)
            self._report()

    def _report(self) -> None:
        displayed = (tuple(self.word_embeddings), tuple(self.skipped_embeddings))
        if displayed == self.previously_displayed_embeddings:
            return
        self.previously_displayed_embeddings = displayed
        level = logging.INFO if shared.opts.textual_inversion_print_at_load else logging.DEBUG
        log.log(
            level,
            "Textual inversion embeddings loaded(%d): %s",
            len(self.word_embeddings),
            ", ".join(self.word_embeddings),
        )
        for name, embedding in self.skipped_embeddings.items():
            log.log(level, "Textual inversion embedding skipped: %s (%s)", name, embedding.skip_reason)

    def _warn_once(self, path: str, message: str) -> None:
        try:
            key = (path, os.stat(path).st_mtime_ns)
        except OSError:
            key = (path, 0)
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)

    def listing(self) -> dict[str, dict[str, dict[str, Any]]]:
        """What /sdapi/v1/embeddings returns: `{"loaded": {name: info}, "skipped": {name: info}}`, after a rescan
        if anything changed. `info` has A1111's keys: step, sd_checkpoint, sd_checkpoint_name, shape, vectors."""
        with self._lock:
            self.load_textual_inversion_embeddings()

            def info(e: Embedding) -> dict[str, Any]:
                return {
                    "step": e.step,
                    "sd_checkpoint": e.sd_checkpoint,
                    "sd_checkpoint_name": e.sd_checkpoint_name,
                    "shape": e.shape,
                    "vectors": e.vectors,
                }

            return {
                "loaded": {name: info(e) for name, e in self.word_embeddings.items()},
                "skipped": {name: info(e) for name, e in self.skipped_embeddings.items()},
            }


def _model_widths() -> list[tuple[str | None, int]] | None:
    """(textual_inversion_key, width) of each text encoder of the current model, without loading one."""
    model = sd_models.model_data.sd_model
    encoders = getattr(getattr(model, "cond_stage_model", None), "encoders", None)
    if not encoders:
        return None
    return [(encoder.textual_inversion_key, encoder.width) for encoder in encoders]


# A1111's module is `modules.textual_inversion.textual_inversion`; extensions import it by that name.
sys.modules[__name__ + ".textual_inversion"] = sys.modules[__name__]
