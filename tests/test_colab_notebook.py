"""notebooks/colab.ipynb and its helper module modules/colab_setup.py.

The helper is unit-tested (URL lists, folders, passwords, the command line, downloads over real HTTP with resume
and sha256). The notebook is validated with nbformat and executed on the CPU by nbclient, cell by cell, in a
kernel that has a stub `google.colab` on its PYTHONPATH: the downloads come from a local HTTP server (the tiny
checkpoint), an extension is installed from a local git repository, the launch cell starts the real server
without a tunnel, and the API demo cell generates a 64×64 image with the generated password.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modules import cmd_args, colab_setup, credentials
from modules.errors import UserError
from tests.conftest import ROOT, free_port
from tests.extension_fixtures import make_repo
from tests.http_files import FileServer, ServedFile

NOTEBOOK = ROOT / "notebooks" / "colab.ipynb"
STUB = Path(__file__).resolve().parent / "colab_stub"
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, every byte value
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def file_server():
    server = FileServer()
    yield server
    server.close()


def test_helper_imports_only_the_standard_library():
    """Cell 1 imports the helper before cell 4 installs the requirements."""
    probe = ("import sys, modules.colab_setup as c; c.parse_url_list('lora:https://h.example/x.pt'); "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy', 'gradio', 'requests', 'PIL', "
             "'yaml', 'safetensors', 'packaging'}))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------ URL lists and folders


def test_parse_url_list_prefixes_defaults_and_fragments():
    digest = "ab" * 32
    items = colab_setup.parse_url_list(
        f"https://h.example/a/model.safetensors#sha256={digest.upper()},\n"
        " lora:https://h.example/l.safetensors  VAE:https://h.example/v.pt,embedding:http://h.example/e.pt "
        "lycoris:https://h.example/x, ti:https://h.example/t.bin#name=nice.pt&sha256=" + digest +
        ", hypernetwork:https://h.example/h.pt esrgan:https://h.example/4x.pth ,,"
    )
    assert [(i.kind, i.url) for i in items] == [
        ("checkpoint", "https://h.example/a/model.safetensors"),
        ("lora", "https://h.example/l.safetensors"),
        ("vae", "https://h.example/v.pt"),
        ("embedding", "http://h.example/e.pt"),
        ("lycoris", "https://h.example/x"),
        ("embedding", "https://h.example/t.bin"),
        ("hypernetwork", "https://h.example/h.pt"),
        ("esrgan", "https://h.example/4x.pth"),
    ]
    assert items[0].sha256 == digest and items[1].sha256 is None
    assert items[5].filename == "nice.pt" and items[5].sha256 == digest
    assert colab_setup.parse_url_list("") == [] and colab_setup.parse_url_list(" , \n") == []
    assert colab_setup.parse_url_list("https://h.example/x", default_kind="lora")[0].kind == "lora"


@pytest.mark.parametrize("text, message", [
    ("loar:https://h.example/x", "Unknown download type 'loar'"),
    ("ftp://h.example/x", "Not a download URL"),
    ("file:///etc/passwd", "Not a download URL"),
    ("lora:/content/x.safetensors", "Not a download URL"),
    ("https://h.example/x#sha256=1234", "not 64 hexadecimal digits"),
    ("https://h.example/x#name=..", "no usable file name"),
])
def test_parse_url_list_errors(text, message):
    with pytest.raises(UserError, match=re.escape(message)):
        colab_setup.parse_url_list(text)


def test_target_folders_follow_a1111_layout(tmp_path):
    data = str(tmp_path)
    expected = {
        "checkpoint": "models/Stable-diffusion", "vae": "models/VAE", "lora": "models/Lora",
        "lycoris": "models/Lora", "embedding": "embeddings", "hypernetwork": "models/hypernetworks",
        "esrgan": "models/ESRGAN",
    }
    for kind, folder in expected.items():
        assert colab_setup.DownloadItem("https://h.example/x", kind).folder(data) == os.path.join(data, folder)
    # the same folders the web UI scans by default (relative to its data dir)
    defaults = {a.dest: a.default for a in cmd_args.parser._actions}
    from modules import paths_internal

    assert os.path.relpath(defaults["lora_dir"], paths_internal.data_path) == os.path.normpath(expected["lora"])
    assert os.path.relpath(defaults["embeddings_dir"], paths_internal.data_path) == expected["embedding"]
    assert os.path.relpath(defaults["hypernetwork_dir"], paths_internal.data_path) == \
        os.path.normpath(expected["hypernetwork"])


def test_safe_filename_strips_folders():
    assert colab_setup.safe_filename("../../etc/passwd") == "passwd"
    assert colab_setup.safe_filename("a%2F..%2Fb.safetensors") == "b.safetensors"
    assert colab_setup.safe_filename('we:ird"name?.pt') == "we_ird_name_.pt"
    with pytest.raises(UserError):
        colab_setup.safe_filename("...")


# -------------------------------------------------------------------------------------------------- downloads


def test_download_to_kind_folder_with_progress(tmp_path, file_server):
    file_server.files["/files/style.safetensors"] = ServedFile(PAYLOAD)
    item = colab_setup.parse_url_list(f"lora:{file_server.base}/files/style.safetensors?download=true")[0]
    lines = []
    path = colab_setup.download(item, str(tmp_path), say_inline=lines.append)
    assert path == str(tmp_path / "models" / "Lora" / "style.safetensors")
    assert Path(path).read_bytes() == PAYLOAD
    assert lines[-1].startswith("\rstyle.safetensors: 100.0% 1.0 / 1.0 MiB") and lines[-1].endswith("\n")
    assert not list((tmp_path / "models" / "Lora").glob(".*.part"))
    # present: kept, no request
    count = len(file_server.requests)
    assert colab_setup.download(item, str(tmp_path), say_inline=lines.append) == path
    assert len(file_server.requests) == count


def test_download_name_from_content_disposition(tmp_path, file_server):
    file_server.files["/api/download/models/123"] = ServedFile(PAYLOAD[:1000], disposition_name="real name.ckpt")
    item = colab_setup.parse_url_list(f"{file_server.base}/api/download/models/123")[0]
    path = colab_setup.download(item, str(tmp_path), say_inline=lambda s: None)
    assert Path(path).name == "real name.ckpt" and Path(path).read_bytes() == PAYLOAD[:1000]
    assert Path(path).parent == tmp_path / "models" / "Stable-diffusion"


def test_download_resumes_after_a_dropped_connection(tmp_path, file_server):
    file_server.files["/m.safetensors"] = ServedFile(PAYLOAD, truncate_at=300_000)
    item = colab_setup.parse_url_list(f"vae:{file_server.base}/m.safetensors#sha256={PAYLOAD_SHA}")[0]
    with pytest.raises(UserError, match="run the cell again to resume"):
        colab_setup.download(item, str(tmp_path), say_inline=lambda s: None)
    folder = tmp_path / "models" / "VAE"
    part = folder / ".m.safetensors.part"
    assert part.stat().st_size == 300_000 and not (folder / "m.safetensors").exists()

    file_server.files["/m.safetensors"].truncate_at = None
    lines = []
    path = colab_setup.download(item, str(tmp_path), say_inline=lines.append)
    assert file_server.requests[-1] == ("/m.safetensors", "bytes=300000-")
    assert Path(path).read_bytes() == PAYLOAD and not part.exists()
    assert "m.safetensors: sha256 verified\n" in lines


def test_download_restarts_when_the_server_ignores_ranges(tmp_path, file_server):
    file_server.files["/m.pt"] = ServedFile(PAYLOAD, ignore_range=True)
    folder = tmp_path / "embeddings"
    folder.mkdir()
    (folder / ".m.pt.part").write_bytes(b"garbage from another file")
    item = colab_setup.parse_url_list(f"embedding:{file_server.base}/m.pt#sha256={PAYLOAD_SHA}")[0]
    path = colab_setup.download(item, str(tmp_path), say_inline=lambda s: None)
    assert file_server.requests[-1][1] == "bytes=25-"
    assert Path(path).read_bytes() == PAYLOAD


def test_download_complete_part_answered_416(tmp_path, file_server):
    file_server.files["/m.pt"] = ServedFile(PAYLOAD)
    folder = tmp_path / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    (folder / ".m.pt.part").write_bytes(PAYLOAD)
    item = colab_setup.parse_url_list(f"{file_server.base}/m.pt#sha256={PAYLOAD_SHA}")[0]
    assert Path(colab_setup.download(item, str(tmp_path), say_inline=lambda s: None)).read_bytes() == PAYLOAD


def test_download_part_longer_than_the_file_is_deleted(tmp_path, file_server):
    file_server.files["/m.pt"] = ServedFile(PAYLOAD[:100])
    folder = tmp_path / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    (folder / ".m.pt.part").write_bytes(PAYLOAD[:500])
    item = colab_setup.parse_url_list(f"{file_server.base}/m.pt")[0]
    with pytest.raises(UserError, match="does not match the file on the server; it was deleted"):
        colab_setup.download(item, str(tmp_path), say_inline=lambda s: None)
    assert list(folder.iterdir()) == []
    assert Path(colab_setup.download(item, str(tmp_path), say_inline=lambda s: None)).read_bytes() == PAYLOAD[:100]


def test_download_sha256_mismatch_deletes_the_file(tmp_path, file_server):
    file_server.files["/m.safetensors"] = ServedFile(PAYLOAD)
    wrong = "0" * 64
    item = colab_setup.parse_url_list(f"{file_server.base}/m.safetensors#sha256={wrong}")[0]
    with pytest.raises(UserError, match=f"has sha256 {PAYLOAD_SHA}, expected {wrong}; the download was deleted"):
        colab_setup.download(item, str(tmp_path), say_inline=lambda s: None)
    assert list((tmp_path / "models" / "Stable-diffusion").iterdir()) == []


def test_download_all_reports_each_failure_and_continues(tmp_path, file_server):
    file_server.files["/ok.pt"] = ServedFile(b"fine")
    said = []
    with pytest.raises(UserError, match="1 of 2 downloads failed"):
        colab_setup.download_all(f"{file_server.base}/missing.pt, lora:{file_server.base}/ok.pt", str(tmp_path),
                                 say=said.append)
    assert said[0].startswith("FAILED: Downloading ") and "HTTP 404" in said[0]
    assert said[1] == "lora: " + os.path.join("models", "Lora", "ok.pt")
    # a typo in the list fails before anything is fetched
    count = len(file_server.requests)
    with pytest.raises(UserError, match="Unknown download type"):
        colab_setup.download_all(f"{file_server.base}/ok.pt, vea:{file_server.base}/ok.pt", str(tmp_path))
    assert len(file_server.requests) == count


# ---------------------------------------------------------------------------------- GPU, storage, credentials


def test_check_gpu_messages():
    said = []
    ok = colab_setup.GpuInfo("Tesla T4", "15360 MiB", "2.13.0+cu130", "13.0", True)
    assert colab_setup.check_gpu(True, ok, say=said.append) is ok
    assert said[0] == "GPU: Tesla T4 (15360 MiB); torch 2.13.0+cu130, CUDA 13.0, usable: yes"
    none = colab_setup.GpuInfo(None, None, None, None, False)
    with pytest.raises(UserError, match="No NVIDIA GPU found.*Untick require_gpu"):
        colab_setup.check_gpu(True, none, say=said.append)
    said.clear()
    colab_setup.check_gpu(False, none, say=said.append)
    assert said[-1].startswith("WARNING: No NVIDIA GPU found. In Colab choose Runtime > Change runtime type")
    broken = colab_setup.GpuInfo("Tesla T4", "15360 MiB", "2.13.0+cpu", None, False)
    with pytest.raises(UserError, match="present but torch cannot use it"):
        colab_setup.check_gpu(True, broken, say=said.append)


def test_gpu_info_reads_nvidia_smi_and_torch(tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'Tesla T4, 15360 MiB'\n")
    fake_python = tmp_path / "python"
    fake_python.write_text('#!/bin/sh\necho \'["2.13.0+cu130", "13.0", true]\'\n')
    for f in (smi, fake_python):
        f.chmod(0o755)
    info = colab_setup.gpu_info(python=str(fake_python), nvidia_smi=str(smi))
    assert info == colab_setup.GpuInfo("Tesla T4", "15360 MiB", "2.13.0+cu130", "13.0", True) and info.ok
    assert not colab_setup.gpu_info(nvidia_smi=str(tmp_path / "missing")).ok


def test_prepare_data_dir_local_and_drive(tmp_path):
    mounted = []
    data = colab_setup.prepare_data_dir(True, str(tmp_path / "MyDrive" / "x"), mount=mounted.append,
                                        say=lambda s: None)
    assert mounted == ["/content/drive"] and data == str(tmp_path / "MyDrive" / "x")
    for folder in ("models/Stable-diffusion", "models/VAE", "models/Lora", "embeddings", "outputs", "extensions"):
        assert (tmp_path / "MyDrive" / "x" / folder).is_dir()
    said = []
    assert colab_setup.prepare_data_dir(False, str(tmp_path / "local"), say=said.append) == str(tmp_path / "local")
    assert "lost when the runtime ends" in said[0]


def test_generated_passwords():
    passwords = {colab_setup.generate_password() for _ in range(200)}
    assert len(passwords) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9]{20}", p) for p in passwords)
    user, password, generated = colab_setup.credentials("", "")
    assert user == "webui" and generated and len(password) == 20
    # round trip through the server's own parser
    assert credentials.parse_credentials(f"{user}:{password}", "--api-auth") == {user: password}
    assert colab_setup.credentials("me", "pa:ss") == ("me", "pa:ss", False)
    for bad in (("a b", ""), ("a:b", ""), ("a,b", "")):
        with pytest.raises(UserError, match="Invalid user name"):
            colab_setup.credentials(*bad)
    with pytest.raises(UserError, match="may not contain ','"):
        colab_setup.credentials("me", "a,b")


def test_install_streams_output_and_reports_failure(tmp_path):
    fake_python = tmp_path / "python"
    fake_python.write_text('#!/bin/sh\necho "Installing requirements"\necho "ERROR: no matching distribution" >&2\n'
                           'exit 3\n')
    fake_python.chmod(0o755)
    said = []
    with pytest.raises(UserError, match=r"failed \(exit code 3\):\nInstalling requirements\nERROR: no matching"):
        colab_setup.install(str(tmp_path), str(tmp_path / "data"), python=str(fake_python), say=said.append)
    assert said[1:] == ["Installing requirements", "ERROR: no matching distribution"]
    assert colab_setup.install_command("/repo", "/d", "py") == ["py", "/repo/launch.py", "--exit", "--data-dir", "/d"]


# ------------------------------------------------------------------------------------------------ command line


def _parsed(command: list[str]):
    """The flags of a built command as the web UI parses them (python, launch.py and the launcher flag dropped)."""
    assert command[1].endswith("launch.py") and command[2] == "--skip-prepare-environment"
    return cmd_args.parser.parse_args(command[3:])


def test_build_command_secure_defaults(tmp_path):
    options = colab_setup.LaunchOptions("/repo", str(tmp_path), "webui", "Secret123")
    command = colab_setup.build_command(options)
    assert command[:2] == [sys.executable, "/repo/launch.py"]
    opts = _parsed(command)
    assert opts.share and opts.api and opts.port == 7860 and opts.data_dir == str(tmp_path)
    assert opts.gradio_auth == opts.api_auth == "webui:Secret123"
    assert not opts.listen and not opts.disable_safe_unpickle and not opts.enable_insecure_extension_access
    assert "Secret123" not in colab_setup.redact(command, "Secret123")


def test_build_command_options_and_opt_ins(tmp_path):
    options = colab_setup.LaunchOptions("/repo", str(tmp_path), "u", "p", access="none", port=7861,
                                        extra_args="--medvram --no-half-vae", allow_extension_installs_from_ui=True,
                                        allow_unsafe_pickles=True)
    opts = _parsed(colab_setup.build_command(options))
    assert not opts.share and opts.port == 7861 and opts.medvram and opts.no_half_vae
    assert opts.enable_insecure_extension_access and opts.disable_safe_unpickle
    assert not _parsed(colab_setup.build_command(
        colab_setup.LaunchOptions("/repo", "/d", "u", "p", access="colab_proxy"))).share


@pytest.mark.parametrize("extra", ["--disable-safe-unpickle", "--enable-insecure-extension-access", "--share",
                                   "--api-auth=x:y", "--listen", "--data-dir /tmp"])
def test_build_command_refuses_flags_the_fields_own(extra):
    with pytest.raises(UserError, match="is set by the notebook's fields"):
        colab_setup.build_command(colab_setup.LaunchOptions("/repo", "/d", "u", "p", extra_args=extra))
    with pytest.raises(UserError, match="Unknown access"):
        colab_setup.LaunchOptions("/repo", "/d", "u", "p", access="public")


def test_share_url_and_colab_proxy(tmp_path, monkeypatch):
    log_path = tmp_path / "webui.log"
    log_path.write_text("Running on local URL:  http://127.0.0.1:7860\n"
                        "Running on public URL: https://0123abcd4567.gradio.live\n")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        server = colab_setup.WebUIProcess(sleeper, "http://127.0.0.1:7860", str(log_path))
        assert colab_setup._wait_for_share_url(server, 5) == "https://0123abcd4567.gradio.live"
    finally:
        sleeper.kill()
        sleeper.wait()
    monkeypatch.syspath_prepend(str(STUB))
    assert colab_setup.colab_proxy_url(7860) == "https://7860-colab-proxy.example/"


FAKE_LAUNCH = """
import http.server, sys
if "--fail" in sys.argv:
    sys.exit("cannot start: no checkpoint")
port = int(sys.argv[sys.argv.index("--port") + 1])
httpd = http.server.HTTPServer(("127.0.0.1", port), http.server.BaseHTTPRequestHandler)
print("Running on local URL:  http://127.0.0.1:%d" % port, flush=True)
print("Running on public URL: https://fa4e.gradio.live", flush=True)
httpd.serve_forever()
"""


def test_start_restart_and_stop(tmp_path, monkeypatch):
    """start_webui against a stand-in launch.py (an HTTP server that prints a share URL): ready detection, the
    share link, a second start replacing the first, stop without arguments, a failing start."""
    monkeypatch.setattr(colab_setup.tempfile, "tempdir", str(tmp_path))
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "launch.py").write_text(FAKE_LAUNCH)
    options = colab_setup.LaunchOptions(str(repo), str(tmp_path / "data"), "u", "pw123456", port=free_port())
    said = []
    first = colab_setup.start_webui(options, timeout=30, share_timeout=10, say=said.append)
    try:
        assert first.running() and first.public_url == "https://fa4e.gradio.live"
        assert said[0].startswith("Starting: ") and "pw123456" not in said[0] and "u:********" in said[0]
        assert said[1:] == [f"Running on {first.local_url} (log: {first.log_path})",
                            "Public URL: https://fa4e.gradio.live"]
        second = colab_setup.start_webui(options, timeout=30, share_timeout=10, say=said.append)
        assert not first.running() and second.running()
        assert (tmp_path / "sd-webui-colab" / "webui.pid").read_text() == str(second.process.pid)
        colab_setup.stop_webui(say=said.append)
        assert not second.running() and said[-1] == "Stopped."
        assert not (tmp_path / "sd-webui-colab" / "webui.pid").exists()
        options.extra_args = "--fail"
        with pytest.raises(UserError, match="exited with code 1:\ncannot start: no checkpoint"):
            colab_setup.start_webui(options, timeout=30, say=said.append)
    finally:
        for server in (first, colab_setup._current):
            if server is not None and server.running():
                server.stop()


def test_stop_without_a_server(tmp_path, monkeypatch):
    monkeypatch.setattr(colab_setup.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(colab_setup, "_current", None)
    said = []
    colab_setup.stop_webui(say=said.append)
    assert said == ["No web UI is running."]


# ---------------------------------------------------------------------------------------------------- notebook


def _load_notebook():
    nbformat = pytest.importorskip("nbformat")
    return nbformat, nbformat.read(NOTEBOOK, as_version=4)


def test_notebook_is_valid_and_secure():
    nbformat, nb = _load_notebook()
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    titles = [c.source.splitlines()[0] for c in code]
    assert titles == ["#@title 1. Get the code", "#@title 2. Check the GPU", "#@title 3. Storage",
                      "#@title 4. Install the requirements", "#@title 5. Download models, VAEs, LoRAs, embeddings",
                      "#@title 6. Extensions (optional)", "#@title 7. Start the web UI",
                      "#@title 8. Generate an image through the API", "#@title 9. Stop the web UI"]
    for cell in code:
        compile(cell.source, "cell", "exec")
        assert not cell.get("outputs") and cell.get("execution_count") is None, "commit the notebook without outputs"
    text = "\n".join(c.source for c in code)
    assert "--disable-safe-unpickle" not in text and "--enable-insecure-extension-access" not in text
    params = _params(nb)
    assert params["access"] == '"share"' and params["password"] == '""'
    assert params["allow_extension_installs_from_ui"] == params["allow_unsafe_pickles"] == "False"
    assert params["require_gpu"] == "True" and params["stop"] == "False"
    assert nb.metadata["accelerator"] == "GPU"


PARAM = re.compile(r"^(\w+) = (.*?)  #@param\b.*$", re.M)


def _params(nb) -> dict[str, str]:
    return {m.group(1): m.group(2) for c in nb.cells if c.cell_type == "code" for m in PARAM.finditer(c.source)}


def _set_params(nb, values: dict) -> None:
    """Fill Colab form fields the way the form does: replace the value, keep the `#@param` annotation."""
    missing = set(values) - set(_params(nb))
    assert not missing, missing
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = PARAM.sub(lambda m: f"{m.group(1)} = {values[m.group(1)]!r}  #@param"
                                    if m.group(1) in values else m.group(0), cell.source)


def _text(cell) -> str:
    out = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            out.append(output.text)
        elif output.output_type == "error":
            out.append("\n".join(output.traceback))
        elif "text/plain" in output.get("data", {}):
            out.append(output.data["text/plain"])
    return "".join(out)


def _kernel_manager(tmp_path: Path, env: dict[str, str]):
    """A kernelspec written for this run that names this interpreter: the kernel gets the test venv's packages
    whatever `python3` kernelspecs the user's Jupyter folders hold (a user-level one would shadow the venv's)."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec = tmp_path / "kernels" / "sdwebui-colab-test"
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "sd-webui colab test", "language": "python", "env": env,
    }))
    specs = KernelSpecManager(kernel_dirs=[str(spec.parent)], ensure_native_kernel=False)
    return KernelManager(kernel_name="sdwebui-colab-test", kernel_spec_manager=specs)


def _kill_leftover_server(run_dir: Path) -> None:
    pid_path = run_dir / "sd-webui-colab" / "webui.pid"
    if pid_path.exists():
        try:
            os.killpg(int(pid_path.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_notebook_runs_on_cpu(tmp_path, tiny_checkpoints, file_server):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("webuiapi")
    import requests
    from nbclient import NotebookClient
    from PIL import Image

    _, nb = _load_notebook()
    ckpt = tiny_checkpoints["sd1"]
    ckpt_bytes = ckpt.read_bytes()
    file_server.files["/tiny-sd1.safetensors"] = ServedFile(ckpt_bytes)
    file_server.files["/tiny-sd1.yaml"] = ServedFile(ckpt.with_suffix(".yaml").read_bytes())
    ext_url = make_repo(tmp_path / "colab-test-ext", {
        "install.py": "import os\nopen(os.path.join(os.path.dirname(__file__), 'installed.txt'), 'w').write('ok')\n",
    })
    data = tmp_path / "drive" / "MyDrive" / "sd-webui"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    record = tmp_path / "colab-calls.jsonl"
    port = free_port()
    _set_params(nb, {
        "repo_dir": str(tmp_path / "no-checkout-here"),  # falls back to the checkout the kernel runs in
        "require_gpu": False, "use_drive": True, "data_dir": str(data),
        "model_urls": f"{file_server.base}/tiny-sd1.safetensors#sha256={hashlib.sha256(ckpt_bytes).hexdigest()}, "
                      f"checkpoint:{file_server.base}/tiny-sd1.yaml",
        "extension_urls": ext_url, "access": "none", "port": port,
        "prompt": "a lighthouse", "steps": 2, "width": 64, "height": 64, "seed": 1234, "stop": True,
    })
    env = {k: v for k, v in os.environ.items()
           if k not in ("IGNORE_CMD_ARGS_ERRORS", "COMMANDLINE_ARGS", "SD_WEBUI_DATA_DIR", "PYTHONPATH")}
    env.update(PYTHONPATH=str(STUB), TMPDIR=str(run_dir), COLAB_STUB_RECORD=str(record),
               SD_WEBUI_EXTENSIONS_ALLOW_FILE_URLS="1", PYTHONUNBUFFERED="1")
    km = _kernel_manager(tmp_path, env)
    client = NotebookClient(nb, km=km, timeout=240, allow_errors=False,
                            resources={"metadata": {"path": str(ROOT)}})
    timings = {}
    cells = [c for c in nb.cells if c.cell_type == "code"]
    try:
        client.reset_execution_trackers()
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                started = time.perf_counter()
                client.execute_cell(cell, index)
                timings[cell.source.splitlines()[0]] = round(time.perf_counter() - started, 1)
                if cell is cells[6]:
                    url = f"http://127.0.0.1:{port}/sdapi/v1/options"
                    password = re.search(r"with the password '(\w+)'", _text(cell)).group(1)
                    assert requests.get(url, timeout=10).status_code == 401
                    assert requests.get(url, auth=("webui", password), timeout=10).status_code == 200
    finally:
        if km.has_kernel:  # a kernel manager passed in is not shut down by nbclient
            km.shutdown_kernel(now=True)
        _kill_leftover_server(run_dir)
    print("cell timings (s):", timings)

    assert _text(cells[0]).strip() == f"Code in {ROOT}"
    assert "WARNING: No NVIDIA GPU found." in _text(cells[1])
    assert [json.loads(line) for line in record.read_text().splitlines()] == [["drive.mount", "/content/drive"]]
    assert f"Data folder: {data} on Google Drive" in _text(cells[2])
    assert "tiny-sd1.safetensors: sha256 verified" in _text(cells[4])
    assert (data / "models" / "Stable-diffusion" / "tiny-sd1.safetensors").read_bytes() == ckpt_bytes
    assert (data / "extensions" / "colab-test-ext" / "installed.txt").read_text() == "ok"
    assert "Extensions run their own code" in _text(cells[5])

    launch = _text(cells[6])
    password = re.search(r"with the password '(\w+)'", launch).group(1)
    everything = "".join(_text(c) for c in cells) + "".join(c.source for c in cells)
    assert everything.count(password) == 1, "the password is printed once and never echoed in the command line"
    assert f"Running on http://127.0.0.1:{port}" in launch and "--share" not in launch

    demo = cells[7]
    assert "Steps: 2, Sampler: " in _text(demo) and "Seed: 1234, Size: 64x64" in _text(demo)
    pngs = [o.data["image/png"] for o in demo.outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 1 and Image.open(io.BytesIO(base64.b64decode(pngs[0]))).size == (64, 64)

    assert _text(cells[8]).strip() == "Stopped."
    assert not (run_dir / "sd-webui-colab" / "webui.pid").exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=5)
