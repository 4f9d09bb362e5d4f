"""The logic behind notebooks/colab.ipynb: GPU check, storage, install, downloads by URL, extensions, launch.

Standard library only (the notebook imports it before the requirements are installed) and nothing Colab-specific
at import time, so it is unit-tested like any module. The notebook's cells only read form fields and call these
functions.

Security defaults: the server listens on 127.0.0.1 (the share tunnel or Colab's proxy connects locally); the UI
and the API get the same user and password (generated when left blank); pickle checks stay on and the
Extensions tab stays locked behind a share link unless the user ticks the opt-in boxes.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import http.client
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from modules.errors import UserError

log = logging.getLogger(__name__)

APP_NAME = "sd-webui"
DRIVE_MOUNT_POINT = "/content/drive"
LOCAL_DATA_DIR = "/content/sd-webui-data"
DEFAULT_PORT = 7860
DEFAULT_USER = "webui"
CHUNK = 1 << 20

# Download kinds: folder relative to the data dir (A1111's layout; embeddings live beside models/, not in it).
KIND_FOLDERS = {
    "checkpoint": "models/Stable-diffusion",
    "vae": "models/VAE",
    "lora": "models/Lora",
    "lycoris": "models/Lora",
    "embedding": "embeddings",
    "hypernetwork": "models/hypernetworks",
    "esrgan": "models/ESRGAN",
}
KIND_ALIASES = {"ckpt": "checkpoint", "model": "checkpoint", "locon": "lycoris", "ti": "embedding",
                "textual_inversion": "embedding", "upscaler": "esrgan"}
SHARE_URL = re.compile(r"https://[\w.-]+\.gradio\.live\S*")
# Flags the notebook sets itself from its own fields; typing them into "extra arguments" would bypass those fields.
GUARDED_FLAGS = {
    "--disable-safe-unpickle": "tick allow_unsafe_pickles instead (prefer .safetensors files)",
    "--enable-insecure-extension-access": "tick allow_extension_installs_from_ui instead",
    "--gradio-auth": "set username/password instead", "--api-auth": "set username/password instead",
    "--share": "choose access = share instead", "--listen": "use access = share or colab_proxy",
    "--data-dir": "set use_drive / data_dir instead", "--port": "set port instead",
}

Say = Callable[[str], None]


def _say(message: str) -> None:
    """Notebook output: the user reads it in the cell, so it goes to stdout rather than the log."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------------- GPU check


@dataclasses.dataclass
class GpuInfo:
    name: str | None
    memory: str | None
    torch_version: str | None
    torch_cuda: str | None
    cuda_available: bool

    @property
    def ok(self) -> bool:
        return bool(self.name) and self.cuda_available


NO_GPU_MESSAGE = ("No NVIDIA GPU found. In Colab choose Runtime > Change runtime type > a GPU (T4 or better), then "
                  "run the notebook again. On the CPU an image takes minutes.")


def gpu_info(python: str = sys.executable, nvidia_smi: str | None = None) -> GpuInfo:
    """What nvidia-smi and torch say; torch is asked in a subprocess so the kernel does not hold CUDA."""
    exe = nvidia_smi or shutil.which("nvidia-smi")
    name = memory = None
    if exe:
        try:
            out = subprocess.run([exe, "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            if out.returncode == 0 and out.stdout.strip():
                name, _, memory = out.stdout.strip().splitlines()[0].partition(",")
                name, memory = name.strip(), memory.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    torch_version = torch_cuda = None
    cuda_available = False
    if name:  # without a driver torch cannot see a GPU either; skip the few seconds its import takes
        probe = "import json, torch; print(json.dumps([torch.__version__, torch.version.cuda, torch.cuda.is_available()]))"
        try:
            out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120)
            if out.returncode == 0:
                torch_version, torch_cuda, cuda_available = json.loads(out.stdout.strip().splitlines()[-1])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass
    return GpuInfo(name, memory, torch_version, torch_cuda, bool(cuda_available))


def check_gpu(require_gpu: bool = True, info: GpuInfo | None = None, say: Say = _say) -> GpuInfo:
    """Report the GPU, torch and free disk; without a usable GPU raise (require_gpu) or warn."""
    info = info or gpu_info()
    if info.name:
        say(f"GPU: {info.name} ({info.memory}); torch {info.torch_version or 'not installed'}, "
            f"CUDA {info.torch_cuda or '-'}, usable: {'yes' if info.cuda_available else 'NO'}")
    free = shutil.disk_usage(os.getcwd()).free / 2**30
    say(f"Free disk: {free:.1f} GiB")
    if not info.ok:
        if info.name and not info.cuda_available:
            message = (f"The GPU {info.name} is present but torch cannot use it (torch {info.torch_version}, "
                       f"CUDA {info.torch_cuda}). Restart the runtime; do not reinstall torch over Colab's build.")
        else:
            message = NO_GPU_MESSAGE
        if require_gpu:
            raise UserError(message + " (Untick require_gpu to continue on the CPU.)")
        say("WARNING: " + message)
    return info


# ------------------------------------------------------------------------------------------------------ storage


def prepare_data_dir(use_drive: bool, data_dir: str = "", mount: Callable[[str], None] | None = None,
                     say: Say = _say) -> str:
    """The --data-dir: `data_dir` if given, else MyDrive/sd-webui on Google Drive (mounted here) or a local
    folder that disappears with the runtime. Creates A1111's folders inside."""
    if use_drive:
        if mount is None:
            from google.colab import drive  # only in Colab (or the test's stub)

            mount = drive.mount
        mount(DRIVE_MOUNT_POINT)
        target = data_dir or os.path.join(DRIVE_MOUNT_POINT, "MyDrive", APP_NAME)
    else:
        target = data_dir or LOCAL_DATA_DIR
    target = os.path.abspath(os.path.expanduser(target))
    for folder in sorted(set(KIND_FOLDERS.values())) + ["outputs", "extensions"]:
        os.makedirs(os.path.join(target, folder), exist_ok=True)
    where = "Google Drive (kept)" if use_drive else "the runtime's disk (lost when the runtime ends)"
    say(f"Data folder: {target} on {where}")
    return target


# ------------------------------------------------------------------------------------------------------ install


def install_command(repo_dir: str, data_dir: str, python: str = sys.executable) -> list[str]:
    """The launcher's own environment step: torch only if missing (Colab's CUDA build is kept), then
    requirements.txt when something is missing, then enabled extensions' install.py; then exit."""
    return [python, os.path.join(repo_dir, "launch.py"), "--exit", "--data-dir", data_dir]


def install(repo_dir: str, data_dir: str, python: str = sys.executable, say: Say = _say) -> None:
    """Run the launcher's environment step, its output shown as it comes (pip can take minutes)."""
    say("Installing the requirements (a few minutes the first time)...")
    started = time.monotonic()
    tail: collections.deque[str] = collections.deque(maxlen=30)
    process = subprocess.Popen(install_command(repo_dir, data_dir, python), cwd=repo_dir, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    with process:
        for line in process.stdout:
            tail.append(line.rstrip())
            say(line.rstrip())
    if process.returncode != 0:
        raise UserError(f"Installing the requirements failed (exit code {process.returncode}):\n" + "\n".join(tail))
    say(f"Ready in {time.monotonic() - started:.0f} s.")


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------------- downloads


@dataclasses.dataclass(frozen=True)
class DownloadItem:
    url: str
    kind: str = "checkpoint"
    sha256: str | None = None
    filename: str | None = None

    def folder(self, data_dir: str) -> str:
        return os.path.join(data_dir, *KIND_FOLDERS[self.kind].split("/"))


def parse_url_list(text: str, default_kind: str = "checkpoint") -> list[DownloadItem]:
    """Entries separated by commas, spaces or new lines: ``[kind:]URL[#sha256=HEX][&name=FILE]``.

    kind is one of KIND_FOLDERS (or an alias, case-insensitive), default a checkpoint. `#sha256=` makes the
    download fail unless the file has that digest; `name=` chooses the file name (else the server's
    Content-Disposition, else the URL's last path segment).
    """
    items = []
    for entry in re.split(r"[\s,]+", text or ""):
        if not entry or entry.startswith("#"):
            continue
        kind = default_kind
        head, sep, rest = entry.partition(":")
        if sep and not rest.startswith("//"):  # a kind prefix, not the URL's own scheme
            kind = KIND_ALIASES.get(head.lower(), head.lower())
            if kind not in KIND_FOLDERS:
                raise UserError(f"Unknown download type {head!r} in {entry!r}: use one of "
                                f"{', '.join(sorted(KIND_FOLDERS))} (or no prefix for a checkpoint).")
            entry = rest
        url, _, fragment = entry.partition("#")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise UserError(f"Not a download URL: {url!r} (http:// or https:// expected).")
        options = dict(urllib.parse.parse_qsl(fragment))
        digest = options.get("sha256", "").strip().lower() or None
        if digest and not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise UserError(f"Bad sha256 for {url}: {digest!r} is not 64 hexadecimal digits.")
        name = options.get("name") or None
        items.append(DownloadItem(url, kind, digest, safe_filename(name) if name else None))
    return items


def safe_filename(name: str) -> str:
    """A plain file name (no folders, no leading dot), or UserError."""
    name = os.path.basename(urllib.parse.unquote(name).replace("\\", "/")).strip().strip(".")
    name = re.sub(r'[\x00-\x1f<>:"|?*]', "_", name)
    if not name:
        raise UserError("The download has no usable file name; add #name=FILE to its URL.")
    return name[:200]


def _filename_from_url(url: str) -> str | None:
    """The URL's last path segment when it looks like a file name (has an extension); else the server names it
    (Civitai's /api/download/models/ID sends the name in Content-Disposition)."""
    last = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    return safe_filename(last) if re.fullmatch(r"[^.]+(\.[^.]+)*\.[A-Za-z0-9]{1,12}", last) else None


def _filename_from_response(response, url: str) -> str:
    disposition = response.headers.get("Content-Disposition", "")
    match = re.search(r"filename\*=(?:UTF-8'')?([^;]+)", disposition, re.I) or \
        re.search(r'filename="?([^";]+)"?', disposition, re.I)
    if match:
        return safe_filename(match.group(1).strip())
    return safe_filename(urllib.parse.urlsplit(response.geturl() or url).path.rsplit("/", 1)[-1])


class _Progress:
    """One self-overwriting line per file, at most every `interval` seconds."""

    def __init__(self, name: str, total: int | None, say_inline: Callable[[str], None], interval: float = 1.0):
        self.name, self.total, self.say_inline, self.interval = name, total, say_inline, interval
        self.started = self.last = time.monotonic()
        self.first_done: int | None = None

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if self.first_done is None:
            self.first_done = done
        if not final and now - self.last < self.interval:
            return
        self.last = now
        speed = (done - self.first_done) / max(now - self.started, 1e-6) / 2**20
        size = f"{done / 2**20:,.1f}" + (f" / {self.total / 2**20:,.1f} MiB" if self.total else " MiB")
        percent = f"{100 * done / self.total:5.1f}% " if self.total else ""
        self.say_inline(f"\r{self.name}: {percent}{size} at {speed:,.1f} MiB/s" + ("\n" if final else ""))


def _inline(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def download(item: DownloadItem, data_dir: str, say_inline: Callable[[str], None] = _inline,
             timeout: float = 60.0) -> str:
    """Fetch one item into its folder; returns the file path.

    The bytes go to `<folder>/.<name>.part` (resumed with a Range request when it exists, e.g. after a dropped
    connection and a re-run of the cell) and become `<name>` only when complete and, with a sha256, verified;
    a file already in place is kept as it is.
    """
    folder = item.folder(data_dir)
    os.makedirs(folder, exist_ok=True)
    request = urllib.request.Request(item.url, headers={"User-Agent": f"{APP_NAME} colab"})
    name = item.filename or _filename_from_url(item.url)
    if name and os.path.isfile(os.path.join(folder, name)):
        say_inline(f"{name}: already in {folder}\n")
        return os.path.join(folder, name)
    partial = os.path.join(folder, f".{name}.part") if name else None
    offset = os.path.getsize(partial) if partial and os.path.isfile(partial) else 0
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (scheme checked when parsed)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            if _complete_range(e.headers.get("Content-Range"), offset):
                return _finish(item, partial, os.path.join(folder, name), say_inline)
            os.remove(partial)  # longer than the file on the server now: it cannot be resumed
            raise UserError(f"The partial download of {item.url} does not match the file on the server; it was "
                            f"deleted. Run the cell again.") from e
        raise UserError(f"Downloading {item.url} failed: HTTP {e.code} {e.reason}.") from e
    except (urllib.error.URLError, OSError) as e:
        raise UserError(f"Downloading {item.url} failed: {getattr(e, 'reason', e)}.") from e
    with response:
        if name is None:
            name = _filename_from_response(response, item.url)
            target = os.path.join(folder, name)
            if os.path.isfile(target):
                say_inline(f"{name}: already in {folder}\n")
                return target
            partial = os.path.join(folder, f".{name}.part")
            offset = 0  # the first request had no Range header: start from the beginning
        if response.status != 206:
            offset = 0  # the server sent the whole file
        elif not (response.headers.get("Content-Range") or "").startswith(f"bytes {offset}-"):
            raise UserError(f"Resuming {item.url}: the server answered with another byte range "
                            f"({response.headers.get('Content-Range')}); delete {partial} and run the cell again.")
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        progress = _Progress(name, total, say_inline)
        done = offset
        try:
            with open(partial, "ab" if offset else "wb") as f:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    progress.update(done)
        except (OSError, http.client.HTTPException) as e:
            raise UserError(f"Downloading {item.url} stopped at {done:,} bytes ({e}); run the cell again to "
                            f"resume.") from e
        progress.update(done, final=True)
        if total is not None and done < total:
            raise UserError(f"Downloading {item.url} stopped at {done:,} of {total:,} bytes; run the cell again "
                            f"to resume.")
    return _finish(item, partial, os.path.join(folder, name), say_inline)


def _complete_range(content_range: str | None, offset: int) -> bool:
    """A 416 answer to `bytes=offset-` whose `bytes */SIZE` says the part is already whole."""
    match = re.fullmatch(r"bytes \*/(\d+)", (content_range or "").strip())
    return bool(match) and int(match.group(1)) == offset


def _finish(item: DownloadItem, partial: str, target: str, say_inline: Callable[[str], None]) -> str:
    if item.sha256:
        from modules import hashes

        digest = hashes.calculate_sha256(partial)
        if digest != item.sha256:
            os.remove(partial)
            raise UserError(f"{os.path.basename(target)} from {item.url} has sha256 {digest}, expected "
                            f"{item.sha256}; the download was deleted.")
        say_inline(f"{os.path.basename(target)}: sha256 verified\n")
    os.replace(partial, target)
    return target


def download_all(text: str, data_dir: str, say: Say = _say, default_kind: str = "checkpoint") -> list[str]:
    """Parse the list first (a typo fails before anything is fetched), then fetch each item; every failure is
    reported and the others still run. Raises UserError at the end when any failed."""
    items = parse_url_list(text, default_kind)
    paths, failures = [], []
    for item in items:
        try:
            path = download(item, data_dir)
            paths.append(path)
            say(f"{item.kind}: {os.path.relpath(path, data_dir)}")
        except UserError as e:
            failures.append(str(e))
            say(f"FAILED: {e}")
    if failures:
        raise UserError(f"{len(failures)} of {len(items)} downloads failed (see above).")
    return paths


# --------------------------------------------------------------------------------------------------- extensions

_INSTALL_EXTENSIONS = """
import json, sys
from modules import extension_install, extensions
from modules.errors import UserError
extensions.list_extensions()
for url in json.load(sys.stdin):
    try:
        print(extension_install.install_extension_from_url(None, url))
    except UserError as e:
        print(f"{url}: {e}")
"""


def parse_extension_list(text: str) -> list[str]:
    """git URLs separated by commas, spaces or new lines (the installer validates each)."""
    return [u for u in re.split(r"[\s,]+", text or "") if u and not u.startswith("#")]


def install_extensions(text: str, repo_dir: str, data_dir: str, python: str = sys.executable,
                       say: Say = _say) -> None:
    """Clone each URL into <data dir>/extensions through the project's installer (https only, the extension's
    install.py run with the app's Python); one already installed is reported and skipped."""
    urls = parse_extension_list(text)
    if not urls:
        return
    say("Extensions run their own code with your permissions: install only ones you trust.")
    result = subprocess.run([python, "-c", _INSTALL_EXTENSIONS, "--data-dir", data_dir], input=json.dumps(urls),
                            cwd=repo_dir, capture_output=True, text=True)
    for line in result.stdout.strip().splitlines():
        say(line)
    if result.returncode != 0:
        raise UserError(f"Installing extensions failed:\n{_tail(result.stderr)}")


# ------------------------------------------------------------------------------------------------------- launch


def generate_password(length: int = 20) -> str:
    """Letters and digits only: no ':' or ',' (the credential separators) and nothing a shell would mangle."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def credentials(username: str = "", password: str = "") -> tuple[str, str, bool]:
    """(user, password, generated): blank fields get the default user and a fresh random password."""
    username = (username or DEFAULT_USER).strip()
    if not re.fullmatch(r"[^\s:,]+", username):
        raise UserError(f"Invalid user name {username!r}: no spaces, ':' or ','.")
    if password and ("," in password or password != password.strip()):
        raise UserError("The password may not contain ',' or start/end with spaces; leave it blank to get one.")
    if password:
        return username, password, False
    return username, generate_password(), True


@dataclasses.dataclass
class LaunchOptions:
    repo_dir: str
    data_dir: str
    username: str
    password: str
    access: str = "share"  # share | colab_proxy | none
    port: int = DEFAULT_PORT
    extra_args: str = ""
    allow_extension_installs_from_ui: bool = False
    allow_unsafe_pickles: bool = False
    python: str = sys.executable

    def __post_init__(self) -> None:
        if self.access not in ("share", "colab_proxy", "none"):
            raise UserError(f"Unknown access {self.access!r}: share, colab_proxy or none.")


def build_command(options: LaunchOptions) -> list[str]:
    """webui through the launcher (environment already prepared by the install cell), API on, one user and
    password for UI and API, share tunnel when asked; the two unsafe flags only from their opt-in fields."""
    try:
        extra = shlex.split(options.extra_args or "")
    except ValueError as e:
        raise UserError(f"Cannot read the extra arguments: {e}") from e
    for arg in extra:
        flag = arg.split("=", 1)[0]
        if flag in GUARDED_FLAGS:
            raise UserError(f"{flag} is set by the notebook's fields: {GUARDED_FLAGS[flag]}.")
    auth = f"{options.username}:{options.password}"
    command = [options.python, os.path.join(options.repo_dir, "launch.py"), "--skip-prepare-environment",
               "--data-dir", options.data_dir, "--port", str(options.port), "--api",
               "--gradio-auth", auth, "--api-auth", auth]
    if options.access == "share":
        command.append("--share")
    if options.allow_extension_installs_from_ui:
        command.append("--enable-insecure-extension-access")
    if options.allow_unsafe_pickles:
        command.append("--disable-safe-unpickle")
    return command + extra


def redact(command: list[str], password: str) -> str:
    return shlex.join(command).replace(password, "*" * 8)


@dataclasses.dataclass
class WebUIProcess:
    process: subprocess.Popen
    local_url: str
    log_path: str
    public_url: str | None = None

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return _tail(f.read(), lines)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server and whatever it started (its own process group)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
        with contextlib.suppress(FileNotFoundError):
            os.remove(pid_file())


_current: WebUIProcess | None = None  # the server this kernel started


def run_dir() -> str:
    """Logs and the pid file: on the runtime's disk (not Drive), under TMPDIR."""
    path = os.path.join(tempfile.gettempdir(), f"{APP_NAME}-colab")
    os.makedirs(path, exist_ok=True)
    return path


def pid_file() -> str:
    return os.path.join(run_dir(), "webui.pid")


def start_webui(options: LaunchOptions, timeout: float = 600.0, share_timeout: float = 60.0,
                say: Say = _say) -> WebUIProcess:
    """Start the server in the background, wait until it answers, print where to open it. Running the cell
    again restarts it (the previous server is stopped first, so the port is free)."""
    global _current
    command = build_command(options)
    if _current is not None and _current.running():
        say("Stopping the web UI started before...")
        _current.stop()
    log_path = os.path.join(run_dir(), "webui.log")
    say(f"Starting: {redact(command, options.password)}")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("COMMANDLINE_ARGS", None)
    with open(log_path, "w", encoding="utf-8") as log_file:
        process = subprocess.Popen(command, cwd=options.repo_dir, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    with open(pid_file(), "w", encoding="utf-8") as f:
        f.write(str(process.pid))
    server = _current = WebUIProcess(process, f"http://127.0.0.1:{options.port}", log_path)
    try:
        _wait_until_ready(server, timeout)
    except UserError:
        server.stop()
        raise
    say(f"Running on {server.local_url} (log: {log_path})")
    if options.access == "share":
        server.public_url = _wait_for_share_url(server, share_timeout)
        if server.public_url:
            say(f"Public URL: {server.public_url}")
        else:
            say("WARNING: no share link appeared (the tunnel may be blocked); see the log. access = colab_proxy "
                "opens the UI through Colab instead.")
    elif options.access == "colab_proxy":
        server.public_url = colab_proxy_url(options.port)
        say(f"Open (only you, signed in to Colab): {server.public_url}")
    return server


def _wait_until_ready(server: WebUIProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.running():
            raise UserError(f"The web UI exited with code {server.process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.local_url + "/", timeout=5):  # noqa: S310 (our own local server)
                return
        except urllib.error.HTTPError:
            return  # it answers (a login page or 401 is an answer)
        except (urllib.error.URLError, OSError):
            time.sleep(1)
    raise UserError(f"The web UI did not answer within {timeout:.0f} s:\n{server.log_tail()}")


def _wait_for_share_url(server: WebUIProcess, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.running():
        with open(server.log_path, encoding="utf-8", errors="replace") as f:
            match = SHARE_URL.search(f.read())
        if match:
            return match.group(0)
        time.sleep(1)
    return None


def colab_proxy_url(port: int) -> str:
    """Colab's own proxy for a kernel port: reachable only by the signed-in notebook user."""
    from google.colab.output import eval_js  # only in Colab (or the test's stub)

    return str(eval_js(f"google.colab.kernel.proxyPort({int(port)})"))


def stop_webui(server: WebUIProcess | None = None, say: Say = _say) -> None:
    """Stop the server started by start_webui (or the one named by the pid file, after a kernel restart)."""
    server = server or _current
    if server is not None and server.running():
        server.stop()
        say("Stopped.")
        return
    try:
        with open(pid_file(), encoding="utf-8") as f:
            pid = int(f.read().strip())
        os.killpg(pid, signal.SIGTERM)  # not this kernel's child: init reaps it
        say("Stopped.")
    except (FileNotFoundError, ValueError, ProcessLookupError):
        say("No web UI is running.")
    with contextlib.suppress(FileNotFoundError):
        os.remove(pid_file())


def ensure_package(name: str, python: str = sys.executable, say: Say = _say) -> None:
    """pip-install a notebook-only package (the API demo's client) when it is missing."""
    import importlib.util

    if importlib.util.find_spec(name) is None:
        say(f"Installing {name}...")
        subprocess.run([python, "-m", "pip", "install", "-q", name], check=True)
