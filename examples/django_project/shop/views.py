"""Views of the example shop: every request gets an automatic ``request`` event from the
middleware; ``add_to_basket`` also tracks a structured event with the request subject."""

from __future__ import annotations

import os

from django.contrib.auth import authenticate, login
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from snowplow_threaded import StructuredEvent
from snowplow_threaded.contrib.django import track


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"hello {request.user} from {os.getpid()}\n")


@csrf_exempt  # an example API login, form-encoded username and password
@require_POST
def login_view(request: HttpRequest) -> HttpResponse:
    user = authenticate(request, username=request.POST.get("username"),
                        password=request.POST.get("password"))
    if user is None:
        return HttpResponse("bad credentials\n", status=403)
    login(request, user)
    return HttpResponse(f"logged in as {user.pk}\n")


def item(request: HttpRequest, item_id: int) -> HttpResponse:
    if item_id > 1000:
        raise Http404("no such item")
    return HttpResponse(f"item {item_id}\n")


@csrf_exempt
@require_POST
def add_to_basket(request: HttpRequest) -> HttpResponse:
    eid = track(StructuredEvent("shop", "add-to-basket", label=request.POST.get("sku")),
                request)
    return HttpResponse(f"{eid}\n")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("an error page: the request event has status 500")


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n")
