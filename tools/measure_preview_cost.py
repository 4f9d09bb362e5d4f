"""What live previews cost a generation: txt2img with previews off, then with previews every N steps while a
poller asks for progress the way the page does (POST /internal/progress with live_preview, here called
in-process), for each preview method.

Two figures per method: `serving` = time spent answering progress requests (making and encoding previews) as a
share of the generation's time — an upper bound of the cost, as if no second core ran them — and `wall` = how
much longer the generation took than without previews (median of the repeats).

    python tools/measure_preview_cost.py --size tiny --steps 30 --width 256 --height 256
    python tools/measure_preview_cost.py --size full --device cuda   # real SD1.5 dimensions (random weights)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Result:
    method: str
    generation_s: float
    serving_s: float
    previews: int
    baseline_s: float

    @property
    def serving_share(self) -> float:
        return self.serving_s / self.generation_s

    @property
    def wall_overhead(self) -> float:
        return self.generation_s / self.baseline_s - 1


def generate(steps: int, width: int, height: int, seed: int) -> None:
    from modules import processing, txt2img

    p = txt2img.create_processing("a photo of a cat", "", steps, "Euler a", "Automatic", width, height, 1, 1, 7.0,
                                  seed, do_not_save_samples=True, do_not_save_grid=True)
    try:
        processing.process_images(p)
    finally:
        p.close()


def timed_run(steps: int, width: int, height: int, poll_period: float | None) -> tuple[float, float, int]:
    """(generation seconds, seconds spent serving progress requests, previews sent)."""
    from modules import progress, shared

    task = "task(measure-previews)"
    shared.state.begin(job="measure")
    shared.state.current_task = task
    done = threading.Event()
    serving = [0.0, 0]

    def poll() -> None:
        last = -1
        while not done.is_set():
            started = time.perf_counter()
            answer = progress.progress(task, last, True)
            serving[0] += time.perf_counter() - started
            if answer.get("live_preview"):
                serving[1] += 1
                last = answer["id_live_preview"]
            done.wait(poll_period)

    poller = threading.Thread(target=poll, daemon=True) if poll_period is not None else None
    started = time.perf_counter()
    if poller:
        poller.start()
    try:
        generate(steps, width, height, seed=1)
        elapsed = time.perf_counter() - started
    finally:
        done.set()
        if poller:
            poller.join()
        shared.state.end()
    return elapsed, serving[0], serving[1]


def measure(methods: list[str], steps: int, width: int, height: int, every: int, poll_period: float,
            repeats: int) -> list[Result]:
    """Median timings per method (previews every `every` steps, progress asked every `poll_period` s)."""
    from modules import shared

    opts = shared.opts
    opts.live_previews_enable = False
    timed_run(steps, width, height, None)  # warm-up: model on the device, kernels chosen
    baseline = statistics.median(timed_run(steps, width, height, None)[0] for _ in range(repeats))
    results = []
    for method in methods:
        opts.live_previews_enable = True
        opts.show_progress_every_n_steps = every
        opts.show_progress_type = method
        runs = [timed_run(steps, width, height, poll_period) for _ in range(repeats)]
        runs.sort(key=lambda r: r[0])
        generation, serving, previews = runs[len(runs) // 2]
        results.append(Result(method, generation, serving, previews, baseline))
    opts.live_previews_enable = False
    return results


def setup(size: str, device: str, data_dir: str) -> None:
    """Point the app at `data_dir` with one random checkpoint of the size, Approx NN and TAESD weights (random,
    same shapes as the real files), and load it."""
    os.environ["SD_WEBUI_DATA_DIR"] = data_dir
    os.environ.setdefault("IGNORE_CMD_ARGS_ERRORS", "1")
    sys.argv = [sys.argv[0], "--data-dir", data_dir] + (["--use-cpu", "all"] if device == "cpu" else [])
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    import torch
    from safetensors.torch import save_file

    from modules import checkpoint_factory, devices, paths_internal, sd_models, sd_vae_approx, sd_vae_taesd, shared

    ckpt = os.path.join(paths_internal.models_path, "Stable-diffusion", f"measure-{size}.safetensors")
    if not os.path.exists(ckpt):
        checkpoint_factory.write_checkpoint(ckpt, "sd1", size=size, seed=3,
                                            dtype=torch.float16 if size == "full" else torch.float32)
    approx = sd_vae_approx.weights_path(False)
    os.makedirs(os.path.dirname(approx), exist_ok=True)
    torch.manual_seed(0)
    torch.save(sd_vae_approx.VAEApprox().state_dict(), approx)
    from diffusers import AutoencoderTiny

    taesd = sd_vae_taesd.weights_path(False)
    os.makedirs(os.path.dirname(taesd), exist_ok=True)
    save_file(AutoencoderTiny().state_dict(), taesd)
    devices.configure(shared.cmd_opts)
    shared.refresh_device()
    sd_models.list_models()
    shared.opts.sd_model_checkpoint = sd_models.checkpoint_tiles()[0]
    sd_models.model_data.get_sd_model()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--every", type=int, default=5, help="show_progress_every_n_steps")
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between progress requests (page: 1.0)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default="Approx cheap,Approx NN,TAESD,Full")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="preview-cost-") as data_dir:
        setup(args.size, args.device, data_dir)
        results = measure(args.methods.split(","), args.steps, args.width, args.height, args.every, args.poll,
                          args.repeats)
    print(f"{args.size} SD1 model on {args.device}, {args.width}x{args.height}, {args.steps} steps, previews every "
          f"{args.every} steps, progress asked every {args.poll}s; without previews {results[0].baseline_s:.3f}s")
    print("| method | generation s | serving previews (share) | previews | wall overhead |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r.method} | {r.generation_s:.3f} | {r.serving_s:.4f}s ({100 * r.serving_share:.2f} %) | "
              f"{r.previews} | {100 * r.wall_overhead:+.1f} % |")


if __name__ == "__main__":
    main()
