"""Command line: ``python -m snowplow_threaded {collector,demo,spool}``.

* ``collector``: run the embedded collector (Snowplow Micro's API) until SIGINT/SIGTERM.
* ``demo``: a forked, threaded tracking run against the embedded collector, with an outage
  in the middle; exit status 0 only if every event arrived exactly once.
* ``spool``: what a ``DiskEventStore`` directory holds; with ``--endpoint``, send what
  processes that are gone left there.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

__all__ = ["main"]


def _collector_args(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("collector", help="run the embedded collector (Snowplow Micro's API)",
                       description="Run the embedded collector until SIGINT/SIGTERM.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=9090, help="port (9090; 0 picks a free one)")
    p.add_argument("--schemas", action="append", default=[], metavar="DIR",
                   help="directory of your Iglu schemas (VENDOR/NAME/jsonschema/VERSION); "
                        "repeatable")
    p.add_argument("--iglu", action="append", default=[], metavar="URL",
                   help="a static Iglu registry (http:// or https://, the root above "
                        "/schemas) asked for schemas neither bundled nor in --schemas; "
                        "repeatable")
    p.add_argument("--iglu-timeout", type=float, default=2.0, metavar="SECONDS",
                   help="seconds one schema lookup may spend asking the registries (2)")
    p.add_argument("--max-events", type=int, default=100_000,
                   help="good events kept, and bad events kept (oldest evicted; 100000)")
    p.add_argument("--max-memory-mb", type=int, default=512,
                   help="about the most memory good events, and bad events, take (512)")
    p.add_argument("--max-body-bytes", type=int, default=10 * 1024 * 1024,
                   help="larger request bodies get 413 (10 MiB)")
    p.add_argument("--read-timeout", type=float, default=10.0,
                   help="seconds a request may stall before 408 (10)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a host name the Micro API (/micro/...) also answers under, for "
                        "remote use (IP addresses and localhost always work; '*': any); "
                        "repeatable")
    p.add_argument("--fault", action="append", default=[], metavar="RULE",
                   help="misbehave on purpose, e.g. 'status=503,times=3', 'status=429,"
                        "retry-after=2,every=5', 'delay=1.5', 'reset=before', "
                        "'reset=mid-response', 'close=after-head' (keys: status, "
                        "retry-after, delay, reset, close, body, times, every, after); "
                        "repeatable, the first rule due applies")
    p.add_argument("--quiet", action="store_true", help="do not log bad events")


def run_collector(args: argparse.Namespace) -> int:
    from .collector import Collector, Limits
    from .collector.faults import parse_fault

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log = logging.getLogger("snowplow_threaded.collector")
    log.addHandler(handler)
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    limits = Limits(max_body_bytes=args.max_body_bytes, read_timeout=args.read_timeout)
    try:
        collector = Collector(args.host, args.port, schemas=args.schemas, iglu=args.iglu,
                              iglu_timeout=args.iglu_timeout,
                              max_events=args.max_events,
                              max_bytes=args.max_memory_mb * 1024 * 1024, limits=limits,
                              allowed_hosts=args.allow_host)
        for spec in args.fault:
            collector.faults(**parse_fault(spec))  # type: ignore[arg-type]
    except (FileNotFoundError, ValueError) as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        collector.start()
    except OSError as exc:
        sys.stderr.write(f"cannot listen on {args.host}:{args.port}: {exc}\n")
        return 2
    schemas = len(collector.resolver.known())
    registries = "".join(f", then {r.url}" for r in collector.resolver.registries)
    sys.stdout.write(f"collector listening on {collector.endpoint} ({schemas} schemas known"
                     f"{registries}); Micro API: /micro/all, /micro/good, /micro/bad, "
                     f"/micro/events, /micro/reset; Ctrl-C to stop\n")
    for rule in collector.faults.rules:
        sys.stdout.write(f"fault rule: {rule}\n")
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    collector.stop()
    summary = collector.summary()
    sys.stdout.write(f"stopped: {summary.received_good} good, {summary.received_bad} bad "
                     f"events received\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m snowplow_threaded",
                                     description="snowplow_threaded tools")
    sub = parser.add_subparsers(dest="command", required=True)
    _collector_args(sub)
    from .demo import add_arguments

    add_arguments(sub.add_parser(
        "demo", help="forked, threaded tracking with a collector outage; checks delivery",
        description="Track from forked worker processes and threads to the embedded "
                    "collector, take the collector down for a while, and check that every "
                    "event arrived exactly once (exit status 0 if so)."))
    from .disk import cli as spool

    spool.add_arguments(sub.add_parser(
        "spool", help="show what a DiskEventStore directory holds; --endpoint sends it",
        description="Show the events waiting in a DiskEventStore directory (read-only), "
                    "or, with --endpoint, adopt and send what processes that are gone "
                    "left there (exit status 0 if all of it was delivered)."))
    args = parser.parse_args(argv)
    if args.command == "collector":
        return run_collector(args)
    if args.command == "spool":
        return spool.run(args)
    from .demo import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
