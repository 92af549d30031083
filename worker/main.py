"""The worker process: ``udic-worker`` (or ``python -m worker.main``).

Why rq's SimpleWorker and not the forking Worker: PyTorch's OpenMP thread pool does not survive
``fork()`` (a child of a process that already ran parallel torch code deadlocks; measured here),
and CUDA cannot be used across a fork either. So jobs run in this process, where the models are
loaded once at start-up and stay loaded. A thread keeps rq's heartbeats going during a long job
with a short TTL, so a killed worker's job is noticed within ``interval + grace`` seconds and
retried or failed (rq's registry cleanup), never left "running".
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from redis import Redis
from rq import Queue, SimpleWorker
from rq.worker import WorkerStatus

from service.core.config import get_settings
from service.core.logging import setup_logging

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger("udic.worker")


class UdicWorker(SimpleWorker):
    """SimpleWorker with heartbeats from a thread while a job runs."""

    heartbeat_grace_s = 30

    def get_heartbeat_ttl(self, job: Any, working_time: float = 0.0) -> int:
        return int(self.job_monitoring_interval + self.heartbeat_grace_s)

    def execute_job(self, job: Any, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.job_monitoring_interval):
                try:
                    self.maintain_heartbeats(job, execution)
                except Exception:  # a missed beat is not fatal; the next one may succeed
                    log.warning("heartbeat failed", extra={"job_id": job.id}, exc_info=True)

        t = threading.Thread(target=beat, name=f"heartbeat-{job.id}", daemon=True)
        t.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            stop.set()
            t.join(timeout=5)
        self.set_state(WorkerStatus.IDLE)


def preload_models() -> None:
    """Import the tasks and load the default model (and warm it up) before taking jobs.

    rq imports a task's module only when its first job starts; importing it (and the codec) there
    took seconds in which the job showed as running but had not yet written to its record."""
    import worker.tasks  # noqa: F401  (see above)
    from codec.coder import encode
    from codec.determinism import best_device
    from service.core.model_registry import registry

    settings = get_settings()
    encode(_tiny_image(), model=settings.default_model, registry=registry())
    log.info("models loaded", extra={"model": settings.default_model, "device": str(best_device()), "pid": os.getpid()})


def _tiny_image() -> Image.Image:
    from PIL import Image

    return Image.new("RGB", (8, 8), (128, 128, 128))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run an encode worker (RQ) for the udic service.")
    ap.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    ap.add_argument("--name", default=None)
    args = ap.parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_json)
    redis = Redis.from_url(settings.redis_url)
    preload_models()
    queue = Queue(settings.queue_name, connection=redis)
    UdicWorker.heartbeat_grace_s = settings.heartbeat_grace_s
    w = UdicWorker([queue], connection=redis, name=args.name, job_monitoring_interval=settings.heartbeat_interval_s)
    # jobs abandoned by a worker that died before this one started are handled now, not later
    queue.started_job_registry.cleanup()
    log.info("worker ready", extra={"queue": settings.queue_name, "worker": w.name})
    w.work(burst=args.burst, with_scheduler=False, logging_level=settings.log_level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
