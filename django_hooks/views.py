"""The token view: a fresh token for the session's user, so long-open pages keep working.

bridge.js calls it when the daemon refuses its token (close code 4001). It
answers only same-origin requests with the session cookie (a GET that
returns a secret, so no CORS headers, and JSON that cannot be read cross-site).
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import conf, cookies, tokens, watch


@never_cache
@require_GET
def token(request: HttpRequest) -> JsonResponse:
    """`?channel=a&channel=orders.Order` → {"token", "channels", "expires_in"}; model labels
    name their channels; 400 for a label that is not watched, 403 when nothing is granted."""
    requested = request.GET.getlist("channel") or tokens.cookie_channels()
    try:
        requested = [conf.channel_for(name).partition(":")[0] for name in requested]
    except watch.WatchError as exc:
        return JsonResponse({"error": "bad_channel", "message": str(exc)}, status=400)
    value, granted = tokens.for_user(request.user, dict.fromkeys(requested))
    if value is None:
        return JsonResponse({"error": "forbidden", "channels": []}, status=403)
    response = JsonResponse(
        {"token": value, "channels": granted, "expires_in": int(conf.token_max_age())}
    )
    if conf.get("COOKIE"):
        cookies.refresh(request, response)
    return response
