"""Measure the checkpoint merger's peak resident memory on full-size models.

Writes three seeded random checkpoints of the chosen family (modules/checkpoint_factory, size "full", fp16 by
default: SD 1.5 is ~2 GB each) into a scratch data folder, then merges them in a fresh process ("Add difference",
safetensors output, optionally block-weighted) and reports the merge's peak resident set size above the process's
size just before it (Linux: the peak is reset through /proc/self/clear_refs), next to the size of one model.

Usage: python tools/measure_merge_memory.py [--family sd1] [--dtype fp16|fp32] [--blocks GRAD_V] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = r"""
import os, re, sys, time
os.environ["SD_WEBUI_DATA_DIR"] = sys.argv[1]
os.environ["IGNORE_CMD_ARGS_ERRORS"] = "1"
sys.path.insert(0, sys.argv[2])
from modules import extras_merge, sd_models


def status(field):
    with open("/proc/self/status") as f:
        return int(re.search(field + r":\s+(\d+) kB", f.read()).group(1)) * 1024


sd_models.list_models()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = status("VmRSS")
started = time.perf_counter()
out = extras_merge.merge_checkpoints("a", "b", "c", "Add difference", 0.5, save_metadata=False,
                                     block_weights=sys.argv[3])
print(base, status("VmHWM"), time.perf_counter() - started, os.path.getsize(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="sd1")
    parser.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16")
    parser.add_argument("--blocks", default="", help="block weights or a preset name (default: none)")
    parser.add_argument("--keep", help="reuse/keep the models in this data folder instead of a temporary one")
    args = parser.parse_args()

    data = args.keep or tempfile.mkdtemp(prefix="merge-memory-")
    folder = os.path.join(data, "models", "Stable-diffusion")
    os.makedirs(folder, exist_ok=True)
    try:
        for seed, name in enumerate("abc"):
            path = os.path.join(folder, f"{name}.safetensors")
            if os.path.exists(path):
                continue
            # a child process per model: building one holds the fp32 model, which must not inflate anything here
            code = ("import sys, os, torch; sys.path.insert(0, sys.argv[1]); "
                    "os.environ['SD_WEBUI_DATA_DIR'] = sys.argv[2]; os.environ['IGNORE_CMD_ARGS_ERRORS'] = '1'; "
                    "from modules import checkpoint_factory as cf; "
                    "cf.write_checkpoint(sys.argv[3], sys.argv[4], 'full', int(sys.argv[5]), "
                    "torch.float16 if sys.argv[6] == 'fp16' else torch.float32)")
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code, ROOT, data, path, args.family, str(seed), args.dtype],
                           check=True)
            print(f"wrote {name}.safetensors ({os.path.getsize(path) / 2**30:.2f} GiB) in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
        for stale in os.listdir(folder):
            if stale.startswith("a + "):
                os.remove(os.path.join(folder, stale))
        done = subprocess.run([sys.executable, "-c", PROBE, data, ROOT, args.blocks], capture_output=True, text=True,
                              check=True)
        base, peak, seconds, out_size = done.stdout.split()[-4:]
        model = os.path.getsize(os.path.join(folder, "a.safetensors"))
        gib = 2**30
        print(f"{args.family} {args.dtype}: model {model / gib:.2f} GiB; merge of three took {float(seconds):.0f} s; "
              f"resident before {int(base) / gib:.2f} GiB, peak {int(peak) / gib:.2f} GiB "
              f"(+{(int(peak) - int(base)) / 2**20:.0f} MiB); result {int(out_size) / gib:.2f} GiB")
    finally:
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
