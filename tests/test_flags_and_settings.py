"""Command-line flags (every A1111 flag accepted) and settings persistence."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modules import cmd_args
from modules.errors import UserError
from modules.options import OptionInfo, Options

ROOT = Path(__file__).resolve().parent.parent

# a1111-spec §2.2, every flag (option strings as A1111 spells them)
A1111_FLAGS = """
-f --update-all-extensions --skip-python-version-check --skip-torch-cuda-test --reinstall-xformers --reinstall-torch
--update-check --test-server --log-startup --skip-prepare-environment --skip-install --dump-sysinfo --loglevel
--do-not-download-clip --data-dir --models-dir --config --ckpt --ckpt-dir --vae-dir --gfpgan-dir --gfpgan-model
--no-half --no-half-vae --no-progressbar-hiding --max-batch-count --embeddings-dir --textual-inversion-templates-dir
--hypernetwork-dir --localizations-dir --allow-code --medvram --medvram-sdxl --lowvram --lowram
--always-batch-cond-uncond --unload-gfpgan --precision --upcast-sampling --share --ngrok --ngrok-region
--ngrok-options --enable-insecure-extension-access --codeformer-models-path --gfpgan-models-path
--esrgan-models-path --bsrgan-models-path --realesrgan-models-path --dat-models-path --clip-models-path --xformers
--force-enable-xformers --xformers-flash-attention --deepdanbooru --opt-split-attention --opt-sub-quad-attention
--sub-quad-q-chunk-size --sub-quad-kv-chunk-size --sub-quad-chunk-threshold --opt-split-attention-invokeai
--opt-split-attention-v1 --opt-sdp-attention --opt-sdp-no-mem-attention --disable-opt-split-attention
--disable-nan-check --use-cpu --use-ipex --disable-model-loading-ram-optimization --listen --port
--show-negative-prompt --ui-config-file --hide-ui-dir-config --freeze-settings --freeze-settings-in-sections
--freeze-specific-settings --ui-settings-file --gradio-debug --gradio-auth --gradio-auth-path --gradio-img2img-tool
--gradio-inpaint-tool --gradio-allowed-path --opt-channelslast --styles-file --autolaunch --theme --use-textbox-seed
--disable-console-progressbars --enable-console-prompts --vae-path --disable-safe-unpickle --api --api-auth
--api-log --nowebui --ui-debug-mode --device-id --administrator --cors-allow-origins --cors-allow-origins-regex
--tls-keyfile --tls-certfile --disable-tls-verify --server-name --gradio-queue --no-gradio-queue
--skip-version-check --no-hashing --no-download-sd-model --subpath --add-stop-route --api-server-stop
--timeout-keep-alive --disable-all-extensions --disable-extra-extensions --skip-load-model-at-start
--unix-filenames-sanitization --filenames-max-length --no-prompt-history --lora-dir --lyco-dir-backcompat
--ldsr-models-path --swinir-models-path --scunet-models-path
""".split()


def test_every_a1111_flag_is_known():
    known = {opt for action in cmd_args.parser._actions for opt in action.option_strings}
    missing = [f for f in A1111_FLAGS if f not in known]
    assert not missing


@pytest.mark.parametrize("flag,default", [
    ("--port", None), ("--precision", "autocast"), ("--sub-quad-q-chunk-size", 1024), ("--max-batch-count", 16),
    ("--timeout-keep-alive", 30), ("--filenames-max-length", 128), ("--use-cpu", []), ("--no-half", False),
])
def test_defaults_match_a1111(flag, default):
    action = next(a for a in cmd_args.parser._actions if flag in a.option_strings)
    assert action.default == default


def test_typical_command_lines_parse():
    args = ["--medvram", "--xformers", "--listen", "--port", "7861", "--api", "--no-half-vae", "--theme", "dark",
            "--use-cpu", "all", "--styles-file", "a.csv", "--styles-file", "b.csv", "--ngrok-options", '{"a": 1}']
    opts = cmd_args.parser.parse_args(args)
    assert opts.port == 7861 and opts.use_cpu == ["all"] and opts.styles_file == ["a.csv", "b.csv"]
    assert opts.ngrok_options == {"a": 1}


def test_docs_flags_md_is_in_sync():
    text = (ROOT / "docs" / "flags.md").read_text(encoding="utf-8")
    for name, _dest, _status in cmd_args.all_flags():
        assert f"| `{name}` |" in text, name
    generated = subprocess.run(
        [sys.executable, "-c", "from modules import cmd_args; print(cmd_args.flags_markdown(), end='')"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "SD_WEBUI_DATA_DIR": str(ROOT)}, check=True,
    ).stdout
    assert generated == text, "docs/flags.md is out of date; regenerate it (command in its header)"


def test_pending_flags_print_one_warning_line(caplog):
    given = ["--update-check", "--log-startup", "--dump-sysinfo", "--medvram"]
    opts = cmd_args.parser.parse_args(given)
    with caplog.at_level(logging.WARNING):
        used = cmd_args.warn_pending(opts)
    dests = {f: next(a.dest for a in cmd_args.parser._actions if f in a.option_strings) for f in given}
    expected = [f for f in given if cmd_args.flag_status(dests[f]) == "pending"]
    assert used == expected and "--medvram" not in used
    lines = [r for r in caplog.records if "not active yet" in r.getMessage()]
    assert len(lines) == (1 if expected else 0)


def test_unknown_flag_is_an_argparse_error_but_known_ones_never_are():
    for flag in A1111_FLAGS:
        action = next(a for a in cmd_args.parser._actions if flag in a.option_strings)
        argv = [flag] if action.nargs == 0 else [flag, "1" if action.type in (int, float) else "x"]
        if flag == "--ngrok-options":
            argv = [flag, "{}"]
        if flag == "--precision":
            argv = [flag, "full"]
        cmd_args.parser.parse_args(argv)


# -- settings ---------------------------------------------------------------------------------------------


def make_opts() -> Options:
    return Options({"a": OptionInfo(1, "A"), "b": OptionInfo("x", "B"), "quicksettings_list": OptionInfo([], "Q"),
                    "sd_vae_overrides_per_model_preferences": OptionInfo(True, "V")})


def test_settings_save_is_atomic_and_round_trips(tmp_path):
    path = tmp_path / "config.json"
    o = make_opts()
    o.set("a", 5)
    o.save(str(path))
    assert json.loads(path.read_text())["a"] == 5
    assert not [p for p in tmp_path.iterdir() if p.name != "config.json"]  # no temp file left
    o2 = make_opts()
    o2.load(str(path))
    assert o2.a == 5


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    o = make_opts()
    o.save(str(path))
    before = path.read_text()
    o.set("a", 9)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        o.save(str(path))
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_corrupt_settings_file_is_moved_aside_and_defaults_used(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    o = make_opts()
    o.load(str(path))
    assert o.a == 1
    assert (tmp_path / "tmp" / "config.json").read_text() == "{not json"


def test_old_keys_are_migrated(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"quicksettings": "sd_model_checkpoint, sd_vae", "sd_vae_as_default": False}))
    o = make_opts()
    o.load(str(path))
    assert o.quicksettings_list == ["sd_model_checkpoint", "sd_vae"]
    assert o.sd_vae_overrides_per_model_preferences is False


def test_bad_type_is_ignored_with_a_warning(tmp_path, caplog):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"a": "not a number"}))
    o = make_opts()
    with caplog.at_level(logging.WARNING):
        o.load(str(path))
    assert o.a == 1 and "Bad setting value" in caplog.text


def test_frozen_setting_refuses_changes():
    o = make_opts()
    o.frozen_keys.add("a")
    with pytest.raises(UserError, match="frozen"):
        o.set("a", 3)


def test_restricted_options_cannot_be_set_over_the_api():
    o = Options({"outdir_samples": OptionInfo("", "out")}, restricted_opts={"outdir_samples"})
    assert o.set("outdir_samples", "/etc", is_api=True) is False
    assert o.outdir_samples == ""
