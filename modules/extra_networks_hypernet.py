"""The `<hypernet:name:strength>` prompt tag (A1111's ExtraNetworkHypernet); the `sd_hypernetwork` setting adds one
to every prompt."""

from __future__ import annotations

from typing import Any

from modules import extra_networks, hypernetworks, shared
from modules.errors import UserError


class ExtraNetworkHypernet(extra_networks.ExtraNetwork):
    def __init__(self):
        super().__init__("hypernet")

    def activate(self, p: Any, params_list: list[extra_networks.ExtraNetworkParams]) -> None:
        additional = shared.opts.sd_hypernetwork
        if (
            additional != "None"
            and additional in hypernetworks.hypernetworks
            and not any(x for x in params_list if x.items[0] == additional)
        ):
            multiplier = shared.opts.extra_networks_default_multiplier
            p.all_prompts = [f"{prompt}<hypernet:{additional}:{multiplier}>" for prompt in p.all_prompts]
            params_list = [*params_list, extra_networks.ExtraNetworkParams(items=[additional, multiplier])]

        names, multipliers = [], []
        for params in params_list:
            if not params.items:
                continue
            names.append(params.items[0])
            try:
                multipliers.append(float(params.items[1]) if len(params.items) > 1 else 1.0)
            except ValueError as e:
                raise UserError(
                    f"<hypernet:{params.items[0]}:...>: the strength {params.items[1]!r} is not a number"
                ) from e
        failed = hypernetworks.load_hypernetworks(names, multipliers)
        if failed:
            p.comment(f"Hypernetwork not found or not loaded: {', '.join(failed)}")

    def deactivate(self, p: Any) -> None:
        pass
