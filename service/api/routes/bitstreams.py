"""Finished bitstreams: the bytes, the decoded image, and stateless decode of uploaded bytes.

Decodes go through the app's :class:`~service.decoding.Decoder` (lanes of decoder processes by
image size, a memory budget, 503 when saturated, a cache of stored images): it starts and stops
with the app, through this router's lifespan.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool

from service.api.deps import OwnerDep, Resources, ResourcesDep
from service.api.problems import problems
from service.core.errors import ProblemError
from service.decoding import Decoder
from udic_jobs import JobRecord


@asynccontextmanager
async def decoder_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the decoder processes with the app (entered after the app's own lifespan made its
    resources), and stop them with it."""
    dec = Decoder(app.state.resources.settings)
    dec.start()
    app.state.decoder = dec
    try:
        yield
    finally:
        dec.close()


def decoder(request: Request) -> Decoder:
    dec: Decoder = request.app.state.decoder
    return dec


DecoderDep = Annotated[Decoder, Depends(decoder)]
router = APIRouter(tags=["bitstreams"], lifespan=decoder_lifespan)
log = logging.getLogger("udic.api")

STORED = problems(409, 410, s409="the job has not finished", s410="the bitstream was removed (retention)")
PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "the decoded image (PNG)"},
    503: {
        "content": {"application/problem+json": {}},
        "description": "decoder-busy: the image's decode lane is saturated; retry after Retry-After seconds",
    },
}


def _finished_record(res: Resources, job_id: str, owner: str) -> JobRecord:
    rec, state = res.jobs.state(res.jobs.load_owned(job_id, owner))
    if state != "finished":
        raise ProblemError(409, "job-not-finished", "Bitstream not ready", f"the job is {state}", state=state)
    return rec


def _gone() -> ProblemError:
    return ProblemError(410, "bitstream-expired", "Bitstream gone", "the bitstream was removed (retention)")


def _stored_bitstream(res: Resources, rec: JobRecord) -> bytes:
    try:
        return res.storage.get(rec.bitstream_key)
    except KeyError:
        raise _gone() from None


def _finished_bitstream(res: Resources, job_id: str, owner: str) -> bytes:
    return _stored_bitstream(res, _finished_record(res, job_id, owner))


@router.get(
    "/v1/bitstreams/{job_id}",
    responses={200: {"content": {"application/octet-stream": {}}}, **STORED},
    response_class=Response,
    summary="The .udic bitstream of a finished job",
)
def get_bitstream(job_id: str, owner: OwnerDep, res: ResourcesDep) -> Response:
    data = _finished_bitstream(res, job_id, owner)
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{job_id}.udic"'},
    )


@router.get(
    "/v1/bitstreams/{job_id}/image",
    responses={**PNG_RESPONSE, **STORED},
    response_class=Response,
    summary="The decoded image of a finished job (PNG)",
)
async def get_bitstream_image(job_id: str, owner: OwnerDep, res: ResourcesDep, dec: DecoderDep) -> Response:
    rec = await run_in_threadpool(_finished_record, res, job_id, owner)
    # the cached image lives no longer than its bitstream: same expiry, and gone when the file is
    if not await run_in_threadpool(res.storage.exists, rec.bitstream_key):
        dec.cache.discard(job_id)
        raise _gone()
    expires_at = (rec.finished_at or time.time()) + res.settings.retention_s

    async def load() -> bytes:
        return await run_in_threadpool(_stored_bitstream, res, rec)

    png = await dec.stored_png(job_id, expires_at, load)
    max_age = max(0, int(expires_at - time.time()))
    return Response(png, media_type="image/png", headers={"Cache-Control": f"private, max-age={max_age}"})


@router.post(
    "/v1/decode",
    responses=PNG_RESPONSE,
    response_class=Response,
    summary="Decode a .udic bitstream sent as the request body (application/octet-stream)",
    openapi_extra={
        "requestBody": {
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary", "minLength": 1}}},
            "required": True,
        }
    },
)
async def decode(request: Request, owner: OwnerDep, dec: DecoderDep) -> Response:
    ctype = request.headers.get("content-type", "application/octet-stream").split(";")[0].strip().lower()
    if ctype.startswith("multipart/"):
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ProblemError(422, "validation-error", "Invalid request", "multipart decode needs a 'file' part")
        data = await upload.read()
    else:
        data = await request.body()
    return Response((await dec.decode(data)).png, media_type="image/png")
