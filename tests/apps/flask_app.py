"""A Flask app that builds its tracker at import time, as real applications do.

Under ``gunicorn --preload`` (or a uWSGI master without ``--lazy-apps``) this module is
imported once in the master and the workers are forked from it; without preloading each
worker imports it. The import-time event must reach the collector exactly once per import;
each request tracks one event. Endpoint from ``SNOWPLOW_TEST_ENDPOINT``.
"""

from __future__ import annotations

import os
import signal

from flask import Flask, request

from snowplow_threaded import Snowplow, StructuredEvent, Subject
from snowplow_threaded.emitter_configuration import EmitterConfiguration

tracker = Snowplow.create_tracker(
    namespace="flask-app",
    endpoint=os.environ["SNOWPLOW_TEST_ENDPOINT"],
    app_id="test-app",
    subject=Subject().set_platform("srv"),
    emitter_config=EmitterConfiguration(batch_size=10, flush_interval=0.5, shutdown_timeout=10),
)
tracker.track(StructuredEvent("app", "import", property_=str(os.getpid())))

app = Flask(__name__)


@app.route("/track")
def track() -> str:
    n = request.args.get("n", "")
    tracker.track(StructuredEvent("app", "request", label=n, property_=str(os.getpid())))
    return f"ok {os.getpid()}\n"


@app.route("/ping")
def ping() -> str:
    """Readiness probe: tracks nothing (a probe may be retried after a client timeout)."""
    return "pong\n"


@app.route("/hold-sighup")
def hold_sighup() -> str:
    """Block (?block=1) or unblock (?block=0) SIGHUP on the thread serving this request (a
    uWSGI worker's main thread without --enable-threads), for tests/test_uwsgi.py."""
    how = signal.SIG_BLOCK if request.args.get("block") == "1" else signal.SIG_UNBLOCK
    signal.pthread_sigmask(how, {signal.SIGHUP})
    return f"ok {os.getpid()}\n"


application = app  # uWSGI's default callable name
