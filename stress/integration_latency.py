"""Request latency added by the Flask integration, measured under real Gunicorn.

``python -m stress.integration_latency`` starts, side by side in one run, two Gunicorn
servers (gthread) of the same small Flask app — one **without** the integration, one
**with** ``SnowplowFlask`` (a ``request`` event per request, trusted-proxy IP, user agent,
user id from a loader) — and the loopback sink (:mod:`stress.sink`) as the collector. Client
threads send the same requests to both, alternating which goes first, over kept-alive
connections, and the script reports the client-side latency p50/p90/p99/mean of each
and the difference. After the timed requests both servers get SIGTERM, and the sink's
count shows whether every request event was delivered exactly once. It asserts nothing.

Options: ``--requests N`` (per server, default 3000), ``--threads`` (client threads, 4),
``--workers``/``--server-threads`` (Gunicorn, 2 x 4), ``--out DIR`` (``stress/out``).
The app is :func:`create_app`: ``gunicorn 'stress.integration_latency:create_app("on")'``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from stress.crew import Crew

ROOT = Path(__file__).resolve().parent.parent


def create_app(tracking: str = "off") -> Any:
    """The measured app: ``/items/<n>`` renders a little text. ``tracking="on"`` adds the
    Flask integration with request events, sent to ``SNOWPLOW_ENDPOINT``."""
    from flask import Flask, request

    app = Flask(f"latency-{tracking}")
    if tracking == "on":
        from snowplow_threaded.contrib.flask import SnowplowFlask

        app.config.update(SNOWPLOW_ENDPOINT=os.environ["SNOWPLOW_ENDPOINT"],
                          SNOWPLOW_REQUEST_EVENTS="request", SNOWPLOW_TRUSTED_PROXIES=1,
                          SNOWPLOW_APP_ID="latency")
        ext = SnowplowFlask(app)

        @ext.user_id_loader
        def user_id() -> str | None:
            return request.headers.get("X-User")

    @app.get("/items/<int:n>")
    def item(n: int) -> str:
        return "".join(f"item {n} line {i}\n" for i in range(20))

    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def _sink() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-m", "stress.sink", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"sink did not start: {line!r}")
        yield int(line.split()[1])
    finally:
        proc.terminate()
        proc.wait(10)


def _gunicorn(tracking: str, port: int, sink: int, args: argparse.Namespace
              ) -> subprocess.Popen[bytes]:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    argv = [str(gunicorn) if gunicorn.exists() else "gunicorn", "--preload",
            "-w", str(args.workers), "-k", "gthread", "--threads", str(args.server_threads),
            "-b", f"127.0.0.1:{port}", "--log-level", "warning", "--graceful-timeout", "20",
            f"stress.integration_latency:create_app({tracking!r})"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SNOWPLOW_ENDPOINT": f"http://127.0.0.1:{sink}"}
    return subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)


def _wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        with contextlib.suppress(requests.RequestException):
            requests.get(url, timeout=1)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def _drive(bases: dict[str, str], count: int, threads: int) -> dict[str, list[float]]:
    """*count* requests per server from *threads* threads, alternating the order; returns
    latencies in ms per variant."""
    results: dict[str, list[float]] = {name: [] for name in bases}
    lock = threading.Lock()
    names = list(bases)

    def work(index: int) -> None:
        mine: dict[str, list[float]] = {name: [] for name in names}
        sessions = {name: requests.Session() for name in names}
        headers = {"User-Agent": "latency-client/1", "X-Forwarded-For": "203.0.113.7",
                   "X-User": f"user-{index}"}
        for i in range(index, count, threads):
            order = names if i % 2 == 0 else names[::-1]
            for name in order:
                start = time.perf_counter()
                resp = sessions[name].get(f"{bases[name]}/items/{i}", headers=headers,
                                          timeout=30)
                mine[name].append((time.perf_counter() - start) * 1000.0)
                if resp.status_code != 200:
                    raise RuntimeError(f"{name}: HTTP {resp.status_code}")
        for session in sessions.values():
            session.close()
        with lock:
            for name in names:
                results[name].extend(mine[name])

    # a client thread that raises fails the run at once, with its error (see Crew)
    Crew(work, threads, name="client", timeout=600).run()
    return results


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    return {"n": len(ordered), "p50": pct(50), "p90": pct(90), "p99": pct(99),
            "mean": statistics.fmean(ordered)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    warmup = 200
    with _sink() as sink:
        ports = {"without": _free_port(), "with": _free_port()}
        procs = {"without": _gunicorn("off", ports["without"], sink, args),
                 "with": _gunicorn("on", ports["with"], sink, args)}
        try:
            bases = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            for name, base in bases.items():
                _wait_up(f"{base}/items/0", procs[name])
            _drive(bases, warmup, args.threads)
            latencies = _drive(bases, args.requests, args.threads)
        finally:
            codes = {}
            for name, proc in procs.items():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                codes[name] = proc.wait(60)
        stats = requests.get(f"http://127.0.0.1:{sink}/_stats", timeout=5).json()
    tracked = 1 + warmup + args.requests  # the start-up probe, warm-up, timed requests
    return {
        "requests_per_server": args.requests, "client_threads": args.threads,
        "gunicorn": f"gthread -w {args.workers} --threads {args.server_threads} --preload",
        "without": _summary(latencies["without"]), "with": _summary(latencies["with"]),
        "events_expected": tracked, "events_received": stats["events"],
        "events_unique": stats["unique"], "exit_codes": codes,
    }


def report(result: dict[str, Any]) -> str:
    a, b = result["without"], result["with"]
    lines = [
        f"# Flask integration latency ({result['requests_per_server']} requests per server, "
        f"{result['client_threads']} client threads, gunicorn {result['gunicorn']})",
        "",
        "| metric (ms) | without integration | with integration | added |",
        "| --- | --- | --- | --- |",
    ]
    for key in ("p50", "p90", "p99", "mean"):
        lines.append(f"| {key} | {a[key]:.3f} | {b[key]:.3f} | {b[key] - a[key]:+.3f} |")
    lines += ["", f"request events at the sink after SIGTERM: {result['events_received']} "
              f"({result['events_unique']} unique) of {result['events_expected']} expected; "
              f"gunicorn exit codes {result['exit_codes']}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server-threads", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "stress" / "out")
    args = parser.parse_args(argv)
    result = run(args)
    text = report(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "integration_latency.md").write_text(text)
    (args.out / "integration_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
