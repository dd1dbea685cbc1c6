"""Folds each retired connection into aggregates: counts, per-state durations, findings.

Nothing here grows with the number of connections except the optional record list: the
durations go into fixed log-scale histograms and each findings group keeps only its worst
examples.
"""

import heapq
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from pcapstate.machine import Connection, Endpoint
from pcapstate.settings import Settings
from pcapstate.timeline import Timeline
from pcapstate.verdict import (
    ROLES,
    UNTOLD,
    Interval,
    Stuck,
    closer,
    end_kind,
    handshake,
    intervals,
    stuck,
    vantage_side,
)
from pcapstate.vocab import (
    ANOMALIES,
    WIRESHARK_ANALYSIS,
    Censor,
    Closer,
    EndKind,
    Roles,
    State,
    Tier,
)
from pcapstate.zeek import CONN_STATES

#: Histogram resolution: bins per decade of seconds, from 1 microsecond up.
BINS_PER_DECADE = 100
_FLOOR = 1e-6
_EXAMPLES = 10  # worst stuck connections kept per findings group


def duration_bin(seconds: float) -> int:
    """The histogram bin of a duration; -1 holds everything up to a microsecond."""
    if seconds <= _FLOOR:
        return -1
    return int(math.log10(seconds / _FLOOR) * BINS_PER_DECADE)


def bin_value(b: int) -> float:
    """The geometric middle of a bin: what a percentile that falls in it reports."""
    if b < 0:
        return 0.0
    return _FLOOR * 10 ** ((b + 0.5) / BINS_PER_DECADE)


class StateDurations:
    """How long endpoints spent in one state, kept apart by censoring."""

    __slots__ = ("counts", "hist", "max", "min", "max_censored")

    def __init__(self) -> None:
        self.counts: Counter[Censor] = Counter()
        self.hist: dict[Censor, Counter[int]] = {c: Counter() for c in Censor}
        self.max = 0.0
        self.min = math.inf
        self.max_censored = 0.0

    def add(self, duration: float, censor: Censor) -> None:
        self.counts[censor] += 1
        self.hist[censor][duration_bin(duration)] += 1
        if censor is Censor.COMPLETE:
            self.max = max(self.max, duration)
            self.min = min(self.min, duration)
        else:
            self.max_censored = max(self.max_censored, duration)

    def percentile(self, p: float) -> float | None:
        """Nearest-rank percentile of the complete durations, to the histogram's bin."""
        hist = self.hist[Censor.COMPLETE]
        n = self.counts[Censor.COMPLETE]
        if not n:
            return None
        rank = max(1, math.ceil(p / 100 * n))
        seen = 0
        for b in sorted(hist):
            seen += hist[b]
            if seen >= rank:
                return min(max(bin_value(b), self.min), self.max)
        return self.max

    def to_json(self) -> dict[str, Any]:
        c = self.counts
        return {
            "count": sum(c.values()),
            "complete": c[Censor.COMPLETE],
            "right_censored": c[Censor.RIGHT],
            "left_censored": c[Censor.LEFT],
            "both_censored": c[Censor.BOTH],
            "p50": self.percentile(50),
            "p90": self.percentile(90),
            "p99": self.percentile(99),
            "max": self.max if c[Censor.COMPLETE] else None,
            "max_censored": self.max_censored if c.total() - c[Censor.COMPLETE] else None,
            "histogram": {cen.value: {str(b): n for b, n in sorted(h.items())}
                          for cen, h in self.hist.items() if h},
        }


class FindingGroup:
    """Stuck endpoints that share a state, a service (verdict.service_of) and a role."""

    __slots__ = ("state", "service", "role", "count", "oldest", "outcomes", "worst")

    def __init__(self, state: State, service: str, role: str) -> None:
        self.state = state
        self.service = service
        self.role = role
        self.count = 0
        self.oldest = 0.0
        self.outcomes: Counter[str] = Counter()
        self.worst: list[tuple[float, int, Stuck]] = []  # min-heap of the longest

    def add(self, s: Stuck) -> None:
        self.count += 1
        self.oldest = max(self.oldest, s.duration)
        self.outcomes[s.outcome] += 1
        item = (s.duration, -s.conn_id, s)
        if len(self.worst) < _EXAMPLES:
            heapq.heappush(self.worst, item)
        elif item[:2] > self.worst[0][:2]:
            heapq.heapreplace(self.worst, item)

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "service": self.service,
            "role": self.role,
            "count": self.count,
            "still_open": self.outcomes["open"],
            "oldest": self.oldest,
            "outcomes": dict(sorted(self.outcomes.items())),
            "examples": [_stuck_json(s) for _, _, s in sorted(self.worst, reverse=True)],
        }


def _stuck_json(s: Stuck) -> dict[str, Any]:
    d = asdict(s)
    d["state"] = s.state.value
    return d


class Summary:
    """Receives retired connections (`add`) and holds everything the result reports."""

    def __init__(self, settings: Settings,
                 on_record: Callable[[dict[str, Any]], None] | None = None,
                 on_brief: Callable[[list[list[Any]]], None] | None = None,
                 on_zeek: Callable[[list[dict[str, Any]]], None] | None = None) -> None:
        self.settings = settings
        self.on_record = on_record
        self.on_brief = on_brief
        #: receives connections as Zeek sees them (zeek_record), a list at a time
        self.on_zeek = on_zeek
        self.connections = 0
        self.by_end_closer: Counter[tuple[str, str]] = Counter()  # (end kind, closer)
        self.timeline = Timeline()
        self.by_roles: Counter[str] = Counter()
        self.mid_stream = 0
        self.final: dict[str, Counter[str]] = {r: Counter() for r in ROLES}
        self.anomalies: Counter[str] = Counter()
        self.durations: dict[State, StateDurations] = {}
        self.groups: dict[tuple[State, str, str], FindingGroup] = {}
        self.sides = [0] * (UNTOLD + 1)  # handshakes by verdict.vantage_side
        #: Wireshark's analysis flags counted over all segments, when tshark decoded them
        self.wireshark: Counter[str] | None = None
        self.zeek_states: Counter[str] = Counter()  # connections by Zeek's conn_state
        self.round_trip = [math.inf, 0.0]  # shortest and longest measured handshake

    def add(self, conn: Connection, end: float) -> None:
        """Fold in one retired connection (the plain engine)."""
        self.connections += 1
        kind, who = end_kind(conn), closer(conn)
        self.by_end_closer[(kind, who)] += 1
        self.by_roles[conn.roles] += 1
        self.mid_stream += conn.mid_stream
        self.anomalies.update(conn.anomalies)
        client, server = intervals(conn.ep[0], end), intervals(conn.ep[1], end)
        for role, e, ivs in ((ROLES[0], conn.ep[0], client), (ROLES[1], conn.ep[1], server)):
            self.final[role][e.state] += 1
            for iv in ivs:
                self._durations(iv.state).add(iv.duration, iv.censor)
            trans = e.transitions
            for i, (start, state, _) in enumerate(trans):
                if state is not State.CLOSED:
                    self.timeline.add(state, start, trans[i + 1][0] if i + 1 < len(trans)
                                      else None)
        if conn.zeek is not None:
            self.zeek_states.update(str(z["conn_state"]) for z in conn.zeek_ended)
            self.zeek_states[conn.zeek.conn_state()] += 1
        gaps = handshake(conn)
        if gaps is not None:
            side = vantage_side(*gaps)
            self.sides[side] += 1
            if side != UNTOLD:
                self.round_trip = [min(self.round_trip[0], sum(gaps)),
                                   max(self.round_trip[1], sum(gaps))]
        self.add_stuck(conn, end, (client, server))
        if self.on_record is not None:
            self.on_record(connection_record(conn, kind.value, who.value))
        if self.on_zeek is not None and conn.zeek is not None:
            self.on_zeek([zeek_record(conn)])
        if self.on_brief is not None:
            a, b = conn.ep
            self.on_brief([[a.address(), b.address(), conn.first_ts, kind.value, who.value,
                            a.state.value, b.state.value]])

    def add_stuck(self, conn: Connection, end: float,
                  by_endpoint: tuple[list[Interval], list[Interval]] | None = None) -> None:
        """Report the connection's stuck endpoints, if any."""
        for s in stuck(conn, end, self.settings, by_endpoint):
            key = (s.state, s.service, s.role)
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = FindingGroup(*key)
            group.add(s)

    def record(self, conn: Connection) -> None:
        """Pass the connection's record to `on_record`."""
        if self.on_record is not None:
            self.on_record(connection_record(conn, end_kind(conn).value, closer(conn).value))

    def absorb(self, f: dict[str, Any]) -> None:
        """Fold in the aggregates of connections the compiled engine retired
        (fasttable.fold); their stuck endpoints and records come through add_stuck and
        record."""
        states = list(State)
        self.connections += int(f["by_roles"].sum())
        self.mid_stream += int(f["by_roles"][1:].sum())
        for counter, names, values in (
                (self.by_roles, list(Roles), f["by_roles"]),
                (self.anomalies, list(ANOMALIES), f["anomalies"]),
                (self.final[ROLES[0]], states, f["final"][0]),
                (self.final[ROLES[1]], states, f["final"][1])):
            counter.update({name: int(v) for name, v in zip(names, values, strict=True) if v})
        for k, c in zip(*np.nonzero(f["end_closer"]), strict=True):
            self.by_end_closer[(list(EndKind)[k], list(Closer)[c])] += int(f["end_closer"][k, c])
        self.sides = [a + int(b) for a, b in zip(self.sides, f["sides"], strict=True)]
        self.zeek_states.update({name: int(v) for name, v in zip(
            CONN_STATES, f["zeek"], strict=True) if v})
        if self.wireshark is not None:
            self.wireshark.update({name: int(v) for name, v in zip(
                WIRESHARK_ANALYSIS, f["wireshark"], strict=True) if v})
        self.round_trip = [min(self.round_trip[0], float(f["round_trip"][0])),
                           max(self.round_trip[1], float(f["round_trip"][1]))]
        censors = list(Censor)
        for i, state in enumerate(states):
            if not f["counts"][i].any():
                continue
            sd = self._durations(state)
            for j, censor in enumerate(censors):
                sd.counts[censor] += int(f["counts"][i, j])
                bins = np.flatnonzero(f["hist"][i, j])
                sd.hist[censor].update({int(b) - 1: int(f["hist"][i, j, b]) for b in bins})
            sd.max = max(sd.max, float(f["max"][i]))
            sd.min = min(sd.min, float(f["min"][i]))
            sd.max_censored = max(sd.max_censored, float(f["max_censored"][i]))

    def _durations(self, state: State) -> StateDurations:
        sd = self.durations.get(state)
        if sd is None:
            sd = self.durations[state] = StateDurations()
        return sd

    def findings(self) -> list[dict[str, Any]]:
        """Worst first: most stuck endpoints, then the oldest."""
        groups = sorted(self.groups.values(),
                        key=lambda g: (-g.count, -g.oldest, g.state, g.service, g.role))
        return [g.to_json() for g in groups]

    def vantage(self) -> dict[str, Any]:
        """Where the capture was taken, by the handshakes (verdict.vantage_side)."""
        near_client, between, near_server, untold = self.sides
        measured = near_client + between + near_server
        estimate = "unknown"
        for name, n in (("client", near_client), ("between", between),
                        ("server", near_server)):
            if measured and n >= 0.8 * measured:
                estimate = name
        if measured and estimate == "unknown":
            estimate = "mixed"
        return {"estimate": estimate, "handshakes": measured + untold,
                "near_client": near_client, "between": between, "near_server": near_server,
                "too_close_to_tell": untold,
                "round_trip_min": self.round_trip[0] if measured else None,
                "round_trip_max": self.round_trip[1] if measured else None}

    def to_json(self, evicted: list[int] | None = None) -> dict[str, Any]:
        """`evicted`: the table's evictions by tier (vocab.Tier)."""
        evicted = evicted or [0] * len(Tier)
        order = list(State)
        by_end: Counter[str] = Counter()
        by_closer: Counter[str] = Counter()
        crossed: dict[str, dict[str, int]] = {}
        for (kind, who), n in sorted(self.by_end_closer.items()):
            by_end[kind] += n
            by_closer[who] += n
            crossed.setdefault(kind, {})[who] = n
        return {
            "connections": {
                "total": self.connections,
                "by_end": _ranked(by_end),
                "by_closer": _ranked(by_closer),
                "by_end_and_closer": {kind: crossed[kind] for kind in _ranked(by_end)},
                "roles_from": _ranked(self.by_roles),
                "mid_stream": self.mid_stream,
                "evicted": {"total": sum(evicted), **{
                    t.name.lower(): n for t, n in zip(Tier, evicted, strict=True)}},
                "final_states": {r: _ranked(c) for r, c in self.final.items()},
                "anomalies": dict(sorted(self.anomalies.items())),
                "zeek_conn_states": _ranked(self.zeek_states),
                **({} if self.wireshark is None else
                   {"wireshark_analysis": dict(sorted(self.wireshark.items()))}),
            },
            "findings": self.findings(),
            "vantage": self.vantage(),
            "durations": {st.value: self.durations[st].to_json()
                          for st in sorted(self.durations, key=order.index)},
        }


def _ranked(counts: Counter[str]) -> dict[str, int]:
    """Largest first, ties by name: the same order whatever order the counts came in."""
    return dict(sorted(((k, v) for k, v in counts.items() if v), key=lambda kv: (-kv[1], kv[0])))


#: A connection in brief (what `on_brief` receives, a list of these lists at a time): what
#: names it and how it ended, for the corpus check, without building the whole record.
BRIEF_FIELDS = ("client", "server", "first_ts", "end", "closer", "client_state",
                "server_state")


def connection_record(conn: Connection, kind: str, who: str) -> dict[str, Any]:
    """One connection, as written to the JSON result and the JSON Lines stream."""
    client, server = conn.ep
    return {
        "id": conn.id,
        "client": client.address(),
        "server": server.address(),
        "roles_from": conn.roles,
        "mid_stream": conn.mid_stream,
        "first_ts": conn.first_ts,
        "last_ts": conn.last_ts,
        "end": kind,
        "closer": who,
        "reset_by": None if conn.reset_by is None else ROLES[conn.reset_by],
        "endpoints": {"client": _endpoint_json(client), "server": _endpoint_json(server)},
        "anomalies": dict(sorted(conn.anomalies.items())),
        "evicted": conn.evicted,
        **({} if conn.wireshark is None else {"wireshark_analysis": conn.wireshark}),
        **_zeek_json(conn),
    }


def zeek_record(conn: Connection) -> dict[str, Any]:
    """What a Zeek conn.log needs of a connection (zeeklog.entries): its endpoints, `zeek`
    and `zeek_later` as in its record."""
    return {"client": conn.ep[0].address(), "server": conn.ep[1].address(), **_zeek_json(conn)}


def _zeek_json(conn: Connection) -> dict[str, Any]:
    """`zeek`: the connection Zeek saw begin with this one; `zeek_later`, only when Zeek
    ended it and began others on the 4-tuple while this one went on: those."""
    if conn.zeek is None:
        return {}
    first, *later = [*conn.zeek_ended, conn.zeek.fields()]
    return {"zeek": first, **({"zeek_later": later} if later else {})}


def _endpoint_json(e: Endpoint) -> dict[str, Any]:
    return {
        "final_state": e.state,  # a StrEnum: a str, written as its value
        "packets": e.packets,
        "payload_bytes": e.payload,
        "syn": e.syns,
        "fin": e.fins,
        "rst": e.rsts,
        "transitions": [{"ts": ts, "state": st, "timer": True} if timer
                        else {"ts": ts, "state": st} for ts, st, timer in e.transitions],
    }
