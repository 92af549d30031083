"""Typed exceptions, mapped from the service's problem+json ``type``."""

from __future__ import annotations

from typing import Any


class UdicError(Exception):
    """Base of every error this SDK raises."""


class TransportError(UdicError):
    """The service could not be reached (after retries)."""


class WaitTimeoutError(UdicError):
    """wait() gave up before the job ended; the job goes on on the server."""


class ApiError(UdicError):
    """An HTTP error answered with a problem document."""

    def __init__(self, status: int, type: str, title: str, detail: str = "", body: dict[str, Any] | None = None):
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")
        self.status, self.type, self.title, self.detail = status, type, title, detail
        self.body = body or {}

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1]


class ValidationError(ApiError):
    pass


class InvalidImageError(ValidationError):
    pass


class ImageTooLargeError(ValidationError):
    pass


class InvalidBitstreamError(ValidationError):
    pass


class UnauthorizedError(ApiError):
    pass


class NotFoundError(ApiError):
    pass


class ConflictError(ApiError):
    pass


class PayloadTooLargeError(ApiError):
    pass


class ServerError(ApiError):
    pass


class JobFailedError(UdicError):
    def __init__(self, job: Any):
        err = job.error
        super().__init__(f"job {job.id} failed: {err.detail if err else 'no reason given'}")
        self.job = job


class JobCancelledError(UdicError):
    def __init__(self, job: Any):
        super().__init__(f"job {job.id} was cancelled")
        self.job = job


_BY_KIND = {
    "invalid-image": InvalidImageError,
    "image-too-large": ImageTooLargeError,
    "not-a-bitstream": InvalidBitstreamError,
    "invalid-bitstream": InvalidBitstreamError,
    "truncated-bitstream": InvalidBitstreamError,
    "checksum-mismatch": InvalidBitstreamError,
    "unsupported-bitstream": InvalidBitstreamError,
    "empty-bitstream": InvalidBitstreamError,
}
_BY_STATUS = {
    401: UnauthorizedError,
    404: NotFoundError,
    409: ConflictError,
    410: NotFoundError,
    413: PayloadTooLargeError,
    422: ValidationError,
}


def error_from_response(status: int, body: Any, text: str = "") -> ApiError:
    if isinstance(body, dict) and "type" in body:
        kind = str(body["type"]).rsplit(":", 1)[-1]
        cls = _BY_KIND.get(kind) or _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
        return cls(status, str(body["type"]), str(body.get("title", "")), str(body.get("detail", "")), body)
    cls = ServerError if status >= 500 else _BY_STATUS.get(status, ApiError)
    return cls(status, "about:blank", f"HTTP {status}", text[:200])
