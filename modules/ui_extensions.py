"""The Extensions tab: Installed, Available (index), Install from URL, Backup/Restore (a1111-spec §1.10).

Handlers are thin: they call modules.extension_install / config_states and render HTML. Errors (including the
security gate on non-local servers) are shown as messages; the server keeps serving.
"""

from __future__ import annotations

import html
import json
import logging
import threading

import gradio as gr

from modules import config_states, extension_install, extensions, restart, scripts, shared
from modules.errors import UserError

log = logging.getLogger(__name__)

available_index: dict = {"tags": {}, "extensions": []}
DEFAULT_HIDDEN_TAGS = ["script", "ads", "localization", "installed"]


def _error(message: str) -> str:
    return f"<div class='error'>{html.escape(message)}</div>"


def _messages(lines: list[str]) -> str:
    return "<br>".join(html.escape(x) for x in lines)


def access_notice() -> str:
    if getattr(shared.cmd_opts, "disable_extension_access", False):
        return _error("Extension access is disabled because the server is reachable from other machines "
                      "(--listen, --share, --server-name or --ngrok). Add --enable-insecure-extension-access "
                      "to install, update, enable or disable extensions.")
    return ""


def load_errors_banner() -> str:
    """A notice at the top of the page naming the extensions whose scripts failed to load."""
    failed = sorted({e.extension or "scripts/" for e in scripts.load_errors})
    if not failed:
        return ""
    return _error(f"Some scripts could not be loaded ({', '.join(failed)}); the Extensions tab shows the errors. "
                  "The rest of the application works.")


def _link(url: str | None, text: str) -> str:
    if url and url.startswith(("https://", "http://")):
        return f"<a href='{html.escape(url)}' target='_blank' rel='noopener noreferrer'>{html.escape(text)}</a>"
    return html.escape(text)


def extension_table() -> str:
    """The Installed table: name, URL, branch, version, date, update status, and any load error."""
    rows = []
    for ext in extensions.extensions:
        ext.read_info_from_repo()
        remote = "built-in" if ext.is_builtin else (ext.remote or "")
        version = _link(f"{extensions_remote_web(ext.remote)}/commit/{ext.commit_hash}" if ext.remote else None,
                        ext.version)
        status = ext.status or "unknown"
        if ext.can_update:
            status = f"<span class='extension-update'>{html.escape(status)}</span>"
        else:
            status = html.escape(status)
        errors_html = ""
        for tb in ext.load_errors:
            first = tb.strip().splitlines()[-1] if tb.strip() else "error"
            errors_html += (f"<details class='extension-error'><summary>Error loading: {html.escape(first)}</summary>"
                            f"<pre>{html.escape(tb)}</pre></details>")
        state = "" if ext.enabled else " <i>(disabled)</i>"
        rows.append(
            f"<tr><td>{html.escape(ext.name)}{state}{errors_html}</td><td>{_link(ext.remote, remote)}</td>"
            f"<td>{html.escape(ext.branch or '')}</td><td>{version}</td>"
            f"<td>{html.escape(ext.commit_date_text())}</td><td>{status}</td>"
            f"<td>{ext.load_time:.2f} s</td></tr>"
        )
    repo_errors = "".join(
        f"<details class='extension-error'><summary>Error loading {html.escape(e.filename)}</summary>"
        f"<pre>{html.escape(e.traceback)}</pre></details>" for e in scripts.load_errors if not e.extension)
    return (
        f"{repo_errors}<table id='extensions' class='extensions-table'><thead><tr><th>Extension</th><th>URL</th>"
        "<th>Branch</th><th>Version</th><th>Date</th><th>Update</th><th>Load time</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def extensions_remote_web(remote: str | None) -> str:
    return extension_install.normalize_git_url(remote)


def _names() -> list[str]:
    return [e.name for e in extensions.extensions]


def _enabled() -> list[str]:
    return [e.name for e in extensions.extensions if e.enabled]


def refresh_installed():
    extensions.list_extensions()
    return (gr.update(choices=_names(), value=_enabled()), gr.update(choices=_updatable(), value=[]),
            extension_table(), "")


def _updatable() -> list[str]:
    return [e.name for e in extensions.extensions if e.can_update]


def check_updates():
    try:
        problems = extension_install.check_updates()
    except UserError as e:
        return gr.update(), extension_table(), _error(str(e))
    return gr.update(choices=_updatable(), value=_updatable()), extension_table(), _messages(problems)


def apply_and_restart(enabled: list[str], update: list[str], disable_all: str):
    disabled = [name for name in _names() if name not in (enabled or [])]
    try:
        messages = extension_install.apply_changes(disabled, list(update or []), disable_all)
    except UserError as e:
        return _error(str(e))
    # Answer first, then stop: the page shows "Reloading..." and polls until the server is back.
    stop = restart.restart_program if restart.is_restartable() else restart.stop_program
    threading.Timer(0.5, stop).start()
    return _messages(messages + ["Restarting..." if restart.is_restartable() else "Stopping..."])


def install_from_url(url: str, branch: str, dirname: str):
    try:
        message = extension_install.install_extension_from_url(dirname, url, branch)
    except UserError as e:
        return extension_table(), gr.update(), _error(str(e))
    return extension_table(), gr.update(choices=_names(), value=_enabled()), html.escape(message)


def available_table(hide_tags, sort_order, search, filtering) -> tuple[str, str]:
    shown, hidden = extension_install.filter_index(available_index, hide_tags, sort_order, search, filtering)
    rows = []
    for entry in shown:
        tags = " ".join(f"<span class='extension-tag'>{html.escape(t)}</span>" for t in entry["tags"])
        if entry["installed"]:
            button = "<button class='lg secondary gradio-button custom-button' disabled>Installed</button>"
        else:
            button = ("<button class='lg primary gradio-button custom-button' "
                      f"onclick='install_extension_from_index(this, {html.escape(json.dumps(entry['url']))})'>"
                      "Install</button>")
        dates = html.escape(" ".join(x for x in (f"Update: {entry['commit_time'][:10]}" if entry["commit_time"] else "",
                                                  f"Added: {entry['added']}" if entry["added"] else "") if x))
        rows.append(f"<tr><td>{_link(entry['url'], entry['name'])}<br>{tags}</td>"
                    f"<td>{html.escape(entry['description'])}<p class='info'>{dates}</p></td><td>{button}</td></tr>")
    table = ("<table id='available_extensions' class='extensions-table'><thead><tr><th>Extension</th>"
             f"<th>Description</th><th>Action</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return table, f"Extension hidden: {hidden}" if hidden else ""


def load_index(url: str, hide_tags, sort_order, search, filtering):
    global available_index
    try:
        available_index = extension_install.fetch_index(url)
    except UserError as e:
        return gr.update(), "", _error(str(e))
    # The selected tags stay choices (Gradio refuses a value outside them), even if this index lacks them.
    tags = sorted(set(available_index["tags"]) | {"installed"} | set(hide_tags or []))
    table, hidden = available_table(hide_tags, sort_order, search, filtering)
    return gr.update(choices=tags, value=list(hide_tags or [])), table, hidden


def install_from_index(url: str, hide_tags, sort_order, search, filtering):
    try:
        message = extension_install.install_extension_from_url(None, url)
    except UserError as e:
        return gr.update(), _error(str(e)), extension_table()
    table, _hidden = available_table(hide_tags, sort_order, search, filtering)
    return table, html.escape(message), extension_table()


def config_state_choices() -> list[str]:
    return ["Current", *config_states.list_config_states()]


def save_config_state(name: str):
    try:
        path = config_states.save_config_state(name)
    except UserError as e:
        return gr.update(), _error(str(e))
    return gr.update(choices=config_state_choices()), html.escape(f"Config state saved to {path}")


def restore_config_state(key: str, what: str):
    if not key or key == "Current":
        return _error("Choose a saved config to restore.")
    try:
        messages = extension_install.restore_config_state(key, what)
    except UserError as e:
        return _error(str(e))
    return _messages(messages + ["Restored; use Apply and restart UI on the Installed tab to load the result."])


def config_state_table(key: str) -> str:
    if not key or key == "Current":
        state = config_states.get_config()
    else:
        try:
            state = config_states.load_config_state(key)
        except (UserError, OSError, ValueError) as e:
            return _error(str(e))
    webui = state.get("webui", {})
    rows = [f"<tr><td><b>web UI</b></td><td>{html.escape(str(webui.get('remote') or ''))}</td>"
            f"<td>{html.escape(str(webui.get('branch') or ''))}</td>"
            f"<td>{html.escape(str(webui.get('commit_hash') or '')[:8])}</td><td></td></tr>"]
    for name, entry in sorted(state.get("extensions", {}).items()):
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{html.escape(str(entry.get('remote') or 'built-in'))}</td>"
                    f"<td>{html.escape(str(entry.get('branch') or ''))}</td>"
                    f"<td>{html.escape(str(entry.get('commit_hash') or '')[:8])}</td>"
                    f"<td>{'enabled' if entry.get('enabled', True) else 'disabled'}</td></tr>")
    return ("<table class='extensions-table'><thead><tr><th>Name</th><th>URL</th><th>Branch</th><th>Commit</th>"
            f"<th>State</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def create_ui() -> None:
    """Build the tab's content inside the caller's gr.Tab."""
    gr.HTML(access_notice(), elem_id="extensions_access_notice")
    with gr.Tabs(elem_id="tabs_extensions"):
        with gr.Tab("Installed", id="installed", elem_id="extensions_installed_tab"):
            with gr.Row(elem_id="extensions_installed_top"):
                apply_label = "Apply and restart UI" if restart.is_restartable() else "Apply and quit"
                apply = gr.Button(apply_label, variant="primary", elem_id="extensions_apply")
                check = gr.Button("Check for updates", elem_id="extensions_check")
                refresh = gr.Button("Refresh", elem_id="extensions_refresh")
                disable_all = gr.Radio(label="Disable all extensions", choices=["none", "extra", "all"],
                                       value=lambda: shared.opts.disable_all_extensions,
                                       elem_id="extensions_disable_all")
            enabled = gr.CheckboxGroup(label="Enabled extensions", choices=_names(), value=_enabled(),
                                       elem_id="extensions_enabled_list")
            update = gr.CheckboxGroup(label="Update (after 'Check for updates')", choices=_updatable(), value=[],
                                      elem_id="extensions_update_list")
            installed_result = gr.HTML(elem_id="extensions_installed_result")
            installed = gr.HTML(extension_table, elem_id="extensions_installed_html")

        with gr.Tab("Available", id="available", elem_id="extensions_available_tab"):
            with gr.Row():
                load_button = gr.Button("Load from:", variant="primary", elem_id="load_extensions_button", scale=0)
                index_url = gr.Textbox(value=extension_install.index_url(), show_label=False,
                                       elem_id="extensions_index_url", scale=5)
            with gr.Row():
                hide_tags = gr.CheckboxGroup(label="Hide extensions with tags", choices=DEFAULT_HIDDEN_TAGS,
                                             value=DEFAULT_HIDDEN_TAGS, elem_id="extensions_hide_tags")
                filtering = gr.Radio(label="Filtering type", choices=["or", "and"], value="or",
                                     elem_id="extensions_filtering_type")
                sort_order = gr.Radio(label="Order", choices=extension_install.SORT_ORDERS, value="newest first",
                                      elem_id="extensions_order")
            search = gr.Textbox(label="Search", elem_id="extensions_search")
            hidden_count = gr.HTML(elem_id="extensions_hidden_count")
            with gr.Row():
                to_install = gr.Textbox(label="Extension URL to install", elem_id="extension_to_install", scale=5)
                install_index = gr.Button("Install", elem_id="install_extension_button", scale=0)
            install_index_result = gr.HTML(elem_id="extension_install_index_result")
            available = gr.HTML(elem_id="extensions_available_html")

        with gr.Tab("Install from URL", id="install_from_url", elem_id="extensions_install_from_url_tab"):
            install_url = gr.Textbox(label="URL for extension's git repository", elem_id="extension_install_url")
            install_branch = gr.Textbox(label="Specific branch name", placeholder="Leave empty for default main branch",
                                        elem_id="extension_install_branch")
            install_dirname = gr.Textbox(label="Local directory name", placeholder="Leave empty for auto",
                                         elem_id="extension_install_dirname")
            install_button = gr.Button("Install", variant="primary", elem_id="extension_install_button")
            install_result = gr.HTML(elem_id="extension_install_result")

        with gr.Tab("Backup/Restore", id="backup", elem_id="extensions_backup_tab"):
            with gr.Row(elem_id="extensions_backup_top_row"):
                saved = gr.Dropdown(label="Saved Configs", choices=config_state_choices(), value="Current",
                                    elem_id="extension_backup_saved_configs")
                refresh_saved = gr.Button("\U0001f504", elem_id="extension_backup_refresh", scale=0, min_width=40)
                restore_type = gr.Radio(label="State to restore", choices=["extensions", "webui", "both"],
                                        value="extensions", elem_id="extension_backup_restore_type")
                restore = gr.Button("Restore Selected Config", variant="primary", elem_id="extension_backup_restore")
            with gr.Row(elem_id="extensions_backup_top_row2"):
                config_name = gr.Textbox(label="Config Name", elem_id="extension_backup_config_name")
                save = gr.Button("Save Current Config", elem_id="extension_backup_save")
            backup_result = gr.HTML(elem_id="extension_backup_result")
            backup_table = gr.HTML(lambda: config_state_table("Current"), elem_id="extension_backup_table")

    private = {"api_visibility": "private"}
    apply.click(apply_and_restart, inputs=[enabled, update, disable_all], outputs=[installed_result], **private).success(
        fn=None, js="restart_reload", **private)
    check.click(check_updates, outputs=[update, installed, installed_result], **private)
    refresh.click(refresh_installed, outputs=[enabled, update, installed, installed_result], **private)

    filters = [hide_tags, sort_order, search, filtering]
    load_button.click(load_index, inputs=[index_url, *filters], outputs=[hide_tags, available, hidden_count], **private)
    for control in (hide_tags, sort_order, filtering):
        control.change(available_table, inputs=filters, outputs=[available, hidden_count], **private)
    search.submit(available_table, inputs=filters, outputs=[available, hidden_count], **private)
    install_index.click(install_from_index, inputs=[to_install, *filters],
                        outputs=[available, install_index_result, installed], **private)

    install_button.click(install_from_url, inputs=[install_url, install_branch, install_dirname],
                         outputs=[installed, enabled, install_result], **private)

    refresh_saved.click(lambda: gr.update(choices=config_state_choices()), outputs=[saved], **private)
    saved.change(config_state_table, inputs=[saved], outputs=[backup_table], **private)
    save.click(save_config_state, inputs=[config_name], outputs=[saved, backup_result], **private)
    restore.click(restore_config_state, inputs=[saved, restore_type], outputs=[backup_result], **private)
