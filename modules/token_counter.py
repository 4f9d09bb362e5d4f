"""The prompt token counter behind the UI's "N/75" display (and usable by the API).

As A1111: `before_token_counter` callbacks may change the input, enabled styles are included
(`include_styles_into_token_counters`), extra-network tags are removed, a positive prompt is split at `AND`, every
text of the prompt schedules is counted and the largest count is shown with its chunk limit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from modules import prompt_parser, script_callbacks, shared
from modules.sd_hijack import model_hijack

# A1111's extra-network tag: <lora:name:0.8>, <hypernet:name>, ...
_EXTRA_NETWORK_TAG = re.compile(r"<(\w+):([^>]+)>")


def count_tokens(
    text: str, steps: int, styles: Sequence[str] | None = None, *, is_positive: bool = True
) -> tuple[int, int]:
    """(tokens used, chunk limit) of the longest text the prompt's schedule produces over `steps` steps."""
    params = script_callbacks.BeforeTokenCounterParams(text, steps, list(styles or []), is_positive=is_positive)
    script_callbacks.before_token_counter_callback(params)
    text, steps, styles, is_positive = params.prompt, params.steps, params.styles, params.is_positive

    if shared.opts.include_styles_into_token_counters and shared.prompt_styles is not None and styles:
        styles_db = shared.prompt_styles
        apply = styles_db.apply_styles_to_prompt if is_positive else styles_db.apply_negative_styles_to_prompt
        text = apply(text, styles)

    text = _EXTRA_NETWORK_TAG.sub("", text)
    try:
        texts = prompt_parser.get_multicond_prompt_list([text])[1] if is_positive else [text]
        schedules = prompt_parser.get_learned_conditioning_prompt_schedules(texts, max(1, int(steps)))
    except (ValueError, TypeError):
        schedules = [[[steps, text]]]
    counts = [model_hijack.get_prompt_lengths(t) for schedule in schedules for _, t in schedule]
    return max(counts, key=lambda count: count[0])


def update_token_counter(
    text: str, steps: int, styles: Sequence[str] | None = None, *, is_positive: bool = True
) -> str:
    """The counter as A1111's UI renders it."""
    tokens, limit = count_tokens(text, steps, styles, is_positive=is_positive)
    return f"<span class='gr-box gr-text-input'>{tokens}/{limit}</span>"
