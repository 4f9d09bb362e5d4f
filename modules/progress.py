"""Tasks the page follows: the queue of UI jobs, the running one, recent results, and the progress answer for
A1111's POST /internal/progress (a1111-spec §10: active, queued, completed, progress, eta, live preview).

A task id (A1111's `task(...)` strings) is given by the page when it submits a job, so that after a reload the
page can ask for the same task again and collect its result (the 🌀 restore-progress button). The running task is
`shared.state.current_task`, which API jobs set too, so their progress is visible here as well.
"""

from __future__ import annotations

import base64
import io
import random
import string
import threading
import time
from collections import OrderedDict
from typing import Any

from modules import live_preview, shared

_lock = threading.Lock()
pending_tasks: OrderedDict[str, float] = OrderedDict()
finished_tasks: list[str] = []
recorded_results: OrderedDict[str, Any] = OrderedDict()
recorded_results_limit = 2
finished_tasks_limit = 16


def create_task_id(task_type: str) -> str:
    """``task(txt2img-XXXXXXX)``, A1111's task id form."""
    suffix = "".join(random.choices(string.ascii_uppercase + string.digits, k=7))
    return f"task({task_type}-{suffix})"


def add_task_to_queue(id_task: str) -> None:
    with _lock:
        pending_tasks[id_task] = time.time()


def start_task(id_task: str) -> None:
    with _lock:
        pending_tasks.pop(id_task, None)
    shared.state.current_task = id_task


def finish_task(id_task: str) -> None:
    with _lock:
        pending_tasks.pop(id_task, None)
        finished_tasks.append(id_task)
        del finished_tasks[:-finished_tasks_limit]
    if shared.state.current_task == id_task:
        shared.state.current_task = None


def record_results(id_task: str, result: Any) -> None:
    with _lock:
        recorded_results[id_task] = result
        while len(recorded_results) > recorded_results_limit:
            recorded_results.popitem(last=False)


def restore_progress(id_task: str) -> Any:
    """The recorded result of a finished task (None if unknown or too old); waits while it is queued or runs."""
    while id_task == shared.state.current_task or id_task in pending_tasks:
        time.sleep(0.1)
    with _lock:
        return recorded_results.get(id_task)


def pending() -> dict[str, Any]:
    """A1111's GET /internal/pending-tasks answer."""
    with _lock:
        tasks = list(pending_tasks)
    return {"size": len(tasks), "tasks": tasks}


def encode_preview(image: Any, image_format: str) -> str:
    """A live preview as a data: URL in the live_previews_image_format setting (png, jpeg or webp)."""
    image_format = image_format.lower() if image_format.lower() in ("png", "jpeg", "webp") else "png"
    buffer = io.BytesIO()
    save_args: dict[str, Any] = {"optimize": True} if image_format == "png" else {"quality": 85}
    image.convert("RGB").save(buffer, format=image_format.upper(), **save_args)
    return f"data:image/{image_format};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def progress(id_task: str, id_live_preview: int = -1, live_preview_wanted: bool = True) -> dict[str, Any]:
    """The /internal/progress answer for a task.

    A task that is not running answers whether it is queued (with its place) or completed. For the running one:
    the fraction done over batches and steps, the ETA in seconds, the step counts, and a new live preview when
    one exists that the page has not seen yet (`id_live_preview` is the last one it has).
    """
    state = shared.state
    with _lock:
        queued = id_task in pending_tasks
        completed = id_task in finished_tasks
        queue = list(pending_tasks)
    active = id_task == state.current_task
    if not active:
        textinfo = "Waiting..."
        if queued:
            textinfo = f"In queue: {queue.index(id_task) + 1}/{len(queue)}"
        return {"active": False, "queued": queued, "completed": completed, "progress": None, "eta": None,
                "live_preview": None, "id_live_preview": -1, "textinfo": textinfo}

    fraction = state.progress()
    eta = None
    if state.time_start is not None and fraction > 0:
        elapsed = time.time() - state.time_start
        eta = elapsed / fraction - elapsed
    preview = None
    opts = shared.opts
    if opts.live_previews_enable and live_preview_wanted:
        from modules import sd_models

        live_preview.refresh_current_image(state, opts, sd_models.model_data.sd_model)
        if state.id_live_preview != id_live_preview and state.current_image is not None:
            preview = encode_preview(state.current_image, opts.live_previews_image_format)
            id_live_preview = state.id_live_preview
    return {
        "active": True, "queued": queued, "completed": completed, "progress": fraction, "eta": eta,
        "live_preview": preview, "id_live_preview": id_live_preview, "textinfo": state.textinfo,
        "job": state.job, "job_no": state.job_no, "job_count": state.job_count,
        "sampling_step": state.sampling_step, "sampling_steps": state.sampling_steps,
    }
