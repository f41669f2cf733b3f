"""Microsoft Graph's change-notification endpoint: the only URL that needs no sign-in. Graph proves
each notification with the subscription's secret clientState, checked by the service; this view only
answers the validation handshake, refuses what is not a notification collection, and acknowledges
within Graph's 3 seconds (the work is a few rows and a queued Sync)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .services import live_updates

logger = logging.getLogger(__name__)

# Graph batches notifications, but a collection of basic notifications is a few KB.
MAX_BODY_BYTES = 1_000_000


def _receive(request: HttpRequest, handle: Callable[..., Any]) -> HttpResponse:
    token = request.GET.get("validationToken")
    if token is not None:
        # Graph requires the decoded token back, exactly, as plain text (nosniff keeps it text).
        return HttpResponse(token, content_type="text/plain; charset=utf-8")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return HttpResponseBadRequest()
    if declared > MAX_BODY_BYTES:
        return HttpResponseBadRequest()
    body = request.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return HttpResponseBadRequest()
    try:
        handle(payload=json.loads(body))
    except (ValueError, live_updates.MalformedNotification):
        logger.info("Malformed Graph notification refused (%d bytes)", len(body))
        return HttpResponseBadRequest()
    return HttpResponse(status=202)


@csrf_exempt
@require_POST
def notifications(request: HttpRequest) -> HttpResponse:
    return _receive(request, live_updates.handle_notifications)


@csrf_exempt
@require_POST
def lifecycle(request: HttpRequest) -> HttpResponse:
    return _receive(request, live_updates.handle_lifecycle)
