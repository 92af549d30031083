"""Prometheus metrics of the API process, plus a collector that reads job figures from Redis
(written by the workers, so every API replica reports the same numbers)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from rq import Queue

from udic_jobs import JobStore

REGISTRY = CollectorRegistry(auto_describe=True)
DECODE_SECONDS = Histogram(
    "udic_decode_seconds",
    "Decode time per request (seconds)",
    registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ENCODE_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class JobSources(Protocol):
    """What the collector reads: the job store's statistics and rq's queue (the app's Resources)."""

    store: JobStore
    queue: Queue


_current: dict[str, JobSources | None] = {"res": None}


def set_resources(res: JobSources) -> None:
    """Called by the app's lifespan: the collector reports on the running app's Redis."""
    _current["res"] = res


class RedisJobCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        res = _current["res"]
        if res is None:
            return
        try:
            counts = res.store.job_counts()
            queued = res.queue.count
            running = res.queue.started_job_registry.count
            durations = res.store.encode_seconds()
        except Exception:  # Redis down: /readyz says so; metrics just omit these
            return
        total = CounterMetricFamily("udic_jobs", "Jobs by how they ended (and created)", labels=["event"])
        for event in ("created", "finished", "failed", "cancelled"):
            total.add_metric([event], counts.get(event, 0))
        yield total
        g = GaugeMetricFamily("udic_jobs_in_state", "Jobs now queued or running", labels=["state"])
        g.add_metric(["queued"], queued)
        g.add_metric(["running"], running)
        yield g
        yield GaugeMetricFamily("udic_queue_length", "Jobs waiting in the encode queue", value=queued)
        buckets = []
        for b in ENCODE_BUCKETS:
            buckets.append((str(b), sum(1 for d in durations if d <= b)))
        buckets.append(("+Inf", len(durations)))
        h = HistogramMetricFamily("udic_encode_seconds", "Encode time of the last 1000 finished jobs (seconds)")
        h.add_metric([], buckets, sum(durations))
        yield h


REGISTRY.register(RedisJobCollector())
