"""Command line of the benchmark. Options it does not know are web UI flags (`--xformers`, `--medvram`,
`--no-half`, `--opt-channelslast`, `--data-dir` ...) and configure the pipeline being measured."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

log = logging.getLogger("benchmark")

COMPILE_MODES = ["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "none"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m modules.benchmark",
        description="Benchmark txt2img (SD1.5 512², SDXL 1024², 20 Euler steps, CFG 7; on a CPU-only machine the "
        "tiny models and SD1.5 at 256² for 2 steps) against plain eager diffusers on the same weights. "
        "Unknown options are passed to the web UI (e.g. --xformers, --medvram, --no-half).",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: the tiny SD1 model for a few steps")
    p.add_argument("--checkpoint", metavar="PATH", help="an SD1.x checkpoint to use instead of random SD1.5 weights")
    p.add_argument("--checkpoint-xl", metavar="PATH", help="an SDXL checkpoint to use instead of random SDXL weights")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: 20; 2 for SD1.5 on a CPU)")
    p.add_argument("--repeats", type=int, default=None, help="timed images per measurement (default 3; 1 with --quick)")
    p.add_argument(
        "--compile",
        choices=COMPILE_MODES,
        default=None,
        help="torch.compile mode of the extra compiled run (default: max-autotune on CUDA, none on CPU)",
    )
    p.add_argument("--compile-regional", action="store_true", help="compile only the repeated transformer blocks")
    p.add_argument("--only", choices=["sd1", "sdxl"], help="run the SD1 or the SDXL cases alone")
    p.add_argument("--no-diffusers", action="store_true", help="skip the plain diffusers baseline")
    p.add_argument("--no-offload", action="store_true", help="skip the --medvram / --lowvram runs on CUDA")
    p.add_argument(
        "--output",
        metavar="PATH",
        default=None,
        help="append the rows to this file (default: BENCHMARKS.md in the program's folder)",
    )
    p.add_argument("--no-write", action="store_true", help="print the rows, do not append them to a file")
    return p


def _prepare_web_ui_flags(flags: list[str], settings_dir: str) -> None:
    """Hand the remaining options to the web UI's flag parser, which reads sys.argv when `modules.shared` is first
    imported. Settings start from the defaults (a fresh settings file) unless --ui-settings-file is given."""
    if "modules.shared" in sys.modules:
        if flags:
            log.warning("The web UI is already initialised in this process; ignoring %s", " ".join(flags))
        return
    flags = list(flags)
    if not any(f.split("=")[0] == "--ui-settings-file" for f in flags):
        flags += ["--ui-settings-file", os.path.join(settings_dir, "config.json")]
    sys.argv = [sys.argv[0], *flags, "--no-prompt-history"]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    args, web_ui_flags = parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s [%(name)s] %(message)s", datefmt="%H:%M:%S"
        )
    with tempfile.TemporaryDirectory(prefix="sd-benchmark-") as settings_dir:
        _prepare_web_ui_flags(web_ui_flags, settings_dir)
        from modules import paths_internal
        from modules.benchmark import runner
        from modules.errors import UserError

        checkpoints = {k: v for k, v in (("sd1", args.checkpoint), ("sdxl", args.checkpoint_xl)) if v}
        plan = runner.Plan(
            quick=args.quick,
            checkpoints=checkpoints,
            steps=args.steps,
            repeats=args.repeats,
            compile_mode=args.compile,
            compile_regional=args.compile_regional,
            diffusers=not args.no_diffusers,
            offload=not args.no_offload,
            only=args.only,
        )
        output = None if args.no_write else (args.output or os.path.join(paths_internal.script_path, "BENCHMARKS.md"))
        try:
            lines = runner.run(plan, output)
        except UserError as e:
            log.error("%s", e)
            return 2
    sys.stdout.write("".join(lines))
    return 0
