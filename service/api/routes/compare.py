"""The honest comparison: the same image coded by a conventional codec at our file's byte size.

``POST /v1/compare`` takes the image and a byte budget and answers one codec's file (JPEG, WebP or
AVIF), its quality found by bisection, with its PSNR and its decoded pixels as a PNG. One codec a
request, so the page shows each as soon as it is ready and no request runs for minutes. The
search is CPU work in the API process: one comparison runs at a time (others wait up to
UDIC_COMPARE_WAIT_S, then 503), and images over UDIC_COMPARE_MAX_PIXELS are refused.
"""

from __future__ import annotations

import base64
import io
import logging
import threading
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool
from PIL import Image
from pydantic import BaseModel, Field

from codec.evaluation.same_size import SAME_SIZE_CODECS, SameSizeResult, code_at_size, finite
from service.api.deps import OwnerDep, ResourcesDep
from service.api.problems import problems
from service.api.uploads import load_upload
from service.core.config import Settings
from service.core.errors import ProblemError
from service.decoding import PNG_LEVEL

router = APIRouter(prefix="/v1/compare", tags=["compare"])
log = logging.getLogger("udic.api")
_slot = threading.Semaphore(1)  # acquired in the worker thread: no event loop involved

CompareCodec = Literal["jpeg420", "webp", "avif444"]


class CompareResult(BaseModel):
    codec: CompareCodec
    label: str = Field(description="the codec's name for people: JPEG, WebP, AVIF")
    setting: int = Field(description="the quality the search found")
    settings_text: str = Field(description="the exact settings, as in udic eval's CSV")
    bytes: int
    bpp: float
    psnr: float | None = Field(description="dB on 8-bit RGB; null when lossless")
    ms_ssim: float | None = Field(None, description="null for images under 161 px on a side")
    fits: bool = Field(description="false when even the lowest quality is larger than the target")
    target_bytes: int
    width: int
    height: int
    search_seconds: float
    encodes: int = Field(description="files the bisection made")
    image: str = Field(description="the decoded pixels, a data: URL of a PNG")


def _png_data_url(result: SameSizeResult) -> str:
    buf = io.BytesIO()
    Image.fromarray(result.decoded).save(buf, format="PNG", compress_level=PNG_LEVEL)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _compare(data: bytes, codec: CompareCodec, target_bytes: int, max_pixels: int, compare_max: int) -> CompareResult:
    """Load, check and code the image (CPU work: run it in a thread)."""
    img = load_upload(data, max_pixels)
    if img.width * img.height > compare_max:
        raise ProblemError(
            422,
            "image-too-large",
            "Image too large to compare",
            f"the comparison takes images up to {compare_max} pixels; this one is {img.width}x{img.height}",
        )
    r = code_at_size(codec, img.rgb, target_bytes)
    return CompareResult(
        codec=codec,
        label=r.label,
        setting=r.setting,
        settings_text=r.settings_text,
        bytes=r.bytes,
        bpp=r.bpp,
        psnr=finite(r.psnr),
        ms_ssim=finite(r.ms_ssim),
        fits=r.fits,
        target_bytes=target_bytes,
        width=img.width,
        height=img.height,
        search_seconds=r.search_s,
        encodes=r.encodes,
        image=_png_data_url(r),
    )


def _one_at_a_time(data: bytes, codec: CompareCodec, target_bytes: int, settings: Settings) -> CompareResult:
    """The comparison, once the one slot is free (503 after UDIC_COMPARE_WAIT_S)."""
    if not _slot.acquire(timeout=settings.compare_wait_s):
        raise ProblemError(
            503,
            "comparison-busy",
            "Comparison busy",
            "another comparison is running; try again shortly",
            headers={"Retry-After": "10"},
        )
    try:
        return _compare(data, codec, target_bytes, settings.max_pixels, settings.compare_max_pixels)
    finally:
        _slot.release()


@router.post(
    "",
    response_model=CompareResult,
    summary="Code an image with JPEG, WebP or AVIF at (at most) a byte size, quality found by bisection",
    responses=problems(503, s503="comparison-busy: another comparison is running; retry after Retry-After seconds"),
)
async def compare(
    file: Annotated[UploadFile, File(description="the image")],
    target_bytes: Annotated[int, Form(gt=0, le=1_000_000_000, description="the byte budget (our file's size)")],
    codec: Annotated[CompareCodec, Form(description=f"one of {', '.join(SAME_SIZE_CODECS)}")],
    owner: OwnerDep,
    res: ResourcesDep,
) -> CompareResult:
    data = await file.read()
    out = await run_in_threadpool(_one_at_a_time, data, codec, target_bytes, res.settings)
    log.info(
        "comparison",
        extra={
            "owner": owner,
            "codec": codec,
            "target_bytes": target_bytes,
            "bytes": out.bytes,
            "s": out.search_seconds,
        },
    )
    return out
