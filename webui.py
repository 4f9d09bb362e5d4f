"""Entry point: parse flags, prepare the core, build the app (API routes first, then the Gradio UI), serve.

Nothing here reaches the network: models are found on disk, downloads happen only when the user asks.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

startup_timer = time.perf_counter()

from modules import paths_internal  # noqa: E402  (applies COMMANDLINE_ARGS before flags are parsed)
from modules.shared_cmd_options import cmd_opts  # noqa: E402

log = logging.getLogger("webui")


def setup_logging() -> None:
    level = (cmd_opts.loglevel or os.environ.get("SD_WEBUI_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(level=getattr(logging, level, logging.INFO),
                        format="%(asctime)s %(levelname)s [%(name)s] %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "httpcore", "urllib3", "PIL", "matplotlib", "multipart"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def initialize() -> None:
    """Everything the UI and API need before serving, in dependency order."""
    from modules import (
        cmd_args,
        devices,
        extra_networks,
        hypernetworks,
        images_naming,
        networks,
        safe,
        sd_models,
        sd_vae,
        sd_vae_taesd,
        shared,
        styles,
        upscaler,
    )

    cmd_args.warn_pending(cmd_opts)
    devices.configure(cmd_opts)
    shared.refresh_device()
    safe.install_torch_load_guard(allow_unsafe=cmd_opts.disable_safe_unpickle)
    images_naming.filename_rules = images_naming.FilenameRules(cmd_opts.filenames_max_length,
                                                              cmd_opts.unix_filenames_sanitization)
    shared.prompt_styles = styles.StyleDatabase(cmd_opts.styles_file or [os.path.join(paths_internal.data_path,
                                                                                     "styles.csv")])
    sd_models.list_models()
    sd_vae.refresh_vae_list()
    upscaler.load_upscalers()
    extra_networks.register_default_extra_networks()
    networks.list_available_networks()
    hypernetworks.refresh_hypernetworks()
    shared.opts.onchange("lora_in_memory_limit", networks.purge_networks_from_memory, call=False)
    load_extensions()
    shared.opts.onchange("sd_model_checkpoint", sd_models.apply_checkpoint_setting, call=False)
    shared.opts.onchange("sd_vae", lambda: sd_vae.reload_vae_weights() if sd_models.model_data.sd_model else None,
                         call=False)
    shared.opts.onchange("show_progress_type", sd_vae_taesd.on_preview_type_change, call=False)
    if not sd_models.checkpoints_list:
        log.warning("%s", sd_models.no_checkpoints_message())


def load_extensions() -> None:
    """List extensions, import the scripts of the repository and of active extensions, add their settings."""
    from modules import extensions, extra_networks, gradio_compat, localization, script_callbacks, scripts, shared

    if cmd_opts.disable_extension_access:
        # Enabling an extension runs its code at the next start: not through the API of an exposed server.
        shared.restricted_opts.update({"disabled_extensions", "disable_all_extensions", "restore_config_state_file"})
    extensions.list_extensions()
    localization.list_localizations(cmd_opts.localizations_dir)
    gradio_compat.install()  # before any script creates (or subclasses) a gradio component
    scripts.load_scripts()
    extra_networks.register_default_extra_networks()  # its paste hook is a callback; load_scripts cleared them
    script_callbacks.ui_settings_callback()
    shared.opts.reorder()
    shared.opts.freeze_sections(cmd_opts.freeze_settings_in_sections)


def load_model_in_background() -> None:
    """Load the selected checkpoint so the first generation does not wait; failures are reported, not fatal."""
    from modules import sd_models

    if cmd_opts.ui_debug_mode or not sd_models.checkpoints_list:
        return

    def load() -> None:
        try:
            with sd_models.model_data.lock:
                sd_models.model_data.get_sd_model()
        except Exception as e:  # a bad file must not stop the server
            sd_models.model_data.load_error = str(e)
            log.error("Could not load the checkpoint: %s", e)

    threading.Thread(target=load, name="model-loader", daemon=True).start()


def create_app(with_ui: bool = True):
    """The FastAPI app: (API routes,) the page's own routes, then Gradio mounted at the root path (or --subpath),
    all behind one login when the UI has credentials."""
    from fastapi import FastAPI

    from modules import credentials, script_callbacks

    app = FastAPI(title="Stable Diffusion web UI", docs_url="/docs" if cmd_opts.api or not with_ui else None)
    if cmd_opts.api or not with_ui:
        from modules.api.api import Api

        Api(app)
    from modules.api import middleware

    middleware.setup_cors(app, cmd_opts)
    demo = None
    if with_ui:
        import gradio as gr

        from modules import shared, ui, ui_extra_networks, ui_gradio_extensions, ui_server

        creds = credentials.ui_credentials(cmd_opts)
        demo = ui.create_ui()
        shared.demo = demo
        prefix = cmd_opts.subpath or ""
        ui_gradio_extensions.add_file_route(app, prefix)
        ui_server.add_routes(app, prefix)
        ui_extra_networks.add_routes(app, prefix)
        app = gr.mount_gradio_app(app, demo, path=cmd_opts.subpath or "/",
                                  allowed_paths=[os.path.abspath(p) for p in cmd_opts.gradio_allowed_path],
                                  root_path=cmd_opts.subpath, theme=ui_server.theme(),
                                  head=ui_server.theme_head(cmd_opts.theme) + ui_gradio_extensions.head_html(),
                                  auth=ui_server.gradio_auth(creds), auth_message="Stable Diffusion web UI",
                                  footer_links=["api", "gradio", "settings"] if cmd_opts.api else ["gradio"])
        ui_server.install_auth(app, creds, prefix)
    routes_before = list(app.router.routes)
    script_callbacks.app_started_callback(demo, app)
    if with_ui:
        # Extensions add routes in on_app_started; Gradio's mount at the root would shadow them, so it goes last.
        added = [r for r in app.router.routes if r not in routes_before]
        app.router.routes[:] = routes_before[:-1] + added + routes_before[-1:]
    return app


def server_host() -> str:
    if cmd_opts.server_name:
        return cmd_opts.server_name
    return "0.0.0.0" if cmd_opts.listen else "127.0.0.1"


def serve(app, port: int, with_ui: bool = True) -> None:
    import uvicorn

    from modules import credentials

    host = server_host()
    protected = credentials.ui_credentials(cmd_opts) if with_ui else credentials.api_credentials(cmd_opts)
    if cmd_opts.webui_is_non_local and not protected:
        log.warning("!" * 80)
        log.warning("The server is reachable from other machines (%s%s) and has NO password. Anyone who can reach it "
                    "can use it. Add --gradio-auth user:password (and --api-auth).", host,
                    ", public share link" if cmd_opts.share else "")
        log.warning("!" * 80)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_keep_alive=cmd_opts.timeout_keep_alive,
                            ssl_keyfile=cmd_opts.tls_keyfile, ssl_certfile=cmd_opts.tls_certfile)
    server = uvicorn.Server(config)
    url = f"{'https' if cmd_opts.tls_certfile else 'http'}://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
    if with_ui and cmd_opts.subpath:
        url += "/" + cmd_opts.subpath.strip("/")

    def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.05)
        log.info("Running on local URL: %s (startup %.1fs)", url, time.perf_counter() - startup_timer)
        print(f"Running on local URL:  {url}", flush=True)
        if cmd_opts.share and with_ui:
            from modules import ui_server

            ui_server.start_share_tunnel(host, port)
        if cmd_opts.autolaunch:
            import webbrowser

            webbrowser.open(url)

    def watch_server_command() -> None:
        """/sdapi/v1/server-stop and -restart, and Settings > Reload UI, ask through state.server_command."""
        from modules import shared

        while not server.should_exit:
            if shared.state.server_command in ("stop", "restart", "reload-ui"):
                log.info("Stopping the server (%s requested)", shared.state.server_command)
                server.should_exit = True
            time.sleep(0.25)

    threading.Thread(target=announce, daemon=True).start()
    threading.Thread(target=watch_server_command, daemon=True).start()
    server.run()


def reload_ui() -> None:
    """Settings > Reload UI: unload the scripts, read extensions and scripts again; the page is then rebuilt."""
    from modules import script_callbacks, sd_models, shared

    script_callbacks.script_unloaded_callback()
    shared.state.server_command = None
    load_extensions()
    sd_models.list_models()


def webui() -> None:
    from modules import shared

    setup_logging()
    initialize()
    app = create_app(with_ui=True)
    load_model_in_background()
    while True:
        serve(app, cmd_opts.port or 7860)
        if shared.state.server_command != "reload-ui":
            break
        log.info("Reloading the UI")
        reload_ui()
        app = create_app(with_ui=True)


def api_only() -> None:
    setup_logging()
    initialize()
    app = create_app(with_ui=False)
    if not cmd_opts.skip_load_model_at_start:
        load_model_in_background()
    serve(app, cmd_opts.port or 7861, with_ui=False)


if __name__ == "__main__":
    if "--nowebui" in sys.argv or cmd_opts.nowebui:
        api_only()
    else:
        webui()
