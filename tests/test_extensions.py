"""Extension discovery, ordering, preload, install from URL, updates, enabled state, backups and the security gate.

Fixture extensions are real git repositories created by the test and installed through
`extension_install.install_extension_from_url` (file:// is allowed only because the tests set the env switch).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import pytest

from tests import extension_fixtures as fx


@pytest.fixture
def ext_env(tmp_path, monkeypatch):
    """Empty extensions/ and extensions-builtin/ folders, config and backups under tmp_path; globals restored."""
    from modules import config_states, extensions, scripts, shared

    ext_dir = tmp_path / "extensions"
    builtin_dir = tmp_path / "extensions-builtin"
    ext_dir.mkdir()
    builtin_dir.mkdir()
    saved_opts = dict(shared.opts.data)
    monkeypatch.setattr(extensions, "extensions_dir", str(ext_dir))
    monkeypatch.setattr(extensions, "extensions_builtin_dir", str(builtin_dir))
    monkeypatch.setattr(config_states, "config_states_dir", str(tmp_path / "config_states"))
    monkeypatch.setattr(shared, "config_filename", str(tmp_path / "config.json"))
    monkeypatch.setattr(shared.cmd_opts, "disable_extension_access", False)
    monkeypatch.setenv(extensions.ALLOW_FILE_URLS_ENV, "1")
    yield tmp_path
    monkeypatch.undo()
    shared.opts.data.clear()
    shared.opts.data.update(saved_opts)
    extensions.list_extensions()
    scripts.load_scripts()


def install(name: str, files: dict[str, str], root: Path, **kwargs) -> str:
    from modules import extension_install

    url = fx.make_repo(root / "origin" / name, files)
    return extension_install.install_extension_from_url(kwargs.get("dirname"), url, kwargs.get("branch"))


def test_install_from_url_clones_runs_install_py_and_lists(ext_env):
    from modules import extensions

    wheel = fx.build_wheel(ext_env / "wheels")
    message = install("sd-webui-installer", fx.installer(wheel.parent), ext_env)
    target = ext_env / "extensions" / "sd-webui-installer"
    assert message == f"Installed into {target}. Use Installed tab to restart."
    assert (target / ".git").is_dir()
    assert (target / "installed.txt").read_text() == "ok"  # install.py ran, with `import launch` working
    assert (target / "site" / "tinypkg_sdwebui" / "__init__.py").is_file()  # ...and installed the wheel via run_pip
    assert [e.name for e in extensions.extensions] == ["sd-webui-installer"]
    ext = extensions.extensions[0]
    ext.read_info_from_repo()
    assert ext.remote == (ext_env / "origin" / "sd-webui-installer").resolve().as_uri()
    assert ext.branch == "main" and len(ext.commit_hash) == 40 and ext.version == ext.commit_hash[:8]
    assert ext.commit_date and not ext.is_builtin and ext.enabled


def test_install_refuses_existing_folder_and_same_url(ext_env):
    from modules import extension_install
    from modules.errors import UserError

    url = fx.make_repo(ext_env / "origin" / "dup.git", fx.TAB)
    extension_install.install_extension_from_url(None, url)
    assert (ext_env / "extensions" / "dup").is_dir()  # folder name: last URL segment without .git
    with pytest.raises(UserError, match="Extension directory already exists"):
        extension_install.install_extension_from_url(None, url)
    with pytest.raises(UserError, match="already installed"):
        extension_install.install_extension_from_url("other-name", url[:-4])  # same URL without .git
    assert not (ext_env / "extensions" / "other-name").exists()


@pytest.mark.parametrize("url", [
    "http://example.com/a/b.git",  # plain http
    "ssh://git@example.com/a/b.git",
    "git@github.com:a/b.git",
    "git://example.com/a/b.git",
    "ext::sh -c touch% /tmp/pwned",  # git's ext transport: command execution
    "--upload-pack=touch /tmp/pwned",  # option injection
    "https://",  # no host
    "",
])
def test_install_refuses_unsafe_urls(ext_env, url):
    from modules import extension_install
    from modules.errors import UserError

    with pytest.raises(UserError):
        extension_install.install_extension_from_url(None, url)
    assert not any((ext_env / "extensions").iterdir())


def test_file_urls_need_the_test_switch(ext_env, monkeypatch):
    from modules import extension_install, extensions
    from modules.errors import UserError

    url = fx.make_repo(ext_env / "origin" / "local", fx.TAB)
    monkeypatch.delenv(extensions.ALLOW_FILE_URLS_ENV)
    with pytest.raises(UserError, match="only https"):
        extension_install.install_extension_from_url(None, url)


def test_folder_names_are_sanitised_and_branch_is_used(ext_env):
    from modules import extension_install
    from modules.errors import UserError

    origin = ext_env / "origin" / "branchy"
    url = fx.make_repo(origin, fx.TAB)
    fx.git(origin, "checkout", "-q", "-b", "dev")
    fx.commit(origin, {"DEV.txt": "dev branch"})
    fx.git(origin, "checkout", "-q", "main")

    extension_install.install_extension_from_url("../../escape me", url, "dev")
    target = ext_env / "extensions" / "escape_me"  # separators and dots stripped, spaces replaced
    assert (target / "DEV.txt").is_file()
    assert not (ext_env.parent / "escape me").exists()
    for bad_branch in ("--upload-pack=x", "a..b", "a b"):
        with pytest.raises(UserError, match="Invalid branch"):
            extension_install.install_extension_from_url("x", url, bad_branch)
    with pytest.raises(UserError, match="folder name"):
        extension_install.install_extension_from_url("...", url)


def test_security_gate_refuses_every_code_running_action(ext_env, monkeypatch):
    from modules import config_states, extension_install, shared

    url = fx.make_repo(ext_env / "origin" / "gated", fx.TAB)
    monkeypatch.setattr(shared.cmd_opts, "disable_extension_access", True)
    actions = [
        lambda: extension_install.install_extension_from_url(None, url),
        lambda: extension_install.apply_changes([], [], "none"),
        lambda: extension_install.check_updates(),
        lambda: extension_install.restore_config_state("anything", "extensions"),
    ]
    for action in actions:
        with pytest.raises(extension_install.AccessDeniedError, match="--enable-insecure-extension-access"):
            action()
    assert not (ext_env / "extensions" / "gated").exists()
    assert config_states.list_config_states() == {}


def test_non_local_flags_set_the_gate():
    import subprocess

    code = ("from modules.shared_cmd_options import cmd_opts as c; "
            "print(c.webui_is_non_local, c.disable_extension_access)")
    env = dict(os.environ)
    env.pop("IGNORE_CMD_ARGS_ERRORS", None)
    root = Path(__file__).resolve().parent.parent
    results = {}
    for flags in ([], ["--listen"], ["--share"], ["--server-name", "x"], ["--ngrok", "t"],
                  ["--listen", "--enable-insecure-extension-access"]):
        out = subprocess.run([sys.executable, "-c", f"import sys; sys.argv += {flags!r}; {code}"], cwd=root,
                             env=env, capture_output=True, text=True, check=True).stdout.split()
        results[" ".join(flags)] = out
    assert results[""] == ["False", "False"]
    for flags in ("--listen", "--share", "--server-name x", "--ngrok t"):
        assert results[flags] == ["True", "True"], flags
    assert results["--listen --enable-insecure-extension-access"] == ["True", "False"]


def test_check_updates_and_update(ext_env):
    from modules import config_states, extension_install, extensions

    origin = ext_env / "origin" / "updatable"
    install("updatable", fx.TAB, ext_env)
    ext = extensions.extensions[0]
    assert extension_install.check_updates() == []
    assert (ext.status, ext.can_update) == ("latest", False)

    new_head = fx.commit(origin, {"NEW.txt": "new"})
    extensions.list_extensions()
    ext = extensions.extensions[0]
    extension_install.check_updates()
    assert (ext.status, ext.can_update) == ("new commits", True)
    assert not (Path(ext.path) / "NEW.txt").exists()  # checking changes nothing

    messages = extension_install.apply_changes([], ["updatable"], "none")
    assert messages == ["Updated updatable"]
    assert (Path(ext.path) / "NEW.txt").is_file() and ext.commit_hash == new_head
    backups = config_states.list_config_states()
    assert len(backups) == 1 and next(iter(backups)).startswith("Backup (pre-update): ")


def test_apply_changes_saves_enabled_state_and_active_follows(ext_env):
    from modules import extension_install, extensions, shared
    from modules.errors import UserError

    install("one", fx.TAB, ext_env)
    install("two", fx.REPEAT, ext_env)
    extension_install.apply_changes(["two"], [], "none")
    saved = json.loads(Path(shared.config_filename).read_text())
    assert saved["disabled_extensions"] == ["two"] and saved["disable_all_extensions"] == "none"
    extensions.list_extensions()
    assert [e.name for e in extensions.active()] == ["one"]
    shared.opts.disable_all_extensions = "extra"
    assert extensions.active() == []  # only built-ins, and there are none
    shared.opts.disable_all_extensions = "none"
    with pytest.raises(UserError, match="Unknown extensions"):
        extension_install.apply_changes(["nope"], [], "none")
    with pytest.raises(UserError, match="Disable all"):
        extension_install.apply_changes([], [], "everything")


def test_enabled_paths_before_settings_load(tmp_path, monkeypatch):
    from modules import extensions

    for root, names in (("builtin", ["b1"]), ("ext", ["e1", "e2", ".hidden", "__pycache__"])):
        for name in names:
            (tmp_path / root / name).mkdir(parents=True)
    monkeypatch.setattr(extensions, "extensions_dir", str(tmp_path / "ext"))
    monkeypatch.setattr(extensions, "extensions_builtin_dir", str(tmp_path / "builtin"))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"disabled_extensions": ["e2"], "disable_all_extensions": "none"}))

    def names(*flags):
        return [os.path.basename(p) for p in extensions.enabled_extension_paths(str(config), *flags)]

    assert names() == ["b1", "e1"]
    assert names(False, True) == ["b1"]
    assert names(True, False) == []
    config.write_text(json.dumps({"disable_all_extensions": "extra"}))
    assert names() == ["b1"]
    config.write_text("{ not json")
    assert names() == ["b1", "e1", "e2"]


def test_run_extension_installers_skips_disabled(tmp_path, monkeypatch):
    from modules import extensions, launch_utils

    ext_dir = tmp_path / "extensions"
    for name in ("on", "off"):
        fx.write_files(ext_dir / name, {"install.py": f"open({str(tmp_path / name)!r} + '.ran', 'w').close()\n"})
    monkeypatch.setattr(extensions, "extensions_dir", str(ext_dir))
    monkeypatch.setattr(extensions, "extensions_builtin_dir", str(tmp_path / "none"))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"disabled_extensions": ["off"]}))
    launch_utils.run_extension_installers(["--ui-settings-file", str(config)])
    assert (tmp_path / "on.ran").exists() and not (tmp_path / "off.ran").exists()
    (tmp_path / "on.ran").unlink()
    launch_utils.run_extension_installers(["--ui-settings-file", str(config), "--disable-all-extensions"])
    assert not (tmp_path / "on.ran").exists()


def test_preload_adds_flags_and_reports_failures(tmp_path, caplog):
    from modules import script_loading

    fx.write_files(tmp_path / "good", {"preload.py": fx.REWRITER["preload.py"]})
    fx.write_files(tmp_path / "bad", {"preload.py": "def preload(parser):\n    raise ValueError('bad preload')\n"})
    parser = argparse.ArgumentParser()
    with caplog.at_level(logging.ERROR):
        done = script_loading.preload_extensions([str(tmp_path / "bad"), str(tmp_path / "good")], parser)
    assert done == [str(tmp_path / "good")]
    assert parser.parse_args(["--rewriter-suffix", "xyz"]).rewriter_suffix == "xyz"
    assert "Error running preload() for" in caplog.text and "bad preload" in caplog.text


def test_metadata_orders_scripts_and_reports_missing_requirements(ext_env, caplog):
    from modules import extensions, scripts

    ext = ext_env / "extensions"
    fx.write_files(ext / "alpha", {
        "scripts/a1.py": "", "scripts/a2.py": "",
        "metadata.ini": """
            [Extension]
            Requires = missing-ext
            [scripts/a1.py]
            After = gamma
        """,
    })
    fx.write_files(ext / "beta", {"scripts/b.py": "", "metadata.ini": "[scripts/b.py]\nBefore = alpha\n"})
    fx.write_files(ext / "gamma", {"scripts/g.py": ""})
    with caplog.at_level(logging.ERROR):
        extensions.list_extensions()
    assert 'Extension "alpha" requires "missing-ext", which is not installed.' in caplog.text
    order = [f"{os.path.basename(f.basedir)}/{f.filename}" for f in scripts.list_scripts("scripts", ".py")]
    order = [x for x in order if not x.startswith("ext/") and "custom_code" not in x]
    assert order.index("gamma/g.py") < order.index("alpha/a1.py")  # After = gamma (an extension)
    assert order.index("beta/b.py") < order.index("alpha/a1.py")  # Before = alpha puts b ahead of all of alpha
    assert order.index("beta/b.py") < order.index("alpha/a2.py")


def test_duplicate_canonical_names_keep_the_first(ext_env, caplog):
    from modules import extensions

    (ext_env / "extensions-builtin" / "Same").mkdir()
    (ext_env / "extensions" / "same").mkdir()
    with caplog.at_level(logging.ERROR):
        extensions.list_extensions()
    assert [(e.name, e.is_builtin) for e in extensions.extensions] == [("Same", True)]
    assert "Duplicate canonical name" in caplog.text


def test_config_state_names_cannot_escape(ext_env):
    from modules import config_states

    install("kept", fx.TAB, ext_env)
    for name in ("../../../evil", "..\\..\\evil", "/abs/evil", "C:\\evil", "a" * 500, ".hidden", "", "normal name"):
        path = Path(config_states.save_config_state(name))
        assert path.parent == ext_env / "config_states", name
        assert path.name.endswith(".json") and "/" not in path.name[20:] and "\\" not in path.name
    assert not list(ext_env.parent.glob("*evil*")) and not Path("/abs/evil.json").exists()
    states = config_states.list_config_states()
    assert len(states) == 8
    state = config_states.load_config_state(next(iter(states)))
    assert state["extensions"]["kept"]["commit_hash"] and state["extensions"]["kept"]["enabled"] is True


def test_restore_config_state_resets_commit_and_enabled(ext_env):
    from modules import config_states, extension_install, extensions, shared

    origin = ext_env / "origin" / "restorable"
    install("restorable", fx.TAB, ext_env)
    extensions.extensions[0].read_info_from_repo()
    first = extensions.extensions[0].commit_hash
    config_states.save_config_state("before")
    fx.commit(origin, {"LATER.txt": "x"})
    extension_install.apply_changes(["restorable"], ["restorable"], "none")
    assert (ext_env / "extensions" / "restorable" / "LATER.txt").exists()
    key = next(k for k in config_states.list_config_states() if k.startswith("before:"))
    messages = extension_install.restore_config_state(key, "extensions")
    assert messages == [f"restorable: reset to {first[:8]}"]
    assert not (ext_env / "extensions" / "restorable" / "LATER.txt").exists()
    assert shared.opts.disabled_extensions == []  # enabled in the saved state
    with pytest.raises(extension_install.UserError):
        extension_install.restore_config_state("no such state", "extensions")


def test_index_parsing_filtering_and_fetch_rules(ext_env, monkeypatch):
    from modules import extension_install, extensions
    from modules.errors import UserError

    install("installed-one", fx.TAB, ext_env)
    installed_url = (ext_env / "origin" / "installed-one").resolve().as_uri()
    index = {
        "tags": {"script": "Script", "tab": "Tab", "ads": "Ads"},
        "extensions": [
            {"name": "Zeta", "url": "https://example.com/zeta.git", "description": "z", "tags": ["tab"],
             "added": "2023-01-02", "stars": 5},
            {"name": "Alpha", "url": "https://example.com/alpha", "description": "a <b>", "tags": ["script"],
             "added": "2024-05-01", "stars": 50},
            {"name": "Mine", "url": installed_url + ".git", "description": "installed", "tags": ["tab"],
             "added": "2022-01-01"},
            {"name": "Broken entry"},  # no URL: skipped
        ],
    }
    path = ext_env / "index.json"
    path.write_text(json.dumps(index))
    parsed = extension_install.fetch_index(path.as_uri())
    assert [e["name"] for e in parsed["extensions"]] == ["Zeta", "Alpha", "Mine"]

    shown, hidden = extension_install.filter_index(parsed, ["installed"], "newest first")
    assert [e["name"] for e in shown] == ["Alpha", "Zeta"] and hidden == 1
    shown, hidden = extension_install.filter_index(parsed, ["script", "installed"], "a-z")
    assert [e["name"] for e in shown] == ["Zeta"] and hidden == 2
    shown, _ = extension_install.filter_index(parsed, [], "stars")
    assert [e["name"] for e in shown] == ["Alpha", "Zeta", "Mine"] and shown[2]["installed"]
    assert "installed" in shown[2]["tags"]
    shown, _ = extension_install.filter_index(parsed, [], "a-z", search="ZET")
    assert [e["name"] for e in shown] == ["Zeta"]

    for bad in ("http://example.com/index.json", "ftp://x/index.json", "javascript:alert(1)"):
        with pytest.raises(UserError, match="only https"):
            extension_install.fetch_index(bad)
    monkeypatch.delenv(extensions.ALLOW_FILE_URLS_ENV)
    with pytest.raises(UserError, match="only https"):
        extension_install.fetch_index(path.as_uri())
    for junk in (b"not json", b"[]", b'{"extensions": 3}'):
        with pytest.raises(UserError):
            extension_install.parse_index(junk)
    monkeypatch.setenv("WEBUI_EXTENSIONS_INDEX", "https://example.org/i.json")
    assert extension_install.index_url() == "https://example.org/i.json"
    monkeypatch.delenv("WEBUI_EXTENSIONS_INDEX")
    assert extension_install.index_url() == extension_install.DEFAULT_INDEX_URL


def test_localizations_from_extensions_merge_by_name(ext_env):
    from modules import extensions, localization

    fx.write_files(ext_env / "extensions" / "l1", {"localizations/De.json": '{"Generate": "Erzeugen", "A": "1"}'})
    fx.write_files(ext_env / "extensions" / "l2", {"localizations/De.json": '{"A": "2"}',
                                                   "localizations/Bad.json": "{broken"})
    extensions.list_extensions()
    localization.list_localizations(None)
    assert localization.localization_data("De") == {"Generate": "Erzeugen", "A": "2"}
    assert localization.localization_data("Bad") == {}
    assert localization.localization_js("None") == "window.localization = {};"
    assert "<\\/script>" in localization.localization_js("De") or "</" not in localization.localization_js("De")


def test_restart_writes_the_launcher_flag_file(tmp_path, monkeypatch):
    from modules import restart, script_callbacks

    flag = tmp_path / "tmp" / "restart"
    events = []
    monkeypatch.setenv("SD_WEBUI_RESTART", str(flag))
    monkeypatch.setattr(restart.os, "_exit", lambda code: events.append(("exit", code)))
    monkeypatch.setattr(restart.logging, "shutdown", lambda: None)
    callbacks = [lambda: events.append("before_reload"), lambda: events.append("unloaded")]
    script_callbacks.on_before_reload(callbacks[0])
    script_callbacks.on_script_unloaded(callbacks[1])
    try:
        assert restart.is_restartable()
        restart.restart_program()
    finally:
        for callback in callbacks:
            script_callbacks.remove_callbacks_for_function(callback)
    assert flag.is_file() and events == ["before_reload", "unloaded", ("exit", 0)]
    monkeypatch.delenv("SD_WEBUI_RESTART")
    assert not restart.is_restartable()


def test_extensions_tab_handlers_show_errors_and_the_gate(ext_env, monkeypatch):
    pytest.importorskip("gradio")
    from modules import shared, ui_extensions

    url = fx.make_repo(ext_env / "origin" / "via-ui", fx.TAB)
    table, enabled, message = ui_extensions.install_from_url(url, "", "")
    assert "Installed into" in message and "via-ui" in table and enabled["value"] == ["via-ui"]
    _, _, message = ui_extensions.install_from_url(url, "", "")
    assert "class='error'" in message and "already exists" in message
    assert ui_extensions.access_notice() == ""
    monkeypatch.setattr(shared.cmd_opts, "disable_extension_access", True)
    assert "--enable-insecure-extension-access" in ui_extensions.access_notice()
    _, _, message = ui_extensions.install_from_url("https://example.com/x.git", "", "")
    assert "extension access disabled because of command line flags" in message
    assert "extension access disabled" in ui_extensions.apply_and_restart(["via-ui"], [], "none")
    assert "extension access disabled" in ui_extensions.restore_config_state("x: y", "extensions")
    assert "<script>" not in ui_extensions.extension_table()


def test_callbacks_are_named_and_ordered_by_metadata_and_settings(ext_env, monkeypatch):
    from modules import extensions, script_callbacks, scripts, shared

    register = """
        from modules import script_callbacks


        def started(demo, app):
            app.append("{name}")


        script_callbacks.on_app_started(started)
    """
    fx.write_files(ext_env / "extensions" / "aaa", {"scripts/cb.py": register.format(name="aaa"), "metadata.ini": """
        [callbacks/aaa/cb.py/app_started]
        After = zzz/cb.py/app_started
    """})
    fx.write_files(ext_env / "extensions" / "zzz", {"scripts/cb.py": register.format(name="zzz")})
    extensions.list_extensions()
    scripts.load_scripts()
    calls: list[str] = []
    script_callbacks.app_started_callback(None, calls)
    assert calls == ["zzz", "aaa"]  # loaded aaa first; metadata.ini puts it after zzz

    script_callbacks.on_app_started(lambda demo, app: app.append("base"), name="mine")
    mine = "base/test_extensions.py/app_started/mine"
    assert [c.name for c in script_callbacks.ordered_callbacks("app_started")][-1] == mine
    monkeypatch.setitem(shared.opts.data, "prioritized_callbacks_app_started", [mine])
    script_callbacks.ordered_callbacks_map.clear()
    calls.clear()
    script_callbacks.app_started_callback(None, calls)
    assert calls == ["base", "zzz", "aaa"]


def test_exposed_server_cannot_enable_extensions_through_the_api(ext_env, monkeypatch):
    import webui
    from modules import shared

    monkeypatch.setattr(shared.cmd_opts, "disable_extension_access", True)
    saved = set(shared.restricted_opts)
    try:
        webui.load_extensions()
        for key in ("disabled_extensions", "disable_all_extensions"):
            assert shared.opts.set(key, ["x"] if key == "disabled_extensions" else "all", is_api=True) is False
        assert shared.opts.set("disable_all_extensions", "extra") is True  # the UI/local code path is unchanged
    finally:
        shared.restricted_opts.clear()
        shared.restricted_opts.update(saved)
