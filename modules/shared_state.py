"""The running job's state: progress, interrupt, skip (A1111's shared.state)."""

from __future__ import annotations

import datetime
import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)


class State:
    """Progress of the current job, read by the progress API and the UI; written by processing."""

    def __init__(self) -> None:
        self.server_start = time.time()
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.skipped = False
        self.interrupted = False
        self.stopping_generation = False
        self.job = ""
        self.job_no = 0
        self.job_count = 0
        self.processing_has_refined_job_count = False
        self.job_timestamp = "0"
        self.sampling_step = 0
        self.sampling_steps = 0
        self.current_latent = None
        self.current_image = None
        self.current_image_sampling_step = 0
        self.id_live_preview = 0
        self.textinfo: str | None = None
        self.time_start: float | None = None
        self.current_task: str | None = None
        self.server_command: str | None = None

    @property
    def need_restart(self) -> bool:
        return self.server_command == "restart"

    def request_restart(self) -> None:
        self.interrupt()
        self.server_command = "restart"
        log.info("Received restart request")

    def interrupt(self) -> None:
        self.interrupted = True
        log.info("Received interrupt request")

    def skip(self) -> None:
        self.skipped = True
        log.info("Received skip request")

    def stop_generating(self) -> None:
        self.stopping_generation = True
        log.info("Received stop generating request")

    def nextjob(self) -> None:
        self.job_no += 1
        self.sampling_step = 0
        self.current_image_sampling_step = 0

    def begin(self, job: str = "(unknown)") -> None:
        with self._lock:
            task = self.current_task
            self.reset()
            self.current_task = task
            self.job = job
            self.job_timestamp = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
            self.time_start = time.time()

    def end(self) -> None:
        with self._lock:
            self.job = ""
            self.job_count = 0
            self.sampling_step = 0
            self.sampling_steps = 0
            self.current_latent = None
            self.current_task = None
            self.time_start = None

    def progress(self) -> float:
        """Fraction of the job done, counting finished batches and the current batch's steps."""
        if self.job_count <= 0:
            return 0.0
        per_job = 1.0 / self.job_count
        done = self.job_no * per_job
        if self.sampling_steps > 0:
            done += per_job * min(self.sampling_step, self.sampling_steps) / self.sampling_steps
        return min(done, 1.0)

    def eta_relative(self) -> float:
        p = self.progress()
        if self.time_start is None or p <= 0:
            return 0.0
        elapsed = time.time() - self.time_start
        return elapsed / p - elapsed

    def set_current_image(self, image: Any) -> None:
        self.current_image = image
        self.id_live_preview += 1

    def dict(self) -> dict:
        return {
            "skipped": self.skipped,
            "interrupted": self.interrupted,
            "stopping_generation": self.stopping_generation,
            "job": self.job,
            "job_count": self.job_count,
            "job_timestamp": self.job_timestamp,
            "job_no": self.job_no,
            "sampling_step": self.sampling_step,
            "sampling_steps": self.sampling_steps,
        }
