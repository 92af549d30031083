"""Fair use and paging over a real Redis and a real rq queue (no worker: the test takes jobs off the
queue the way a worker does, so the order the queue hands them out in is what is checked)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis
from rq import Queue
from rq.job import JobStatus

from service.core.config import Settings
from service.core.errors import ProblemError
from service.fairness import RateLimiter
from service.job_listing import decode_cursor, list_page
from service.jobs import JobService
from udic_jobs import EncodePayload, JobRecord, JobStore


@pytest.fixture
def svc(redis_url: str) -> Iterator[JobService]:
    r = Redis.from_url(redis_url)
    r.flushdb()
    settings = Settings(redis_url=redis_url, max_active_jobs_per_owner=5, api_keys="ka:alice,kb:bob")
    yield JobService(JobStore(r, "t", 3600), Queue("t-encode", connection=r), settings)
    r.flushdb()
    r.close()


def submit(svc: JobService, owner: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        rec = JobRecord.queued(f"{owner[0]}{i:031x}", owner, EncodePayload(quality=1))  # hex, like new_job_id
        svc.submit(rec)
        ids.append(rec.id)
    return ids


def take(svc: JobService) -> str:
    """What a worker does when it takes the next job: pop it and mark it started."""
    job_id = svc.queue.pop_job_id()
    assert job_id is not None
    svc.queue.fetch_job(job_id).set_status(JobStatus.STARTED)  # type: ignore[union-attr]
    return job_id


def test_one_owners_backlog_does_not_starve_anothers_single_job(svc: JobService) -> None:
    alice = submit(svc, "alice", 5)
    bob = submit(svc, "bob", 1)
    assert svc.queue.job_ids == [alice[0], bob[0]]  # one waiting job per owner; the rest pending
    order = [take(svc)]
    svc.gate.pump_all()  # what the API's dispatch loop does every UDIC_FAIR_DISPATCH_INTERVAL_S
    order.append(take(svc))
    assert order == [alice[0], bob[0]]  # bob is second, not sixth
    for _ in range(4):
        svc.gate.pump_all()
        order.append(take(svc))
    assert order[2:] == alice[1:]
    svc.gate.pump_all()
    assert svc.queue.job_ids == [] and svc.store.owners.pending_owners() == []


def test_cancelled_pending_job_is_skipped_and_frees_its_slot(svc: JobService) -> None:
    ids = submit(svc, "alice", 3)
    rec = svc.store.get(ids[1])
    assert rec is not None and svc.snapshot_owned(ids[1], "alice")[1] == "queued"  # pending reads as queued
    svc.cancel_queued(rec)
    take(svc)
    svc.gate.pump_all()
    assert svc.queue.job_ids == [ids[2]]
    assert svc.store.owners.active_count("alice") == 2


def test_unfinished_job_limit_is_429_and_ended_jobs_free_it(svc: JobService) -> None:
    ids = submit(svc, "alice", 5)
    with pytest.raises(ProblemError) as exc:
        svc.admit("alice", "a99")
    assert exc.value.status == 429 and exc.value.kind == "too-many-jobs"
    assert exc.value.headers["Retry-After"] == str(svc.settings.active_jobs_retry_after_s)
    svc.admit("bob", "b00")  # per owner
    svc.store.mark_finished(ids[0])
    svc.admit("alice", "a99")
    # a job that ended without its owner's set being told (a crash) is pruned when the set is full
    svc.store.update(ids[1], state="failed")
    svc.admit("alice", "a98")
    with pytest.raises(ProblemError):
        svc.admit("alice", "a97")


def test_rate_limit_per_key(svc: JobService) -> None:
    settings = svc.settings.model_copy(update={"rate_limit_requests": 3, "rate_limit_window_s": 60})
    limiter = RateLimiter(svc.store, settings)
    for _ in range(3):
        limiter.check("alice")
    with pytest.raises(ProblemError) as exc:
        limiter.check("alice")
    assert exc.value.status == 429 and exc.value.kind == "rate-limited"
    assert 1 <= int(exc.value.headers["Retry-After"]) <= 60
    limiter.check("bob")
    open_settings = settings.model_copy(update={"api_keys": ""})  # no keys: nobody to tell apart
    for _ in range(5):
        RateLimiter(svc.store, open_settings).check("anonymous")


def test_cursor_pages_cover_every_job_once_newest_first(svc: JobService) -> None:
    ids = submit(svc, "alice", 5)
    svc.store.mark_finished(ids[1])
    svc.store.mark_finished(ids[3])
    seen: list[str] = []
    cursor = None
    while True:
        page = list_page(svc, "alice", 2, cursor, None)
        seen += [rec.id for rec, _, _ in page.rows]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ids[::-1]
    finished = list_page(svc, "alice", 10, None, "finished")
    assert [rec.id for rec, _, _ in finished.rows] == [ids[3], ids[1]] and finished.next_cursor is None
    one = list_page(svc, "alice", 1, None, "finished")
    rest = list_page(svc, "alice", 10, one.next_cursor, "finished")
    assert [r.id for r, _, _ in one.rows + rest.rows] == [ids[3], ids[1]]
    assert list_page(svc, "bob", 10, None, None).rows == []


def test_cursor_is_checked(svc: JobService) -> None:
    assert decode_cursor("1795448273.3931522_ab12") == (1795448273.3931522, "ab12")
    with pytest.raises(ProblemError) as exc:
        decode_cursor("not-a-cursor")
    assert exc.value.status == 422


def test_poll_reads_record_cancel_and_rq_state_in_one_round_trip(svc: JobService) -> None:
    ids = submit(svc, "alice", 1)
    calls: list[object] = []
    pool = svc.store.r.connection_pool
    real = pool.get_connection

    def counting(*a: object, **kw: object) -> object:
        calls.append(a)
        return real(*a, **kw)  # type: ignore[arg-type]

    pool.get_connection = counting  # type: ignore[method-assign]
    try:
        rec, state, cancel = svc.snapshot_owned(ids[0], "alice")
    finally:
        pool.get_connection = real  # type: ignore[method-assign]
    assert (rec.id, state, cancel) == (ids[0], "queued", False)
    assert len(calls) == 1
    with pytest.raises(ProblemError) as exc:
        svc.snapshot_owned(ids[0], "bob")
    assert exc.value.status == 404


def test_rate_limit_leases_never_admit_more_than_the_limit_across_processes(svc: JobService) -> None:
    settings = svc.settings.model_copy(update={"rate_limit_requests": 300, "rate_limit_window_s": 3600})
    processes = [RateLimiter(svc.store, settings), RateLimiter(svc.store, settings)]  # two API processes
    assert processes[0].lease == 3
    admitted = 0
    for i in range(400):
        try:
            processes[i % 2].check("alice")
            admitted += 1
        except ProblemError:
            pass
    assert 300 - 2 * (3 - 1) <= admitted <= 300
    hits = int(svc.store.r.get(next(iter(svc.store.r.scan_iter("t:rate:alice:*")))))  # type: ignore[arg-type]
    assert hits <= 300 + 2 * 3  # Redis was asked about once per 3 requests, and not again once full
