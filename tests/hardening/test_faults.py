"""Faults: SIGKILL while saving (config.json, styles.csv, a merged checkpoint, an image, a download), a full disk
while saving an image, running out of memory during generation, a missing or corrupt checkpoint chosen in
settings. (A NaN-producing VAE and its fp32 retry: tests/test_vae_nan.py.)
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from modules import errors, images, processing, sd_models, shared
from tests.hardening.figures import record, scaled

ROOT = Path(__file__).resolve().parents[2]
KILL_ROUNDS = scaled(6, 100)


def run_writer(tmp_path: Path, kind: str, rounds: int, module: str = "tests.hardening.fault_writer") -> dict:
    env = dict(os.environ, SD_WEBUI_DATA_DIR=str(tmp_path))
    env.pop("IGNORE_CMD_ARGS_ERRORS", None)
    done = subprocess.run(
        [sys.executable, "-m", module, kind, str(rounds), "12345"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stderr[-3000:]
    return json.loads(lines[-1])


@pytest.mark.parametrize("kind", ["config", "styles", "merge", "image", "download"])
def test_killed_while_saving_leaves_the_old_or_the_new_file(tmp_path, kind):
    result = run_writer(tmp_path, kind, KILL_ROUNDS)
    record("SIGKILL while saving", **result)
    assert result["rounds"] == KILL_ROUNDS
    assert result["torn"] == 0, result["errors"]
    assert result["old"] + result["new"] == KILL_ROUNDS


NAIVE_WRITER = """
import json, os, random, signal, sys, time
from pathlib import Path

target = Path(os.environ["SD_WEBUI_DATA_DIR"]) / "config.json"
rounds = int(sys.argv[2])
rng = random.Random(int(sys.argv[3]))
torn = 0
for r in range(rounds):
    target.write_text(json.dumps({"v": [r] * 200_000}))
    pid = os.fork()
    if pid == 0:
        while True:
            with open(target, "w") as f:  # truncate, then write: what the atomic writer avoids
                f.write(json.dumps({"v": [r + 1] * 200_000}))
    time.sleep(rng.uniform(0.0, 0.05))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    try:
        json.loads(target.read_text())
    except ValueError:
        torn += 1
print(json.dumps({"kind": "naive", "rounds": rounds, "torn": torn}))
"""


def test_the_kill_test_catches_a_non_atomic_writer(tmp_path):
    """The control: the same kills tear a plain open(…, "w") writer's file, so the method can see tearing."""
    (tmp_path / "naive_writer.py").write_text(NAIVE_WRITER)
    env = dict(os.environ, SD_WEBUI_DATA_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, str(tmp_path / "naive_writer.py"), "naive", "20", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout.splitlines()[-1])
    record("SIGKILL while saving", **result)
    assert result["torn"] > 0


def make(**kw) -> processing.StableDiffusionProcessingTxt2Img:
    args = dict(
        prompt="a cat",
        sampler_name="Euler a",
        steps=2,
        width=64,
        height=64,
        seed=3,
        do_not_save_samples=True,
        do_not_save_grid=True,
    )
    args.update(kw)
    return processing.StableDiffusionProcessingTxt2Img(**args)


@contextlib.contextmanager
def full_folder(tmp_path: Path):
    """A folder on a tiny filesystem that is already full (tmpfs when this user may mount), else a folder whose
    file writes fail with ENOSPC at the OS call."""
    folder = tmp_path / f"full-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    try:
        mounted = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True, check=False
            ).returncode
            == 0
        )
    except OSError:  # no mount command
        mounted = False
    try:
        if mounted:
            with contextlib.suppress(OSError), open(folder / "filler", "wb") as f:
                f.write(bytes(1 << 20))
            yield folder, "tmpfs"
        else:
            real_open = os.open

            def enospc(path, *args, **kwargs):
                if str(path).startswith(str(folder)):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
                return real_open(path, *args, **kwargs)

            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(os, "open", enospc)
                mp.setattr("builtins.open", _open_via(enospc))
                yield folder, "simulated ENOSPC"
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=False)


def _open_via(os_open):
    import builtins

    real = builtins.open

    def opener(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+"):
            os_open(os.fspath(file), os.O_WRONLY | os.O_CREAT, 0o600)
        return real(file, mode, *args, **kwargs)

    return opener


def test_full_disk_while_saving_an_image_is_a_clear_error_and_the_next_job_works(sd1, tmp_path):
    with full_folder(tmp_path) as (folder, how):
        with pytest.raises(images.ImageSaveError, match="the disk is full") as caught:
            processing.process_images(make(do_not_save_samples=False, outpath_samples=str(folder)))
        leftovers = [p.name for p in folder.rglob("*") if p.is_file() and p.name != "filler"]
    record("full disk", how=how, message=str(caught.value), leftovers=leftovers)
    assert not leftovers  # no half-written image or temp file
    assert str(folder) in str(caught.value)
    result = processing.process_images(make(do_not_save_samples=False, outpath_samples=str(tmp_path / "ok")))
    assert len(result.images) == 1 and len(list((tmp_path / "ok").rglob("*.png"))) == 1


def test_out_of_memory_in_the_unet_is_a_clear_error_and_the_next_job_works(sd1):
    reference = processing.process_images(make()).images[0]
    calls = []

    def oom(module, args):
        calls.append(1)
        if len(calls) == 2:  # inside the UNet call, in the middle of sampling
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    hook = sd1.unet.register_forward_pre_hook(oom)
    try:
        with pytest.raises(errors.OutOfMemoryError, match="Out of memory while generating a 64x64 image") as caught:
            processing.process_images(make())
    finally:
        hook.remove()
    record("out of memory", message=str(caught.value), http_status=caught.value.status_code)
    assert not shared.state.interrupted
    after = processing.process_images(make()).images[0]
    assert after.tobytes() == reference.tobytes()  # the next job is correct, not merely finished


def test_missing_or_corrupt_checkpoint_in_settings_falls_back_with_a_message(sd1, tiny_checkpoints, caplog):
    folder = tiny_checkpoints["sd1"].parent
    corrupt = folder / "hardening-corrupt.safetensors"
    corrupt.write_bytes((100).to_bytes(8, "little") + b"{not json" + bytes(200))
    saved_setting = shared.opts.sd_model_checkpoint
    saved_models = list(sd_models.model_data.loaded_sd_models), sd_models.model_data.sd_model
    try:
        sd_models.list_models()
        messages = {}
        for case, title in (
            ("missing", "gone-since.safetensors [0123456789]"),
            ("corrupt", sd_models.find_checkpoint(corrupt.name).title),
        ):
            shared.opts.sd_model_checkpoint = title
            sd_models.model_data.sd_model = None
            sd_models.model_data.loaded_sd_models.clear()
            sd_models.model_data.load_error = None
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                model = sd_models.model_data.get_sd_model()
            assert model is not None and model.sd_checkpoint_info.filename != str(corrupt)
            messages[case] = " | ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
            assert title.split(" ")[0] in messages[case]
        assert corrupt.name in (sd_models.model_data.load_error or "")
        record("checkpoint fallback", **messages)
    finally:
        corrupt.unlink()
        sd_models.list_models()
        shared.opts.sd_model_checkpoint = saved_setting
        sd_models.model_data.loaded_sd_models[:] = saved_models[0]
        sd_models.model_data.sd_model = saved_models[1]


def test_temp_files_of_killed_writers_are_removed_by_the_next_save(tmp_path):
    from modules import fileio

    stale, fresh, other = tmp_path / ".0123456789abcdef.tmp", tmp_path / ".fedcba9876543210.tmp", tmp_path / ".x.tmp"
    for path in (stale, fresh, other):
        path.write_bytes(b"half")
    old = time.time() - fileio.STALE_AFTER_S - 60
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    fileio.atomic_write_text(str(tmp_path / "config.json"), "{}")
    assert not stale.exists() and fresh.exists() and other.exists()  # a live writer's file and others' files stay
