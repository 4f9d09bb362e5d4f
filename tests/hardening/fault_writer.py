"""Kill-while-saving: for one kind of file, fork a child that saves new versions of it in a loop through the app's
own writer, SIGKILL the child at a random moment, then (in this process, as a restarted server would) read the
file back and check that it is one complete version.

Usage: python -m tests.hardening.fault_writer KIND ROUNDS SEED   (SD_WEBUI_DATA_DIR names the data directory)
KIND: config, styles, merge, image, download. Prints one JSON line with the counts.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
ARGS = sys.argv[1:]
sys.argv = sys.argv[:1] + ["--skip-torch-cuda-test", "--use-cpu", "all"]  # cmd_opts is parsed at import

import torch  # noqa: E402

torch.set_num_threads(1)  # the children are forked: no thread pools to inherit half-way

DATA = Path(os.environ["SD_WEBUI_DATA_DIR"])


class Kind:
    """write(version) saves version `version`; read() returns the version found (or raises if torn)."""

    target: Path

    def write(self, version: int) -> None:
        raise NotImplementedError

    def read(self) -> int | None:
        raise NotImplementedError


class Config(Kind):
    def __init__(self):
        from modules import shared

        self.opts = shared.opts
        self.target = DATA / "config.json"

    def write(self, version: int) -> None:
        self.opts.data["hardening_version"] = version
        self.opts.data["hardening_padding"] = [version] * 50_000  # ~350 kB: kills land inside the write
        self.opts.save(str(self.target))

    def read(self) -> int | None:
        if not self.target.exists():
            return None
        data = json.loads(self.target.read_text(encoding="utf-8"))
        assert data["hardening_padding"] == [data["hardening_version"]] * 50_000
        return data["hardening_version"]


class Styles(Kind):
    COUNT = 2000

    def __init__(self):
        from modules import styles

        self.styles = styles
        self.target = DATA / "styles.csv"
        self.database = styles.StyleDatabase(str(self.target))

    def write(self, version: int) -> None:
        self.database.styles = {
            f"style {i}": self.styles.PromptStyle(
                f"style {i}", f"v{version} prompt {i}", f"v{version} negative", str(self.target)
            )
            for i in range(self.COUNT)
        }
        self.database.save_styles()

    def read(self) -> int | None:
        if not self.target.exists():
            return None
        database = self.styles.StyleDatabase(str(self.target))
        versions = {s.prompt.split()[0] for s in database.styles.values()}
        assert len(database.styles) == self.COUNT and len(versions) == 1, (len(database.styles), versions)
        return int(versions.pop()[1:])


class Merge(Kind):
    def __init__(self):
        from modules import checkpoint_factory, extras_merge, model_files, sd_models

        self.merge, self.model_files = extras_merge, model_files
        folder = DATA / "models" / "Stable-diffusion"
        for name, seed in (("a", 1), ("b", 2)):
            if not (folder / f"{name}.safetensors").exists():
                checkpoint_factory.write_checkpoint(str(folder / f"{name}.safetensors"), "sd1", seed=seed)
        sd_models.list_models()
        self.target = folder / "merged.safetensors"

    def write(self, version: int) -> None:
        self.merge.merge_checkpoints(
            "a.safetensors", "b.safetensors", multiplier=version / 1e6, custom_name="merged", config_source=3
        )

    def read(self) -> int | None:
        if not self.target.exists():
            return None
        tensors = self.model_files.read_state_dict(self.target)  # every tensor, checked against the header
        recipe = json.loads(self.model_files.read_metadata(self.target)["sd_merge_recipe"])
        assert len(tensors) > 100
        return round(recipe["multiplier"] * 1e6)


class ImageFile(Kind):
    def __init__(self):
        from PIL import Image

        from modules import images

        self.images, self.Image = images, Image
        self.target = DATA / "outputs" / "image.png"

    def write(self, version: int) -> None:
        rng = random.Random(version)
        pixels = bytes(rng.randrange(256) for _ in range(256 * 256 * 3))  # noise: a large, slow-to-encode PNG
        image = self.Image.frombytes("RGB", (256, 256), pixels)
        self.images.save_image_with_geninfo(image, f"version {version}", str(self.target))

    def read(self) -> int | None:
        if not self.target.exists():
            return None
        with self.Image.open(self.target) as image:
            image.load()  # decodes every row: a truncated file raises
            version = int(image.info["parameters"].split()[1])
        rng = random.Random(version)
        assert image.tobytes()[:3000] == bytes(rng.randrange(256) for _ in range(3000))
        return version


class Download(Kind):
    """The SD 1.5 download, its network part replaced by a local file (the write to the models folder is real)."""

    SIZE = 8 << 20

    def __init__(self):
        import hashlib

        from modules import model_download

        self.download = model_download
        self.source = DATA / "download-source.bin"
        self.source.write_bytes(os.urandom(self.SIZE))
        model_download.SD15_SHA256 = hashlib.sha256(self.source.read_bytes()).hexdigest()
        model_download.endpoint_problem = lambda endpoint, timeout=5.0: None
        import huggingface_hub

        huggingface_hub.hf_hub_download = lambda *args, **kwargs: str(self.source)
        self.target = DATA / "models" / "Stable-diffusion" / model_download.SD15_FILE

    def write(self, version: int) -> None:
        self.target.unlink(missing_ok=True)
        self.download.download_sd15(str(self.target.parent))

    def read(self) -> int | None:
        if not self.target.exists():
            return None
        assert self.target.stat().st_size == self.SIZE and self.target.read_bytes() == self.source.read_bytes()
        return 1


KINDS = {"config": Config, "styles": Styles, "merge": Merge, "image": ImageFile, "download": Download}


def main(kind_name: str, rounds: int, seed: int) -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)
    rng = random.Random(seed)
    kind = KINDS[kind_name]()
    started = time.perf_counter()
    kind.write(0)  # a first complete version: after any kill there is an old one
    write_seconds = time.perf_counter() - started
    counts = {"rounds": 0, "old": 0, "new": 0, "torn": 0, "errors": []}
    version = 1
    for _ in range(rounds):
        before = kind.read()
        pid = os.fork()
        if pid == 0:  # the writer: save versions until killed
            try:
                v = version
                while True:
                    kind.write(v)
                    v += 1
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.0, 2.5 * write_seconds))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        counts["rounds"] += 1
        try:
            found = kind.read()
        except Exception as e:  # a torn or unreadable file
            counts["torn"] += 1
            counts["errors"].append(f"{type(e).__name__}: {str(e)[:200]}")
            kind.write(version)
            found = version
        else:
            counts["old" if found == before else "new"] += 1
        version = (found or 0) + 1_000
    counts["leftover_temp_files"] = len(list(kind.target.parent.glob(".*.tmp")))
    counts["write_seconds"] = round(write_seconds, 3)
    print(json.dumps({"kind": kind_name, **counts}), flush=True)


if __name__ == "__main__":
    main(ARGS[0], int(ARGS[1]), int(ARGS[2]))
