"""Benchmark: UNet step time with and without a LoRA, and the one-off cost of patching and restoring.

Builds a seeded random checkpoint of the chosen family and size (modules/checkpoint_factory) and a random kohya
LoRA of the given rank on every Linear/Conv2d layer of its UNet and text encoders, then times UNet calls in
alternating rounds (without, with, without, ...) so that machine noise hits both sides alike.

Usage: python tools/bench_networks.py [--family sd1] [--size tiny|full] [--latent 32] [--rank 16] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("SD_WEBUI_DATA_DIR", tempfile.mkdtemp(prefix="bench-networks-"))
os.environ.setdefault("IGNORE_CMD_ARGS_ERRORS", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from modules import checkpoint_factory, devices, networks, sd_models, shared  # noqa: E402
from modules.model_builder import text_model  # noqa: E402


def random_lora(model, rank: int) -> dict[str, torch.Tensor]:
    """kohya names (diffusers paths for the UNet, lora_te{,1,2}_ for the text encoders) for every layer."""
    g = torch.Generator().manual_seed(0)
    parts = [("lora_unet_", model.unet)]
    encoders = model.cond_stage_model.encoders
    for i, enc in enumerate(encoders):
        prefix = "lora_te_" if len(encoders) == 1 else f"lora_te{i + 1}_"
        parts.append((prefix + "text_model_", text_model(enc.transformer)))
    sd = {}
    for prefix, root in parts:
        for name, module in root.named_modules():
            if not isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                continue
            w = module.weight
            key = prefix + name.replace(".", "_")
            kernel = tuple(w.shape[2:])
            sd[f"{key}.lora_down.weight"] = torch.randn(rank, w.shape[1], *kernel, generator=g) * 0.01
            sd[f"{key}.lora_up.weight"] = torch.randn(w.shape[0], rank, *([1] * len(kernel)), generator=g) * 0.01
            sd[f"{key}.alpha"] = torch.tensor(float(rank))
    return sd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="sd1", choices=checkpoint_factory.FAMILIES)
    parser.add_argument("--size", default="tiny", choices=["tiny", "full"])
    parser.add_argument("--latent", type=int, default=32, help="latent side (image side / 8)")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3, help="UNet calls per round and side")
    args = parser.parse_args()

    devices.configure(shared.cmd_opts)
    ckpt_dir = os.path.join(shared.models_path, "Stable-diffusion")
    path = os.path.join(ckpt_dir, f"bench-{args.family}-{args.size}.safetensors")
    if not os.path.exists(path):
        checkpoint_factory.write_checkpoint(path, args.family, size=args.size, dtype=torch.float16)
    sd_models.list_models()
    model = sd_models.load_model(sd_models.find_checkpoint(os.path.basename(path)))
    os.makedirs(shared.cmd_opts.lora_dir, exist_ok=True)
    save_file(random_lora(model, args.rank), os.path.join(shared.cmd_opts.lora_dir, "bench.safetensors"))
    networks.list_available_networks()

    context = model.spec.unet_config["cross_attention_dim"]
    x = torch.randn(2, 4, args.latent, args.latent, device=devices.device)
    cond = {"c_crossattn": [torch.randn(2, 77, context, device=devices.device)]}
    if model.is_sdxl:
        cond = {
            "crossattn": cond["c_crossattn"][0],
            "vector": torch.randn(2, model.unet.config.projection_class_embeddings_input_dim, device=devices.device),
        }
    t = torch.tensor([500.0, 500.0], device=devices.device)

    def step() -> float:
        if devices.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            model.apply_model(x, t, cond)
        if devices.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    step()
    start = time.perf_counter()
    networks.load_networks(["bench"])
    patch_time = time.perf_counter() - start
    networks.load_networks([])
    without, with_lora = [], []
    for _ in range(args.rounds):
        without += [step() for _ in range(args.calls)]
        networks.load_networks(["bench"])
        with_lora += [step() for _ in range(args.calls)]
        networks.load_networks([])
    start = time.perf_counter()
    networks.load_networks(["bench"], [0.5], [0.5])
    repatch_time = time.perf_counter() - start
    start = time.perf_counter()
    networks.load_networks([])
    restore_time = time.perf_counter() - start
    patched = len(networks.patcher_for(model).layer_map.targets)
    print(
        f"model: {args.family} {args.size}, latent {args.latent}x{args.latent}, batch 2, device {devices.device}, "
        f"LoRA rank {args.rank} on every Linear/Conv2d ({patched} patchable modules)"
    )
    print(
        f"UNet call median: without {statistics.median(without) * 1000:.1f} ms, with LoRA "
        f"{statistics.median(with_lora) * 1000:.1f} ms ({len(without)} calls each, alternating rounds)"
    )
    print(f"best: without {min(without) * 1000:.1f} ms, with LoRA {min(with_lora) * 1000:.1f} ms")
    print(
        f"one-off: first patch {patch_time:.2f} s (includes reading the file), re-patch at another multiplier "
        f"{repatch_time:.2f} s, restore {restore_time:.2f} s"
    )


if __name__ == "__main__":
    main()
