"""UI helpers shared by tabs and used by extensions (A1111's `modules.ui_common`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from modules.ui_components import ToolButton

refresh_symbol = "\U0001f504"  # 🔄


def create_refresh_button(refresh_component, refresh_method: Callable[[], Any], refreshed_args,
                          elem_id: str | None) -> ToolButton:
    """A 🔄 button: calls `refresh_method()`, then updates the component(s) with `refreshed_args` (a dict of
    properties such as choices, or a function returning one)."""
    components = refresh_component if isinstance(refresh_component, list) else [refresh_component]
    label = next((getattr(c, "label", None) for c in components if getattr(c, "label", None)), None)

    def refresh():
        refresh_method()
        args = refreshed_args() if callable(refreshed_args) else refreshed_args
        args = dict(args or {})
        for key, value in args.items():
            for component in components:
                setattr(component, key, value)
        updates = [gr.update(**args) for _ in components]
        return updates if len(components) > 1 else updates[0]

    button = ToolButton(value=refresh_symbol, elem_id=elem_id, tooltip=f"{label}: refresh" if label else "Refresh")
    button.click(fn=refresh, inputs=[], outputs=components, api_visibility="private")
    return button
