"""Verdicts derived from a retired connection's packed record (track/slots.py): how it
ended, who closed first, where the capture saw its handshake, and which endpoints were
stuck. The rules that are functions of numbers are compiled, for derive/fold.py, which
applies them to every connection; `stuck` runs only for connections fold found stuck."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pcapstate.derive.records import ROLES, address, transitions, tunnel_name
from pcapstate.jit import njit
from pcapstate.vocab import NEAR, TOO_CLOSE, Closer, CloserEvidence, EndKind, State, codes

_E, _C = codes(EndKind), codes(Closer)
E_CLOSED, E_HALF_CLOSED = _E[EndKind.CLOSED], _E[EndKind.HALF_CLOSED]
E_RESET_BY_CLIENT, E_RESET_BY_SERVER = _E[EndKind.RESET_BY_CLIENT], _E[EndKind.RESET_BY_SERVER]
E_REFUSED, E_UNANSWERED = _E[EndKind.REFUSED], _E[EndKind.UNANSWERED]
E_HANDSHAKE_INCOMPLETE, E_OPEN = _E[EndKind.HANDSHAKE_INCOMPLETE], _E[EndKind.OPEN]
E_EVICTED = _E[EndKind.EVICTED]
C_CLIENT, C_SERVER, C_BOTH, C_NONE = (_C[Closer.CLIENT], _C[Closer.SERVER], _C[Closer.BOTH],
                                      _C[Closer.NONE])


@njit(cache=True, nogil=True)
def end_code(reset_by, client_fin, server_fin, server_syn, server_syn_acked, mid_stream,
             evicted):
    """How the connection ended, as far as the capture shows, as the code of its EndKind.
    `reset_by`: the endpoint (0 client, 1 server) whose in-window RST ended it, -1 none;
    `client_fin`, `server_fin`: each sent a FIN; `server_syn`: the server's SYN was seen,
    `server_syn_acked` and acknowledged. A connection evicted from a full table keeps an
    end it had reached (closed, reset, refused); otherwise its end is `evicted`: what came
    after was not followed."""
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


@njit(cache=True, nogil=True)
def closer_code(client_active, server_active, reset_by, refused):
    """The active closer, as the code of its Closer: whoever went to FIN_WAIT_1, i.e. sent
    a FIN before it had received the peer's (`client_active`, `server_active`); both did in
    a simultaneous close. Without a FIN first, the endpoint whose RST ended the connection
    (`reset_by`, -1 none) closed it, abortively; none where nobody closed (`refused`, a
    connection never accepted; unanswered; still open)."""
    if client_active and server_active:
        return C_BOTH
    if client_active or server_active:
        return C_CLIENT if client_active else C_SERVER
    if reset_by != -1 and not refused:
        return C_CLIENT if reset_by == 0 else C_SERVER
    return C_NONE


_V = codes(CloserEvidence)
V_FIN_SEEN, V_RST_SEEN = _V[CloserEvidence.FIN_SEEN], _V[CloserEvidence.RST_SEEN]
V_INFERRED, V_UNKNOWN = _V[CloserEvidence.INFERRED], _V[CloserEvidence.UNKNOWN]


@njit(cache=True, nogil=True)
def evidence_code(closer, aborted, inferred, peer_open_seen):
    """How the closer (closer_code, `aborted` or not) is known, as the code of its
    CloserEvidence; -1 without a closer. `inferred`: the connection's first states were
    inferred from a RST that answered a FIN (track/endpoints.closed_before);
    `peer_open_seen`: the capture shows that the closer's peer had not closed before it
    began (it saw the peer's start, data or FIN)."""
    if closer == C_NONE:
        return -1
    if inferred:
        return V_INFERRED
    if not peer_open_seen:
        return V_UNKNOWN
    return V_RST_SEEN if aborted else V_FIN_SEEN


# Where the capture sat on a connection's path, by its handshake (`vantage_side`).
NEAR_CLIENT, BETWEEN, NEAR_SERVER, UNTOLD = range(4)


@njit(cache=True, nogil=True)
def vantage_side(syn_rtt, ack_gap):
    """Where on the path the capture saw one handshake, from the gaps between the SYN and
    the SYN/ACK and between the SYN/ACK and the ACK, as captured. At the client the SYN/ACK
    comes a whole round trip after the SYN and the ACK at once; at the server the reverse;
    between them, the round trip splits in proportion to the distance from each end."""
    if syn_rtt < TOO_CLOSE and ack_gap < TOO_CLOSE:
        return UNTOLD
    share = ack_gap / (syn_rtt + ack_gap)  # of the round trip, on the client's side
    if share <= NEAR:
        return NEAR_CLIENT
    return NEAR_SERVER if share >= 1 - NEAR else BETWEEN


@njit(cache=True, nogil=True)
def stretch(r, e, k, end):
    """Endpoint e's stretch in the state its transition k entered: from that transition to
    the next, or to `end` (the connection's retirement) for its last: (start, stop), stop
    never before start."""
    start = r.tr_ts[e, k]
    stop = r.tr_ts[e, k + 1] if k + 1 < r.ntr[e] else end
    return start, max(stop, start)


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
    rst_ts: float | None  # the RST that ended the stretch, if one did; if `inferred`, the
    #                       RST that answered the FIN the stretch ended with
    inferred: bool  # the state was inferred, not seen: a CLOSE_WAIT whose peer had closed
    #                 before the capture began (track/endpoints.closed_before)


def stuck(row: np.void, marks: np.ndarray, end: float,
          tunnels: Sequence[dict[str, Any]] = ()) -> list[Stuck]:
    """The stretches of a connection's endpoints that derive/fold.py found stuck (longer
    than their state's threshold): marks[e] has bit k for endpoint e's stretch from its
    transition k, to the next or to `end`. `tunnels`: decode/unwrap.py's, by number - 1."""
    found = []
    service = service_of(row, tunnels)
    reset_by = int(row["reset_by"])
    for i in range(2):
        trans = transitions(row, i)
        for k, (_, state, _) in enumerate(trans):
            if not int(marks[i]) >> k & 1:
                continue
            start, stop = (float(t) for t in stretch(row, i, k, end))
            _, nxt, timer = trans[k + 1] if k + 1 < len(trans) else (end, None, False)
            if nxt is None:
                outcome = "open"
            elif nxt is State.CLOSED and reset_by != -1 and not timer:
                outcome = "reset_by_self" if reset_by == i else "reset_by_peer"
            else:
                outcome = nxt.value.lower()
            duration = stop - start
            fin, ack = _fin_and_ack(row, 1 - i if state is State.CLOSE_WAIT else i, state,
                                    start)
            inferred = k == 0 and bool(row["inferred"])
            # the RST that ended the stretch, or for an inferred one the RST that answered
            # the FIN it ended with, the evidence
            rst = start + duration if outcome.startswith("reset") \
                else trans[-1][0] if inferred else None
            found.append(Stuck(state, ROLES[i], address(row, i), address(row, 1 - i),
                               service, int(row["cid"]), start, duration, outcome, fin, ack,
                               rst, inferred))
    return found


# The moves that only an acknowledgment of the endpoint's own FIN makes.
_ACKED = {(State.FIN_WAIT_1, State.FIN_WAIT_2), (State.CLOSING, State.TIME_WAIT),
          (State.LAST_ACK, State.CLOSED)}


def _fin_and_ack(row: np.void, sender: int, state: State,
                 since: float) -> tuple[float | None, float | None]:
    """When endpoint `sender` sent the FIN that a stretch in `state` from `since` is about,
    and when it was acknowledged, from the sender's transitions (a FIN moves it to
    FIN_WAIT_1 or LAST_ACK; the ACK on out of those or CLOSING). The receiver's CLOSE_WAIT
    begins at the FIN's capture time."""
    if state in (State.SYN_SENT, State.SYN_RCVD):
        return None, None
    fin = ack = None
    previous = None
    acked = bool(row["fin_acked"][sender])
    for ts, state, timer in transitions(row, sender):
        if state in (State.FIN_WAIT_1, State.LAST_ACK) and fin is None:
            fin = ts
        elif fin is not None and not timer and acked and (previous, state) in _ACKED:
            ack = ts
            break
        previous = state
    if state is State.CLOSE_WAIT:
        fin = since  # also when the sender's FIN_WAIT_1 began before the capture
    return fin, ack


def service_of(row: np.void, tunnels: Sequence[dict[str, Any]] = ()) -> str:
    """What a stuck endpoint's findings group is keyed by, with its state and role: the
    server's ip:port, and the tunnel it is in, if any (two tenants' overlays may use the
    same addresses). A stuck server endpoint is blamed on the service it serves; stuck
    clients are grouped by the service they were trying to reach, so that a SYN flood
    from a million sources, or every client of a server that went away, is one group."""
    number = int(row["tunnel"])
    return address(row, 1) + (f" in {tunnel_name(tunnels[number - 1])}" if number else "")
