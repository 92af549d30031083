"""The key a caller's webhook events are signed with (see :mod:`service.webhooks`)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from service.api.deps import OwnerDep, ResourcesDep
from service.api.problems import problems
from service.core.errors import ProblemError
from service.webhooks import owner_secret

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


class WebhookSecret(BaseModel):
    secret: str = Field(description="HMAC-SHA256 key of X-Udic-Signature on this API key's events")
    header: str = "X-Udic-Signature"
    signed: str = Field("<t>.<body>", description="what the HMAC covers: the header's t, a dot, the raw body")


@router.get(
    "/secret",
    response_model=WebhookSecret,
    summary="Your webhook signing secret",
    responses=problems(404, s404="webhooks are off on this server (no UDIC_WEBHOOK_SECRET)"),
)
def webhook_secret(owner: OwnerDep, res: ResourcesDep) -> WebhookSecret:
    if not res.settings.webhook_secret:
        raise ProblemError(404, "webhooks-disabled", "Webhooks are off", "this server has no UDIC_WEBHOOK_SECRET")
    return WebhookSecret(secret=owner_secret(res.settings, owner))
