"""Load on the tiny model through the running server (tests/conftest.py `server`): concurrent API generations plus
UI jobs complete in submission order, none lost or duplicated, progress stays consistent; interrupts and skips at
random moments leave the server serving and the next job correct; memory comes back to where it was.

CI size: 24 requests from 4 clients, 6 interrupts/skips. SD_WEBUI_HARDENING_FULL=1: 200 requests from 20 clients,
50 interrupts/skips (the figures in docs/security.md).
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests

from tests.hardening.figures import record, scaled

REQUESTS = scaled(24, 200)
CLIENTS = scaled(4, 20)
UI_JOBS = scaled(2, 10)
INTERRUPTS = scaled(6, 50)
SPACING = 0.03  # seconds between submissions: arrival order is submission order, and jobs take longer than this

gradio_client = pytest.importorskip("gradio_client")


def payload(tag: str, seed: int, steps: int = 2) -> dict:
    return {
        "prompt": f"a cat {tag}",
        "steps": steps,
        "width": 64,
        "height": 64,
        "seed": seed,
        "sampler_name": "Euler a",
        "save_images": False,
        "send_images": True,
    }


def txt2img(server, body: dict, timeout: float = 600) -> requests.Response:
    return requests.post(server.url + "/sdapi/v1/txt2img", json=body, timeout=timeout)


def rss(server) -> int:
    process = psutil.Process(server.proc.pid)
    return process.memory_info().rss + sum(c.memory_info().rss for c in process.children(recursive=True))


class ProgressWatcher(threading.Thread):
    """Polls /sdapi/v1/progress and counts answers that contradict themselves."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server, self.stop, self.samples, self.problems = server, threading.Event(), 0, []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                r = requests.get(self.server.url + "/sdapi/v1/progress?skip_current_image=true", timeout=30)
            except requests.RequestException as e:
                self.problems.append(f"progress request failed: {e}")
                continue
            self.samples += 1
            if r.status_code != 200:
                self.problems.append(f"progress answered {r.status_code}")
                continue
            data = r.json()
            state = data["state"]
            ok = 0 <= data["progress"] <= 1 and data["eta_relative"] >= 0
            ok &= 0 <= state["sampling_step"] <= max(state["sampling_steps"], 0) + 1
            ok &= state["job_count"] >= 0 and (state["job_count"] != 0 or data["progress"] == 0)
            if not ok:
                self.problems.append(str(data)[:300])
            time.sleep(0.05)


def test_concurrent_api_and_ui_jobs_complete_in_order_none_lost(server, tiny_checkpoints):
    reference = txt2img(server, payload("reference", 7))
    assert reference.status_code == 200, reference.text
    # Warm-up at the same concurrency: caches, lazy imports, worker threads and their allocator arenas exist
    # before the first measurement, so what the run adds on top is what it keeps.
    with ThreadPoolExecutor(CLIENTS) as pool:
        assert all(
            r.status_code == 200
            for r in pool.map(lambda i: txt2img(server, payload(f"warm {i}", i)), range(2 * CLIENTS))
        )
    memory_before = rss(server)

    watcher = ProgressWatcher(server)
    watcher.start()
    finished: list[tuple[float, str]] = []
    lock = threading.Lock()

    def api_job(i: int) -> tuple[int, str, int]:
        sent = time.perf_counter()
        r = txt2img(server, payload(f"job-{i:04d}", 1000 + i, steps=4))
        info = r.json().get("info", "") if r.status_code == 200 else r.text
        # When the server finished it (its own duration from the moment it was sent): client threads that wake
        # up late do not reorder this.
        with lock:
            finished.append((sent + float(r.headers.get("X-Process-Time", 0)), f"job-{i:04d}"))
        return i, info, r.status_code

    ui_results = []

    def ui_job(i: int) -> None:
        client = gradio_client.Client(server.url, verbose=False, download_files=False)
        try:
            out = client.predict(
                f"a cat ui-{i}", "", 2, "Euler a", "Automatic", 64, 64, 1, 1, 7.0, 500 + i, api_name="/txt2img"
            )
            ui_results.append((i, str(out)))
        finally:
            client.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool, ThreadPoolExecutor(2) as ui_pool:
        ui_futures = [ui_pool.submit(ui_job, i) for i in range(UI_JOBS)]
        futures = []
        for i in range(REQUESTS):
            futures.append(pool.submit(api_job, i))
            time.sleep(SPACING)
        results = [f.result() for f in futures]
        for f in ui_futures:
            f.result()
    seconds = time.perf_counter() - start
    watcher.stop.set()
    watcher.join()

    ok = [r for r in results if r[2] == 200]
    tags = [json.loads(info)["prompt"].removeprefix("a cat ") for _, info, _ in ok]
    lost = REQUESTS - len(ok)
    duplicated = len(tags) - len(set(tags))
    mismatched = [i for (i, _, _), tag in zip(ok, tags, strict=True) if tag != f"job-{i:04d}"]
    api_order = [tag for _, tag in sorted(finished)]
    inversions = sum(1 for a, b in zip(api_order, api_order[1:], strict=False) if a > b)
    ui_ok = sum(1 for i, out in ui_results if f"ui-{i}" in out)

    after = txt2img(server, payload("reference", 7))
    memory_after = rss(server)
    growth = (memory_after - memory_before) / memory_before
    record(
        "load",
        requests=REQUESTS,
        clients=CLIENTS,
        ui_jobs=UI_JOBS,
        ui_ok=ui_ok,
        completed=len(ok),
        lost=lost,
        duplicated=duplicated,
        mismatched=len(mismatched),
        order_inversions=inversions,
        progress_samples=watcher.samples,
        progress_inconsistent=len(watcher.problems),
        seconds=round(seconds, 1),
        jobs_per_second=round((REQUESTS + UI_JOBS) / seconds, 2),
        rss_before_mb=round(memory_before / 2**20),
        rss_after_mb=round(memory_after / 2**20),
        rss_growth_percent=round(100 * growth, 1),
    )
    assert lost == 0 and duplicated == 0 and not mismatched
    assert ui_ok == UI_JOBS
    assert inversions == 0, api_order
    assert watcher.samples > 0 and not watcher.problems, watcher.problems[:5]
    assert after.json()["images"] == reference.json()["images"]
    assert growth < 0.10


def test_interrupts_and_skips_at_random_moments_leave_the_server_correct(server, tiny_checkpoints):
    rng = random.Random(20261121)
    reference = txt2img(server, payload("reference", 7))
    assert reference.status_code == 200
    memory_before = rss(server)
    statuses: dict[int, int] = {}
    stop = threading.Event()
    sent = {"interrupt": 0, "skip": 0}

    def storm() -> None:
        while not stop.is_set() and sum(sent.values()) < INTERRUPTS:
            time.sleep(rng.uniform(0.0, 0.4))
            action = rng.choice(["interrupt", "skip"])
            assert requests.post(server.url + f"/sdapi/v1/{action}", timeout=30).status_code == 200
            sent[action] += 1

    start = time.perf_counter()
    thread = threading.Thread(target=storm, daemon=True)
    thread.start()
    jobs = 0
    while thread.is_alive() and time.perf_counter() - start < 600:
        r = txt2img(server, {**payload(f"storm {jobs}", jobs, steps=8), "n_iter": 2})
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        jobs += 1
    stop.set()
    thread.join()
    after = txt2img(server, payload("reference", 7))
    memory_after = rss(server)
    record(
        "interrupts",
        interrupts=sent["interrupt"],
        skips=sent["skip"],
        jobs=jobs,
        statuses=statuses,
        seconds=round(time.perf_counter() - start, 1),
        next_job_correct=after.json()["images"] == reference.json()["images"],
        rss_growth_percent=round(100 * (memory_after - memory_before) / memory_before, 1),
    )
    assert sum(sent.values()) == INTERRUPTS
    assert set(statuses) == {200}, statuses  # an interrupted job still answers (with what it had)
    assert after.json()["images"] == reference.json()["images"]
    assert requests.get(server.url + "/sdapi/v1/progress", timeout=30).json()["state"]["job_count"] == 0
    assert (memory_after - memory_before) / memory_before < 0.10
