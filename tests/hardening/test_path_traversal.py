"""Path traversal: every route and function that takes a path or a file name, tried with the same 200+ hostile
names, never reads or writes outside its allowed roots. Canary files are planted outside (and reached through
symlinks planted inside); their content must never come back, and nothing new may appear outside.

Routes of the running server (tests/conftest.py `server`: UI + API): the root `file=` route, Gradio's file routes,
settings that select a model by name (sd_model_checkpoint, sd_vae), upscalers by name, API image URLs. In process:
output file names, styles, config-state backup names, extension folder names.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import requests
from PIL import Image

from modules import config_states, extension_install, images, styles
from modules.errors import UserError
from tests.hardening.figures import record

TOKEN = uuid.uuid4().hex  # in the canaries' content only: error messages may echo the names asked for
CANARY_TEXT = f"CANARY-{TOKEN}"


def hostile_names(outside: Path, inside_links: list[str]) -> list[str]:
    """200+ names aimed at `outside`/canary.png: relative climbs, absolute paths, encodings, separators, NUL,
    symlinks planted inside an allowed root, very long names."""
    targets = [f"{outside.name}/canary.png", "etc/passwd", "proc/self/environ", f"{outside.name}/canary.txt"]
    names: list[str] = []
    for target in targets:
        for depth in (1, 2, 3, 6, 12):
            climb = "../" * depth
            names += [
                climb + target,
                climb.replace("/", "\\") + target.replace("/", "\\"),
                urllib.parse.quote(climb + target, safe=""),
                urllib.parse.quote(urllib.parse.quote(climb + target, safe=""), safe=""),
                climb.replace("../", "..%2f") + target,
                climb.replace("../", "%2e%2e/") + target,
                climb.replace("../", "..%5c") + target,
                climb.replace("../", "....//") + target,
                climb.replace("../", "..;/") + target,
                "outputs/" + climb + target,
            ]
    absolute = [str(outside / "canary.png"), str(outside / "canary.txt"), "/etc/passwd", "/proc/self/environ"]
    for path in absolute:
        names += [
            path,
            "//" + path.lstrip("/"),
            "file://" + path,
            urllib.parse.quote(path, safe=""),
            path.replace("/", "\\"),
            "C:" + path.replace("/", "\\"),
            path + "%00.png",
            path + "\x00.png",
        ]
    names += [link for link in inside_links]
    names += [link + "%00" for link in inside_links]
    names += [
        "\uff0e\uff0e\uff0f" * 4 + f"{outside.name}/canary.png",  # full-width dots and slash
        "..\u2215..\u2215" + f"{outside.name}/canary.png",  # division slash
        "~/.bashrc",
        "~root/.ssh/id_rsa",
        "%USERPROFILE%\\ntuser.dat",
        "$HOME/.bashrc",
        "a" * 300 + ".png",
        ("a" * 250 + "/") * 20 + "x.png",
        "../" * 200 + "etc/passwd",
        "config.json",
        "../config.json",
        "styles.csv",
        ".git/config",
        "..",
        ".",
        "",
        "/",
        "canary.png\x00",
        "\x00",
        "con.png",
        "nul",
        "aux.png",
        "\\\\server\\share\\canary.png",
    ]
    return list(dict.fromkeys(names))


@pytest.fixture(scope="module")
def planted(server, data_dir):
    """Canaries outside every allowed root, symlinks to them inside the outputs folder."""
    outside = data_dir.parent / f"hardening-outside-{uuid.uuid4().hex[:8]}"
    outside.mkdir()
    for name in ("canary.png", "canary.txt", "canary.safetensors"):
        (outside / name).write_text(CANARY_TEXT)
    outputs = data_dir / "outputs"
    outputs.mkdir(exist_ok=True)
    links = []
    for name, target in (("link-canary.png", outside / "canary.png"), ("link-dir", outside)):
        (outputs / name).symlink_to(target)
        links.append(f"outputs/{name}")
    links += [str(outputs / "link-canary.png"), str(outputs / "link-dir" / "canary.png"), "outputs/link-dir/canary.png"]
    yield outside, hostile_names(outside, links)
    for child in outside.iterdir():
        child.unlink()
    outside.rmdir()


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET with the path sent byte for byte (no client-side normalisation or encoding)."""
    host, port = urllib.parse.urlsplit(url)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(
            b"GET " + path.encode("utf-8", "surrogateescape") + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    status = int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else 0
    return status, response


def leaked(body: bytes | str) -> bool:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return TOKEN in text or "root:x:0:0" in text


def outside_unchanged(outside: Path) -> bool:
    return sorted(p.name for p in outside.iterdir()) == ["canary.png", "canary.safetensors", "canary.txt"]


@pytest.mark.parametrize("prefix", ["/file=", "/gradio_api/file=", "/gradio_api/file/"])
def test_file_routes_serve_nothing_outside(server, planted, prefix):
    outside, names = planted
    statuses: dict[int, int] = {}
    leaks, errors = [], []
    start = time.perf_counter()
    for name in names:
        status, body = raw_get(server.url, prefix + name.replace(" ", "%20").replace("\r", "").replace("\n", ""))
        statuses[status] = statuses.get(status, 0) + 1
        if leaked(body):
            leaks.append(name)
        if status >= 500 or status == 0:
            errors.append(f"{name!r}: {status}")
    record(
        "path traversal",
        route=prefix,
        tried=len(names),
        served_outside=len(leaks),
        statuses=statuses,
        seconds=round(time.perf_counter() - start, 2),
    )
    assert len(names) >= 200
    assert not leaks
    assert not errors
    assert outside_unchanged(outside)
    assert requests.get(server.url + "/", timeout=10).status_code == 200  # still serving


def test_model_selection_by_name_reads_nothing_outside(server, planted):
    """sd_model_checkpoint, sd_vae and upscaler names: refused (or ignored); the server never opens the canary."""
    outside, names = planted
    before = requests.get(server.url + "/sdapi/v1/options", timeout=30).json()
    tiny = Image.new("RGB", (8, 8))
    import base64
    import io

    buffer = io.BytesIO()
    tiny.save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode()
    tried, refused, problems = 0, 0, []
    # (an empty name means "none" in A1111: a choice, not a path)
    for name in [n for n in names if "\x00" not in n and n] + [
        str(outside / "canary.safetensors"),
        "../" * 8 + str(outside / "canary.safetensors").lstrip("/"),
    ]:
        for key in ("sd_model_checkpoint", "sd_vae"):
            tried += 1
            r = requests.post(server.url + "/sdapi/v1/options", json={key: name}, timeout=60)
            refused += r.status_code >= 400
            if r.status_code >= 500 or leaked(r.text):
                problems.append(f"{key}={name!r}: {r.status_code} {r.text[:120]}")
        tried += 1
        r = requests.post(
            server.url + "/sdapi/v1/extra-single-image",
            json={"image": image, "upscaler_1": name, "upscaling_resize": 2},
            timeout=60,
        )
        refused += r.status_code >= 400
        if r.status_code >= 500 or leaked(r.text):
            problems.append(f"upscaler_1={name!r}: {r.status_code} {r.text[:120]}")
    after = requests.get(server.url + "/sdapi/v1/options", timeout=30).json()
    restore = {k: before[k] for k in ("sd_model_checkpoint", "sd_vae") if after[k] != before[k]}
    if restore:  # the session's server is shared with other tests
        requests.post(server.url + "/sdapi/v1/options", json=restore, timeout=120)
    log = server.output()
    read_outside = "canary.safetensors" in log and ("Loading" in log or "Could not load" in log)
    record("path traversal", route="model/VAE/upscaler names", tried=tried, refused=refused, read_outside=read_outside)
    assert not problems, "\n".join(problems[:20])
    assert not read_outside
    # A name may match a real model by substring (A1111's closest match): a model inside the models folder.
    titles = {m["title"] for m in requests.get(server.url + "/sdapi/v1/sd-models", timeout=30).json()}
    vaes = {v["model_name"] for v in requests.get(server.url + "/sdapi/v1/sd-vae", timeout=30).json()}
    assert after["sd_model_checkpoint"] in titles | {before["sd_model_checkpoint"]}
    assert after["sd_vae"] in vaes | {"Automatic", "None", before["sd_vae"]}
    assert outside_unchanged(outside)


def test_api_image_urls_are_never_fetched_from_the_filesystem_or_this_host(server, planted):
    outside, names = planted
    urls = [
        f"file://{outside / 'canary.png'}",
        "file:///etc/passwd",
        f"{server.url}/file=outputs/link-canary.png",
        f"http://127.0.0.1:{server.port}/sdapi/v1/options",
        "http://localhost/",
        "http://[::1]/",
        "http://0.0.0.0/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x.png",
        "http://2130706433/",
        "http://0x7f000001/",
        "gopher://127.0.0.1/",
        "ftp://127.0.0.1/x.png",
        "jar:file:///x!/y",
    ]
    urls += ["http://127.0.0.1/" + n for n in names[:200]]
    refused, problems = 0, []
    for url in urls:
        r = requests.post(server.url + "/sdapi/v1/png-info", json={"image": url}, timeout=60)
        refused += 400 <= r.status_code < 500
        if r.status_code == 200 or r.status_code >= 500 or leaked(r.text):
            problems.append(f"{url[:80]!r}: {r.status_code} {r.text[:120]}")
    record("path traversal", route="API image URLs", tried=len(urls), refused=refused)
    assert not problems, "\n".join(problems[:20])


def test_names_that_become_files_stay_inside_their_folder(tmp_path, planted):
    """Output file names from prompts and forced names, styles, config-state names, extension folder names."""
    _, names = planted
    root = tmp_path / "root"
    outdir, states = root / "outputs", root / "config_states"
    outdir.mkdir(parents=True)
    image = Image.new("RGB", (4, 4))
    written: list[Path] = []
    tried = refused = 0
    old_states_dir = config_states.config_states_dir
    config_states.config_states_dir = str(states)
    try:
        for name in names:
            tried += 4
            try:
                fullfn, _ = images.save_image(image, str(outdir), "", prompt=name, extension="png", info=None)
                written.append(Path(fullfn))
            except UserError:
                refused += 1
            try:
                fullfn, _ = images.save_image(image, str(outdir), "", extension="png", forced_filename=name)
                written.append(Path(fullfn))
            except UserError:
                refused += 1
            written.append(Path(config_states.save_config_state(name)))
            try:
                folder = extension_install.sanitize_dirname(name)
                assert "/" not in folder and "\\" not in folder and not folder.startswith(".") and folder != ".."
                folder = extension_install.get_extension_dirname_from_url("https://example.com/x/" + name)
                assert "/" not in folder and "\\" not in folder and not folder.startswith(".")
            except UserError:
                refused += 1
            with pytest.raises(UserError):
                config_states.load_config_state(name)
        database = styles.StyleDatabase(str(root / "styles.csv"))
        for name in names:
            database.styles[name] = styles.PromptStyle(name, "a", "b", str(root / "styles.csv"))
        database.save_styles()
        tried += len(names)
    finally:
        config_states.config_states_dir = old_states_dir
    real_root = os.path.realpath(root)
    escaped = [p for p in written if not os.path.realpath(p).startswith(real_root + os.sep)]
    on_disk = {os.path.realpath(os.path.join(d, f)) for d, _, fs in os.walk(tmp_path) for f in fs}
    record("path traversal", route="names that become files", tried=tried, refused=refused, escaped=len(escaped))
    assert not escaped
    assert all(p.startswith(real_root + os.sep) for p in on_disk)
