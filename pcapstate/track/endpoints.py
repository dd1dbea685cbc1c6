"""The per-endpoint TCP state machine of one connection, on its packed record
(track/slots.py). No I/O, no decoding, no table.

A connection owns two endpoints, the client (index 0, the sender of the first SYN) and the
server (index 1). A segment from one endpoint changes the sender's state (it sent a SYN or a
FIN) and, through its acknowledgment number, both endpoints' states: an ACK that covers the
peer's SYN or FIN is the evidence that the sender *received* it (so the sender moves, to
ESTABLISHED or CLOSE_WAIT, say) and that the peer's control segment *arrived* (so the peer
moves, to FIN_WAIT_2 or CLOSED, say). A receipt is stamped with the capture time of the
segment received, the best estimate of when it reached the endpoint; an arrival with the
time of the ACK. Only an in-window RST changes state. Timers (TIME_WAIT, orphaned
FIN_WAIT_2, a SYN's or SYN-ACK's give-up) emit no packet and are applied lazily by
`expire`.

`segment` and then, unless it says there is nothing to do, `control` apply one segment, sent
by endpoint d, to record r. An endpoint's moves past the record's own go in a block of the
pool P (track/slots.py MOVES): `enter` writes a move, `move_at` reads one.
"""

import math

import numpy as np

from pcapstate.jit import njit
from pcapstate.track.seq import MASK, after_or_at
from pcapstate.track.slots import (
    A_BACKWARDS,
    A_BAD_SYNACK,
    A_DUPLICATE,
    A_FIN_BEFORE,
    A_FIN_RETX,
    A_FIN_SEQ_CHANGED,
    A_KEEP_ALIVE,
    A_MOVES_DROPPED,
    A_NEW_REQUEST,
    A_PACKET_AFTER,
    A_RETX,
    A_RST_AFTER,
    A_RST_OUT,
    A_SYN_INSIDE,
    A_SYN_RETX,
    A_SYNACK_RETX,
    BY_PORT,
    BY_SYN,
    CLOSE_WAIT,
    CLOSED,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    INFERRED_MOVE,
    INLINE,
    LAST_ACK,
    MAXT,
    SYN_RCVD,
    SYN_SENT,
    TIME_WAIT,
)
from pcapstate.vocab import ACK, FIN, RST, SYN, SYN_WS, State

# What an event does to an endpoint's state; a state not in the map is left alone.
_SENT_FIN = {State.ESTABLISHED: State.FIN_WAIT_1, State.SYN_RCVD: State.FIN_WAIT_1,
             State.CLOSE_WAIT: State.LAST_ACK}
_OWN_FIN_ACKED = {State.FIN_WAIT_1: State.FIN_WAIT_2, State.CLOSING: State.TIME_WAIT,
                  State.LAST_ACK: State.CLOSED}
_PEER_FIN_RECEIVED = {State.ESTABLISHED: State.CLOSE_WAIT, State.SYN_RCVD: State.CLOSE_WAIT,
                      State.FIN_WAIT_1: State.CLOSING, State.FIN_WAIT_2: State.TIME_WAIT}


def code_table(moves: dict[State, State]) -> tuple[int, ...]:
    """A map of states as compiled code reads it: by state code, the code of the state it
    moves to, -1 for a state it leaves alone."""
    code = {st: i for i, st in enumerate(State)}
    return tuple(code[moves[st]] if st in moves else -1 for st in State)


SENT_FIN, OWN_FIN_ACKED, PEER_FIN_RECEIVED = (
    code_table(_SENT_FIN), code_table(_OWN_FIN_ACKED), code_table(_PEER_FIN_RECEIVED))

#: Assumed window scale when the SYNs were not seen: the largest, so that a RST is never
#: called out of window for want of knowing the scale.
_UNKNOWN_SCALE = 14
#: Two captures of one segment (on two interfaces) arrive closer together than this; a
#: retransmission never does (Linux's smallest retransmission timeout is 200 ms).
_DUPLICATE_WINDOW = 0.001


@njit(cache=True, nogil=True)
def rst_acceptable(state, syn_acked, flags, seq, ack, isn, last_ack, win, wscale):
    """Whether a RST is taken by its receiver, in `state` (a code), whose SYN was or was not
    acknowledged, whose initial sequence number, last acknowledgment, window and window
    scale are these (-1: not seen). In SYN-SENT it must acknowledge the SYN (RFC 9293,
    3.10.7.3); else its sequence number must fall in the receiver's window (with the largest
    scale when the SYNs were not seen), or anywhere when nothing of that window is known.
    The window is taken up to and including its right edge, as Linux's tcp_sequence does
    (RFC 9293 stops one short), and a zero window as one byte: tests/test_properties.py
    marks these two differences from RFC 9293. A window advertised in a SYN (`win` < 0:
    window_of) is not scaled (RFC 7323 2.2)."""
    if state == SYN_SENT and not syn_acked:
        return (flags & ACK) != 0 and isn != -1 and ack == (isn + 1) & MASK
    if last_ack == -1:
        return True
    scale = _UNKNOWN_SCALE if wscale == -1 else wscale
    window = -1 - win if win < 0 else np.int64(win) << scale  # (uncompiled, 32 bits stay)
    return (seq - last_ack) & MASK <= max(window, 1)


@njit(cache=True, nogil=True, inline="always")
def window_of(flags, wn):
    """A segment's advertised window as an endpoint keeps it (`win`): as sent, or, in a SYN,
    where it is never scaled, -1 - it (rst_acceptable)."""
    return -1 - wn if flags & SYN else wn


#: Linux's initial retransmission timeout (RFC 6298): a SYN or SYN-ACK sent once is sent
#: again after it, if at all; a retransmission sooner than its smallest (200 ms) answers
#: one of the peer's instead (a listener's SYN-ACK to a SYN sent again) and keeps no time.
_INITIAL_RTO, _MIN_RTO = 1.0, 0.2
#: Segments sent again with no answer between before the endpoint's give-up timer runs
#: (timer_at), and before derive/diagnoses.py calls its peer gone.
GIVE_UP_AFTER = 3
#: Linux's tcp_syn_linear_timeouts (6.5 on; 0 before): a client's first retransmissions
#: keep the initial interval (this many, and one more), then it doubles. The kernel's
#: samples/syn_giveup.pcap shows five intervals of 1 s, then the give-up 2 s later.
SYN_LINEAR_TIMEOUTS = 4


@njit(cache=True, nogil=True, inline="always")
def next_syn(r, e):
    """The interval after which endpoint e, retransmitting its SYN (or SYN-ACK) unanswered,
    sends it again or gives up, by the backoff its own retransmissions show: a client's
    first retries keep the same interval (SYN_LINEAR_TIMEOUTS), then each doubles it (a
    listener's always do); the initial timeout after a single transmission."""
    gap, run = r.syn_gap[e], r.syn_run[e]
    if gap <= 0:
        return _INITIAL_RTO
    if r.st[e] == SYN_SENT and 2 <= run <= SYN_LINEAR_TIMEOUTS \
            and abs(gap - _INITIAL_RTO) < 0.1:  # seen linear so far (one interval of 1 s
        return gap  # is both linear's and doubling's first: the later, to be safe)
    return 2.0 * gap


@njit(cache=True, nogil=True, inline="always")
def timer_at(r, P, e, time_wait, fin_timeout):
    """(when endpoint e's timer is known to have fired, the time it fired) in its current
    state; infinity for a state without a timer. TIME_WAIT ends after `time_wait`, an
    orphaned FIN_WAIT_2 (its peer not heard since) after `fin_timeout`. A SYN (SYN_SENT) or
    SYN-ACK (SYN_RCVD) unanswered is retransmitted with a backoff (next_syn) until the
    retries run out (tcp_syn_retries, tcp_synack_retries) and the endpoint gives up: when
    its next transmission was due and none came by an eighth of the interval (and 200 ms)
    later, it gave up when it was due. (A retransmission the capture missed makes that
    early: the give-up is an inference from the pattern, marked as a timer's.) Data or a
    FIN sent again GIVE_UP_AFTER times or more with no answer likewise (tcp_retries2,
    tcp_orphan_retries: ETIMEDOUT, often without a packet): its next retransmission was due
    twice the last interval later."""
    state = r.st[e]
    if state == TIME_WAIT:
        at = since(r, P, e) + time_wait
        return at, at
    if state == FIN_WAIT_2 and not r.fw2_alive[e]:
        at = since(r, P, e) + fin_timeout
        return at, at
    # (a client whose SYN was seen acknowledged gives up only if it sent it again: the
    # SYN-ACKs did not reach it)
    if r.isn[e] != -1 and (not r.syn_acked[e] or state == SYN_SENT and r.syns[e] > 1) \
            and (state == SYN_SENT or state == SYN_RCVD):
        nxt = next_syn(r, e)  # known when overdue by an eighth of it (timers' jitter)
        return r.syn_ts[e] + 1.125 * nxt + _MIN_RTO, r.syn_ts[e] + nxt
    if r.quiet_retx[e] >= GIVE_UP_AFTER and state != CLOSED and r.retx_gap[e] > 0:
        nxt = 2.0 * r.retx_gap[e]
        return r.heard[e] + 1.125 * nxt + _MIN_RTO, r.heard[e] + nxt
    return math.inf, math.inf


@njit(cache=True, nogil=True, inline="always")
def enter(r, P, e, ts, state, timer):
    """Endpoint e moves to `state` at `ts` (never before its previous transition), by a
    timer or not; its moves past the slot's own go in a block of the pool P (slots.INLINE),
    taken at the first of them."""
    if r.st[e] == state:
        return
    k = r.ntr[e]
    if k > 0:
        before = since(r, P, e)
        if ts < before:
            ts = before
    if k == MAXT:  # full: the latest move takes the last place (since() stays true)
        k -= 1
        _weird(r, A_MOVES_DROPPED)
    if k < INLINE:
        r.mv_ts[e, k] = ts
        r.mv_st[e, k] = state
        r.mv_timer[e, k] = timer
    else:
        if r.mv_more[e] == 0:
            r.mv_more[e] = _take(P)
        b = P[r.mv_more[e]]
        b.ts[k - INLINE] = ts
        b.st[k - INLINE] = state
        b.timer[k - INLINE] = timer
    r.ntr[e] = k + 1
    r.st[e] = state


@njit(cache=True, nogil=True)
def _take(P):
    """A block of the pool: the first free one, else one never taken (the pool has one for
    each endpoint of every slot, and pages of memory only for those taken). Its first
    block keeps the list of free ones (`next`: the first, 0 none) and how many were ever
    taken (ts[0])."""
    b = P[0].next
    if b:
        P[0].next = P[b].next
    else:
        b = np.int32(P[0].ts[0]) + 1
        P[0].ts[0] = b
    return b


@njit(cache=True, nogil=True)
def unpack(r, P, row):
    """Copy the moves of a retired connection (its slot r) whole into `row` (slots.ROW, its
    other fields copied already), zeros after them, and give its blocks back."""
    for e in range(2):
        for k in range(MAXT):
            if k < r.ntr[e]:
                row.tr_ts[e, k], row.tr_st[e, k], row.tr_timer[e, k] = move_at(r, P, e, k)
            else:
                row.tr_ts[e, k], row.tr_st[e, k], row.tr_timer[e, k] = 0.0, 0, 0
        b = r.mv_more[e]
        if b:
            P[b].next = P[0].next
            P[0].next = b


@njit(cache=True, nogil=True, inline="always")
def move_at(r, P, e, k):
    """Endpoint e's move k (below ntr): (its time, the state entered, tr_timer's value)."""
    if k < INLINE:
        return r.mv_ts[e, k], r.mv_st[e, k], r.mv_timer[e, k]
    b = P[r.mv_more[e]]
    return b.ts[k - INLINE], b.st[k - INLINE], b.timer[k - INLINE]


@njit(cache=True, nogil=True, inline="always")
def since(r, P, e):
    """When endpoint e's current state was entered."""
    return move_at(r, P, e, r.ntr[e] - 1)[0]


@njit(cache=True, nogil=True, inline="always")
def closed(r):
    return r.st[0] == CLOSED and r.st[1] == CLOSED


@njit(cache=True, nogil=True, inline="always")
def expire(r, P, now, tw, ft):
    """Apply the timers that ran out by `now` (timer_at)."""
    for e in range(2):
        known, at = timer_at(r, P, e, tw, ft)
        if now >= known:
            enter(r, P, e, at, CLOSED, True)


@njit(cache=True, nogil=True, inline="always")
def deadline(r, P, tw, ft, linger):
    """The next capture time at which a timer or the retirement of a closed connection (after
    `linger`) is due; NaN for none."""
    if closed(r):
        return r.last_ts + linger
    due = min(timer_at(r, P, 0, tw, ft)[0], timer_at(r, P, 1, tw, ft)[0])
    return due if due < np.inf else np.nan


@njit(cache=True, nogil=True, inline="always")
def _weird(r, a):
    r.anom[a] += 1


@njit(cache=True, nogil=True, inline="always")
def closed_before(r, s, o):
    """Whether an in-window RST from endpoint s, ending the connection, shows that s closed
    first, before the capture began (a capture that starts late): it answers o's FIN, not
    acknowledged, and s's side of the connection is not in the capture (it was open when
    the capture began, and s sent no SYN, data or FIN in it). A socket that receives a FIN
    acknowledges it; a RST is its kernel's answer when the socket is gone: s closed (its
    FIN before the capture, its FIN_WAIT_2 since expired) or vanished, and o had been sitting
    on the half-closed connection, in CLOSE_WAIT, until it sent its FIN."""
    return (r.roles == BY_PORT and r.fin_seq[o] != -1 and r.fin_seq[s] == -1
            and not r.fin_acked[o] and r.payload[s] == 0 and r.syns[s] == 0
            and r.ntr[o] == 2 and r.mv_st[o, 1] == FIN_WAIT_1 and r.ntr[s] == 1)


@njit(cache=True, nogil=True, inline="always")
def _unacked(r, e):
    """Bytes of data endpoint e sent that its peer has not acknowledged (as captured)."""
    if r.nxt[e] == -1 or r.last_ack[1 - e] == -1:
        return 0
    out = (r.nxt[e] - r.last_ack[1 - e]) & MASK
    if out >= 1 << 31:  # acknowledged beyond what was captured
        return 0
    return max(out - (1 if r.fin_seq[e] != -1 and not r.fin_acked[e] else 0), 0)


@njit(cache=True, nogil=True)
def _rst(r, P, d, s, o, flags, seq, ack, ts):
    r.rsts[s] += 1
    if not rst_acceptable(r.st[o], r.syn_acked[o] != 0, flags, seq, ack, r.isn[o],
                          r.last_ack[o], r.win[o], r.wscale[o]):
        _weird(r, A_RST_OUT)
        return
    if r.reset_by == -1:
        r.reset_by = d
        r.rst_answer = not flags & ACK and r.last_ack[o] != -1 and seq == r.last_ack[o]
        for e in range(2):
            r.rst_unacked[e] = _unacked(r, e)
        if closed_before(r, s, o):
            # the peer was in CLOSE_WAIT and this FIN moved it to LAST_ACK; s had closed,
            # and if it had sent anything (ACKs, in FIN_WAIT_2), its socket has gone since
            r.inferred = True
            r.mv_st[o, 0], r.mv_st[o, 1], r.st[o] = CLOSE_WAIT, LAST_ACK, LAST_ACK
            r.st[s] = r.mv_st[s, 0] = CLOSED if r.packets[s] == 1 else FIN_WAIT_2
    enter(r, P, s, ts, CLOSED, False)
    enter(r, P, o, ts, CLOSED, False)


@njit(cache=True, nogil=True)
def _syn(r, P, s, o, flags, seq, ack, ws, opts, ts):
    synack = (flags & ACK) != 0
    offered = opts | (SYN_WS if ws >= 0 else 0)  # syn_opts, for a first SYN or request
    if r.isn[s] == -1:
        r.isn[s] = seq
        r.syn_ts[s] = ts
        r.syns[s] = 1
        r.wscale[s] = ws
        r.syn_opts[s] = offered
        if r.isn[o] != -1 and (r.wscale[s] == -1 or r.wscale[o] == -1):
            # scaling is used only if both SYNs offer it
            r.wscale[s] = 0
            r.wscale[o] = 0
        if synack:
            if r.isn[o] != -1 and ack != (r.isn[o] + 1) & MASK:
                _weird(r, A_BAD_SYNACK)
            if r.st[s] == CLOSED:  # its ACK did not cover a SYN we saw
                enter(r, P, s, ts, SYN_RCVD, False)
        elif r.st[s] == CLOSED:
            enter(r, P, s, ts, SYN_SENT, False)
    elif seq == r.isn[s]:
        r.syns[s] += 1
        _weird(r, A_SYNACK_RETX if synack else A_SYN_RETX)
        if synack and r.syn_acked[s] and r.st[s] == ESTABLISHED \
                and ts - since(r, P, s) >= _MIN_RTO:
            # (not one sent with the answer to a SYN sent again, crossing the ACK)
            r.synack_after_ack += 1
        gap = ts - r.syn_ts[s]
        # a client sends its SYN again until it gets the SYN-ACK (whether or not its SYN
        # was seen to arrive), a listener its SYN-ACK until the ACK
        if (r.st[s] == SYN_SENT or not r.syn_acked[s]) and gap >= _MIN_RTO:
            same = abs(gap - r.syn_gap[s]) < 0.1 * gap
            r.syn_run[s] = min(np.int64(r.syn_run[s]) + 1, 255) if same else 1  # (255: or more)
            r.syn_gap[s] = gap
            r.syn_ts[s] = ts
    elif synack and not r.syn_acked[s] and (r.st[s] == SYN_RCVD or r.st[s] == CLOSED):
        # the listener's request expired and a SYN sent again made a new one
        _weird(r, A_NEW_REQUEST)
        due = r.syn_ts[s] + next_syn(r, s)
        if r.st[s] == SYN_RCVD and ts >= due:  # the first expired when its retry was due
            enter(r, P, s, due, CLOSED, True)
        r.isn[s] = seq
        r.syn_ts[s] = ts
        r.syn_opts[s] = offered
        r.syns[s] += 1
        r.syn_gap[s] = r.syn_run[s] = 0
        if r.st[s] == CLOSED:
            enter(r, P, s, ts, SYN_RCVD, False)
    else:
        _weird(r, A_SYN_INSIDE)


@njit(cache=True, nogil=True)
def handshake_gaps(r):
    """A retired connection's (slots.ROW) handshake as captured: the gaps between the SYN
    and the SYN/ACK and between the SYN/ACK and the ACK (the latest transmission of each
    SYN before it was acknowledged); (-1, -1) unless all three were captured, in order."""
    for k in range(r.ntr[1]):
        if r.tr_st[1, k] == ESTABLISHED:
            return _gaps(r, r.tr_ts[1, k])
    return -1.0, -1.0


@njit(cache=True, nogil=True)
def _live_handshake_gaps(r, P):
    """handshake_gaps of a live connection (its slot, its blocks in P)."""
    for k in range(r.ntr[1]):
        ts, state, _ = move_at(r, P, 1, k)
        if state == ESTABLISHED:
            return _gaps(r, ts)
    return -1.0, -1.0


@njit(cache=True, nogil=True, inline="always")
def _gaps(r, established):
    """handshake_gaps, the server having first moved to ESTABLISHED at `established`."""
    if r.roles != BY_SYN or r.isn[0] == -1 or r.isn[1] == -1 or not r.syn_acked[1]:
        return -1.0, -1.0
    syn_rtt, ack_gap = r.syn_ts[1] - r.syn_ts[0], established - r.syn_ts[1]
    if syn_rtt >= 0 and ack_gap >= 0:
        return syn_rtt, ack_gap
    return -1.0, -1.0


@njit(cache=True, nogil=True, inline="always")
def _sent_before_reset(r, P, s, flags, ts):
    """Whether a segment from endpoint s, captured after the peer's RST closed the
    connection, was sent before that RST reached s: within a round trip of it (by the
    handshake) and s closed by that RST only. Then s was still alive: a capture near the
    RST's sender sees the RST before what s sent in the meantime (its FIN, say)."""
    k = r.ntr[s] - 1
    if flags & RST or r.reset_by != 1 - s or k < 1:
        return False
    at, state, timer = move_at(r, P, s, k)
    if state != CLOSED or timer:
        return False
    syn_rtt, ack_gap = _live_handshake_gaps(r, P)
    return syn_rtt >= 0 and ts - at <= syn_rtt + ack_gap


@njit(cache=True, nogil=True)
def _control(r, P, d, flags, seq, ack, wn, plen, ws, opts, ts, tw, ft):
    s, o = d, 1 - d
    if r.st[s] == FIN_WAIT_2 and not flags & RST and flags & ACK and r.last_ack[s] != -1 \
            and ack != r.last_ack[s] and after_or_at(ack, r.last_ack[s]):
        r.fw2_alive[s] = True  # an orphaned socket answers new data with a RST, not an ACK
    expire(r, P, ts, tw, ft)
    reopened = False
    if closed(r) and not flags & SYN:
        if not _sent_before_reset(r, P, s, flags, ts):
            _weird(r, A_RST_AFTER if flags & RST else A_PACKET_AFTER)
            return
        r.ntr[s] -= 1  # s was alive: it takes this segment, then the RST when it arrives
        r.st[s] = move_at(r, P, s, r.ntr[s] - 1)[1]
        reopened = True
    if flags & RST:
        _rst(r, P, d, s, o, flags, seq, ack, ts)
        return
    r.win[s] = window_of(flags, wn)
    if flags & ACK:
        if r.isn[o] != -1 and not r.syn_acked[o] and after_or_at(ack, r.isn[o] + 1):
            # s received o's SYN (at the SYN's time) and o learns its SYN arrived
            r.syn_acked[o] = True
            if r.st[o] == SYN_RCVD:
                enter(r, P, o, ts, ESTABLISHED, False)
            if r.st[s] == CLOSED:
                enter(r, P, s, r.syn_ts[o], SYN_RCVD, False)
            elif r.st[s] == SYN_SENT:
                enter(r, P, s, r.syn_ts[o], ESTABLISHED if r.syn_acked[s] else SYN_RCVD, False)
        if r.fin_seq[o] != -1 and not r.fin_acked[o] and after_or_at(ack, r.fin_seq[o] + 1):
            r.fin_acked[o] = True
            nxt = OWN_FIN_ACKED[r.st[o]]
            if nxt >= 0:
                enter(r, P, o, ts, nxt, False)
            nxt = PEER_FIN_RECEIVED[r.st[s]]
            if nxt >= 0:
                enter(r, P, s, r.fin_ts[o], nxt, False)
        r.last_ack[s] = ack
    if flags & SYN:
        _syn(r, P, s, o, flags, seq, ack, ws, opts, ts)
    if flags & FIN:
        fs = (seq + plen + (1 if flags & SYN else 0)) & MASK
        if r.fin_seq[s] == -1:
            r.fin_seq[s] = fs
            r.fin_ts[s] = ts
            r.fins[s] = 1
            nxt = SENT_FIN[r.st[s]]
            if nxt >= 0:
                enter(r, P, s, ts, nxt, False)
            elif r.st[s] == SYN_SENT:
                _weird(r, A_FIN_BEFORE)
        elif fs == r.fin_seq[s]:
            r.fins[s] += 1
            _weird(r, A_FIN_RETX)
            if not r.fin_acked[s]:
                r.fin_ts[s] = ts
        else:
            _weird(r, A_FIN_SEQ_CHANGED)
    if reopened:  # when the RST arrived: no later than this, as far as the capture shows
        enter(r, P, s, ts, CLOSED, INFERRED_MOVE)


@njit(cache=True, nogil=True, inline="always")
def _sequence(r, s, flags, seq, plen):
    """Wireshark's sequence analysis, in part: a keep-alive sits one below the highest
    sequence number sent so far, a retransmitted (or reordered) segment starts below it;
    SYNs and FINs sent again are counted apart. Returns the bytes of new data, and whether
    it was sent again (data, or a FIN)."""
    end = (seq + plen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)) & MASK
    nxt = r.nxt[s]
    if nxt == -1:
        r.nxt[s] = end
        return plen, False
    again = False
    if plen <= 1 and seq == (nxt - 1) & MASK and not flags & (SYN | FIN):
        _weird(r, A_KEEP_ALIVE)
        return 0, False
    if plen and not flags & (SYN | FIN) and not after_or_at(seq, nxt):
        _weird(r, A_RETX)
        again = True
    new = 0
    if not after_or_at(nxt, end):
        new = min((end - nxt) & MASK, plen)
        r.nxt[s] = end
    return new, again or ((flags & FIN) != 0 and end == nxt)


@njit(cache=True, nogil=True, inline="always")
def _heard(r, s, flags, seq, ack, plen, wn, ts):
    """Endpoint s sent a segment other than a RST: what the diagnoses read of it (the
    fields after `ws` in track/slots.py), and Wireshark's sequence analysis."""
    o = 1 - s
    new, again = _sequence(r, s, flags, seq, plen)
    if again:
        r.retx_gap[s] = ts - r.heard[s]
    r.heard[s] = ts
    r.quiet_retx[o] = 0
    if flags & SYN == 0:  # (a SYN's window is never scaled: not compared)
        if wn == 0 and np.isnan(r.zw_since[s]):
            r.zw_since[s] = ts
            r.zw_stalls[s] += 1
        elif wn != 0 and not np.isnan(r.zw_since[s]):
            r.zw_longest[s] = max(r.zw_longest[s], ts - r.zw_since[s])
            r.zw_since[s] = np.nan
    r.quiet_retx[s] += again
    if flags & FIN and r.fin_seq[s] == -1:
        r.fin_idle[s] = ts - r.data_ts
    if new:
        r.data_ts = ts
        if r.talked != s:
            r.talked = s
            r.run[s] = 0
        r.run[s] += new
        if r.fin_seq[o] != -1 and np.isnan(r.crossed[s]) and flags & ACK \
                and not after_or_at(ack, r.fin_seq[o] + 1):
            r.crossed[s] = ts


@njit(cache=True, nogil=True, inline="always")
def clock_of(r, P, ts, now):
    """The connection's clock for a segment captured at `ts`: its last segment, or a timer
    that ran out since (at a deadline the capture's clock, `now`, had passed: a segment
    earlier than that came late, which only a capture whose clock went back has)."""
    clock = r.last_ts
    if ts < now:
        for e in range(2):
            if r.ntr[e] > 0 and since(r, P, e) > clock:
                clock = since(r, P, e)
    return clock


@njit(cache=True, nogil=True)
def segment(r, d, flags, seq, ack, wn, plen, ipid, ts, clock):
    """Apply one segment sent by endpoint d, but for what it does to the states (control):
    its time, or the connection's clock (clock_of) if it came earlier, when that remains
    to be done; NaN when not (a duplicate, or data between established endpoints). Apart
    from `control`, so that the pool of moves (slots.MOVES) is passed only to what
    changes a state."""
    s = d
    if ts < clock:
        _weird(r, A_BACKWARDS)
        ts = clock
    r.last_ts = ts
    sig = r.sig
    # (an IP id of 0 tells nothing: Linux sends a listener's SYN-ACKs so, and one answering
    # a SYN sent again may follow its timer's within microseconds)
    if ipid and r.sig_id[s] == ipid and sig[s, 0] == seq and sig[s, 1] == ack \
            and r.sig_flags[s] == flags and sig[s, 2] == plen \
            and ts - r.last_seen[s] < _DUPLICATE_WINDOW:
        _weird(r, A_DUPLICATE)
        return np.nan
    r.sig_id[s] = ipid
    r.sig_flags[s] = flags
    sig[s, 0] = seq
    sig[s, 1] = ack
    sig[s, 2] = plen
    r.last_seen[s] = ts
    r.packets[s] += 1
    r.payload[s] += plen
    if not flags & RST:
        _heard(r, s, flags, seq, ack, plen, wn, ts)
    if not flags & (SYN | FIN | RST) and r.st[s] == ESTABLISHED and r.st[1 - s] == ESTABLISHED:
        # data transfer: nothing to acknowledge that could change a state
        if flags & ACK:
            r.last_ack[s] = ack
        r.win[s] = wn
        return np.nan
    return ts


@njit(cache=True, nogil=True, inline="always")
def control(r, P, d, flags, seq, ack, wn, plen, ws, opts, ts, tw, ft):
    """What a segment (its time as `segment` returned it) does to the states: True if it
    changed one (so that the connection's timers may have changed). `ws` and `opts`: a
    SYN's window scale and other options (decode/frames.py's wscale and synopt)."""
    moves = r.ntr[0] + r.ntr[1]
    _control(r, P, d, flags, seq, ack, wn, plen, ws, opts, ts, tw, ft)
    # a SYN, or data, sent again moves its give-up timer too
    return r.ntr[0] + r.ntr[1] != moves or (flags & SYN) != 0 \
        or r.quiet_retx[d] >= GIVE_UP_AFTER
