"""A1111's `modules.sd_hijack` surface: `model_hijack` holds the embedding database, the infotext entries and
comments extensions add for the current job, and the prompt length the token counter shows.

Nothing is patched into the model here (the name is A1111's); the text side lives in modules/conditioning.py.
"""

from __future__ import annotations

from typing import Any

from modules import conditioning, sd_models, shared, textual_inversion


class StableDiffusionModelHijack:
    def __init__(self) -> None:
        self.extra_generation_params: dict[str, Any] = {}
        self.comments: list[str] = []
        self.embedding_db = textual_inversion.EmbeddingDatabase()
        self.embedding_db.add_embedding_dir(shared.cmd_opts.embeddings_dir)

    @property
    def clip(self) -> Any:
        """The current model's text conditioner, or None when no model is loaded (never loads one)."""
        return getattr(sd_models.model_data.sd_model, "cond_stage_model", None)

    def get_prompt_lengths(self, text: str) -> tuple[int, int]:
        """(tokens used, chunk limit) for one prompt text: A1111 shows them as "N/75", "N/150", ..."""
        return conditioning.prompt_lengths(sd_models.model_data.sd_model, text)

    def clear_comments(self) -> None:
        self.comments = []
        self.extra_generation_params = {}


model_hijack = StableDiffusionModelHijack()
