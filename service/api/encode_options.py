"""Region-of-interest form fields of ``POST /v1/jobs`` -> the job payload's ``roi`` text.

Checked against the uploaded image's size before the job is queued, so every refusal (a mask of
the wrong size or type, bad rectangles, NaN or negative weights, a region without an adaptation
preset) is a 422 ``invalid-roi`` problem and no work is spent. A mask travels as its compact block
map (``codec.roi.RoiSpec.from_mask_as_grid``): the job record stays small whatever the upload.
"""

from __future__ import annotations

from codec.roi import RoiError, RoiSpec, check_rects, parse_rects
from service.core.errors import ProblemError
from udic_jobs import EncodePayload


def _refuse(detail: str) -> ProblemError:
    return ProblemError(422, "invalid-roi", "Invalid region of interest", detail)


def with_roi(
    opts: EncodePayload, roi: str | None, rects: str | None, mask: bytes | None, width: int, height: int
) -> EncodePayload:
    """The payload with its region of interest (CPU work for a mask: run it in a thread)."""
    given = [v for v in (roi, rects, mask) if v is not None]
    if not given:
        return opts
    if len(given) > 1:
        raise _refuse("give one of roi=auto, roi_rects or roi_mask")
    if opts.adaptation == "none":
        raise _refuse("a region of interest steers the adaptive encode: give an adaptation preset (e.g. fast)")
    try:
        if roi is not None:
            if roi != "auto":
                raise RoiError("roi takes 'auto' (for rectangles or a mask use roi_rects or roi_mask)")
            spec = RoiSpec("auto")
        elif rects is not None:
            spec = RoiSpec("rects", rects=parse_rects(rects))
            check_rects(spec.rects, width, height)
        else:
            assert mask is not None
            spec = RoiSpec.from_mask_as_grid(mask, width, height)
    except RoiError as exc:
        raise _refuse(str(exc)) from None
    return opts.model_copy(update={"roi": spec.to_json()})
