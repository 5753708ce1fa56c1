"""A small Flask shop instrumented with ``snowplow_threaded.contrib.flask``.

Run it under Gunicorn (``--preload``: the tracker is built once in the master, before the
workers fork; each worker sends its own events):

    SNOWPLOW_ENDPOINT=http://127.0.0.1:9090 gunicorn --preload -w 2 -k gthread --threads 4 \
        --chdir examples/flask_app -b 127.0.0.1:8000 app:app

Settings come from the environment: ``SNOWPLOW_ENDPOINT`` (the collector),
``SNOWPLOW_REQUEST_EVENTS`` (``request`` by default; ``page_view`` or ``off``),
``SNOWPLOW_TRUSTED_PROXIES`` (proxy hops in front of the app, ``0`` by default),
``SNOWPLOW_SCHEMA_VENDOR`` (the Iglu vendor of the request event).

Every request gets a ``request`` event (method, path, route, status, duration) with the
client's IP, user agent and — after ``GET /login?user=NAME`` — the user id; ``POST
/basket`` also tracks a structured event with the same subject.
"""

from __future__ import annotations

import os

from flask import Flask, abort, redirect, request, session

from snowplow_threaded import StructuredEvent
from snowplow_threaded.contrib.flask import SnowplowFlask
from snowplow_threaded.contrib.schemas import DEFAULT_VENDOR

snowplow = SnowplowFlask()


@snowplow.user_id_loader
def current_user() -> str | None:
    """The user id of the request (``uid``): here, the name stored in the session cookie."""
    user = session.get("user")
    return user if isinstance(user, str) else None


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=os.environ.get("FLASK_SECRET_KEY", "example-only-not-secret"),
        SNOWPLOW_ENDPOINT=os.environ.get("SNOWPLOW_ENDPOINT", "http://127.0.0.1:9090"),
        SNOWPLOW_NAMESPACE="flask-example",
        SNOWPLOW_APP_ID="flask-example",
        SNOWPLOW_REQUEST_EVENTS=os.environ.get("SNOWPLOW_REQUEST_EVENTS", "request"),
        SNOWPLOW_TRUSTED_PROXIES=int(os.environ.get("SNOWPLOW_TRUSTED_PROXIES", "0")),
        SNOWPLOW_SCHEMA_VENDOR=os.environ.get("SNOWPLOW_SCHEMA_VENDOR", DEFAULT_VENDOR),
        SNOWPLOW_EMITTER={
            "batch_size": 10, "shutdown_timeout": 10,
            "flush_interval": float(os.environ.get("SNOWPLOW_FLUSH_INTERVAL", "0.5")),
        },
        SNOWPLOW_IGNORE_PATHS=["/health"],
    )
    snowplow.init_app(app)

    @app.get("/")
    def index() -> str:
        return f"hello {current_user() or 'stranger'} from {os.getpid()}\n"

    @app.get("/login")
    def login() -> object:
        session["user"] = request.args.get("user", "guest")
        return redirect("/")

    @app.get("/logout")
    def logout() -> object:
        session.pop("user", None)
        return redirect("/")

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> str:
        if item_id > 1000:
            abort(404)
        return f"item {item_id}\n"

    @app.post("/basket")
    def add_to_basket() -> str:
        sku = request.form.get("sku", "unknown")
        eid = snowplow.track(StructuredEvent("shop", "add-to-basket", label=sku))
        return f"{eid}\n"

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("an error page: the request event has status 500")

    @app.get("/health")
    def health() -> str:
        return "ok\n"

    return app


app = create_app()
