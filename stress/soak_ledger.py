"""The exactly-once verdict of the fault soak, from the collector's record of requests.

:func:`entries` turns the embedded collector's record of tracker requests
(:meth:`snowplow_threaded.collector.Collector.requests`) into one :class:`Entry` per
request: only what the verdict needs (the eids in the body, what was answered, how the
request ended).

Which copies of an event "reached" the collector (:meth:`Entry.received`): those in
requests it took (answered 2xx, or 2xx announced by an answer cut on purpose: the
collector had taken the events, the client cannot know). A copy is *cut* (the client never
saw the acknowledgement) when the answer was cut, or when it was answered after the
client's read timeout. :func:`analyse` allows a duplicate only when every copy but one
was cut.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from snowplow_threaded.collector import Collector

_SAMPLE = 5  # eids quoted in a message (all of them go to soak.json)
#: stats().dropped reasons whose events are not passed to any callback
COUNT_ONLY_DROPS = ("shutdown_timeout", "evicted_oldest")


_CUT = ("reset-mid-response", "close-after-head")


@dataclass(slots=True)
class Entry:
    """One tracker request as the collector saw it."""

    index: int
    eids: tuple[str, ...]
    status: int | None  # what was answered (or announced by a cut answer)
    outcome: str  # "answered", "reset", "reset-mid-response", "aborted", ...
    received: bool  # the collector took the events
    received_at: float
    answered_at: float | None

    def cut(self, read_timeout: float | None) -> bool:
        """The collector took the events but the client never saw its 2xx."""
        if not self.received:
            return False
        if self.outcome in _CUT:
            return True
        return (read_timeout is not None and self.answered_at is not None
                and self.answered_at - self.received_at >= read_timeout)

    @property
    def label(self) -> str:
        """The status answered, or how the answer was broken."""
        return str(self.status) if self.outcome == "answered" else self.outcome


def entries(collector: Collector) -> list[Entry]:
    """Every tracker request the collector recorded, by index (requests still unanswered
    count as not taken)."""
    return [Entry(r.index, tuple(str(e.get("eid")) for e in r.events), r.status,
                  r.outcome, r.accepted, r.received_at, r.answered_at)
            for r in collector.requests()]


@dataclass
class Analysis:
    """What happened to the events of one scenario, and what is wrong with it."""

    tracked: int = 0
    delivered: int = 0  # distinct eids the collector took
    copies: int = 0  # events the collector took, duplicates included
    duplicate_eids: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)


def _quote(eids: list[str] | set[str]) -> str:
    ordered = sorted(eids)
    more = f" and {len(ordered) - _SAMPLE} more" if len(ordered) > _SAMPLE else ""
    return ", ".join(ordered[:_SAMPLE]) + more


def merge_kids(result: dict[str, Any]) -> dict[str, Any]:
    """The parent's result with every forked child's eids, callbacks and stats added."""
    merged = dict(result)
    stats = dict(result["stats"])
    dropped: Counter[str] = Counter(stats["dropped"])
    for kid in result.get("kids", []):
        for key in ("tracked_eids", "rejected_eids", "failure_eids"):
            merged[key] = merged[key] + kid.get(key, [])
        for key in ("sent", "failed", "retried", "requests", "queued", "tracked"):
            stats[key] += kid.get("stats", {}).get(key, 0)
        dropped.update(kid.get("stats", {}).get("dropped", {}))
        merged["max_track_us"] = max(merged["max_track_us"], kid.get("max_track_us", 0.0))
    stats["dropped"] = dict(dropped)
    merged["stats"] = stats
    return merged


def analyse(entries: list[Entry], result: dict[str, Any], *,
            expected_missing: set[str] | None, cut_duplicates_allowed: bool,
            read_timeout: float | None, ordered: bool) -> Analysis:
    """Compare what was tracked (*result*, from :mod:`stress.soak_child`, kids merged)
    with what the collector took (*entries*). *expected_missing*: the eids that must not
    arrive (``None``: none may be missing). *ordered* (one tracking thread, one sender):
    events must first reach the collector in the order they were tracked."""
    out = Analysis()
    tracked_list: list[str] = result["tracked_eids"]
    tracked = set(tracked_list)
    out.tracked = len(tracked_list)
    fails = out.failures
    if len(tracked) != len(tracked_list):
        twice = [eid for eid, n in Counter(tracked_list).items() if n > 1]
        fails.append(f"track() returned the same eid more than once: {_quote(twice)}")

    copies: dict[str, list[Entry]] = {}
    for entry in entries:
        out.outcomes[entry.label] += 1
        if entry.received:
            for eid in entry.eids:
                copies.setdefault(eid, []).append(entry)
    out.copies = sum(len(c) for c in copies.values())
    out.delivered = len(copies)
    unknown = set(copies) - tracked
    if unknown:
        fails.append(f"the collector took {len(unknown)} event(s) that were never tracked: "
                     f"{_quote(unknown)}")

    missing = tracked - set(copies)
    out.missing = sorted(missing)
    expected = expected_missing or set()
    lost = missing - expected
    if lost:
        fails.append(f"LOST: {len(lost)} event(s) never reached the collector: {_quote(lost)}")
    unexpected = expected - missing
    if unexpected:
        fails.append(f"{len(unexpected)} event(s) expected to be missing were delivered: "
                     f"{_quote(unexpected)}")
    # a missing event must be reported: by eid (on_failure, refused by track()), or at
    # least counted among the drops that have no callback (discarded at close, evicted)
    stats = result["stats"]
    by_eid = set(result["failure_eids"]) | set(result["rejected_eids"])
    counted = sum(stats["dropped"].get(r, 0) for r in COUNT_ONLY_DROPS)
    unnamed = missing - by_eid
    if len(unnamed) > counted:
        fails.append(f"LOST SILENTLY: {len(unnamed)} missing event(s) were never passed to "
                     f"on_failure nor refused at admission, and stats() counts only "
                     f"{counted} dropped without a callback: {_quote(unnamed)}")
    if len(missing) > stats["failed"] + sum(stats["dropped"].values()):
        fails.append(f"{len(missing)} event(s) missing but stats() counts only "
                     f"{stats['failed']} failed + {stats['dropped']} dropped")

    duplicated = {eid: c for eid, c in copies.items() if len(c) > 1}
    out.duplicate_eids = sorted(duplicated)
    unexplained = {eid for eid, c in duplicated.items()
                   if sum(entry.cut(read_timeout) for entry in c) < len(c) - 1}
    if unexplained:
        fails.append(f"SENT TWICE: {len(unexplained)} event(s) reached the collector more "
                     f"than once although it had acknowledged them: {_quote(unexplained)}")
    if duplicated and not cut_duplicates_allowed:
        fails.append(f"DUPLICATES: {len(duplicated)} event(s) reached the collector more "
                     f"than once: {_quote(set(duplicated))}")
    unseen = set(duplicated) - set(result["failure_eids"])
    if unseen:
        fails.append(f"{len(unseen)} duplicated event(s) never went through on_failure: "
                     f"{_quote(unseen)}")

    if ordered:
        position = {eid: i for i, eid in enumerate(tracked_list)}
        last, late = -1, []
        seen: set[str] = set()
        for entry in entries:
            if not entry.received:
                continue
            for eid in entry.eids:
                if eid in seen or eid not in position:
                    continue
                seen.add(eid)
                if position[eid] < last:
                    late.append(eid)
                last = max(last, position[eid])
        if late:
            fails.append(f"REORDERED: {len(late)} event(s) reached the collector after "
                         f"events tracked later: {_quote(late)}")

    acknowledged = sum(len(e.eids) for e in entries if e.received and not e.cut(read_timeout))
    if stats["sent"] != acknowledged:
        fails.append(f"stats().sent is {stats['sent']} but the collector acknowledged "
                     f"{acknowledged} event(s)")
    if stats["tracked"] + len(result["rejected_eids"]) != len(tracked_list):
        fails.append(f"stats().tracked is {stats['tracked']}, {len(result['rejected_eids'])} "
                     f"refused, but track() was called {len(tracked_list)} times")
    if stats["queued"]:
        fails.append(f"stats().queued is {stats['queued']} after close()")
    return out
