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
    from modules import cmd_args, devices, images_naming, safe, sd_models, sd_vae, shared, styles, upscaler

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
    shared.opts.onchange("sd_model_checkpoint", sd_models.apply_checkpoint_setting, call=False)
    shared.opts.onchange("sd_vae", lambda: sd_vae.reload_vae_weights() if sd_models.model_data.sd_model else None,
                         call=False)
    if not sd_models.checkpoints_list:
        log.warning("%s", sd_models.no_checkpoints_message())


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
    """The FastAPI app: (API routes,) then Gradio mounted at the root path."""
    from fastapi import FastAPI

    from modules import script_callbacks

    app = FastAPI(title="Stable Diffusion web UI", docs_url="/docs" if cmd_opts.api or not with_ui else None)
    demo = None
    if with_ui:
        import gradio as gr

        from modules import shared, ui

        demo = ui.create_ui()
        shared.demo = demo
        app = gr.mount_gradio_app(app, demo, path=cmd_opts.subpath or "/",
                                  allowed_paths=[os.path.abspath(p) for p in cmd_opts.gradio_allowed_path],
                                  root_path=cmd_opts.subpath, theme=None)
    script_callbacks.app_started_callback(demo, app)
    return app


def server_host() -> str:
    if cmd_opts.server_name:
        return cmd_opts.server_name
    return "0.0.0.0" if cmd_opts.listen else "127.0.0.1"


def serve(app, port: int) -> None:
    import uvicorn

    host = server_host()
    if cmd_opts.webui_is_non_local and not (cmd_opts.gradio_auth or cmd_opts.gradio_auth_path or cmd_opts.api_auth):
        log.warning("!" * 80)
        log.warning("The server is reachable from other machines (%s) and has NO password. Anyone who can reach it "
                    "can use it. Add --gradio-auth user:password (and --api-auth).", host)
        log.warning("!" * 80)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_keep_alive=cmd_opts.timeout_keep_alive,
                            ssl_keyfile=cmd_opts.tls_keyfile, ssl_certfile=cmd_opts.tls_certfile)
    server = uvicorn.Server(config)
    url = f"{'https' if cmd_opts.tls_certfile else 'http'}://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"

    def announce() -> None:
        while not server.started:
            time.sleep(0.05)
        log.info("Running on local URL: %s (startup %.1fs)", url, time.perf_counter() - startup_timer)
        print(f"Running on local URL:  {url}", flush=True)
        if cmd_opts.autolaunch:
            import webbrowser

            webbrowser.open(url)

    threading.Thread(target=announce, daemon=True).start()
    server.run()


def webui() -> None:
    setup_logging()
    initialize()
    app = create_app(with_ui=True)
    load_model_in_background()
    serve(app, cmd_opts.port or 7860)


def api_only() -> None:
    setup_logging()
    initialize()
    app = create_app(with_ui=False)
    if not cmd_opts.skip_load_model_at_start:
        load_model_in_background()
    serve(app, cmd_opts.port or 7861)


if __name__ == "__main__":
    if "--nowebui" in sys.argv or cmd_opts.nowebui:
        api_only()
    else:
        webui()
