"""Diagnoses: the causes of incidents, each named, with the packets that show it
(docs/diagnoses.md is the catalogue).

A diagnosis concerns a service (verdict.service_of) and a side, counts the connections
that show it, says when (first and last), in one sentence, with a few example connections
and the packet times that prove it, what it usually means and what to check on the host,
and whether it was seen directly or inferred (and from what).

The rules (derive/rules.py) read the packed records of retired connections (track/slots.py;
the fields after `ws` are kept for them) in compiled code, a batch at a time: only the
connections a rule picks are looked at one by one here, and the facts of the rest counted
with numpy per service, many batches at once. close_wait_leak is the stuck-CLOSE_WAIT finding
(derive/summary.py), said as a diagnosis.
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pcapstate import jit
from pcapstate.derive import rules
from pcapstate.derive.lifecycle import BULK, Lifecycle
from pcapstate.derive.lifecycle import verdict as lifecycle_verdict
from pcapstate.derive.records import ROLES, address
from pcapstate.derive.rules import groups, service_keys
from pcapstate.derive.verdict import service_of
from pcapstate.track.endpoints import GIVE_UP_AFTER, handshake_gaps
from pcapstate.track.slots import CLOSED
from pcapstate.words import count, seconds, when, wireshark_filter

_EXAMPLES = 5  # example connections kept per diagnosis: the first ones
HELD = 1 << 14  # connections' facts gathered before they are counted (each time: a few MiB)


@dataclass(frozen=True, slots=True)
class Entry:
    """A diagnosis in the catalogue."""

    title: str
    meaning: str  # what it usually means
    check: str  # what to look at on the host


CATALOGUE = {
    "close_wait_leak": Entry(
        "sockets left in CLOSE_WAIT",
        "the peer closed and the application did not call close() on its socket for long, "
        "or never: CLOSE_WAIT has no timer, so each such socket holds a file descriptor "
        "until the application closes it or its process exits; sockets never closed are a "
        "leak",
        "`ss -tanp state close-wait` on the host names the process; look for a code path "
        "that returns without closing the connection after the peer's EOF (read() == 0), "
        "or closes it only much later"),
    "peer_gone": Entry(
        "peer vanished",
        "the peer's socket was gone while this side still used the connection: the process "
        "was killed or the host rebooted, or a NAT, conntrack table or load balancer "
        "dropped the connection's state; or, without any answer, the path was cut",
        "the peer host's uptime and logs, middlebox idle timeouts (conntrack "
        "`nf_conntrack_tcp_timeout_established`, a load balancer's idle timeout), and "
        "`tcp_retries2` on the sender for how long it kept trying"),
    "reset_with_data_loss": Entry(
        "data lost to a reset",
        "a RST ended the connection while data was still on its way or not answered: a "
        "close() with unread data in the receive buffer (the kernel sends RST instead of "
        "FIN and discards it), an abort with SO_LINGER 0, or an application that gave up",
        "the resetting application's close path: read the request whole before close(), "
        "no SO_LINGER 0; `nstat -az TcpExtTCPAbortOnData` counts closes with unread data"),
    "keepalive_race": Entry(
        "keep-alive race",
        "the server closed an idle keep-alive connection while the client, not yet aware, "
        "sent a new request on it; the request crossed the server's FIN and was answered "
        "by a RST (behind a proxy: an intermittent 502)",
        "make the client's (or proxy's) idle timeout shorter than the server's keep-alive "
        "timeout, or have the client retry idempotent requests on a reused connection"),
    "syn_retransmitted": Entry(
        "slow connects",
        "handshakes that completed only after the client sent its SYN again (1 s, then "
        "backoff): the first SYN was dropped before the listener (a firewall, a rate limit, "
        "a full SYN queue without SYN cookies), or the listener's SYN-ACK was lost",
        "firewall and rate-limit counters on the path; on the listener `nstat -az "
        "TcpExtListenDrops TcpExtTCPReqQFullDrop` and `net.ipv4.tcp_max_syn_backlog`"),
    "accept_queue_overflow": Entry(
        "full accept queue",
        "the listener dropped the client's handshake ACK (and sent its SYN-ACK again) because "
        "its accept queue was full, or answered it with a RST (tcp_abort_on_overflow=1): the "
        "application is not calling accept() fast enough, or its backlog is too small; or it "
        "answered SYNs with SYN cookies because its request (SYN) queue was full: a SYN "
        "flood, or more handshakes at once than its backlog",
        "`ss -ltn` (Recv-Q: the queue, Send-Q: the backlog), `nstat -az "
        "TcpExtListenOverflows TcpExtSyncookiesSent TcpExtTCPReqQFullDoCookies`, the listen() "
        "backlog, `net.core.somaxconn` and `net.ipv4.tcp_syncookies`"),
    "handshake_timeout": Entry(
        "connects timed out",
        "SYNs (or a listener's SYN-ACKs) sent again and again without an answer until the "
        "endpoint gave up (`tcp_syn_retries`, `tcp_synack_retries`): the service or its host "
        "was unreachable, or a firewall dropped the packets",
        "whether the service's host is up and reachable, firewall rules, and the clients' "
        "connect timeouts"),
    "refused_burst": Entry(
        "refused connections",
        "SYNs answered by a RST: nothing was listening on the port (the service was down, "
        "restarting, or never there)",
        "the service's restarts and crashes in that period (`journalctl`), and whether the "
        "clients point at the right port"),
    "zero_window_stall": Entry(
        "stalled receiver",
        "a receiver advertised a zero window for long while its peer had data to send (the "
        "peer probes with its persist timer): the application on that side stopped reading",
        "the application's reading thread on that side (blocked, busy, or deadlocked), "
        "`ss -tmi` (Recv-Q, rcv_space) while it happens"),
    "time_wait_pressure": Entry(
        "TIME_WAIT pressure",
        "a host closing connections first at a rate at which its sockets in TIME_WAIT (60 s "
        "on Linux) approach its ephemeral port range: connect() then fails "
        "(EADDRNOTAVAIL) or reuses 4-tuples still in TIME_WAIT",
        "`net.ipv4.ip_local_port_range`, `net.ipv4.tcp_tw_reuse`, `ss -tan state time-wait "
        "| wc -l`, and connection pooling (keep-alive) instead of a connection a request"),
}


@dataclass(slots=True)
class Diagnosis:
    """One diagnosis of one service and side, as connections show it."""

    name: str
    service: str
    side: str  # client or server: the side the cause is on
    inferred_from: str | None = None  # None: seen directly in the packets
    count: int = 0
    first: float = float("inf")
    last: float = 0.0
    examples: list[dict[str, Any]] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)  # the diagnosis's own figures

    def add(self, start: float, stop: float, example: Callable[[], dict[str, Any]]) -> None:
        """One more connection, from `start` to `stop`; `example()` makes its evidence,
        asked only while examples are wanted."""
        self.add_many(1, start, stop, (example,))

    def add_many(self, n: int, start: float, stop: float,
                 examples: Iterable[Callable[[], dict[str, Any]]]) -> None:
        """`n` more connections, the earliest from `start`, the latest to `stop`; each of
        `examples`, in turn, makes one's evidence, asked only while examples are wanted."""
        self.count += n
        self.first, self.last = min(self.first, start), max(self.last, stop)
        for make in examples:
            if len(self.examples) >= _EXAMPLES:
                break
            self.examples.append(make())

    def to_json(self) -> dict[str, Any]:
        entry = CATALOGUE[self.name]
        return {"name": self.name, "service": self.service, "side": self.side,
                "count": self.count, "first_ts": self.first, "last_ts": self.last,
                "verdict": verdict(self), "observed": self.inferred_from is None,
                "inferred_from": self.inferred_from,
                "meaning": entry.meaning, "check": entry.check, **self.numbers,
                "evidence": self.examples}


def _evidence(conn_id: int, client: str, server: str, packets: list[tuple[float, str]],
              since: float) -> dict[str, Any]:
    """An example connection: its packets in time order, and a Wireshark filter for it from
    `since`."""
    return {"conn_id": conn_id, "client": client, "server": server,
            "packets": [{"ts": ts, "what": what}
                        for ts, what in sorted(packets, key=lambda p: p[0])],
            "filter": wireshark_filter(client, server, since)}


def example(row: np.void, packets: list[tuple[float, str]]) -> dict[str, Any]:
    """A connection's evidence: `packets`, (time, what it shows) each."""
    return _evidence(int(row["cid"]), address(row, 0), address(row, 1), packets,
                     min(ts for ts, _ in packets))


def _reset_ts(row: np.void) -> float:
    """When the RST that ended the connection was captured."""
    e = int(row["reset_by"])
    for k in range(int(row["ntr"][e]) - 1, -1, -1):
        if row["tr_st"][e, k] == CLOSED and not row["tr_timer"][e, k]:
            return float(row["tr_ts"][e, k])
    return float(row["last_ts"])


def _gone(d: Diagnosis, how: str, heard: float) -> None:
    """A peer_gone's count of the connections gone `how` (by_reset, by_silence), and its
    latest time the vanished side was heard from (null: never)."""
    d.numbers[how] = d.numbers.get(how, 0) + 1
    if heard and heard > (d.numbers.get("last_heard") or 0.0):
        d.numbers["last_heard"] = heard
    d.numbers.setdefault("last_heard", None)


class Diagnoser:
    """Collects the diagnoses of the connections retired, a batch at a time (`take`)."""

    def __init__(self, tunnels: Sequence[dict[str, Any]] = ()) -> None:
        self.tunnels = tunnels
        # by name, service, side, inferred_from, and host (time_wait_pressure's, else "")
        self.found: dict[tuple[str, str, str, str | None, str], Diagnosis] = {}
        # per service: idle times before the server's own FIN (its keep-alive timeout)
        self.server_idle: dict[str, np.ndarray] = {}
        # the facts (rules.FACTS) of the connections taken, held to be counted
        self.facts, self.held = jit.records(np.empty(HELD, rules.FACTS)), 0
        self.lifecycle = Lifecycle(self)

    example = staticmethod(example)  # derive/lifecycle.py's

    def service(self, row: np.void) -> str:
        return service_of(row, self.tunnels)

    def named(self, name: str, service: str, side: str, inferred_from: str | None = None,
              host: str = "") -> Diagnosis:
        key = (name, service, side, inferred_from, host)
        if key not in self.found:
            self.found[key] = Diagnosis(name, service, side, inferred_from)
        return self.found[key]

    def get(self, name: str, row: np.void, side: int,
            inferred_from: str | None = None) -> Diagnosis:
        return self.named(name, self.service(row), ROLES[side], inferred_from)

    def take(self, rows: np.ndarray, times: np.ndarray, kinds: np.ndarray,
             closers: np.ndarray) -> np.ndarray:
        """Apply the rules to a batch of retired connections (retired at `times`; their end
        kinds and closers, as derive/fold.py gave them): the evidence of those a rule picks
        now, the facts of all counted when HELD have gathered (bounded memory, numpy's
        work in large pieces). Returns the rules' bits of each (rules.pick)."""
        n = len(rows)
        if self.held + n > len(self.facts):
            self._count()
            if n > len(self.facts):  # a batch larger than HELD (the capture's end)
                self.facts = jit.records(np.empty(n, rules.FACTS))
        facts = self.facts[self.held:self.held + n]
        picks = np.empty(n, np.uint16)
        rules.pick(rows, times, kinds, closers, picks, facts)
        bulk = self.lifecycle.bulk(rows, picks)
        others = np.flatnonzero(picks & np.uint16(0xFFFF ^ BULK))
        for i in np.union1d(others, list(bulk)).astype(np.int64):
            row, p = rows[i], int(picks[i])
            for begin in bulk.get(int(i), ()):  # where a row at a time would have begun it
                begin()
            self.lifecycle.one(row, p & ~BULK, float(times[i]))
            if p & rules.GONE_RESET:
                self._gone_reset(row)
            for e in range(2):
                if p & rules.GONE_SILENT << e:
                    self._gone_silent(row, e)
            if p & rules.RACE:
                self._race(row)
            if p & rules.DATA_LOST:
                self._data_lost(row)
        self.held += n
        return picks

    def _count(self) -> None:
        """Count the facts held: per service, the idle times before the server's own FINs,
        and the lifecycle's counts."""
        facts, self.held = self.facts[:self.held], 0
        keys = service_keys(facts)
        picked = np.flatnonzero(facts["idle_bin"] >= 0)
        bins = facts["idle_bin"][picked]
        first, members = groups(keys, picked)
        for i, mine in zip(first, members, strict=True):
            hist = self.server_idle.setdefault(self.service(facts[picked[i]]),
                                               np.zeros(rules.IDLE_BINS + 1, np.int64))
            np.add.at(hist, bins[mine], 1)
        self.lifecycle.count(facts, keys)

    def _gone_reset(self, row: np.void) -> None:
        s = int(row["reset_by"])
        o, rst = 1 - s, _reset_ts(row)
        heard = float(row["heard"][s])
        packets = [(float(row["heard"][o]), f"the {ROLES[o]} sends"),
                   (rst, f"RST without ACK from the {ROLES[s]}'s host, its sequence number "
                         f"the {ROLES[o]}'s acknowledgment: no socket for the connection")]
        if heard:
            packets.append((heard, f"the {ROLES[s]} last heard from"))
        d = self.get("peer_gone", row, s)
        d.add(heard or rst, rst, lambda: example(row, packets) | {
            "how": "reset", "last_heard": heard or None})
        _gone(d, "by_reset", heard)

    def _gone_silent(self, row: np.void, e: int) -> None:
        p = 1 - e
        heard, tries = float(row["heard"][p]), int(row["quiet_retx"][e])
        packets = [(float(row["heard"][e]), f"the {ROLES[e]}'s last segment sent again, "
                                            f"{tries} without an answer")]
        if heard:
            packets.append((heard, f"the {ROLES[p]} last heard from"))
        if int(row["reset_by"]) == e:
            packets.append((_reset_ts(row), f"the {ROLES[e]} gives up: RST"))
        k = int(row["ntr"][e]) - 1
        if row["tr_st"][e, k] == CLOSED and row["tr_timer"][e, k] == 1:
            packets.append((float(row["tr_ts"][e, k]), f"the {ROLES[e]} gives up: its next "
                            "retransmission was due and never came (ETIMEDOUT)"))
        d = self.get("peer_gone", row, p, f"{GIVE_UP_AFTER} or more segments sent again "
                      "with no answer: the peer, or the path to it, was gone")
        d.add(heard or float(row["first_ts"]), float(row["last_ts"]),
              lambda: example(row, packets) | {"how": "silent", "last_heard": heard or None})
        _gone(d, "by_silence", heard)

    def _data_lost(self, row: np.void) -> None:
        s = int(row["reset_by"])
        rst = _reset_ts(row)
        unacked = [int(n) for n in row["rst_unacked"]]
        request = int(row["run"][0]) if s == 1 and row["fin_seq"][1] == -1 else 0
        packets = [(rst, f"RST from the {ROLES[s]}, not a FIN")]
        for e in range(2):
            if unacked[e]:
                packets.append((float(row["heard"][e]), f"the {ROLES[e]}'s last data; "
                                f"{unacked[e]:,} bytes of it never acknowledged"))
        if request and not unacked[0]:
            answered = "answered, maybe not read whole" if row["talked"] == 1 else "not answered"
            packets.append((float(row["heard"][0]), f"the client's last request, "
                            f"{request:,} bytes: {answered}"))
        lost = sum(unacked) + (request if not unacked[0] else 0)
        d = self.get("reset_with_data_loss", row, s, "the bytes not acknowledged, or not "
                      "answered, when the RST came: discarded, or never delivered")
        d.add(min(ts for ts, _ in packets), rst,
              lambda: example(row, packets) | {"bytes_lost": lost})
        d.numbers["bytes_lost"] = d.numbers.get("bytes_lost", 0) + lost

    def _race(self, row: np.void) -> None:
        fin, idle = float(row["fin_ts"][1]), float(row["fin_idle"][1])
        request = float(row["crossed"][0])
        # the client's idle time when it sent it: as captured, less the trip from the
        # capture to the client and back (the handshake's SYN/ACK-to-ACK gap)
        reuse = idle + max(request - fin, 0.0) - max(handshake_gaps(row)[1], 0.0)
        packets = [(fin, f"the server's FIN, after {seconds(idle)} idle"),
                   (request, "the client's request, not acknowledging the FIN: sent before "
                             "it arrived"),
                   (_reset_ts(row), "RST from the server")]
        d = self.get("keepalive_race", row, 1)
        d.add(fin, packets[-1][0], lambda: example(row, packets) | {"reuse_idle": reuse})
        n = d.numbers
        n["client_reuse_idle_min"] = min(n.get("client_reuse_idle_min", reuse), reuse)
        n["client_reuse_idle_max"] = max(n.get("client_reuse_idle_max", reuse), reuse)

    def to_json(self) -> list[dict[str, Any]]:
        """Every diagnosis: most connections first, then by name, service, side (the order
        worst_first keeps among equals)."""
        self._count()
        self.lifecycle.finish()
        for (name, service, *_), d in self.found.items():
            if name == "keepalive_race":
                hist = self.server_idle.get(service, np.zeros(1, np.int64))
                d.numbers |= {"server_idle_timeout": _median(hist),
                              "server_closes": int(hist.sum())}
        found = sorted(self.found.values(),
                       key=lambda d: (-d.count, d.name, d.service, d.side, bool(d.inferred_from),
                                      str(d.numbers.get("host", ""))))
        return [d.to_json() for d in found]


#: The kinds, worst first: sockets or data lost, then connections that failed or stalled,
#: then pressure (a leak before TIME_WAIT pressure of more connections)
SEVERITY = ("close_wait_leak", "reset_with_data_loss", "peer_gone", "accept_queue_overflow",
            "keepalive_race", "handshake_timeout", "zero_window_stall", "syn_retransmitted",
            "refused_burst", "time_wait_pressure")
assert set(SEVERITY) == set(CATALOGUE)


def worst_first(diagnoses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The diagnoses, worst first: by kind (SEVERITY), then most connections, then by name
    and service; equals keep their order."""
    return sorted(diagnoses, key=lambda d: (SEVERITY.index(d["name"]), -d["count"], d["name"],
                                            d["service"]))


def _median(hist: np.ndarray) -> float | None:
    """The idle time after which a server closes, as its closes show it: their median, to
    the histogram's bin (5% wide), its geometric middle."""
    n = int(hist.sum())
    if not n:
        return None
    b = int(np.searchsorted(np.cumsum(hist), (n + 1) // 2))
    return rules.IDLE_FLOOR * 10 ** ((b + 0.5) / rules.IDLE_PER_DECADE) if b \
        else rules.IDLE_FLOOR


_OUTCOMES = {"open": "still in CLOSE_WAIT at capture end", "reset_by_peer": "RST from the peer",
             "reset_by_self": "its own RST"}


def close_wait_leaks(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stuck-CLOSE_WAIT findings (derive/summary.py) as close_wait_leak diagnoses."""
    out = []
    for f in findings:
        if f["state"] != "CLOSE_WAIT":
            continue
        why = ("the RSTs that answered the FINs: the peers had no socket left, so they had "
               "closed first, before the capture" if f["inferred"] else None)
        d = Diagnosis("close_wait_leak", f["service"], f["role"], why, f["count"],
                      f["first_ts"], f["last_ts"])
        for ex in f["examples"][:_EXAMPLES]:
            packets = [(ex["fin_ts"], "the peer's FIN")] if ex["fin_ts"] is not None else []
            packets.append((ex["since"], f"the {ex['role']} in CLOSE_WAIT"
                            + (" since before the capture began" if f["inferred"] else "")))
            if ex["ack_ts"] is not None:
                packets.append((ex["ack_ts"], f"the {ex['role']} acknowledges the FIN"))
            packets.append((ex["since"] + ex["duration"], _OUTCOMES.get(
                ex["outcome"], f"its own FIN, after {seconds(ex['duration'])} in "
                               f"CLOSE_WAIT: {ex['outcome'].upper()}")))
            if ex["rst_ts"] is not None and f["inferred"]:
                packets.append((ex["rst_ts"], "RST answering its FIN: the peer's socket "
                                "had gone"))
            a, b = ex["endpoint"], ex["peer"]
            client, server = (b, a) if ex["role"] == "server" else (a, b)
            d.examples.append(_evidence(ex["conn_id"], client, server, packets, ex["since"]))
        d.numbers = {"still_open": f["still_open"], "oldest": f["oldest"],
                     "at_capture_end": f["at_capture_end"], "outcomes": f["outcomes"],
                     "outcome_durations": f["outcome_durations"]}
        out.append(d.to_json())
    return out


#: How a close_wait_leak's endpoints left CLOSE_WAIT (their outcome, derive/verdict.Stuck),
#: in the order its verdict says them: only those still in it at capture end were not closed.
_LEFT = ("open", "last_ack", "reset_by_self", "reset_by_peer")


def _left_close_wait(d: Diagnosis) -> list[str]:
    """A close_wait_leak's endpoints by how they left CLOSE_WAIT, in words: "did not close"
    only for those still in it at capture end; the others closed late (their own FIN or
    RST, after how long), or were ended by the peer's RST before they closed."""
    service, side, total = d.service, d.side, d.count
    still, at_end = d.numbers["still_open"], d.numbers["at_capture_end"]
    spans = d.numbers["outcome_durations"]
    out = []
    for outcome, k in sorted(d.numbers["outcomes"].items(),
                             key=lambda kv: _LEFT.index(kv[0]) if kv[0] in _LEFT else len(_LEFT)):
        who = "it" if total == 1 else "all" if k == total else f"{k:,}"
        was, them = ("was", "it") if k == 1 else ("were", "them")
        lo, hi = (seconds(spans[outcome][m]) for m in ("min", "max"))
        after = f"after {lo} in CLOSE_WAIT" if lo == hi else f"after {lo} to {hi} in CLOSE_WAIT"
        if outcome == "open":
            then = f", of {at_end:,} in CLOSE_WAIT then" if at_end > still else ""
            out.append(f"{who} {was} still there at capture end{then}: the application behind "
                       f"{service} did not close {them}")
        elif outcome == "last_ack":
            out.append(f"{who} closed late: the {side} sent its FIN only {after} (the "
                       f"application behind {service} closed {them} late, or its process "
                       "exited: the packets cannot tell which)")
        elif outcome == "reset_by_self":
            out.append(f"{who} closed late, abortively: the {side}'s own RST came {after}")
        elif outcome == "reset_by_peer":
            out.append(f"{who} {was} ended by the peer's RST {after}, the {side} having sent "
                       "no FIN by then")
        else:
            out.append(f"{who} then moved to {outcome.upper()} {after}")
    if at_end > still == 0:
        out.append(f"{at_end:,} more {'was' if at_end == 1 else 'were'} in CLOSE_WAIT at "
                   "capture end, not yet for long")
    return out


def verdict(d: Diagnosis) -> str:
    """The diagnosis in one sentence."""
    n, service, side = count(d.count, "connection"), d.service, d.side
    span = f"from {when(d.first)} to {when(d.last)}"
    if d.name == "close_wait_leak":
        if d.inferred_from:
            return (f"{service}: {n} sat in CLOSE_WAIT on the {side} side since before the "
                    f"capture began until the {side} closed them ({span}): each {side} FIN "
                    "was answered by a RST, the peer having closed and gone long before")
        oldest = seconds(d.numbers["oldest"])
        return (f"{service}: {n} left in CLOSE_WAIT on the {side} side after the peer "
                f"closed first, {'for' if d.count == 1 else 'the oldest for'} {oldest}; "
                + "; ".join(_left_close_wait(d)))
    if d.name == "peer_gone":
        how = ("sent segments again and again with no answer" if d.inferred_from else
               "was answered by a RST from a host with no socket for it")
        return (f"{service}: the {side} side of {n} vanished ({span}): the other side {how}")
    if d.name == "reset_with_data_loss":
        return (f"{service}: the {side} reset {n} with data not acknowledged or not "
                f"answered, {d.numbers.get('bytes_lost', 0):,} bytes ({span})")
    if d.name == "keepalive_race":
        idle = d.numbers.get("server_idle_timeout")
        lo, hi = (d.numbers.get(k) for k in ("client_reuse_idle_min", "client_reuse_idle_max"))
        timeout = (f"the server closes connections idle for about {seconds(idle)}; "
                   if idle else "")
        reuse = (f"clients reused connections idle for {seconds(lo)} to {seconds(hi)}"
                 if lo is not None else "")
        return (f"{service}: {n} raced ({span}): a request crossed the server's FIN of an "
                f"idle keep-alive connection and was reset; {timeout}{reuse}: the client's "
                "idle timeout must be shorter than the server's")
    return lifecycle_verdict(d) or f"{service}: {n} ({CATALOGUE[d.name].title})"

