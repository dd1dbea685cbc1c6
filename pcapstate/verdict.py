"""Verdicts derived from a finished connection's endpoints: pure functions, nothing stored."""

from dataclasses import dataclass

from pcapstate.machine import Connection, Endpoint
from pcapstate.settings import Settings
from pcapstate.vocab import Censor, Closer, EndKind, State

ROLES = ("client", "server")


def end_kind(conn: Connection) -> EndKind:
    """How the connection ended, as far as the capture shows."""
    client, server = conn.ep
    if conn.reset_by is not None:
        if conn.reset_by == 1 and server.isn is None and not conn.mid_stream:
            return EndKind.REFUSED
        return EndKind.RESET_BY_CLIENT if conn.reset_by == 0 else EndKind.RESET_BY_SERVER
    if client.fin_seq is not None and server.fin_seq is not None:
        return EndKind.CLOSED
    if client.fin_seq is not None or server.fin_seq is not None:
        return EndKind.HALF_CLOSED
    if not conn.mid_stream and server.isn is None:
        return EndKind.UNANSWERED
    if server.isn is not None and not server.syn_acked:
        return EndKind.HANDSHAKE_INCOMPLETE
    return EndKind.OPEN


def closer(conn: Connection) -> Closer:
    """The active closer: whoever went to FIN_WAIT_1, i.e. sent a FIN before it had
    received the peer's. Both did in a simultaneous close."""
    active = [any(st is State.FIN_WAIT_1 for _, st, _ in e.transitions) for e in conn.ep]
    if all(active):
        return Closer.BOTH
    if active[0]:
        return Closer.CLIENT
    if active[1]:
        return Closer.SERVER
    return Closer.NONE


@dataclass(frozen=True, slots=True)
class Interval:
    """A stretch of time one endpoint spent in one state."""

    state: State
    start: float
    duration: float
    censor: Censor
    next: State | None  # the state it moved to; None if still in it at capture end
    timer: bool  # the move out of it was an assumed timer expiry, not a segment


def intervals(e: Endpoint, end: float) -> list[Interval]:
    """The endpoint's states with their durations; the last one runs to `end` unless
    CLOSED. The first is left-censored if it began before the capture."""
    out = []
    trans = e.transitions
    for i, (start, state, _) in enumerate(trans):
        if state is State.CLOSED:
            continue
        left = i == 0 and e.left_censored
        if i + 1 < len(trans):
            stop, nxt, timer = trans[i + 1]
            censor = Censor.LEFT if left else Censor.COMPLETE
        else:
            stop, nxt, timer = end, None, False
            censor = Censor.BOTH if left else Censor.RIGHT
        out.append(Interval(state, start, max(stop - start, 0.0), censor, nxt, timer))
    return out


@dataclass(frozen=True, slots=True)
class Stuck:
    """An endpoint that stayed in a state that should not last, for too long."""

    state: State
    role: str  # "client" or "server": which endpoint is stuck
    endpoint: str  # its ip:port
    peer: str
    service: str  # what to blame: the server's ip:port, or the client's ip -> the service
    conn_id: int
    since: float
    duration: float  # a lower bound if `outcome` is "open"
    outcome: str  # "open" (still at capture end), "reset_by_peer", "reset_by_self", or the
    #               state it finally moved to, lower case ("last_ack", "closed", ...)


def stuck(conn: Connection, end: float, settings: Settings,
          by_endpoint: tuple[list[Interval], list[Interval]] | None = None) -> list[Stuck]:
    """Every stretch of a stuck-prone state that lasted longer than its threshold.
    `by_endpoint`: each endpoint's intervals, if the caller has them already."""
    found = []
    limits = settings.stuck_after
    for i, e in enumerate(conn.ep):
        ivs = by_endpoint[i] if by_endpoint is not None else intervals(e, end)
        for iv in ivs:
            limit = limits.get(iv.state)
            if limit is None or iv.duration <= limit:
                continue
            if iv.next is None:
                outcome = "open"
            elif iv.next is State.CLOSED and conn.reset_by is not None and not iv.timer:
                outcome = "reset_by_self" if conn.reset_by == i else "reset_by_peer"
            else:
                outcome = iv.next.value.lower()
            server = conn.ep[1].address()
            service = server if i == 1 else f"{_host(conn.ep[0].address())} -> {server}"
            found.append(Stuck(iv.state, ROLES[i], e.address(), conn.ep[1 - i].address(),
                               service, conn.id, iv.start, iv.duration, outcome))
    return found


def _host(address: str) -> str:
    return address.rsplit(":", 1)[0]
