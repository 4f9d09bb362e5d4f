"""The `<lora:name:...>` prompt tag (and `<lyco:...>`): A1111's ExtraNetworkLora.

Arguments: `<lora:name>` (multiplier 1), `<lora:name:w>`, `<lora:name:te:unet>`, `<lora:name:te:unet:dyn>`, and the
named forms `te=`, `unet=`, `dyn=`. The `sd_lora` setting adds a network to every prompt. Problems are reported on
the job: "Lora not found: a, b", networks skipped (in the comments and as `Lora skipped` in the infotext), and
"Networks with errors: name (count)" for layers that could not be applied.
"""

from __future__ import annotations

import logging
from typing import Any

from modules import extra_networks, shared
from modules.errors import UserError

log = logging.getLogger(__name__)


def _number(value: Any, what: str, name: str, kind: type = float) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError) as e:
        raise UserError(f"<lora:{name}:...>: the {what} {value!r} is not a number; write e.g. <lora:{name}:0.8>") from e


class ExtraNetworkLora(extra_networks.ExtraNetwork):
    remove_symbols = str.maketrans("", "", ":,")

    def __init__(self):
        super().__init__("lora")
        self.errors: dict[str, int] = {}

    def activate(self, p: Any, params_list: list[extra_networks.ExtraNetworkParams]) -> None:
        from modules import networks

        additional = shared.opts.sd_lora
        self.errors.clear()
        if (
            additional != "None"
            and additional in networks.available_networks
            and not any(x for x in params_list if x.items[0] == additional)
        ):
            multiplier = shared.opts.extra_networks_default_multiplier
            p.all_prompts = [x + f"<lora:{additional}:{multiplier}>" for x in p.all_prompts]
            params_list = [*params_list, extra_networks.ExtraNetworkParams(items=[additional, multiplier])]

        names, te_multipliers, unet_multipliers, dyn_dims = [], [], [], []
        for params in params_list:
            if not params.positional:
                continue
            name = params.positional[0]
            te = _number(params.positional[1], "multiplier", name) if len(params.positional) > 1 else 1.0
            te = _number(params.named.get("te", te), "te multiplier", name)
            unet = _number(params.positional[2], "unet multiplier", name) if len(params.positional) > 2 else te
            unet = _number(params.named.get("unet", unet), "unet multiplier", name)
            dyn = _number(params.positional[3], "dyn", name, int) if len(params.positional) > 3 else None
            dyn = _number(params.named["dyn"], "dyn", name, int) if "dyn" in params.named else dyn
            names.append(name)
            te_multipliers.append(te)
            unet_multipliers.append(unet)
            dyn_dims.append(dyn)

        report = networks.load_networks(names, te_multipliers, unet_multipliers, dyn_dims)
        if report.not_found:
            p.comment(f"Lora not found: {', '.join(report.not_found)}")
        if report.skipped:
            for name, (_, detail) in report.skipped.items():
                p.comment(f"Lora {name} skipped: {detail}")
            note = ", ".join(f"{name} ({short})" for name, (short, _) in report.skipped.items())
            p.extra_generation_params["Lora skipped"] = note
        self.errors.update(networks.error_counts(shared.sd_model))

        if shared.opts.lora_add_hashes_to_infotext:
            if not getattr(p, "is_hr_pass", False) or not hasattr(p, "lora_hashes"):
                p.lora_hashes = {}
            for net in networks.loaded_networks:
                if net.network_on_disk.shorthash and net.mentioned_name:
                    p.lora_hashes[net.mentioned_name.translate(self.remove_symbols)] = net.network_on_disk.shorthash
            if p.lora_hashes:
                p.extra_generation_params["Lora hashes"] = ", ".join(f"{k}: {v}" for k, v in p.lora_hashes.items())

    def deactivate(self, p: Any) -> None:
        if self.errors:
            p.comment("Networks with errors: " + ", ".join(f"{k} ({v})" for k, v in self.errors.items()))
            self.errors.clear()
