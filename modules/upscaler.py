"""Upscalers: the A1111 classes (`Upscaler`, `UpscalerData`), the built-in entries and model upscalers from the
models folders, and the list `shared.sd_upscalers` in A1111's order and names (a1111-spec §7.11).

Entries: None, Lanczos, Nearest first, then by name: files in models/ESRGAN (name = file stem; "ESRGAN_4x" when
the folder is empty), the Real-ESRGAN set (setting realesrgan_enabled_models), models/DAT files and the DAT set
(dat_enabled_models), models/HAT files, models/SwinIR files and "SwinIR 4x". The --esrgan-models-path,
--realesrgan-models-path, --dat-models-path and --swinir-models-path flags add a folder to look in.

A built-in entry whose file is not on disk is downloaded from its release URL the first time it is used (into
the models folder, written atomically); offline, that use fails with one message saying where to put the file.
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from PIL import Image

from modules import devices, paths_internal, shared, upscaler_nets, upscaler_utils
from modules.errors import NotFoundError, UserError
from modules.fileio import atomic_file
from modules.shared import opts

log = logging.getLogger(__name__)

LANCZOS = Image.Resampling.LANCZOS
NEAREST = Image.Resampling.NEAREST
MODEL_EXTENSIONS = (".pt", ".pth", ".safetensors")
DOWNLOAD_LIMIT_BYTES = 2 << 30
DOWNLOAD_TIMEOUT_S = 30


class Upscaler:
    """Base class of upscaler families (A1111's attributes; extensions subclass it)."""

    name: str | None = None
    model_path: str | None = None
    model_name: str | None = None
    model_url: str | None = None
    enable = True
    filter = None
    model = None
    user_path: str | None = None
    scalers: list
    tile = True

    def __init__(self, create_dirs: bool = False):
        self.mod_pad_h = None
        self.tile_size = opts.ESRGAN_tile
        self.tile_pad = opts.ESRGAN_tile_overlap
        self.device = devices.device_esrgan
        self.img = None
        self.output = None
        self.scale = 1
        self.half = not shared.cmd_opts.no_half
        self.pre_pad = 0
        self.mod_scale = None
        self.model_download_path: str | None = None
        self.can_tile = True
        if self.model_path is None and self.name:
            self.model_path = os.path.join(paths_internal.models_path, self.name)
        if self.model_path and create_dirs:
            os.makedirs(self.model_path, exist_ok=True)

    def do_upscale(self, img: Image.Image, selected_model: str | None) -> Image.Image:
        return img

    def upscale(self, img: Image.Image, scale: float, selected_model: str | None = None) -> Image.Image:
        """Enlarge `img` by `scale`: the target is scale × size rounded down to a multiple of 8; the model runs up
        to three times until the image covers it, then a Lanczos resize gives exactly that size."""
        self.scale = scale
        dest_w = int((img.width * scale) // 8 * 8)
        dest_h = int((img.height * scale) // 8 * 8)
        for i in range(3):
            if img.width >= dest_w and img.height >= dest_h and (i > 0 or scale != 1):
                break
            if shared.state.interrupted:
                break
            shape = (img.width, img.height)
            img = self.do_upscale(img, selected_model)
            if shape == (img.width, img.height):
                break
        if (img.width != dest_w or img.height != dest_h) and dest_w > 0 and dest_h > 0:
            img = img.resize((dest_w, dest_h), resample=LANCZOS)
        return img

    def load_model(self, path: str) -> Any:
        return None

    def find_models(self, ext_filter: tuple[str, ...] | list[str] | None = None) -> list[str]:
        """Model files in the family's folder and in the folder given by its flag, sorted."""
        places = [self.model_path]
        if self.user_path and os.path.abspath(self.user_path) != os.path.abspath(self.model_path or ""):
            places.insert(0, self.user_path)
        found: list[str] = []
        for place in places:
            for file in _walk_files(place, tuple(ext_filter or MODEL_EXTENSIONS)):
                if file not in found:
                    found.append(file)
        return found

    def update_status(self, prompt: str) -> None:
        log.info("extras: %s", prompt)


class UpscalerData:
    """One selectable upscaler: its name, where its model is (file path, URL or None) and its nominal scale."""

    name: str
    data_path: str | None = None
    scale: int | None = 4
    scaler: Upscaler | None = None
    model = None

    def __init__(self, name: str, path: str | None, upscaler: Upscaler | None = None, scale: int | None = 4,
                 model: Any = None, sha256: str | None = None):
        self.name = name
        self.data_path = path
        self.local_data_path = path
        self.scaler = upscaler
        self.scale = scale
        self.model = model
        self.sha256 = sha256

    def __repr__(self) -> str:
        return f"<UpscalerData name={self.name} path={self.data_path} scale={self.scale}>"


class UpscalerNone(Upscaler):
    name = "None"
    scalers: list = []

    def __init__(self, dirname: str | None = None):
        super().__init__(False)
        self.scalers = [UpscalerData("None", None, self)]


class UpscalerLanczos(Upscaler):
    def __init__(self, dirname: str | None = None):
        super().__init__(False)
        self.name = "Lanczos"
        self.scalers = [UpscalerData("Lanczos", None, self)]

    def do_upscale(self, img: Image.Image, selected_model: str | None = None) -> Image.Image:
        return img.resize((int(img.width * self.scale), int(img.height * self.scale)), resample=LANCZOS)


class UpscalerNearest(Upscaler):
    def __init__(self, dirname: str | None = None):
        super().__init__(False)
        self.name = "Nearest"
        self.scalers = [UpscalerData("Nearest", None, self)]

    def do_upscale(self, img: Image.Image, selected_model: str | None = None) -> Image.Image:
        return img.resize((int(img.width * self.scale), int(img.height * self.scale)), resample=NEAREST)


def friendly_name(file: str) -> str:
    """An entry's name from its file or URL: the file stem."""
    if file.startswith("http"):
        file = urllib.parse.urlparse(file).path
    return os.path.splitext(os.path.basename(file))[0]


def _walk_files(folder: str | None, extensions: tuple[str, ...]) -> list[str]:
    if not folder or not os.path.isdir(folder):
        return []
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(extensions)]
    return found


def download_model(url: str, model_dir: str) -> str:
    """Fetch a built-in upscaler's weights into `model_dir` (https only, size-limited, atomic). Returns the path."""
    filename = os.path.basename(urllib.parse.urlparse(url).path)
    target = os.path.join(model_dir, filename)
    if os.path.isfile(target):
        return target
    if urllib.parse.urlparse(url).scheme != "https":
        raise UserError(f"Refusing to download {url}: only https URLs are allowed.")
    os.makedirs(model_dir, exist_ok=True)
    log.info("Downloading %s to %s", url, target)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, atomic_file(target) as f:
            total = 0
            while chunk := response.read(1 << 20):
                total += len(chunk)
                if total > DOWNLOAD_LIMIT_BYTES:
                    raise UserError(f"{url} is larger than {DOWNLOAD_LIMIT_BYTES >> 20} MB; download it yourself.")
                f.write(chunk)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise UserError(
            f"Could not download the upscaler model {filename} from {url} ({e}). Check the network connection, "
            f"or download the file yourself and put it into {model_dir}."
        ) from e
    return target


class ModelUpscaler(Upscaler):
    """A family of network upscalers: entries are model files (and built-in URLs), run tiled."""

    tile_option = "ESRGAN_tile"
    tile_overlap_option = "ESRGAN_tile_overlap"

    def local_path(self, selected_model: str | None) -> str:
        """The file of an entry, downloading a built-in one on first use."""
        if not selected_model:
            raise UserError(f"No model file selected for the {self.name} upscaler.")
        if selected_model.startswith("http"):
            for scaler in self.scalers:
                if scaler.data_path == selected_model and not str(scaler.local_data_path).startswith("http"):
                    return scaler.local_data_path
            return download_model(selected_model, self.model_download_path or self.model_path)
        if not os.path.isfile(selected_model):
            raise NotFoundError(f"Upscaler model file {selected_model} not found; refresh the upscaler list.")
        return selected_model

    def load_model(self, path: str) -> upscaler_nets.LoadedUpscaler:
        return _load_cached(path, self.device, self.half)

    def do_upscale(self, img: Image.Image, selected_model: str | None) -> Image.Image:
        loaded = self.load_model(self.local_path(selected_model))
        return upscaler_utils.upscale_with_model(loaded.model, img, tile_size=getattr(opts, self.tile_option),
                                                 tile_overlap=getattr(opts, self.tile_overlap_option),
                                                 desc=f"{self.name} upscale")

    def adopt_local_files(self, entries: list[UpscalerData]) -> None:
        """Built-in entries whose file is already in the folder use it instead of their URL."""
        local = self.find_models()
        for entry in entries:
            filename = os.path.basename(urllib.parse.urlparse(str(entry.data_path)).path)
            match = next((f for f in local if os.path.basename(f) == filename), None)
            if match:
                entry.local_data_path = match


_cache_lock = threading.Lock()
_cache: dict[tuple[str, str, bool], upscaler_nets.LoadedUpscaler] = {}


def _load_cached(path: str, device: Any, half: bool) -> upscaler_nets.LoadedUpscaler:
    """The last loaded network is kept, so upscaling a batch loads its model once."""
    key = (os.path.abspath(path), str(device), half)
    with _cache_lock:
        if key not in _cache:
            _cache.clear()
            _cache[key] = upscaler_nets.load_model(path, device, half)
        return _cache[key]


def unload_models() -> None:
    with _cache_lock:
        _cache.clear()


class UpscalerESRGAN(ModelUpscaler):
    def __init__(self, dirname: str | None = None):
        self.name = "ESRGAN"
        self.model_url = "https://github.com/cszn/KAIR/releases/download/v1.0/ESRGAN.pth"
        self.model_name = "ESRGAN_4x"
        self.user_path = dirname
        super().__init__()
        files = self.find_models()
        if files:
            self.scalers = [UpscalerData(friendly_name(f), f, self, 4) for f in files]
        else:
            self.scalers = [UpscalerData(self.model_name, self.model_url, self, 4)]


REALESRGAN_MODELS = (
    ("R-ESRGAN General 4xV3", "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.5.0/realesr-general-x4v3.pth", 4),
    ("R-ESRGAN General WDN 4xV3", "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.5.0/realesr-general-wdn-x4v3.pth", 4),
    ("R-ESRGAN AnimeVideo", "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.5.0/realesr-animevideov3.pth", 4),
    ("R-ESRGAN 4x+", "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth", 4),
    ("R-ESRGAN 4x+ Anime6B", "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth", 4),
    ("R-ESRGAN 2x+", "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.1/RealESRGAN_x2plus.pth", 2),
)  # fmt: skip


class UpscalerRealESRGAN(ModelUpscaler):
    def __init__(self, dirname: str | None = None):
        self.name = "RealESRGAN"
        self.user_path = dirname
        super().__init__()
        self.all_scalers = [UpscalerData(name, url, self, scale) for name, url, scale in REALESRGAN_MODELS]
        self.adopt_local_files(self.all_scalers)
        self.scalers = [s for s in self.all_scalers if s.name in opts.realesrgan_enabled_models]


DAT_MODELS = (
    ("DAT x2", "https://github.com/n0kovo/dat_upscaler_models/raw/main/DAT/DAT_x2.pth", 2),
    ("DAT x3", "https://github.com/n0kovo/dat_upscaler_models/raw/main/DAT/DAT_x3.pth", 3),
    ("DAT x4", "https://github.com/n0kovo/dat_upscaler_models/raw/main/DAT/DAT_x4.pth", 4),
)


class UpscalerDAT(ModelUpscaler):
    tile_option = "DAT_tile"
    tile_overlap_option = "DAT_tile_overlap"

    def __init__(self, dirname: str | None = None):
        self.name = "DAT"
        self.user_path = dirname
        super().__init__()
        self.scalers = [UpscalerData(friendly_name(f), f, self, None) for f in self.find_models((".pt", ".pth"))]
        builtin = [UpscalerData(name, url, self, scale) for name, url, scale in DAT_MODELS]
        self.adopt_local_files(builtin)
        self.scalers += [s for s in builtin if s.name in opts.dat_enabled_models]


class UpscalerHAT(ModelUpscaler):
    def __init__(self, dirname: str | None = None):
        self.name = "HAT"
        self.user_path = dirname
        super().__init__()
        self.scalers = [UpscalerData(friendly_name(f), f, self, 4) for f in self.find_models((".pt", ".pth"))]


class UpscalerSwinIR(ModelUpscaler):
    def __init__(self, dirname: str | None = None):
        self.name = "SwinIR"
        self.model_url = ("https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/"
                          "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth")
        self.model_name = "SwinIR 4x"
        self.user_path = dirname
        super().__init__()
        files = self.find_models()
        self.scalers = [UpscalerData(friendly_name(f), f, self, 4) for f in files]
        builtin = UpscalerData(self.model_name, self.model_url, self, 4)
        self.adopt_local_files([builtin])
        if not any(s.name == self.model_name for s in self.scalers):
            self.scalers.append(builtin)


# Families in A1111's registration order; the flag attribute gives the extra folder (None: none).
UPSCALER_CLASSES: list[tuple[type[Upscaler], str | None]] = [
    (UpscalerNone, None),
    (UpscalerLanczos, None),
    (UpscalerNearest, None),
    (UpscalerDAT, "dat_models_path"),
    (UpscalerESRGAN, "esrgan_models_path"),
    (UpscalerHAT, None),
    (UpscalerRealESRGAN, "realesrgan_models_path"),
    (UpscalerSwinIR, "swinir_models_path"),
]

_PLAIN = (UpscalerNone, UpscalerLanczos, UpscalerNearest)


def load_upscalers() -> list[UpscalerData]:
    """Rebuild `shared.sd_upscalers`: None, Lanczos, Nearest, then every other entry sorted by name."""
    datas: list[UpscalerData] = []
    for cls, flag in UPSCALER_CLASSES:
        folder = getattr(shared.cmd_opts, flag, None) if flag else None
        scaler = cls(folder)
        scaler.user_path = folder
        scaler.model_download_path = folder or scaler.model_path
        datas += scaler.scalers
    shared.sd_upscalers = sorted(datas, key=lambda x: "" if isinstance(x.scaler, _PLAIN) else x.name.lower())
    return shared.sd_upscalers


def find_upscaler(name: str | None, fallback: bool = False) -> UpscalerData:
    """The upscaler entry called `name` (case-insensitive). Unknown: with `fallback` the first entry (A1111's
    behaviour for img2img resizing, logged), else a `NotFoundError` listing the names."""
    upscalers = shared.sd_upscalers or load_upscalers()
    wanted = (name or "").lower()
    for data in upscalers:
        if data.name.lower() == wanted:
            return data
    if fallback:
        log.warning("could not find upscaler named %s, using %s as a fallback", name or "<empty string>",
                    upscalers[0].name)
        return upscalers[0]
    raise NotFoundError(f"could not find upscaler named {name!r}; available: "
                        + ", ".join(u.name for u in upscalers))


def upscaler_by_name_or_index(value: str | int) -> UpscalerData:
    """An entry by name (case-insensitive) or by its index in the list (the SD upscale script's argument)."""
    upscalers = shared.sd_upscalers or load_upscalers()
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < len(upscalers):
            raise NotFoundError(f"Upscaler index {value} is out of range 0..{len(upscalers) - 1}.")
        return upscalers[value]
    return find_upscaler(str(value))


def api_upscalers() -> list[dict[str, Any]]:
    """GET /sdapi/v1/upscalers: ``[{name, model_name, model_path, model_url, scale}]``."""
    return [{"name": u.name, "model_name": u.scaler.model_name if u.scaler else None, "model_path": u.data_path,
             "model_url": None, "scale": u.scale} for u in (shared.sd_upscalers or load_upscalers())]


def api_latent_upscale_modes() -> list[dict[str, str]]:
    """GET /sdapi/v1/latent-upscale-modes: ``[{name}]``."""
    return [{"name": name} for name in shared.latent_upscale_modes]


def realesrgan_models() -> list[UpscalerData]:
    """Every Real-ESRGAN entry, enabled or not (A1111's get_realesrgan_models)."""
    return UpscalerRealESRGAN(getattr(shared.cmd_opts, "realesrgan_models_path", None)).all_scalers


def api_realesrgan_models() -> list[dict[str, Any]]:
    """GET /sdapi/v1/realesrgan-models: ``[{name, path, scale}]``."""
    return [{"name": x.name, "path": x.data_path, "scale": x.scale} for x in realesrgan_models()]
