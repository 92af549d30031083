"""Finished bitstreams: the bytes, the decoded image, and stateless decode of uploaded bytes."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from service.api.deps import OwnerDep, Resources, ResourcesDep
from service.core.errors import ProblemError
from service.decoding import decode_to_png
from service.metrics_registry import DECODE_SECONDS

router = APIRouter(tags=["bitstreams"])
log = logging.getLogger("udic.api")

PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "the decoded image (PNG)"}
}


def _finished_bitstream(res: Resources, job_id: str, owner: str) -> bytes:
    rec, state = res.jobs.state(res.jobs.load_owned(job_id, owner))
    if state != "finished":
        raise ProblemError(409, "job-not-finished", "Bitstream not ready", f"the job is {state}", state=state)
    try:
        return res.storage.get(rec.bitstream_key)
    except KeyError:
        raise ProblemError(
            410, "bitstream-expired", "Bitstream gone", "the bitstream was removed (retention)"
        ) from None


@router.get(
    "/v1/bitstreams/{job_id}",
    responses={200: {"content": {"application/octet-stream": {}}}},
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


async def _png(data: bytes) -> Response:
    t = time.perf_counter()
    png, seconds = await run_in_threadpool(decode_to_png, data)
    DECODE_SECONDS.observe(seconds)
    log.info(
        "decoded",
        extra={"bytes": len(data), "decode_s": round(seconds, 4), "total_s": round(time.perf_counter() - t, 4)},
    )
    return Response(png, media_type="image/png")


@router.get(
    "/v1/bitstreams/{job_id}/image",
    responses=PNG_RESPONSE,
    response_class=Response,
    summary="The decoded image of a finished job (PNG)",
)
async def get_bitstream_image(job_id: str, owner: OwnerDep, res: ResourcesDep) -> Response:
    data = await run_in_threadpool(_finished_bitstream, res, job_id, owner)
    return await _png(data)


@router.post(
    "/v1/decode",
    responses=PNG_RESPONSE,
    response_class=Response,
    summary="Decode a .udic bitstream sent as the request body (application/octet-stream)",
    openapi_extra={
        "requestBody": {
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            "required": True,
        }
    },
)
async def decode(request: Request, owner: OwnerDep) -> Response:
    ctype = request.headers.get("content-type", "application/octet-stream").split(";")[0].strip().lower()
    if ctype.startswith("multipart/"):
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ProblemError(422, "validation-error", "Invalid request", "multipart decode needs a 'file' part")
        data = await upload.read()
    else:
        data = await request.body()
    return await _png(data)
