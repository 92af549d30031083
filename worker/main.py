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
import contextlib
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
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
    stop_signalled = False

    def request_stop(self, signum: Any, frame: Any) -> None:
        """Remember that a signal (not a lost connection) ended the work loop."""
        self.stop_signalled = True
        super().request_stop(signum, frame)

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


REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError)


def worker_redis(url: str) -> Redis:
    """The worker's connection: every command rides out a Redis restart of up to about 45 s
    (backoff 0.2 s doubling to 2 s, 25 tries), so a running encode neither fails nor loses its
    progress writes when Redis goes away for a moment. redis-py's default gives up after ~1 s."""
    return Redis.from_url(url, retry=Retry(ExponentialBackoff(cap=2.0, base=0.2), 25))


def wait_for_redis(redis: Redis, name: str | None) -> None:
    """Block until Redis answers again (logged every try), after the work loop lost it."""
    delay = 1.0
    while True:
        try:
            redis.ping()
            return
        except REDIS_ERRORS as exc:
            log.warning("redis unreachable; waiting", extra={"worker": name, "retry_s": delay, "error": str(exc)})
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


def work_until_stopped(redis: Redis, queue_name: str, burst: bool, name: str | None) -> None:
    """Run rq's work loop, and start it again when it ends for any reason but a stop signal.

    rq's loop quits on any exception from a job's bookkeeping (a Redis outage longer than the
    connection's retries, mid-job) and its teardown then raises too, so a short Redis restart
    killed the worker for good and every later job stayed queued. A worker should outlive
    its Redis: it waits for Redis, registers again and goes on; the interrupted job is retried
    or failed by the usual abandoned-job cleanup."""
    settings = get_settings()
    UdicWorker.heartbeat_grace_s = settings.heartbeat_grace_s
    while True:
        queue = Queue(queue_name, connection=redis)
        w = UdicWorker([queue], connection=redis, name=name, job_monitoring_interval=settings.heartbeat_interval_s)
        try:
            # jobs abandoned by a worker that died before this one started are handled now, not later
            queue.started_job_registry.cleanup()
            log.info("worker ready", extra={"queue": queue_name, "worker": w.name})
            w.work(burst=burst, with_scheduler=False, logging_level=settings.log_level)
        except REDIS_ERRORS as exc:  # raised by rq's teardown (register_death) with Redis down
            log.warning("work loop lost redis", extra={"worker": w.name, "error": str(exc)})
        if burst or w.stop_signalled:
            return
        log.warning("work loop ended without a stop signal; starting it again", extra={"worker": w.name})
        time.sleep(1.0)  # a loop that keeps failing for another reason must not spin a core
        wait_for_redis(redis, w.name)
        with contextlib.suppress(*REDIS_ERRORS):  # the lost loop could not register its death;
            w.register_death()  # a worker with a fixed --name needs it to register again


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run an encode worker (RQ) for the udic service.")
    ap.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    ap.add_argument("--name", default=None)
    args = ap.parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_json)
    redis = worker_redis(settings.redis_url)
    preload_models()
    work_until_stopped(redis, settings.queue_name, args.burst, args.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
