"""The fault-soak scenarios: sizes, fault schedules and per-scenario checks.

Used by :mod:`stress.soak` (the runner). A :class:`Scenario` names the collector's
fault rules, the tracker process's spec (:mod:`stress.soak_child`), an optional fault
schedule run in the collector's process (``before_go`` / ``drive``), the events expected
to be missing, and a check adding notes and failures to the generic exactly-once verdict
of :func:`stress.soak_ledger.analyse`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from snowplow_threaded.collector import Collector
from stress.soak_ledger import Analysis, Entry
from stress.tls import TlsFront


@dataclass(frozen=True)
class Size:
    """How big each scenario is (``FULL`` or ``CI``)."""

    outage_s: float
    outage_events: int
    outage_rate: float  # events/s: tracking spans about 2/3 of the outage
    overflow_s: float  # outage with a buffer too small for what is tracked meanwhile
    overflow_events: int
    fault_events: int  # 503 / 429 / poison / reset scenarios ...
    fault_rate: float  # ... tracked at this many events/s (so that there are many batches)
    retry_after_times: int
    slow_delay: float
    slow_events: int
    tls_events: int
    tls_refused_wait: float  # flush() timeout while the certificate is refused
    kids: int
    kid_events: int
    fork_parent_events: int
    fork_span: float  # seconds over which the parent tracks during the storm
    flap_threads: int
    flap_events: int
    flap_rate: float  # events/s per thread
    flap_period: float


FULL = Size(
    outage_s=30, outage_events=5000, outage_rate=250,
    overflow_s=5, overflow_events=5000,
    fault_events=2000, fault_rate=250, retry_after_times=2,
    slow_delay=2.0, slow_events=200,
    tls_events=200, tls_refused_wait=3.0,
    kids=50, kid_events=200, fork_parent_events=5000, fork_span=3.0,
    flap_threads=16, flap_events=20_000, flap_rate=500, flap_period=5.0,
)
CI = Size(
    outage_s=2, outage_events=300, outage_rate=300,
    overflow_s=1, overflow_events=3000,
    fault_events=300, fault_rate=300, retry_after_times=1,
    slow_delay=1.0, slow_events=50,
    tls_events=50, tls_refused_wait=1.5,
    kids=10, kid_events=200, fork_parent_events=1000, fork_span=1.5,
    flap_threads=4, flap_events=2000, flap_rate=600, flap_period=1.0,
)


@dataclass
class Run:
    """One scenario in progress: the collector, the child, the timeline."""

    scenario: Scenario
    collector: Collector
    front: TlsFront | None = None
    phases: dict[str, float] = field(default_factory=dict)
    marks: dict[str, Any] = field(default_factory=dict)
    changed: threading.Condition = field(default_factory=threading.Condition)
    result: dict[str, Any] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)

    def wait_phase(self, name: str, timeout: float) -> bool:
        """Block until the child printed *name* (or exited); True if it did."""
        with self.changed:
            return self.changed.wait_for(
                lambda: name in self.phases or "EXIT" in self.phases, timeout
            ) and name in self.phases

    def pause(self, seconds: float, until_phase: str) -> bool:
        """Sleep *seconds* unless the child reaches *until_phase* first (True then)."""
        with self.changed:
            return self.changed.wait_for(
                lambda: until_phase in self.phases or "EXIT" in self.phases, seconds)

    def note_phase(self, name: str) -> None:
        with self.changed:
            self.phases.setdefault(name, time.monotonic())
            self.changed.notify_all()


Hook = Callable[[Run], None]
#: installs the scenario's fault rules on the collector
Faults = Callable[[Collector], object]
# (run, analysis) -> (notes, failures)
Check = Callable[[Run, Analysis], tuple[list[str], list[str]]]


def none_missing(run: Run) -> set[str] | None:
    """The default expectation: no event may be missing."""
    return None


@dataclass
class Scenario:
    """One row of the soak: *faults* for the collector, *child* for the tracker process
    (see :mod:`stress.soak_child`), hooks run in the collector's process (``before_go``
    before the child starts tracking, then ``drive``), and what the verdict allows."""

    key: str
    title: str
    faults: Faults | None
    child: dict[str, Any]
    expect_flush: bool = True
    cut_duplicates_allowed: bool = False
    read_timeout: float | None = None
    tls: str | None = None  # "refused", "session" (session.verify) or "env" (CA bundle)
    before_go: Hook | None = None
    drive: Hook | None = None
    expected_missing: Callable[[Run], set[str] | None] = none_missing
    check: Check | None = None


# -- fault schedules ----------------------------------------------------------------------------
def take_down(run: Run) -> None:
    """Stop taking requests: new ones are reset, in-flight ones answered, then the port is
    closed (so no request the collector took loses its answer to the shutdown)."""
    collector = run.collector
    cutting = collector.faults(reset="before")
    collector.wait_until(lambda: collector.in_flight == 0, timeout=5.0)
    time.sleep(0.05)  # the last answers leave their sockets
    collector.down()
    collector.faults.remove(cutting)


def outage_before(run: Run) -> None:
    run.collector.down()
    run.marks["down_at"] = time.monotonic()


def outage_drive(run: Run, seconds: float) -> None:
    run.wait_phase("TRACKED", seconds + 60)
    run.pause(max(0.0, run.marks["down_at"] + seconds - time.monotonic()), "EXIT")
    run.collector.up()
    run.marks["up_at"] = time.monotonic()


def flap_drive(run: Run, period: float) -> None:
    flaps = 0
    while not run.pause(period, "FLUSHED"):
        if run.collector.listening:
            take_down(run)
            flaps += 1
        else:
            run.collector.up()
    run.collector.up()
    run.marks["flaps"] = flaps


# -- scenario checks ----------------------------------------------------------------------------
def _eids_answered(run: Run, status: int) -> set[str]:
    return {eid for e in run.entries if e.status == status for eid in e.eids}


def check_outage(run: Run, a: Analysis) -> tuple[list[str], list[str]]:
    up = run.marks.get("up_at")
    taken = [e.answered_at for e in run.entries if e.received and e.answered_at]
    down_for = (up or 0.0) - run.marks["down_at"]
    note = f"down {down_for:.1f} s"
    if up and taken:
        note += f"; all delivered {max(taken) - up:.1f} s after it came back"
    return [note], ([] if up else ["the collector was never brought back up"])


def check_503(run: Run, a: Analysis) -> tuple[list[str], list[str]]:
    n = a.outcomes.get("503", 0)
    return ([f"{n} requests answered 503, {run.result['stats']['retried']} events retried"],
            [] if n else ["no request was answered 503"])


def check_429(run: Run, a: Analysis) -> tuple[list[str], list[str]]:
    by_index = {e.index: e for e in run.entries}
    gaps, fails = [], []
    for e in run.entries:
        nxt = by_index.get(e.index + 1)
        if e.status == 429 and e.answered_at is not None and nxt is not None:
            gaps.append(nxt.received_at - e.answered_at)
    if not gaps:
        fails.append("no request followed a 429")
    elif min(gaps) < 2.0 - 0.01:
        fails.append(f"Retry-After: 2 not honoured: next request {min(gaps):.2f} s later")
    text = ", ".join(f"{g:.2f} s" for g in gaps)
    return [f"next request {text} after each 429"], fails


#: the event (its ``se_va``) the collector refuses in the "poison" scenario
POISON_VALUE = "77"


def expected_poison(run: Run) -> set[str]:
    """The poison event alone: refused in every request that carried it."""
    refused = {e.eids[0] for e in run.entries if e.status == 400 and len(e.eids) == 1}
    return refused - {eid for e in run.entries if e.received for eid in e.eids}


def check_poison(run: Run, a: Analysis) -> tuple[list[str], list[str]]:
    bad = expected_poison(run)
    fails = []
    if len(bad) != 1:
        fails.append(f"{len(bad)} event(s) refused alone, expected the poison event only")
    alone = [e for e in run.entries if e.status == 400 and len(e.eids) == 1]
    if len(alone) != 1:
        fails.append(f"the poison event was sent alone {len(alone)} times, expected once")
    if run.result["stats"]["failed"] != len(bad):
        fails.append(f"stats().failed is {run.result['stats']['failed']}, not {len(bad)}")
    refused = sum(1 for e in run.entries if e.status == 400)
    return [f"the poison event was refused alone after {refused - 1} split request(s) "
            "refused too; it alone was dropped, reported to on_failure and stats().failed, "
            "not retried; every other event delivered"], fails


def check_slow(run: Run, a: Analysis) -> tuple[list[str], list[str]]:
    stats = run.result["stats"]
    timeout = run.scenario.read_timeout or 0.0
    delay = run.scenario.child["note_delay"]
    if not run.scenario.cut_duplicates_allowed:
        return [f"read timeout {timeout:g} s > {delay:g} s: each request waited, "
                f"delivered once"], []
    extra = a.copies - a.delivered
    notes = [f"read timeout {timeout:g} s < {delay:g} s: every attempt timed out but was "
             f"taken: {extra} duplicate copies, all {stats['failed']} events given up "
             f"(failed) after max_retries=2"]
    fails = [] if a.duplicate_eids else ["expected duplicates from timed-out requests"]
    return notes, fails


def check_reset(run: Run, a: Analysis) -> tuple[list[str], list[str]]:
    cut = a.outcomes.get("reset-mid-response", 0)
    sample = ", ".join(a.duplicate_eids[:2])
    return [f"{cut} responses cut mid-body; {len(a.duplicate_eids)} events taken twice "
            f"(e.g. {sample}; all in soak.json)"], ([] if cut else ["no response was cut"])


def check_tls(run: Run, a: Analysis) -> tuple[list[str], list[str]]:
    front = run.front
    assert front is not None
    reasons = sorted(set(front.handshake_failures))
    if run.scenario.tls != "refused":
        return [f"{front.handshakes_ok} TLS handshake(s) verified"], []
    fails = []
    samples = " ".join(run.result["warning_samples"])
    if "CERTIFICATE_VERIFY_FAILED" not in samples:
        fails.append("no warning naming the certificate failure was logged")
    if not front.handshake_failures or not run.result["stats"]["retried"]:
        fails.append("expected refused handshakes and retried events")
    return [f"{len(front.handshake_failures)} handshakes refused by the client "
            f"({', '.join(reasons)}), {run.result['stats']['retried']} events retried, "
            f"{run.result['warnings']} warnings logged (CERTIFICATE_VERIFY_FAILED)"], fails


def check_fork(run: Run, a: Analysis) -> tuple[list[str], list[str]]:
    kids = run.result["kids"]
    spec = run.scenario.child
    bad = [k["index"] for k in kids if k["exit_status"] != 0 or k.get("error")]
    fails = [f"{len(bad)} child(ren) failed: {bad[:10]}"] if bad else []
    want = spec["events"] + spec["fork_children"] * spec["child_events"]
    if a.tracked != want:
        fails.append(f"tracked {a.tracked} events, expected {want}")
    kid_rss = max((k.get("children_peak_rss_kb", 0) for k in kids), default=0) / 1024
    return [f"parent {spec['events']} + {len(kids)} children x {spec['child_events']}; "
            f"children peak RSS {kid_rss:.0f} MB"], fails


OVERFLOW_CAPACITY = 1000


def missing_now(run: Run) -> set[str]:
    """The overflow scenarios judge the missing events in :func:`check_overflow`."""
    taken = {eid for e in run.entries if e.received for eid in e.eids}
    return set(run.result["tracked_eids"]) - taken


def check_overflow(run: Run, a: Analysis) -> tuple[list[str], list[str]]:
    stats = run.result["stats"]
    policy = run.scenario.child["emitter"]["when_full"]
    rejected = set(run.result["rejected_eids"])
    reason = "buffer_full" if policy == "drop_newest" else "evicted_oldest"
    fails = []
    if not a.missing:
        fails.append("nothing was dropped: the buffer never overflowed")
    if stats["dropped"].get(reason, 0) != len(a.missing) or stats["failed"]:
        fails.append(f"{len(a.missing)} event(s) missing but stats() says {stats['dropped']} "
                     f"dropped, {stats['failed']} failed")
    if policy == "drop_newest" and rejected != set(a.missing):
        fails.append(f"the missing events are not the {len(rejected)} refused by track(): "
                     f"{len(set(a.missing) ^ rejected)} differ")
    if policy == "drop_oldest" and rejected:
        fails.append(f"drop_oldest refused {len(rejected)} new event(s)")
    how = "refused at admission (by eid)" if policy == "drop_newest" else \
        "evicted (counted, no callback)"
    return [f"{len(a.missing)} events {how}; the rest exactly once"], fails


def check_flap(run: Run, a: Analysis) -> tuple[list[str], list[str]]:
    flaps = run.marks.get("flaps", 0)
    resets = a.outcomes.get("reset", 0)
    return [f"went down {flaps} times ({resets} requests reset while going down)"], (
        [] if flaps else ["the collector never went down"])


# -- the scenarios ------------------------------------------------------------------------------
def scenarios(size: Size) -> list[Scenario]:
    def child(events: int, **extra: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {"threads": 1, "events": events, "rate": None,
                                "fork_children": 0, "child_events": 0, "fork_interval": 0.0,
                                "flush_timeout": 60.0, "close_timeout": 5.0, "emitter": {}}
        spec.update(extra)
        return spec

    n, rate = size.fault_events, size.fault_rate
    slow_delay = size.slow_delay
    return [
        Scenario("outage", f"collector down {size.outage_s:g} s, then back", None,
                 child(size.outage_events, rate=size.outage_rate,
                       flush_timeout=size.outage_s + 60,
                       emitter={"max_retry_delay_seconds": 5.0}),
                 before_go=outage_before,
                 drive=lambda run: outage_drive(run, size.outage_s), check=check_outage),
        *(Scenario(f"overflow-{policy[5:]}", f"collector down {size.overflow_s:g} s, "
                   f"{size.overflow_events} events, buffer {OVERFLOW_CAPACITY}, {policy}",
                   None,
                   child(size.overflow_events,
                         rate=size.overflow_events / (size.overflow_s * 0.6),
                         flush_timeout=size.overflow_s + 60,
                         emitter={"buffer_capacity": OVERFLOW_CAPACITY, "when_full": policy,
                                  "max_retry_delay_seconds": 1.0}),
                   expect_flush=False, before_go=outage_before,
                   drive=lambda run: outage_drive(run, size.overflow_s),
                   expected_missing=missing_now, check=check_overflow)
          for policy in ("drop_newest", "drop_oldest")),
        Scenario("503", "every 3rd request 503", lambda c: c.faults(503, every=3),
                 child(n, rate=rate), check=check_503),
        Scenario("429", f"429 + Retry-After: 2 (x{size.retry_after_times})",
                 lambda c: c.faults(429, retry_after=2, times=size.retry_after_times),
                 child(n, rate=rate),
                 check=check_429),
        Scenario("poison", f"any request carrying event #{POISON_VALUE} answered 400",
                 lambda c: c.faults(400, carrying={"se_va": POISON_VALUE}),
                 child(n, rate=rate), expect_flush=False,
                 expected_missing=expected_poison, check=check_poison),
        Scenario("slow-ok", f"responses slowed to {slow_delay:g} s, read timeout "
                 f"{slow_delay * 2.5:g} s", lambda c: c.faults(delay=slow_delay),
                 child(size.slow_events, note_delay=slow_delay,
                       emitter={"request_timeout": [5, slow_delay * 2.5]}),
                 read_timeout=slow_delay * 2.5, check=check_slow),
        Scenario("slow-timeout", f"responses slowed to {slow_delay:g} s, read timeout "
                 f"{slow_delay / 2:g} s", lambda c: c.faults(delay=slow_delay),
                 child(size.slow_events, note_delay=slow_delay,
                       emitter={"request_timeout": [5, slow_delay / 2], "max_retries": 2}),
                 expect_flush=False, cut_duplicates_allowed=True, read_timeout=slow_delay / 2,
                 check=check_slow),
        Scenario("reset", "every 4th response cut mid-body (RST)",
                 lambda c: c.faults(reset="mid-response", every=4), child(n, rate=rate),
                 cut_duplicates_allowed=True, check=check_reset),
        Scenario("tls-refused", "TLS self-signed, default verification", None,
                 child(size.tls_events, flush_timeout=size.tls_refused_wait, close_timeout=0.5),
                 expect_flush=False, tls="refused",
                 expected_missing=lambda run: set(run.result["tracked_eids"]),
                 check=check_tls),
        Scenario("tls-session", "TLS self-signed, session.verify=<cert>", None,
                 child(size.tls_events), tls="session", check=check_tls),
        Scenario("tls-env", "TLS self-signed, REQUESTS_CA_BUNDLE=<cert>", None,
                 child(size.tls_events), tls="env", check=check_tls),
        Scenario("fork", f"fork storm: {size.kids} children x {size.kid_events} events",
                 None,
                 child(size.fork_parent_events, rate=size.fork_parent_events / size.fork_span,
                       fork_children=size.kids, child_events=size.kid_events,
                       fork_interval=0.02, flush_timeout=60.0),
                 check=check_fork),
        Scenario("flap", f"{size.flap_threads} threads x {size.flap_events} events, "
                 f"collector flapping every {size.flap_period:g} s", None,
                 child(size.flap_events, threads=size.flap_threads, rate=size.flap_rate,
                       flush_timeout=300.0,
                       emitter={"buffer_capacity": size.flap_threads * size.flap_events,
                                "buffer_max_bytes": 1 << 30,  # room for every event
                                "max_retry_delay_seconds": size.flap_period / 2,
                                "thread_count": 2}),
                 drive=lambda run: flap_drive(run, size.flap_period), check=check_flap),
    ]
