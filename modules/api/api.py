"""A1111's HTTP API, /sdapi/v1 (a1111-spec §10): thin routes over the core.

Generation requests become processing objects and run through the one generation queue
(`call_queue.run_job`) that the UI uses too, so jobs from both run one at a time in arrival order. Model and VAE
changes also wait for their turn. Names extensions import from here are kept: `Api`, `decode_base64_to_image`,
`encode_pil_to_base64`, `validate_sampler_name`.
"""

from __future__ import annotations

import logging
import math
import os
import random
import string
import time
from typing import Any

from fastapi import Body, FastAPI, HTTPException
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, Response

from modules import (
    call_queue,
    credentials,
    extensions,
    hypernetworks,
    infotext_paste,
    infotext_utils,
    live_preview,
    model_detection,
    networks,
    postprocessing,
    processing,
    script_callbacks,
    scripts,
    sd_hijack,
    sd_models,
    sd_samplers,
    sd_schedulers,
    sd_vae,
    shared,
    upscaler,
)
from modules.api import middleware, models
from modules.api.image_codec import decode_base64_to_image, encode_pil_to_base64  # noqa: F401 (A1111 names)
from modules.errors import NotFoundError, UserError

log = logging.getLogger(__name__)

# Request fields that steer the API itself and are not processing arguments.
API_ONLY_FIELDS = {
    "sampler_index",
    "script_name",
    "script_args",
    "send_images",
    "save_images",
    "alwayson_scripts",
    "infotext",
    "include_init_images",
}
SECRET_FLAG_WORDS = ("auth", "ngrok", "token", "password", "secret")


def create_task_id(task_type: str) -> str:
    """``task(txt2img-XXXXXXX)``, A1111's id for an API job."""
    return f"task({task_type}-{''.join(random.choices(string.ascii_uppercase + string.digits, k=7))})"


def validate_sampler_name(name: str | None) -> str:
    """The canonical name of a sampler (name, alias or legacy "X Karras"); 404 "Sampler not found" otherwise."""
    try:
        return sd_samplers.resolve_sampler_and_scheduler(name, None)[0]
    except NotFoundError:
        valid = ", ".join(s.name for s in sd_samplers.all_samplers)
        raise NotFoundError(
            f"Sampler not found: {name!r}. Use one of: {valid} (or an alias such as k_euler_a)."
        ) from None


def checked_setting(key: str, value: Any) -> Any:
    """`value` for setting `key` in the setting's type (a whole number for an int setting), or UserError."""
    default = shared.opts.data_labels[key].default
    if default is None:
        return value
    expected = type(default)
    if expected in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(f"Setting '{key}' takes a number, not {value!r}.")
        return int(value) if expected is int and float(value).is_integer() else value
    if expected in (list, tuple) and isinstance(value, (list, tuple)):
        return list(value)
    if not isinstance(value, expected):
        raise UserError(f"Setting '{key}' takes a {expected.__name__}, not {value!r}.")
    return value


def redacted_flags(cmd_opts: Any) -> dict[str, Any]:
    """vars(cmd_opts), with credentials and tokens replaced (A1111 returns them in clear, issue #17411)."""
    return {
        key: "<redacted>" if value and any(word in key for word in SECRET_FLAG_WORDS) else value
        for key, value in vars(cmd_opts).items()
    }


class Api:
    """Registers the routes on `app`; create it before the UI is mounted so these routes come first."""

    def __init__(self, app: FastAPI, queue_lock: call_queue.FIFOLock | None = None):
        self.app = app
        self.queue_lock = queue_lock or call_queue.queue_lock
        cmd_opts = shared.cmd_opts
        self.credentials = credentials.api_credentials(cmd_opts)
        middleware.install(app, self.credentials, cmd_opts.api_log, protect_all=bool(cmd_opts.nowebui))

        add = self.add_api_route
        v1 = "/sdapi/v1"
        add(f"{v1}/txt2img", self.text2imgapi, methods=["POST"], response_model=models.TextToImageResponse)
        add(f"{v1}/img2img", self.img2imgapi, methods=["POST"], response_model=models.ImageToImageResponse)
        add(
            f"{v1}/extra-single-image",
            self.extras_single_image_api,
            methods=["POST"],
            response_model=models.ExtrasSingleImageResponse,
        )
        add(
            f"{v1}/extra-batch-images",
            self.extras_batch_images_api,
            methods=["POST"],
            response_model=models.ExtrasBatchImagesResponse,
        )
        add(f"{v1}/png-info", self.pnginfoapi, methods=["POST"], response_model=models.PNGInfoResponse)
        add(f"{v1}/progress", self.progressapi, methods=["GET"], response_model=models.ProgressResponse)
        add(f"{v1}/interrupt", self.interruptapi, methods=["POST"])
        add(f"{v1}/skip", self.skip, methods=["POST"])
        add(f"{v1}/options", self.get_config, methods=["GET"], response_model=dict[str, Any])
        add(f"{v1}/options", self.set_config, methods=["POST"])
        add(f"{v1}/cmd-flags", self.get_cmd_flags, methods=["GET"], response_model=dict[str, Any])
        add(f"{v1}/samplers", self.get_samplers, methods=["GET"], response_model=list[models.SamplerItem])
        add(f"{v1}/schedulers", self.get_schedulers, methods=["GET"], response_model=list[models.SchedulerItem])
        add(f"{v1}/upscalers", self.get_upscalers, methods=["GET"], response_model=list[models.UpscalerItem])
        add(
            f"{v1}/latent-upscale-modes",
            self.get_latent_upscale_modes,
            methods=["GET"],
            response_model=list[models.LatentUpscalerModeItem],
        )
        add(f"{v1}/sd-models", self.get_sd_models, methods=["GET"], response_model=list[models.SDModelItem])
        add(f"{v1}/sd-vae", self.get_sd_vaes, methods=["GET"], response_model=list[models.SDVaeItem])
        add(
            f"{v1}/hypernetworks", self.get_hypernetworks, methods=["GET"], response_model=list[models.HypernetworkItem]
        )
        add(
            f"{v1}/face-restorers",
            self.get_face_restorers,
            methods=["GET"],
            response_model=list[models.FaceRestorerItem],
        )
        add(
            f"{v1}/realesrgan-models",
            self.get_realesrgan_models,
            methods=["GET"],
            response_model=list[models.RealesrganItem],
        )
        add(f"{v1}/prompt-styles", self.get_prompt_styles, methods=["GET"], response_model=list[models.PromptStyleItem])
        add(f"{v1}/embeddings", self.get_embeddings, methods=["GET"], response_model=models.EmbeddingsResponse)
        add(f"{v1}/refresh-embeddings", self.refresh_embeddings, methods=["POST"])
        add(f"{v1}/refresh-checkpoints", self.refresh_checkpoints, methods=["POST"])
        add(f"{v1}/refresh-vae", self.refresh_vae, methods=["POST"])
        add(f"{v1}/loras", self.get_loras, methods=["GET"], response_model=list[models.LoraItem])
        add(f"{v1}/refresh-loras", self.refresh_loras, methods=["POST"])
        add(f"{v1}/memory", self.get_memory, methods=["GET"], response_model=models.MemoryResponse)
        add(f"{v1}/unload-checkpoint", self.unloadapi, methods=["POST"])
        add(f"{v1}/reload-checkpoint", self.reloadapi, methods=["POST"])
        add(f"{v1}/scripts", self.get_scripts_list, methods=["GET"], response_model=models.ScriptsList)
        add(f"{v1}/script-info", self.get_script_info, methods=["GET"], response_model=list[models.ScriptInfo])
        add(f"{v1}/extensions", self.get_extensions_list, methods=["GET"], response_model=list[models.ExtensionItem])
        if cmd_opts.api_server_stop:
            add(f"{v1}/server-kill", self.kill_webui, methods=["POST"])
            add(f"{v1}/server-restart", self.restart_webui, methods=["POST"])
            add(f"{v1}/server-stop", self.stop_webui, methods=["POST"])
        app.add_api_route("/internal/ping", self.ping, methods=["GET"], tags=["internal"])
        app.add_api_route("/queue/status", self.queue_status, methods=["GET"], tags=["internal"])

    def add_api_route(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        kwargs.setdefault("tags", ["sdapi"])
        self.app.add_api_route(path, endpoint, **kwargs)

    # ---- generation ----

    def text2imgapi(self, txt2imgreq: models.StableDiffusionTxt2ImgProcessingAPI) -> models.TextToImageResponse:
        return self._generate(txt2imgreq, is_img2img=False)

    def img2imgapi(self, img2imgreq: models.StableDiffusionImg2ImgProcessingAPI) -> models.ImageToImageResponse:
        return self._generate(img2imgreq, is_img2img=True)

    def _generate(self, req: models.ProcessingRequest, is_img2img: bool) -> models.TextToImageResponse:
        tab = "img2img" if is_img2img else "txt2img"
        task_id = req.force_task_id or create_task_id(tab)
        req = self._apply_infotext(req)
        sampler_name = req.sampler_name or req.sampler_index
        validate_sampler_name(sampler_name)
        sampler, scheduler = sd_samplers.resolve_sampler_and_scheduler(sampler_name, req.scheduler)
        args = req.model_dump(exclude=API_ONLY_FIELDS)
        args.update(
            sampler_name=sampler,
            scheduler=scheduler,
            styles=req.styles or [],
            comments=req.comments or {},
            override_settings=self._checked_overrides(req.override_settings or {}),
            do_not_save_samples=not req.save_images,
            do_not_save_grid=not req.save_images,
        )
        if req.firstpass_image:
            args["firstpass_image"] = decode_base64_to_image(req.firstpass_image, "firstpass image")
        opts = shared.opts
        if is_img2img:
            processing_class = processing.StableDiffusionProcessingImg2Img
            args.update(self._img2img_images(req))
            if req.mask_blur is None:
                args.pop("mask_blur")
            outpaths = (
                opts.outdir_samples or opts.outdir_img2img_samples,
                opts.outdir_grids or opts.outdir_img2img_grids,
            )
        else:
            processing_class = processing.StableDiffusionProcessingTxt2Img
            outpaths = (
                opts.outdir_samples or opts.outdir_txt2img_samples,
                opts.outdir_grids or opts.outdir_txt2img_grids,
            )
        p = processing_class(outpath_samples=outpaths[0], outpath_grids=outpaths[1], **args)
        p.is_api = True

        def job() -> processing.Processed:
            shared.state.current_task = task_id
            try:
                runner = scripts.scripts_img2img if is_img2img else scripts.scripts_txt2img
                return runner.run_for_api(p, req.script_name, req.script_args, req.alwayson_scripts)
            finally:
                p.close()

        processed = call_queue.run_job(f"scripts_{tab}", job)
        images = []
        if req.send_images:
            infotexts = processed.infotexts
            images = [
                encode_pil_to_base64(image, infotexts[i] if i < len(infotexts) else None)
                for i, image in enumerate(processed.images)
            ]
        parameters = req.model_dump()
        if is_img2img and not req.include_init_images:
            parameters["init_images"] = None
            parameters["mask"] = None
        return models.TextToImageResponse(images=images, parameters=parameters, info=processed.js())

    @staticmethod
    def _img2img_images(req: models.StableDiffusionImg2ImgProcessingAPI) -> dict[str, Any]:
        if not req.init_images:
            raise HTTPException(status_code=404, detail="Init image not found")
        images = {
            "init_images": [decode_base64_to_image(x, f"init image {i + 1}") for i, x in enumerate(req.init_images)]
        }
        images["mask"] = decode_base64_to_image(req.mask, "mask") if req.mask else None
        images["latent_mask"] = decode_base64_to_image(req.latent_mask, "latent mask") if req.latent_mask else None
        return images

    @staticmethod
    def _apply_infotext(req: models.ProcessingRequest) -> models.ProcessingRequest:
        """Fields from the request's `infotext` for every field the request does not set; settings it carries
        become override settings unless the request overrides them itself."""
        if not req.infotext:
            return req
        params = infotext_utils.parse_generation_parameters(req.infotext, opts=shared.opts, styles=shared.prompt_styles)
        script_callbacks.infotext_pasted_callback(req.infotext, params)
        kwargs, overrides = infotext_paste.processing_args_from_infotext(params, shared.opts)
        fields = type(req).model_fields
        update = {k: v for k, v in kwargs.items() if k in fields and k not in req.model_fields_set}
        update["override_settings"] = {**overrides, **(req.override_settings or {})}
        return req.model_copy(update=update)

    @staticmethod
    def _checked_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
        """Override settings with their types checked and a named checkpoint that exists (else 4xx before the job
        waits in the queue). Unknown keys pass through: processing ignores them."""
        checked = {}
        for key, value in overrides.items():
            if key not in shared.opts.data_labels:
                checked[key] = value
                continue
            checked[key] = checked_setting(key, value)
        if checked.get("sd_model_checkpoint"):
            sd_models.find_checkpoint(str(checked["sd_model_checkpoint"]))
        return checked

    # ---- extras ----

    def extras_single_image_api(self, req: models.ExtrasSingleImageRequest) -> models.ExtrasSingleImageResponse:
        args = self._extras_args(req, exclude={"image"})
        image = decode_base64_to_image(req.image)
        with self.queue_lock:
            result = postprocessing.run_extras(
                extras_mode=0, image=image, image_folder="", input_dir="", output_dir="", save_output=False, **args
            )
        return models.ExtrasSingleImageResponse(image=encode_pil_to_base64(result[0][0]), html_info=result[1])

    def extras_batch_images_api(self, req: models.ExtrasBatchImagesRequest) -> models.ExtrasBatchImagesResponse:
        args = self._extras_args(req, exclude={"imageList"})
        image_list = [decode_base64_to_image(x.data, x.name or f"image {i + 1}") for i, x in enumerate(req.imageList)]
        with self.queue_lock:
            result = postprocessing.run_extras(
                extras_mode=1, image="", image_folder=image_list, input_dir="", output_dir="", save_output=False, **args
            )
        return models.ExtrasBatchImagesResponse(
            images=[encode_pil_to_base64(x) for x in result[0]], html_info=result[1]
        )

    @staticmethod
    def _extras_args(req: models.ExtrasBaseRequest, exclude: set[str]) -> dict[str, Any]:
        args = req.model_dump(exclude=exclude)
        args["extras_upscaler_1"] = args.pop("upscaler_1")
        args["extras_upscaler_2"] = args.pop("upscaler_2")
        return args

    # ---- information ----

    def pnginfoapi(self, req: models.PNGInfoRequest) -> models.PNGInfoResponse:
        image = decode_base64_to_image(req.image)
        geninfo, items = image_text_items(image)
        try:
            params = infotext_utils.parse_generation_parameters(geninfo, opts=shared.opts, styles=shared.prompt_styles)
        except ValueError as e:  # e.g. an emphasis weight "(a:1.2.3)": the text is still returned, unparsed
            log.warning("png-info: the image's parameters could not be parsed: %s", e)
            params = {}
        script_callbacks.infotext_pasted_callback(geninfo, params)
        return models.PNGInfoResponse(info=geninfo, items=items, parameters=params)

    def progressapi(self, skip_current_image: bool = False) -> models.ProgressResponse:
        state = shared.state
        if state.job_count == 0:
            return models.ProgressResponse(progress=0, eta_relative=0, state=state.dict(), textinfo=state.textinfo)
        # As A1111: a running job reports at least 1%, so that clients can tell it from an idle server.
        progress = min(0.01 + state.progress(), 1.0)
        elapsed = time.time() - (state.time_start or time.time())
        eta_relative = elapsed / progress - elapsed
        current_image = None
        if not skip_current_image:
            live_preview.refresh_current_image(state, shared.opts, sd_models.model_data.sd_model)
            if state.current_image is not None:
                current_image = encode_pil_to_base64(state.current_image)
        return models.ProgressResponse(
            progress=progress,
            eta_relative=eta_relative,
            state=state.dict(),
            current_image=current_image,
            textinfo=state.textinfo,
        )

    def interruptapi(self) -> dict:
        shared.state.interrupt()
        return {}

    def skip(self) -> None:
        shared.state.skip()

    def get_config(self) -> dict[str, Any]:
        opts = shared.opts
        config = {k: opts.data.get(k, info.default) for k, info in opts.data_labels.items() if not info.do_not_save}
        config.update({k: v for k, v in opts.data.items() if k not in opts.data_labels})
        return config

    def set_config(self, req: dict[str, Any] = Body(...)) -> None:
        """Apply the given settings and save config.json. The whole GET /options answer can be posted back:
        unchanged values, unknown keys and settings the API may not change are skipped."""
        opts = shared.opts
        changes = {}
        for key, value in req.items():
            info = opts.data_labels.get(key)
            if info is None or info.do_not_save or info.restrict_api or key in opts.restricted_opts:
                continue
            value = checked_setting(key, value)
            if opts.data.get(key, info.default) != value:
                changes[key] = value
        checkpoint = changes.get("sd_model_checkpoint")
        if checkpoint and sd_models.get_closet_checkpoint_match(str(checkpoint)) is None:
            raise NotFoundError(f"model {checkpoint!r} not found")
        # Settings with an onchange action (checkpoint, VAE, ...) may change the model: they wait for the queue.
        queued = {k: v for k, v in changes.items() if opts.data_labels[k].onchange is not None}
        for key, value in changes.items():
            if key not in queued:
                opts.set(key, value, is_api=True)
        if queued:
            call_queue.run_job("set options", lambda: [opts.set(k, v, is_api=True) for k, v in queued.items()])
        opts.save(shared.config_filename)

    def get_cmd_flags(self) -> dict[str, Any]:
        return redacted_flags(shared.cmd_opts)

    def get_samplers(self) -> list[dict[str, Any]]:
        return [{"name": s.name, "aliases": s.aliases, "options": s.options} for s in sd_samplers.all_samplers]

    def get_schedulers(self) -> list[dict[str, Any]]:
        return [
            {
                "name": s.name,
                "label": s.label,
                "aliases": s.aliases,
                "default_rho": s.default_rho,
                "need_inner_model": s.need_inner_model,
            }
            for s in sd_schedulers.schedulers
        ]

    def get_upscalers(self) -> list[dict[str, Any]]:
        return upscaler.api_upscalers()

    def get_latent_upscale_modes(self) -> list[dict[str, str]]:
        return upscaler.api_latent_upscale_modes()

    def get_sd_models(self) -> list[dict[str, Any]]:
        return [
            {
                "title": x.title,
                "model_name": x.model_name,
                "hash": x.shorthash,
                "sha256": x.sha256,
                "filename": x.filename,
                "config": model_detection.find_checkpoint_config_near_filename(x.filename),
            }
            for x in list(sd_models.checkpoints_list.values())
        ]

    def get_sd_vaes(self) -> list[dict[str, str]]:
        return [{"model_name": name, "filename": path} for name, path in list(sd_vae.vae_dict.items())]

    def get_hypernetworks(self) -> list[dict[str, Any]]:
        return hypernetworks.api_hypernetworks()

    def get_face_restorers(self) -> list[dict[str, Any]]:
        return []  # face restoration is not provided (docs/differences.md)

    def get_realesrgan_models(self) -> list[dict[str, Any]]:
        return upscaler.api_realesrgan_models()

    def get_prompt_styles(self) -> list[dict[str, Any]]:
        styles = shared.prompt_styles.styles.values() if shared.prompt_styles is not None else []
        return [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt} for s in styles]

    def get_embeddings(self) -> dict[str, Any]:
        return sd_hijack.model_hijack.embedding_db.listing()

    def refresh_embeddings(self) -> None:
        with self.queue_lock:
            sd_hijack.model_hijack.embedding_db.load_textual_inversion_embeddings(force_reload=True)

    def refresh_checkpoints(self) -> None:
        with self.queue_lock:
            sd_models.list_models()

    def refresh_vae(self) -> None:
        with self.queue_lock:
            sd_vae.refresh_vae_list()

    def get_loras(self) -> list[dict[str, Any]]:
        return networks.api_loras()

    def refresh_loras(self) -> None:
        with self.queue_lock:
            networks.list_available_networks()

    def get_memory(self) -> dict[str, Any]:
        return {"ram": ram_usage(), "cuda": cuda_usage()}

    def unloadapi(self) -> dict:
        with self.queue_lock:
            sd_models.unload_model_weights()
        return {}

    def reloadapi(self) -> dict:
        with self.queue_lock:
            sd_models.reload_model_weights()
        return {}

    def get_scripts_list(self) -> dict[str, list[str]]:
        return scripts.api_scripts_list()

    def get_script_info(self) -> list[dict[str, Any]]:
        return scripts.api_script_info()

    def get_extensions_list(self) -> list[dict[str, Any]]:
        return [e for e in extensions.api_list() if e["remote"] is not None]  # git-based only, as A1111

    # ---- server control (--api-server-stop) ----

    def kill_webui(self) -> Response:
        log.info("Server kill requested through the API")
        return JSONResponse({}, background=BackgroundTask(os._exit, 0))

    def restart_webui(self) -> Response:
        """Leave the restart marker the launcher loop looks for (webui.sh / webui.bat), then stop serving."""
        marker = os.environ.get("SD_WEBUI_RESTART")
        if not marker:
            raise HTTPException(status_code=501, detail="Not started by a restartable launcher (webui.sh / webui.bat)")
        marker = marker if os.path.isabs(marker) else os.path.join(shared.script_path, marker)
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        with open(marker, "w", encoding="utf-8"):
            pass
        shared.state.request_restart()
        return JSONResponse({})

    def stop_webui(self) -> Response:
        shared.state.server_command = "stop"
        return Response("Stopping.")

    # ---- outside /sdapi ----

    def ping(self) -> dict:
        return {}

    def queue_status(self) -> dict[str, Any]:
        """Gradio 3's queue estimate at its old root path (some clients probe it to find the server)."""
        size = self.queue_lock.pending() + (1 if self.queue_lock.locked() else 0)
        return {
            "msg": "estimation",
            "rank": None,
            "queue_size": size,
            "avg_event_process_time": None,
            "avg_event_concurrent_process_time": None,
            "rank_eta": None,
            "queue_eta": 0,
        }


def image_text_items(image: Any) -> tuple[str, dict[str, Any]]:
    """Infotext and the other text items of an image, JSON-safe (binary items such as ICC profiles left out)."""
    from modules import images

    geninfo, items = images.read_info_from_image(image)
    safe = {}
    for key, value in items.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            safe[str(key)] = value
        elif isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value):
            safe[str(key)] = list(value)
    return geninfo or "", safe


def ram_usage() -> dict[str, Any]:
    """This process's memory against the machine's (A1111's shape: free = total − used)."""
    try:
        import psutil

        used = psutil.Process(os.getpid()).memory_info().rss
        total = psutil.virtual_memory().total
        return {"free": total - used, "used": used, "total": total}
    except Exception as e:
        return {"error": str(e)}


def cuda_usage() -> dict[str, Any]:
    try:
        import torch

        if not torch.cuda.is_available():
            return {"error": "unavailable"}
        free, total = torch.cuda.mem_get_info()
        s = torch.cuda.memory_stats(shared.device)

        def pair(name: str) -> dict[str, int]:
            return {"current": s.get(f"{name}.all.current", 0), "peak": s.get(f"{name}.all.peak", 0)}

        return {
            "system": {"free": free, "used": total - free, "total": total},
            "active": pair("active_bytes"),
            "allocated": pair("allocated_bytes"),
            "reserved": pair("reserved_bytes"),
            "inactive": pair("inactive_split_bytes"),
            "events": {"retries": s.get("num_alloc_retries", 0), "oom": s.get("num_ooms", 0)},
        }
    except Exception as e:
        return {"error": str(e)}
