"""udic-client: the Python SDK of the udic service.

from udic_client import Client
c = Client("http://127.0.0.1:8000")
result = c.compress("photo.png", quality=3)        # waits, shows progress
print(result.metrics.bpp, result.metrics.psnr)
png = c.decode(result.bitstream)                  # PNG bytes (format="pil": a PIL image, [pil] extra)
"""

from udic_client.aio import AsyncClient
from udic_client.client import Client
from udic_client.errors import (
    ApiError,
    ConflictError,
    ImageTooLargeError,
    InvalidBitstreamError,
    InvalidImageError,
    JobCancelledError,
    JobFailedError,
    NotFoundError,
    PayloadTooLargeError,
    ServerError,
    TransportError,
    UdicError,
    UnauthorizedError,
    ValidationError,
    WaitTimeoutError,
)
from udic_client.models import CompressResult, Job, JobMetrics, JobProgress, TargetReached
from udic_client.webhooks import WebhookVerificationError, verify_webhook

__version__ = "0.1.0"
__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "CompressResult",
    "ConflictError",
    "ImageTooLargeError",
    "InvalidBitstreamError",
    "InvalidImageError",
    "Job",
    "JobCancelledError",
    "JobFailedError",
    "JobMetrics",
    "JobProgress",
    "NotFoundError",
    "PayloadTooLargeError",
    "ServerError",
    "TargetReached",
    "TransportError",
    "UdicError",
    "UnauthorizedError",
    "ValidationError",
    "WaitTimeoutError",
    "WebhookVerificationError",
    "verify_webhook",
]
