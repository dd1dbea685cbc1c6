"""Verdicts derived from a finished connection's endpoints: pure functions, nothing stored."""

from dataclasses import dataclass

from pcapstate.machine import Connection, Endpoint
from pcapstate.settings import Settings
from pcapstate.vocab import Censor, Closer, EndKind, State, codes

ROLES = ("client", "server")


END_KINDS, CLOSERS = list(EndKind), list(Closer)
_E, _C = codes(EndKind), codes(Closer)
E_CLOSED, E_HALF_CLOSED = _E[EndKind.CLOSED], _E[EndKind.HALF_CLOSED]
E_RESET_BY_CLIENT, E_RESET_BY_SERVER = _E[EndKind.RESET_BY_CLIENT], _E[EndKind.RESET_BY_SERVER]
E_REFUSED, E_UNANSWERED = _E[EndKind.REFUSED], _E[EndKind.UNANSWERED]
E_HANDSHAKE_INCOMPLETE, E_OPEN = _E[EndKind.HANDSHAKE_INCOMPLETE], _E[EndKind.OPEN]
E_EVICTED = _E[EndKind.EVICTED]
C_CLIENT, C_SERVER, C_BOTH, C_NONE = (_C[Closer.CLIENT], _C[Closer.SERVER], _C[Closer.BOTH],
                                      _C[Closer.NONE])


def end_code(reset_by: int, client_fin: bool, server_fin: bool, server_syn: bool,
             server_syn_acked: bool, mid_stream: bool, evicted: bool) -> int:
    """How the connection ended, as far as the capture shows, as the code of its EndKind.
    `reset_by`: the endpoint (0 client, 1 server) whose in-window RST ended it, -1 none;
    `client_fin`, `server_fin`: each sent a FIN; `server_syn`: the server's SYN was seen,
    `server_syn_acked` and acknowledged. A connection evicted from a full table keeps an
    end it had reached (closed, reset, refused); otherwise its end is `evicted`: what came
    after was not followed. The one rule: the compiled engine compiles this function."""
    if reset_by != -1:
        if reset_by == 1 and not server_syn and not mid_stream:
            return E_REFUSED
        return E_RESET_BY_CLIENT if reset_by == 0 else E_RESET_BY_SERVER
    if client_fin and server_fin:
        return E_CLOSED
    if client_fin or server_fin:
        kind = E_HALF_CLOSED
    elif not mid_stream and not server_syn:
        kind = E_UNANSWERED
    elif server_syn and not server_syn_acked:
        kind = E_HANDSHAKE_INCOMPLETE
    else:
        kind = E_OPEN
    return E_EVICTED if evicted else kind


def closer_code(client_active: bool, server_active: bool) -> int:
    """The active closer, as the code of its Closer: whoever went to FIN_WAIT_1, i.e. sent
    a FIN before it had received the peer's (`client_active`, `server_active`). Both did in
    a simultaneous close."""
    if client_active and server_active:
        return C_BOTH
    if client_active:
        return C_CLIENT
    return C_SERVER if server_active else C_NONE


def end_kind(conn: Connection) -> EndKind:
    """end_code of a connection of the reference engine."""
    client, server = conn.ep
    return END_KINDS[end_code(-1 if conn.reset_by is None else conn.reset_by,
                              client.fin_seq is not None, server.fin_seq is not None,
                              server.isn is not None, bool(server.syn_acked),
                              conn.mid_stream, bool(conn.evicted))]


def closer(conn: Connection) -> Closer:
    """closer_code of a connection of the reference engine."""
    client, server = (any(st is State.FIN_WAIT_1 for _, st, _ in e.transitions)
                      for e in conn.ep)
    return CLOSERS[closer_code(client, server)]


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
    service: str  # the server's ip:port (service_of): the service the stuck endpoint
    #               served (role server) or was trying to reach (role client)
    conn_id: int
    since: float
    duration: float  # a lower bound if `outcome` is "open"
    outcome: str  # "open" (still at capture end), "reset_by_peer", "reset_by_self", or the
    #               state it finally moved to, lower case ("last_ack", "closed", ...)
    fin_ts: float | None  # the FIN in question: the peer's for CLOSE_WAIT, else its own
    ack_ts: float | None  # when that FIN was acknowledged; None if it never was
    rst_ts: float | None  # the RST that ended the stretch, if one did


def stuck(conn: Connection, end: float, settings: Settings,
          by_endpoint: tuple[list[Interval], list[Interval]] | None = None) -> list[Stuck]:
    """Every stretch of a stuck-prone state that lasted longer than its threshold.
    `by_endpoint`: each endpoint's intervals, if the caller has them already."""
    found = []
    limits = settings.stuck_after
    service = service_of(conn)
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
            fin, ack = _fin_and_ack(conn.ep[1 - i] if iv.state is State.CLOSE_WAIT else e,
                                    iv)
            rst = iv.start + iv.duration if outcome.startswith("reset") else None
            found.append(Stuck(iv.state, ROLES[i], e.address(), conn.ep[1 - i].address(),
                               service, conn.id, iv.start, iv.duration, outcome, fin, ack, rst))
    return found


# The moves that only an acknowledgment of the endpoint's own FIN makes.
_ACKED = {(State.FIN_WAIT_1, State.FIN_WAIT_2), (State.CLOSING, State.TIME_WAIT),
          (State.LAST_ACK, State.CLOSED)}


def _fin_and_ack(sender: Endpoint, iv: Interval) -> tuple[float | None, float | None]:
    """When `sender` sent the FIN that `iv` is about, and when it was acknowledged, from
    the sender's transitions (a FIN moves it to FIN_WAIT_1 or LAST_ACK; the ACK on out of
    those or CLOSING). The receiver's CLOSE_WAIT begins at the FIN's capture time."""
    if iv.state in (State.SYN_SENT, State.SYN_RCVD):
        return None, None
    fin = ack = None
    previous = None
    for ts, state, timer in sender.transitions:
        if state in (State.FIN_WAIT_1, State.LAST_ACK) and fin is None:
            fin = ts
        elif (fin is not None and not timer and sender.fin_acked
              and (previous, state) in _ACKED):
            ack = ts
            break
        previous = state
    if iv.state is State.CLOSE_WAIT:
        fin = iv.start  # also when the sender's FIN_WAIT_1 began before the capture
    return fin, ack


def service_of(conn: Connection) -> str:
    """What a stuck endpoint's findings group is keyed by, with its state and role: the
    server's ip:port. A stuck server endpoint is blamed on the service it serves; stuck
    clients are grouped by the service they were trying to reach, so that a SYN flood
    from a million sources, or every client of a server that went away, is one group."""
    return conn.ep[1].address()


#: A handshake whose two gaps are both shorter than this tells nothing of where the capture
#: was taken: that is a host's own processing time, not a path.
TOO_CLOSE = 100e-6
#: The share of the round trip on one side under which the capture is called near the other.
NEAR = 0.2
# Where the capture sat on a connection's path, by its handshake (`vantage_side`).
NEAR_CLIENT, BETWEEN, NEAR_SERVER, UNTOLD = range(4)


def handshake(conn: Connection) -> tuple[float, float] | None:
    """(SYN to SYN/ACK, SYN/ACK to ACK) as captured, when all three were (the latest
    transmission of each SYN before it was acknowledged); None otherwise."""
    client, server = conn.ep
    if conn.roles != "syn" or client.isn is None or server.isn is None \
            or not server.syn_acked:
        return None
    ack = next((ts for ts, st, _ in server.transitions if st is State.ESTABLISHED), None)
    if ack is None:
        return None
    syn_rtt, ack_gap = server.syn_ts - client.syn_ts, ack - server.syn_ts
    return (syn_rtt, ack_gap) if syn_rtt >= 0 and ack_gap >= 0 else None


def vantage_side(syn_rtt: float, ack_gap: float) -> int:
    """Where on the path the capture saw one handshake. At the client the SYN/ACK comes a
    whole round trip after the SYN and the ACK at once; at the server the reverse; between
    them, the round trip splits in proportion to the distance from each end."""
    if syn_rtt < TOO_CLOSE and ack_gap < TOO_CLOSE:
        return UNTOLD
    share = ack_gap / (syn_rtt + ack_gap)  # of the round trip, on the client's side
    if share <= NEAR:
        return NEAR_CLIENT
    return NEAR_SERVER if share >= 1 - NEAR else BETWEEN
