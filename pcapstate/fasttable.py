"""The compiled engine: the connection table and the per-endpoint state machine of
table.py and machine.py, over columns (numba), for batches of decoded records.

machine.py and table.py are the specification, written for people; this module does what
they do, step for step, on arrays: a connection is a slot, an endpoint a (slot, index) pair,
the timer heap three arrays. tests/test_fasttable.py runs both engines on every sample and on
random segment sequences and requires the same connections, transitions and verdicts.

The Python side (`FastTracker`) grows the arrays when they fill. Retired connections are
folded into the summary's aggregates by compiled code (`fold`, verdict.py's rules); only
those with a stuck endpoint, and every one when records are asked for, become a
machine.Connection for the summary's Python code; briefs are read from the records in bulk.
"""

from functools import lru_cache
from typing import Any

import numpy as np
from numba import types
from numba.typed import Dict

from pcapstate import zeek
from pcapstate.jit import njit
from pcapstate.machine import (
    OWN_FIN_ACKED,
    PEER_FIN_RECEIVED,
    SENT_FIN,
    Connection,
    Endpoint,
    ip_text,
    rst_acceptable,
    timer_at,
)
from pcapstate.scan import TCP, Batch
from pcapstate.seq import MASK, after_or_at, delta
from pcapstate.settings import Settings
from pcapstate.summary import Summary
from pcapstate.table import ATTEMPT_QUIET, looks_like_server
from pcapstate.verdict import UNTOLD, closer_code, end_code, vantage_side
from pcapstate.vocab import (
    ACK,
    ANOMALIES,
    FIN,
    RST,
    SYN,
    WIRESHARK_ANALYSIS,
    Closer,
    EndKind,
    Roles,
    State,
    codes,
)
from pcapstate.zeek import (
    ATTEMPT,
    CLOSE_DELAY,
    CONN_STATES,
    HANDSHAKE_INACTIVITY,
    INACTIVITY,
    LIKELY_SERVER_PORTS,
    LINGER,
    MAX_BLOCKS,
    RESET_DELAY,
    ZEEK_HISTORY,
    ZeekConn,
)

# The vocabulary's codes (vocab.codes), taken by name: the compiled code's constants.
STATES = list(State)
_S = codes(State)
CLOSED, SYN_SENT, SYN_RCVD = _S[State.CLOSED], _S[State.SYN_SENT], _S[State.SYN_RCVD]
ESTABLISHED, FIN_WAIT_1 = _S[State.ESTABLISHED], _S[State.FIN_WAIT_1]
FIN_WAIT_2, CLOSE_WAIT = _S[State.FIN_WAIT_2], _S[State.CLOSE_WAIT]
CLOSING, LAST_ACK, TIME_WAIT = _S[State.CLOSING], _S[State.LAST_ACK], _S[State.TIME_WAIT]
ANOMALY_NAMES = list(ANOMALIES)
_A = codes(ANOMALIES)
A_BACKWARDS, A_DUPLICATE = _A["timestamp_backwards"], _A["duplicate_segment"]
A_SYN_RETX, A_SYNACK_RETX = _A["syn_retransmitted"], _A["synack_retransmitted"]
A_FIN_RETX, A_SYN_INSIDE = _A["fin_retransmitted"], _A["syn_inside_connection"]
A_FIN_SEQ_CHANGED, A_RST_OUT = _A["fin_seq_changed"], _A["rst_out_of_window"]
A_RST_AFTER, A_PACKET_AFTER = _A["rst_after_close"], _A["packet_after_close"]
A_FIN_BEFORE, A_BAD_SYNACK = _A["fin_before_handshake"], _A["bad_synack_ack"]
A_RETX, A_KEEP_ALIVE = _A["retransmission"], _A["keep_alive"]
ROLE_NAMES = [Roles.SYN, Roles.SYNACK, Roles.PORT]
END_NAMES = [k.value for k in EndKind]
STATE_NAMES = [st.value for st in State]
CLOSER_NAMES = [c.value for c in Closer]
# Transitions per endpoint: each move into a state other than CLOSED comes from a one-shot
# event (the open, the first SYN, FIN, and the first ACK of each side's SYN and FIN), so 7 at
# most, and CLOSED between them: 15.
MAXT = 16

_M = MASK
_DUPLICATE_WINDOW = 0.001
_SWEEP_EVERY = 1.0

# Scalars kept in one float64 array, so the compiled code can update them.
NOW, NEXT_SWEEP, CONNECTIONS, PEAK, HEAP_N, FREE_N, RETIRED_N, TIME_WAIT_S, FIN_TIMEOUT_S, \
    LINGER_S, LIVE, LIMIT, EVICTED = range(13)  # EVICTED: one count per tier, from here
ZLINES_N = EVICTED + 3  # Zeek's connections ended in the run (ZLINE), waiting
NS = ZLINES_N + 1
# What a call stopped for.
DONE, NEED_SLOTS, NEED_HEAP, NEED_RETIRE, NEED_ZLINES = 0, 1, 2, 3, 4

_KEY = types.UniTuple(types.int64, 5)

# One connection slot: what machine.Connection holds, as a packed record; fields shaped
# (2,) are per endpoint (0 = client, 1 = server). One record per connection keeps what a
# segment touches together in memory, and compiled functions pass a record by pointer.
SLOT = np.dtype([
    ("st", np.int8, 2), ("ntr", np.int8, 2), ("tr_ts", np.float64, (2, MAXT)),
    ("tr_st", np.int8, (2, MAXT)), ("tr_timer", np.uint8, (2, MAXT)), ("left", np.uint8, 2),
    ("isn", np.int64, 2), ("syn_ts", np.float64, 2), ("syn_acked", np.uint8, 2),
    ("fin_seq", np.int64, 2), ("fin_ts", np.float64, 2), ("fin_acked", np.uint8, 2),
    ("last_ack", np.int64, 2), ("nxt", np.int64, 2), ("win", np.int64, 2),
    ("wscale", np.int64, 2),
    ("fw2_alive", np.uint8, 2), ("packets", np.int64, 2), ("payload", np.int64, 2),
    ("syns", np.int32, 2), ("fins", np.int32, 2), ("rsts", np.int32, 2),
    # (flags are uint8: numba has no nested boolean arrays)
    # the last segment each endpoint sent (ip id, seq, ack, flags, payload), for duplicates
    ("sig", np.int64, (2, 5)), ("last_seen", np.float64, 2),
    ("ip_hi", np.uint64, 2), ("ip_lo", np.uint64, 2), ("port", np.int64, 2),
    ("cid", np.int64), ("roles", np.int8), ("v6", np.uint8), ("first_ts", np.float64),
    ("last_ts", np.float64), ("reset_by", np.int8), ("anom", np.int32, len(ANOMALY_NAMES)),
    ("scheduled", np.float64),
    # Zeek's view (zeek.py), per endpoint by pcapstate's index; z_orig: Zeek's originator
    ("z_orig", np.int8), ("z_hist", np.uint8, ZEEK_HISTORY), ("z_hlen", np.int16),
    ("z_first", np.float64), ("z_last_ts", np.float64),
    ("z_state", np.int8, 2), ("z_prev", np.int8, 2), ("z_start", np.int64, 2),
    ("z_last", np.int64, 2), ("z_last_rel", np.int64, 2), ("z_ack", np.int64, 2),
    ("z_ack_rel", np.int64, 2), ("z_seen", np.int32, 2), ("z_lsyn", np.int64, 2),
    ("z_lfin", np.int64, 2), ("z_lrst", np.int64, 2), ("z_rx", np.int64, 2),
    ("z_rxn", np.int64, 2), ("z_w0", np.int64, 2), ("z_w0n", np.int64, 2),
    ("z_fins", np.int64, 2), ("z_pkts", np.int64, 2), ("z_ipb", np.int64, 2),
    ("z_closed", np.uint8, 2),
    # the reassembler of each endpoint's data (ZeekEndpoint.reassembled ... gaps_next)
    ("z_fin_seq", np.int64, 2), ("z_reasm", np.int64, 2), ("z_trim", np.int64, 2),
    ("z_blk", np.int64, (2, MAX_BLOCKS, 2)), ("z_nblk", np.int8, 2), ("z_gap", np.int64, 2),
    ("z_gapn", np.int64, 2), ("z_missed", np.int64), ("z_partial", np.uint8),
    ("z_chk", np.int64, 2), ("z_chkn", np.int64, 2),  # bad checksums, for the C letter
    ("z_attempt", np.float64), ("z_end", np.float64),  # ZeekConn.attempt_at, end_at
    ("z_top", np.int64, 2), ("z_eof", np.uint8, 2), ("z_deferred", np.uint8),
    ("ws", np.int32, len(WIRESHARK_ANALYSIS)),  # Wireshark's analysis flags, counted
    # the live connections of a tier (vocab.Tier) in a list, most recently active first
    ("tier", np.int8), ("lru_prev", np.int64), ("lru_next", np.int64), ("evicted", np.uint8),
])
# The tiers' lists: LISTS[3 * t + HEAD] is tier t's most recently active slot (-1: none),
# LISTS[3 * t + TAIL] its least, LISTS[3 * t + COUNT] its length.
HEAD, TAIL, COUNT = range(3)
# The timer heap (earliest due first, ties by connection id) and the retired list.
HEAP = np.dtype([("due", np.float64), ("cid", np.int64), ("slot", np.int64)])
RETIRED = np.dtype([("slot", np.int64), ("time", np.float64)])
# A connection Zeek ended while pcapstate's went on (ZeekConn.ended): what ZeekConn.rebuilt
# needs, by the slot's field names, and the id of pcapstate's connection.
ZLINE = np.dtype([("cid", np.int64)] + [(name, SLOT[name]) for name in (
    "z_orig", "z_hist", "z_hlen", "z_first", "z_last_ts", "z_missed", "z_state", "z_prev",
    "z_last_rel", "z_ack_rel", "z_fins", "z_pkts", "z_ipb")])


_after_or_at = njit(cache=True, nogil=True, inline="always")(after_or_at)


@njit(cache=True, nogil=True, inline="always")
def _enter(r, e, ts, state, timer):
    if r.st[e] == state:
        return
    k = r.ntr[e]
    if k > 0 and ts < r.tr_ts[e, k - 1]:
        ts = r.tr_ts[e, k - 1]
    if k < MAXT:
        r.tr_ts[e, k] = ts
        r.tr_st[e, k] = state
        r.tr_timer[e, k] = timer
        r.ntr[e] = k + 1
    r.st[e] = state


@njit(cache=True, nogil=True, inline="always")
def _since(r, e):
    return r.tr_ts[e, r.ntr[e] - 1]


@njit(cache=True, nogil=True, inline="always")
def _closed(r):
    return r.st[0] == CLOSED and r.st[1] == CLOSED


@njit(cache=True, nogil=True, inline="always")
def _expire(r, now, tw, ft):
    for e in range(2):
        at = _timer_at(r.st[e], _since(r, e), r.fw2_alive[e] != 0, tw, ft)
        if now >= at:
            _enter(r, e, at, CLOSED, True)


@njit(cache=True, nogil=True, inline="always")
def _deadline(r, tw, ft, linger):
    """The next timer or eviction time; NaN for none."""
    if _closed(r):
        return r.last_ts + linger
    due = min(_timer_at(r.st[0], _since(r, 0), r.fw2_alive[0] != 0, tw, ft),
              _timer_at(r.st[1], _since(r, 1), r.fw2_alive[1] != 0, tw, ft))
    return due if due < np.inf else np.nan


@njit(cache=True, nogil=True, inline="always")
def _weird(r, a):
    r.anom[a] += 1


_rst_acceptable = njit(cache=True, nogil=True)(rst_acceptable)
_timer_at = njit(cache=True, nogil=True, inline="always")(timer_at)


@njit(cache=True, nogil=True)
def _rst(r, d, s, o, flags, seq, ack, ts):
    r.rsts[s] += 1
    if not _rst_acceptable(r.st[o], r.syn_acked[o] != 0, flags, seq, ack, r.isn[o],
                           r.last_ack[o], r.win[o], r.wscale[o]):
        _weird(r, A_RST_OUT)
        return
    if r.reset_by == -1:
        r.reset_by = d
    _enter(r, s, ts, CLOSED, False)
    _enter(r, o, ts, CLOSED, False)


@njit(cache=True, nogil=True)
def _syn(r, s, o, flags, seq, ack, ws, ts):
    synack = (flags & ACK) != 0
    if r.isn[s] == -1:
        r.isn[s] = seq
        r.syn_ts[s] = ts
        r.syns[s] = 1
        r.wscale[s] = ws
        if r.isn[o] != -1 and (r.wscale[s] == -1 or r.wscale[o] == -1):
            r.wscale[s] = 0
            r.wscale[o] = 0
        if synack:
            if r.isn[o] != -1 and ack != (r.isn[o] + 1) & _M:
                _weird(r, A_BAD_SYNACK)
            if r.st[s] == CLOSED:
                _enter(r, s, ts, SYN_RCVD, False)
        elif r.st[s] == CLOSED:
            _enter(r, s, ts, SYN_SENT, False)
    elif seq == r.isn[s]:
        r.syns[s] += 1
        _weird(r, A_SYNACK_RETX if synack else A_SYN_RETX)
        if not r.syn_acked[s]:
            r.syn_ts[s] = ts
    else:
        _weird(r, A_SYN_INSIDE)


@njit(cache=True, nogil=True)
def _control(r, d, flags, seq, ack, wn, plen, ws, ts, tw, ft):
    s, o = d, 1 - d
    if r.st[s] == FIN_WAIT_2 and not flags & RST and flags & ACK and r.last_ack[s] != -1 \
            and ack != r.last_ack[s] and _after_or_at(ack, r.last_ack[s]):
        r.fw2_alive[s] = True
    _expire(r, ts, tw, ft)
    if _closed(r) and not flags & SYN:
        _weird(r, A_RST_AFTER if flags & RST else A_PACKET_AFTER)
        return
    if flags & RST:
        _rst(r, d, s, o, flags, seq, ack, ts)
        return
    r.win[s] = wn
    if flags & ACK:
        if r.isn[o] != -1 and not r.syn_acked[o] and _after_or_at(ack, r.isn[o] + 1):
            r.syn_acked[o] = True
            if r.st[o] == SYN_RCVD:
                _enter(r, o, ts, ESTABLISHED, False)
            if r.st[s] == CLOSED:
                _enter(r, s, r.syn_ts[o], SYN_RCVD, False)
            elif r.st[s] == SYN_SENT:
                _enter(r, s, r.syn_ts[o], ESTABLISHED if r.syn_acked[s] else SYN_RCVD, False)
        if r.fin_seq[o] != -1 and not r.fin_acked[o] and _after_or_at(ack, r.fin_seq[o] + 1):
            r.fin_acked[o] = True
            nxt = OWN_FIN_ACKED[r.st[o]]
            if nxt >= 0:
                _enter(r, o, ts, nxt, False)
            nxt = PEER_FIN_RECEIVED[r.st[s]]
            if nxt >= 0:
                _enter(r, s, r.fin_ts[o], nxt, False)
        r.last_ack[s] = ack
    if flags & SYN:
        _syn(r, s, o, flags, seq, ack, ws, ts)
    if flags & FIN:
        fs = (seq + plen + (1 if flags & SYN else 0)) & _M
        if r.fin_seq[s] == -1:
            r.fin_seq[s] = fs
            r.fin_ts[s] = ts
            r.fins[s] = 1
            nxt = SENT_FIN[r.st[s]]
            if nxt >= 0:
                _enter(r, s, ts, nxt, False)
            elif r.st[s] == SYN_SENT:
                _weird(r, A_FIN_BEFORE)
        elif fs == r.fin_seq[s]:
            r.fins[s] += 1
            _weird(r, A_FIN_RETX)
            if not r.fin_acked[s]:
                r.fin_ts[s] = ts
        else:
            _weird(r, A_FIN_SEQ_CHANGED)


# ---- Zeek's view: zeek.py, step for step --------------------------------------------

# Zeek's likely server ports (zeek.LIKELY_SERVER_PORTS, 47 since Zeek 8.1), compiled in
_LIKELY = np.zeros(1 << 16, np.bool_)
_LIKELY[list(LIKELY_SERVER_PORTS)] = True
# Zeek's endpoint states and history bits, as zeek.py numbers them
Z_INACTIVE, Z_SYN_SENT, Z_SYN_ACK_SENT, Z_PARTIAL = (zeek.INACTIVE, zeek.SYN_SENT,
                                                     zeek.SYN_ACK_SENT, zeek.PARTIAL)
Z_ESTABLISHED, Z_CLOSED, Z_RESET = zeek.ESTABLISHED, zeek.CLOSED, zeek.RESET
_H_SYN, _H_FIN, _H_RST, _H_FIN_RST = zeek._SYN, zeek._FIN, zeek._RST, zeek._FIN_RST
_H_DATA, _H_ACK, _H_MULTI = zeek._DATA, zeek._ACK, zeek._MULTI
# Zeek's history letters (the originator's; the responder's are these in lower case) and
# the flip mark, as the bytes of the history
L_S, L_H, L_A, L_D, L_F, L_R, L_C = ord("S"), ord("H"), ord("A"), ord("D"), ord("F"), ord("R"), \
    ord("C")
L_G, L_I, L_Q, L_W, L_T, L_FLIP = ord("G"), ord("I"), ord("Q"), ord("W"), ord("T"), ord("^")
_JUMP = 1 << 20


_sdelta = njit(cache=True, nogil=True, inline="always")(delta)


_flips = njit(cache=True, nogil=True)(zeek.flips)


@njit(cache=True, nogil=True)
def _z_flips(flags, sport, dport):
    """zeek.flips_at_creation."""
    return _flips(flags, sport, dport, _LIKELY[sport], _LIKELY[dport])


@njit(cache=True, nogil=True)
def _z_add(r, e, letter):
    """ZeekConn._add: upper case for the originator. A history longer than the record
    holds is cut (zeek.ZEEK_HISTORY)."""
    if r.z_hlen < len(r.z_hist):
        r.z_hist[r.z_hlen] = letter if e == r.z_orig or letter == L_FLIP else letter + 32
        r.z_hlen += 1


@njit(cache=True, nogil=True)
def _z_check(r, e, bit, letter):
    if r.z_seen[e] & bit:
        return True
    r.z_seen[e] |= bit
    _z_add(r, e, letter)
    return False


@njit(cache=True, nogil=True)
def _z_set(r, e, state):
    if state != r.z_state[e]:
        r.z_prev[e] = r.z_state[e]
        r.z_state[e] = state


@njit(cache=True, nogil=True)
def _z_close_on(r, e, fin, rst):
    """ZeekEndpoint.close_on."""
    if fin:
        _z_set(r, e, Z_CLOSED)
    if rst:
        _z_set(r, e, Z_RESET)
    return fin != 0 or rst != 0


@njit(cache=True, nogil=True)
def _z_pending(r, x):
    """ZeekConn._pending."""
    if r.z_last_rel[x] < r.z_reasm[x]:
        return False
    if r.z_reasm[x] != r.z_last_rel[x] - 1 and r.z_reasm[x] != r.z_last_rel[x]:
        return True
    return r.z_state[x] != Z_RESET and r.z_top[1 - x] > r.z_trim[1 - x]


@njit(cache=True, nogil=True)
def _z_conn_closed(r, x):
    """ZeekConn._closed."""
    if _z_pending(r, x):
        r.z_deferred = True
        return
    r.z_deferred = False
    if r.z_closed[x]:
        return
    r.z_closed[x] = True
    if r.z_state[x] == Z_RESET or r.z_closed[1 - x] or r.z_state[1 - x] == Z_INACTIVE:
        r.z_attempt = np.inf
        r.z_end = r.z_last_ts + CLOSE_DELAY


@njit(cache=True, nogil=True)
def _z_check_eof(r, x):
    """ZeekConn._check_eof."""
    if not r.z_eof[x] and (r.z_fins[x] > 0 or r.z_state[x] == Z_CLOSED
                           or r.z_state[x] == Z_RESET) and not _z_pending(r, x):
        r.z_eof[x] = True
        if r.z_deferred:
            r.z_deferred = False
            _z_conn_closed(r, x)


@njit(cache=True, nogil=True, inline="always")
def _z_clean(r, e):
    return r.z_state[e] == Z_ESTABLISHED or (r.z_state[e] == Z_CLOSED
                                             and r.z_prev[e] == Z_ESTABLISHED)


@njit(cache=True, nogil=True)
def _z_gap(r, x, length):
    """ZeekConn._gap."""
    if not (_z_clean(r, 0) and _z_clean(r, 1)):
        return
    r.z_gap[x] += 1
    if r.z_gap[x] == r.z_gapn[x]:
        _z_add(r, x, L_G)
        r.z_gapn[x] *= 10
    r.z_missed += length


@njit(cache=True, nogil=True)
def _z_deliver(r, x):
    """ZeekEndpoint.deliver_blocks."""
    while r.z_nblk[x] > 0 and r.z_blk[x, 0, 0] <= r.z_reasm[x]:
        r.z_reasm[x] = max(r.z_reasm[x], r.z_blk[x, 0, 1])
        for k in range(r.z_nblk[x] - 1):
            r.z_blk[x, k, 0], r.z_blk[x, k, 1] = r.z_blk[x, k + 1, 0], r.z_blk[x, k + 1, 1]
        r.z_nblk[x] -= 1


@njit(cache=True, nogil=True)
def _z_acked(r, x, up_to):
    """ZeekConn._acked."""
    if r.z_fins[x] and up_to >= r.z_fin_seq[x]:
        up_to = r.z_fin_seq[x] - 1
    if up_to <= r.z_trim[x]:
        return
    if up_to > r.z_reasm[x] and not (up_to <= 2 and r.z_partial):
        while r.z_nblk[x] > 0 and r.z_blk[x, 0, 0] < up_to:
            low = r.z_blk[x, 0, 0]
            if low > r.z_reasm[x]:
                _z_gap(r, x, low - r.z_reasm[x])
                r.z_reasm[x] = low
            _z_deliver(r, x)
        if up_to > r.z_reasm[x]:
            _z_gap(r, x, up_to - r.z_reasm[x])
        r.z_reasm[x] = max(r.z_reasm[x], up_to)
    k = 0
    for j in range(r.z_nblk[x]):
        if r.z_blk[x, j, 1] > up_to:
            r.z_blk[x, k, 0], r.z_blk[x, k, 1] = r.z_blk[x, j, 0], r.z_blk[x, j, 1]
            k += 1
    r.z_nblk[x] = k
    r.z_trim[x] = max(r.z_trim[x], up_to)
    _z_check_eof(r, x)


@njit(cache=True, nogil=True)
def _z_data(r, x, low, length):
    """ZeekConn._data."""
    high = low + length
    low = max(low, r.z_trim[x])
    if high <= low:
        return
    r.z_top[x] = max(r.z_top[x], high)
    if low <= r.z_reasm[x]:
        r.z_reasm[x] = max(r.z_reasm[x], high)
        _z_deliver(r, x)
        return
    keep = np.empty((MAX_BLOCKS + 1, 2), np.int64)
    n = 0
    for j in range(r.z_nblk[x]):
        lo, hi = r.z_blk[x, j, 0], r.z_blk[x, j, 1]
        if hi < low or lo > high:
            keep[n, 0], keep[n, 1] = lo, hi
            n += 1
        else:
            low, high = min(low, lo), max(high, hi)
    if n + 1 > MAX_BLOCKS:
        return
    k = 0
    placed = False
    for j in range(n + 1):
        if not placed and (k == n or keep[k, 0] > low):
            r.z_blk[x, j, 0], r.z_blk[x, j, 1] = low, high
            placed = True
        else:
            r.z_blk[x, j, 0], r.z_blk[x, j, 1] = keep[k, 0], keep[k, 1]
            k += 1
    r.z_nblk[x] = n + 1


@njit(cache=True, nogil=True)
def _z_start(r, d, flags, sport, dport, ts):
    """ZeekConn(): a new view, whose first segment comes from endpoint d."""
    r.z_orig = d
    r.z_hlen = 0
    r.z_first = ts
    r.z_last_ts = ts
    r.z_missed = 0
    r.z_partial = False
    r.z_attempt = np.inf
    r.z_end = np.inf
    r.z_deferred = False
    for e in range(2):
        r.z_state[e] = r.z_prev[e] = Z_INACTIVE
        r.z_start[e] = r.z_last[e] = r.z_last_rel[e] = r.z_ack[e] = r.z_ack_rel[e] = 0
        r.z_seen[e] = 0
        r.z_lsyn[e] = r.z_lfin[e] = r.z_lrst[e] = 0
        r.z_rx[e] = r.z_w0[e] = r.z_fins[e] = r.z_pkts[e] = r.z_ipb[e] = 0
        r.z_rxn[e] = r.z_w0n[e] = r.z_gapn[e] = r.z_chkn[e] = 1
        r.z_closed[e] = False
        r.z_fin_seq[e] = r.z_trim[e] = r.z_nblk[e] = r.z_gap[e] = r.z_chk[e] = 0
        r.z_reasm[e] = 1
        r.z_top[e] = 0
        r.z_eof[e] = False
    if _z_flips(flags, sport, dport):
        r.z_orig = 1 - d
        _z_add(r, 0, L_FLIP)


@njit(cache=True, nogil=True)
def _z_ended(r, now, d, flags, seq):
    """ZeekConn.ended."""
    o, p = r.z_orig, 1 - r.z_orig
    if now >= r.z_end or now >= r.z_last_ts + INACTIVITY or (
            now >= r.z_last_ts + HANDSHAKE_INACTIVITY
            and max(r.z_state[0], r.z_state[1], r.z_prev[0], r.z_prev[1]) <= Z_SYN_ACK_SENT):
        return True
    if now >= r.z_attempt:
        r.z_attempt = np.inf
        if (r.z_state[o] == Z_SYN_SENT or r.z_state[o] == Z_SYN_ACK_SENT) \
                and r.z_state[p] == Z_INACTIVE:
            return True
    if r.z_state[o] == Z_INACTIVE and r.z_state[p] == Z_INACTIVE and now > r.z_last_ts + LINGER:
        return True
    if not flags & SYN:
        return False
    first = o
    if flags & ACK:
        if r.z_state[o] != Z_INACTIVE:
            return False
        first = p
    if r.z_closed[0] or r.z_closed[1]:
        return True
    if seq == r.z_start[first]:
        return False
    return (flags & ACK) != 0 or r.z_state[first] != Z_SYN_ACK_SENT \
        or r.z_state[p] != Z_INACTIVE or seq != r.z_start[p]


@njit(cache=True, nogil=True)
def _z_emit(r, Z, S):
    """Keep slot r's Zeek view, ended, in Z (the run's ZLINEs)."""
    z = Z[np.int64(S[ZLINES_N])]
    S[ZLINES_N] += 1
    z.cid = r.cid
    z.z_orig = r.z_orig
    z.z_hist[:] = r.z_hist
    z.z_hlen = r.z_hlen
    z.z_first = r.z_first
    z.z_last_ts = r.z_last_ts
    z.z_missed = r.z_missed
    for e in range(2):
        z.z_state[e] = r.z_state[e]
        z.z_prev[e] = r.z_prev[e]
        z.z_last_rel[e] = r.z_last_rel[e]
        z.z_ack_rel[e] = r.z_ack_rel[e]
        z.z_fins[e] = r.z_fins[e]
        z.z_pkts[e] = r.z_pkts[e]
        z.z_ipb[e] = r.z_ipb[e]


@njit(cache=True, nogil=True)
def _zeek(r, e, flags, seq, ack, plen, win, ts, iplen, cut, bad_sum):
    """ZeekConn.packet."""
    if bad_sum:
        r.z_chk[e] += 1
        if r.z_chk[e] == r.z_chkn[e]:
            _z_add(r, e, L_C)
            r.z_chkn[e] *= 10
        return
    p = 1 - e
    is_orig = e == r.z_orig
    syn, fin, rst = flags & SYN, flags & FIN, flags & RST
    if r.z_pkts[e] == 0:  # SetPartialStatus
        if is_orig:
            r.z_partial = not syn or (flags & ACK) != 0
        elif not r.z_partial:
            r.z_partial = not syn
    seg_len = (0 if rst else plen) + (1 if syn else 0) + (1 if fin else 0)
    one_past = (seq + seg_len) & _M
    # init_endpoint
    st = r.z_state[e]
    if st == Z_INACTIVE or ((st == Z_SYN_SENT or st == Z_SYN_ACK_SENT) and syn
                            and seq != r.z_start[e]) \
            or ((st == Z_ESTABLISHED or st == Z_PARTIAL) and syn) \
            or (st == Z_RESET and syn and r.z_prev[e] == Z_INACTIVE):
        if syn:
            r.z_start[e] = seq
            r.z_ack[e] = seq
            r.z_last[e] = one_past
        else:
            r.z_start[e] = (seq - 1) & _M
            r.z_ack[e] = (seq - 1) & _M
            r.z_last[e] = seq
        r.z_ack_rel[e] = 0
        r.z_last_rel[e] = _sdelta(r.z_last[e], r.z_start[e])
    rel = (seq - r.z_start[e]) & _M
    # history
    bits = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
    if bits > 1:
        if fin and rst:
            _z_check(r, e, _H_FIN_RST, L_I)
        else:
            _z_check(r, e, _H_MULTI, L_Q)
    elif syn:
        code = L_H if flags & ACK else L_S
        if _z_check(r, e, _H_SYN, code) and rel != r.z_lsyn[e]:
            _z_add(r, e, code)
        r.z_lsyn[e] = rel
    elif fin:
        if _z_check(r, e, _H_FIN, L_F) and rel + plen != r.z_lfin[e]:
            _z_add(r, e, L_F)
        r.z_lfin[e] = rel + plen
    elif rst:
        if _z_check(r, e, _H_RST, L_R) and rel != r.z_lrst[e]:
            _z_add(r, e, L_R)
        r.z_lrst[e] = rel
    elif plen > 0:
        _z_check(r, e, _H_DATA, L_D)
    elif flags & ACK:
        _z_check(r, e, _H_ACK, L_A)
    # zero window
    if win == 0 and not rst and r.z_state[p] != Z_CLOSED and r.z_state[e] != Z_RESET:
        r.z_w0[e] += 1
        if r.z_w0[e] == r.z_w0n[e]:
            _z_add(r, e, L_W)
            r.z_w0n[e] *= 10
    if not (r.z_closed[0] and r.z_closed[1]):
        r.z_last_ts = ts
    if flags & ACK:
        if r.z_state[p] == Z_INACTIVE:
            r.z_start[p] = (ack - 1) & _M
            r.z_last[p] = (ack - 1) & _M
            r.z_ack[p] = (ack - 1) & _M
            r.z_last_rel[p] = 0
            r.z_ack_rel[p] = 0
        elif not rst:
            d = _sdelta(ack, r.z_ack[p])
            if d > 0:
                r.z_ack[p] = ack
                r.z_ack_rel[p] += d
    # update_last_seq
    d = _sdelta(one_past, r.z_last[e])
    if (syn or rst) and abs(d) > _JUMP:
        pass
    elif fin and r.z_last[e] == (r.z_start[e] + 1) & _M:
        r.z_last_rel[e] += d
        r.z_last[e] = one_past
    elif r.z_state[e] == Z_RESET:
        pass
    elif d > 0:
        r.z_last_rel[e] += d
        r.z_last[e] = one_past
    elif plen > 0:
        r.z_rx[e] += 1
        if r.z_rx[e] == r.z_rxn[e]:
            _z_add(r, e, L_T)
            r.z_rxn[e] *= 10
    r.z_pkts[e] += 1
    r.z_ipb[e] += iplen
    if fin:
        r.z_fins[e] += 1
        r.z_fin_seq[e] = rel + seg_len
    # the state machine, on the sender's state
    ack_flag = flags & ACK
    do_close = False
    st = r.z_state[e]
    if st == Z_INACTIVE:
        if syn:
            if is_orig:
                _z_set(r, e, Z_SYN_ACK_SENT if ack_flag else Z_SYN_SENT)
                r.z_attempt = ts + ATTEMPT
            else:
                if not ack_flag and r.z_state[p] == Z_SYN_ACK_SENT and seq == r.z_start[e]:
                    r.z_orig = 1 - r.z_orig  # the SYN came after its SYN-ACK
                    _z_add(r, 0, L_FLIP)
                    r.z_partial = False
                    _z_set(r, p, Z_ESTABLISHED)
                if r.z_state[p] == Z_SYN_SENT:
                    _z_set(r, p, Z_ESTABLISHED)
                _z_set(r, e, Z_ESTABLISHED)
        do_close = _z_close_on(r, e, fin, rst)
        if r.z_state[e] == Z_INACTIVE:
            if not is_orig and plen == 0 and r.z_state[r.z_orig] == Z_SYN_SENT:
                pass
            elif ack_flag and r.z_state[p] == Z_ESTABLISHED:
                _z_set(r, e, Z_ESTABLISHED)
                r.z_partial = False
            else:
                _z_set(r, e, Z_PARTIAL)
    elif st == Z_SYN_SENT or st == Z_SYN_ACK_SENT:
        do_close = _z_close_on(r, e, fin, rst)
    elif st == Z_ESTABLISHED or st == Z_PARTIAL:
        if syn and st == Z_PARTIAL and r.z_state[p] == Z_INACTIVE and not ack_flag:
            _z_set(r, e, Z_SYN_SENT)
        if fin and not rst:
            _z_set(r, e, Z_CLOSED)
            do_close = True
            if r.z_state[p] == Z_RESET and r.z_prev[p] == Z_CLOSED:
                _z_set(r, p, Z_CLOSED)
        if rst:
            _z_set(r, e, Z_RESET)
            do_close = True
    elif st == Z_CLOSED:
        if rst and r.z_state[p] != Z_CLOSED:
            _z_set(r, e, Z_RESET)
            do_close = not r.z_closed[e]
            r.z_end = min(r.z_end, ts + RESET_DELAY)
    if ack_flag:
        _z_acked(r, p, max(_sdelta(ack, r.z_start[p]), 0))
    if plen and not rst and not cut:
        _z_data(r, e, rel + (1 if syn else 0), plen)
    _z_check_eof(r, e)
    if do_close:
        _z_conn_closed(r, e)


@njit(cache=True, nogil=True)
def _z_size(r, e):
    """ZeekEndpoint.size."""
    if r.z_prev[e] == Z_SYN_SENT and r.z_state[e] == Z_RESET \
            and r.z_state[1 - e] == Z_INACTIVE:
        return 0
    size = max(r.z_last_rel[e], r.z_ack_rel[e])
    if size:
        size -= 1
    if r.z_fins[e] and size:
        size -= 1
    return size


@njit(cache=True, nogil=True)
def _z_syn_then_reset(r):
    """zeek._syn_then_reset over the history bytes: ^?S[^HAFGIQ]*R.*"""
    i = 1 if r.z_hlen > 0 and r.z_hist[0] == L_FLIP else 0
    if i >= r.z_hlen or r.z_hist[i] != L_S:
        return False
    for k in range(i + 1, r.z_hlen):
        c = r.z_hist[k]
        if c == L_H or c == L_A or c == L_F or c == L_G or c == L_I or c == L_Q:
            return False
        if c == L_R:
            return True
    return False


_conn_state_code = njit(cache=True, nogil=True)(zeek.conn_state_code)


@njit(cache=True, nogil=True)
def _z_conn_state(r):
    """zeek.conn_state_code of a packed record."""
    o, p = r.z_orig, 1 - r.z_orig
    return _conn_state_code(r.z_state[o], r.z_state[p],
                            _z_size(r, o) == 0 and _z_size(r, p) == 0, _z_syn_then_reset(r))


@njit(cache=True, nogil=True)
def zeek_columns(T, slots, states, sizes):
    """For FastTracker.zeek_records: each slot's conn_state (its index in CONN_STATES) and
    its endpoints' sizes (ZeekEndpoint.size), by pcapstate's index."""
    for i in range(len(slots)):
        r = T[slots[i]]
        states[i] = _z_conn_state(r)
        for e in range(2):
            sizes[i, e] = _z_size(r, e)


@njit(cache=True, nogil=True, inline="always")
def _sequence(r, s, flags, seq, plen):
    """Connection._sequence."""
    end = (seq + plen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)) & _M
    nxt = r.nxt[s]
    if nxt != -1:
        if plen <= 1 and seq == (nxt - 1) & _M and not flags & (SYN | FIN):
            _weird(r, A_KEEP_ALIVE)
        elif plen and not flags & (SYN | FIN) and not _after_or_at(seq, nxt):
            _weird(r, A_RETX)
        if not _after_or_at(nxt, end):
            r.nxt[s] = end
    else:
        r.nxt[s] = end


@njit(cache=True, nogil=True)
def _segment(r, d, flags, seq, ack, wn, plen, ipid, ws, ts, tw, ft, iplen, cut, bad_sum):
    """Connection.segment: True if a state changed."""
    s = d
    _zeek(r, d, flags, seq, ack, plen, wn, ts, iplen, cut, bad_sum)
    if ts < r.last_ts:
        _weird(r, A_BACKWARDS)
        ts = r.last_ts
    r.last_ts = ts
    sig = r.sig
    if sig[s, 0] == ipid and sig[s, 1] == seq and sig[s, 2] == ack and sig[s, 3] == flags \
            and sig[s, 4] == plen and ts - r.last_seen[s] < _DUPLICATE_WINDOW:
        _weird(r, A_DUPLICATE)
        return False
    sig[s, 0] = ipid
    sig[s, 1] = seq
    sig[s, 2] = ack
    sig[s, 3] = flags
    sig[s, 4] = plen
    r.last_seen[s] = ts
    r.packets[s] += 1
    r.payload[s] += plen
    if not flags & RST:
        _sequence(r, s, flags, seq, plen)
    if not flags & (SYN | FIN | RST) and r.st[s] == ESTABLISHED and r.st[1 - s] == ESTABLISHED:
        if flags & ACK:
            r.last_ack[s] = ack
        r.win[s] = wn
        return False
    moves = r.ntr[0] + r.ntr[1]
    _control(r, d, flags, seq, ack, wn, plen, ws, ts, tw, ft)
    return r.ntr[0] + r.ntr[1] != moves


@njit(cache=True, nogil=True, inline="always")
def _earlier(h, i, due, cid):
    return h[i].due < due or (h[i].due == due and h[i].cid < cid)


@njit(cache=True, nogil=True)
def _heap_push(H, S, due, cid, slot):
    i = np.int64(S[HEAP_N])
    S[HEAP_N] = i + 1
    while i > 0:
        p = (i - 1) // 2
        if _earlier(H, p, due, cid):
            break
        H[i].due, H[i].cid, H[i].slot = H[p].due, H[p].cid, H[p].slot
        i = p
    H[i].due, H[i].cid, H[i].slot = due, cid, slot


@njit(cache=True, nogil=True)
def _heap_pop(H, S):
    n = np.int64(S[HEAP_N]) - 1
    S[HEAP_N] = n
    top = (H[0].due, H[0].cid, H[0].slot)
    due, cid, slot = H[n].due, H[n].cid, H[n].slot
    i = 0
    while True:
        k = 2 * i + 1
        if k >= n:
            break
        if k + 1 < n and _earlier(H, k + 1, H[k].due, H[k].cid):
            k += 1
        if not _earlier(H, k, due, cid):
            break
        H[i].due, H[i].cid, H[i].slot = H[k].due, H[k].cid, H[k].slot
        i = k
    if n > 0:
        H[i].due, H[i].cid, H[i].slot = due, cid, slot
    return top


@njit(cache=True, nogil=True)
def _schedule(r, H, S, c):
    due = _deadline(r, S[TIME_WAIT_S], S[FIN_TIMEOUT_S], S[LINGER_S])
    if not np.isnan(due) and due != r.scheduled:
        r.scheduled = due
        _heap_push(H, S, due, r.cid, c)


@njit(cache=True, nogil=True, inline="always")
def _key(r, e):
    """The key of segments that endpoint e sends: (source address high and low 64 bits,
    destination's, IPv6 flag << 32 | source port << 16 | destination port)."""
    o = 1 - e
    ports = (np.int64(r.v6) << 32) | (r.port[e] << 16) | r.port[o]
    return (np.int64(r.ip_hi[e]), np.int64(r.ip_lo[e]), np.int64(r.ip_hi[o]),
            np.int64(r.ip_lo[o]), ports)


@njit(cache=True, nogil=True, inline="always")
def _canonical(k):
    """The table's one key for both directions of a 4-tuple (the lower endpoint first),
    and 1 if `k`, a sender's key, was turned round to make it. (table.py keeps a key per
    direction; one key halves the table.) The value at a key is 2 * slot + the index of
    the endpoint that sends in the key's direction."""
    src_hi, src_lo, dst_hi, dst_lo, ports = k
    sport, dport = (ports >> 16) & 0xFFFF, ports & 0xFFFF
    if src_hi < dst_hi or (src_hi == dst_hi and (
            src_lo < dst_lo or (src_lo == dst_lo and sport <= dport))):
        return k, 0
    return (dst_hi, dst_lo, src_hi, src_lo, (ports >> 32 << 32) | (dport << 16) | sport), 1


@njit(cache=True, nogil=True, inline="always")
def _tier(r):
    """vocab.Tier.of the endpoints' states."""
    a, b = r.st[0], r.st[1]
    if (a == CLOSED or a == TIME_WAIT) and (b == CLOSED or b == TIME_WAIT):
        return 0
    if a <= SYN_RCVD and b <= SYN_RCVD:  # CLOSED, SYN_SENT or SYN_RCVD
        return 1
    return 2


@njit(cache=True, nogil=True)
def _unlink(T, L, c):
    r = T[c]
    t, p, n = r.tier, r.lru_prev, r.lru_next
    if p >= 0:
        T[p].lru_next = n
    else:
        L[3 * t + HEAD] = n
    if n >= 0:
        T[n].lru_prev = p
    else:
        L[3 * t + TAIL] = p
    L[3 * t + COUNT] -= 1


@njit(cache=True, nogil=True)
def _link(T, L, c, t):
    """Slot c becomes the most recently active of tier t."""
    r, head = T[c], L[3 * t + HEAD]
    r.tier, r.lru_prev, r.lru_next = t, -1, head
    if head >= 0:
        T[head].lru_prev = c
    else:
        L[3 * t + TAIL] = c
    L[3 * t + HEAD] = c
    L[3 * t + COUNT] += 1


@njit(cache=True, nogil=True, inline="always")
def _touch(T, L, c):
    """Tracker._touch."""
    t = _tier(T[c])
    if T[c].tier != t or L[3 * t + HEAD] != c:
        _unlink(T, L, c)
        _link(T, L, c, t)


@njit(cache=True, nogil=True)
def _evict(T, S, table, R, L, now):
    """Tracker._evict."""
    finished, attempt, open_ = L[TAIL], L[3 + TAIL], L[6 + TAIL]
    if finished >= 0:
        t = 0
    elif open_ < 0 or (attempt >= 0 and (2 * L[3 + COUNT] >= S[LIVE]
                                         or now - T[attempt].last_ts >= ATTEMPT_QUIET
                                         or T[attempt].last_ts <= T[open_].last_ts)):
        t = 1
    else:
        t = 2
    c = L[3 * t + TAIL]
    r = T[c]
    _expire(r, now, S[TIME_WAIT_S], S[FIN_TIMEOUT_S])
    r.evicted = True
    S[EVICTED + t] += 1
    _retire(T, S, table, R, L, c, now)


@njit(cache=True, nogil=True)
def _retire(T, S, table, R, L, c, now):
    r = T[c]
    r.scheduled = np.nan
    k, _ = _canonical(_key(r, 0))
    if table.get(k, -1) // 2 == c:
        del table[k]
    _unlink(T, L, c)
    S[LIVE] -= 1
    i = np.int64(S[RETIRED_N])
    R[i].slot = c
    R[i].time = now
    S[RETIRED_N] = i + 1


@njit(cache=True, nogil=True)
def _sweep(T, H, S, table, R, L, now):
    tw, ft, linger = S[TIME_WAIT_S], S[FIN_TIMEOUT_S], S[LINGER_S]
    while S[HEAP_N] > 0 and H[0].due <= now:
        if S[RETIRED_N] >= len(R):
            return False
        due, cid, c = _heap_pop(H, S)
        r = T[c]
        if r.cid != cid or r.scheduled != due:
            continue  # superseded by a later deadline, or retired
        r.scheduled = np.nan
        _expire(r, now, tw, ft)
        retire_at = _deadline(r, tw, ft, linger)
        if _closed(r) and not np.isnan(retire_at) and now >= retire_at:
            _retire(T, S, table, R, L, c, now)
        else:
            _schedule(r, H, S, c)
    return True


_looks_like_server = njit(cache=True, nogil=True, inline="always")(looks_like_server)


@njit(cache=True, nogil=True)
def _open(T, S, table, free, R, L, ts, flags, key):
    """A new connection for a segment with this table key; returns (slot, index of its
    sender)."""
    if S[LIMIT] > 0 and S[LIVE] >= S[LIMIT]:
        _evict(T, S, table, R, L, ts)
    src_hi, src_lo, dst_hi, dst_lo, ports = key
    sport, dport = (ports >> 16) & 0xFFFF, ports & 0xFFFF
    n = np.int64(S[FREE_N]) - 1
    S[FREE_N] = n
    c = free[n]
    if flags & SYN and not flags & ACK:
        d, roles = 0, 0
    elif flags & SYN:
        d, roles = 1, 1
    else:
        d, roles = (1, 2) if _looks_like_server(sport, dport) else (0, 2)
    r = T[c]  # zeroed when it was freed
    for e in range(2):
        r.isn[e] = -1
        r.fin_seq[e] = -1
        r.last_ack[e] = -1
        r.nxt[e] = -1
        r.wscale[e] = -1
        r.sig[e, :] = -1
        r.last_seen[e] = -1.0
    r.ip_hi[d], r.ip_lo[d], r.port[d] = src_hi, src_lo, sport
    r.ip_hi[1 - d], r.ip_lo[1 - d], r.port[1 - d] = dst_hi, dst_lo, dport
    S[CONNECTIONS] += 1
    r.cid = np.int64(S[CONNECTIONS])
    r.roles = roles
    r.v6 = ports >> 32
    r.first_ts = ts
    r.last_ts = ts
    r.reset_by = -1
    r.scheduled = np.nan
    _z_start(r, d, flags, sport, dport, ts)
    if roles == 1:
        _enter(r, 0, ts, SYN_SENT, False)
        r.left[0] = True
        r.syn_acked[0] = True
    elif roles == 2:
        for e in range(2):
            _enter(r, e, ts, ESTABLISHED, False)
            r.left[e] = True
    k, turned = _canonical(key)
    if key == _key(r, 1 - d):
        # a connection of a socket to itself: both directions are one key, at which
        # table.py's second entry (the peer's index) wins; so here
        table[k] = 2 * c + 1 - d
    else:
        table[k] = 2 * c + (d ^ turned)
    _link(T, L, c, _tier(r))
    S[LIVE] += 1
    S[PEAK] = max(S[PEAK], S[LIVE])
    return c, d


@njit(cache=True, nogil=True)
def _taken_over(T, S, table, R, L, c, d, ts):
    r = T[c]
    _expire(r, ts, S[TIME_WAIT_S], S[FIN_TIMEOUT_S])
    rs, ss = r.st[1 - d], r.st[d]
    if (rs == CLOSED or rs == TIME_WAIT) and (ss == CLOSED or ss == TIME_WAIT
                                              or ss == SYN_SENT):
        for e in range(2):
            if r.st[e] != CLOSED:
                _enter(r, e, ts, CLOSED, False)
        _retire(T, S, table, R, L, c, ts)
        return True
    return False


@njit(cache=True, nogil=True)
def run(T, H, S, table, free, R, L, Z, B, start, n):
    """Tracker.segment for rows start..n-1 of B (TCP rows only). Stops early, returning the
    row to resume from and why, when the slots, the heap, the retired list or Zeek's ended
    connections (Z) need room."""
    tw, ft = S[TIME_WAIT_S], S[FIN_TIMEOUT_S]
    (b_ts, b_kind, b_v6, b_src_hi, b_src_lo, b_dst_hi, b_dst_lo, b_sport, b_dport, b_seq,
     b_ack, b_flags, b_win, b_plen, b_ipid, b_wscale, b_analysis, b_iplen, b_cut,
     b_bad_sum) = B
    for i in range(start, n):
        if b_kind[i] != TCP:
            continue
        # Room for the worst this row can need: two new slots, two heap entries, two
        # retirements (a sweep checks its own room).
        if S[FREE_N] < 2:
            return i, NEED_SLOTS
        if S[HEAP_N] + 4 > len(H):
            return i, NEED_HEAP
        if S[RETIRED_N] + 2 > len(R):
            return i, NEED_RETIRE
        if S[ZLINES_N] >= len(Z):
            return i, NEED_ZLINES
        ts = b_ts[i]
        if ts > S[NOW]:
            if ts >= S[NEXT_SWEEP]:
                if not _sweep(T, H, S, table, R, L, ts):
                    return i, NEED_RETIRE
                S[NEXT_SWEEP] = ts + _SWEEP_EVERY
            S[NOW] = ts
        flags, seq = np.int64(b_flags[i]), b_seq[i]
        ports = (np.int64(b_v6[i]) << 32) | (np.int64(b_sport[i]) << 16) | np.int64(b_dport[i])
        k = (np.int64(b_src_hi[i]), np.int64(b_src_lo[i]), np.int64(b_dst_hi[i]),
             np.int64(b_dst_lo[i]), ports)
        key, turned = _canonical(k)
        v = table.get(key, -1)
        if v >= 0:
            c, d = v // 2, (v % 2) ^ turned
            if flags & SYN and not flags & ACK and T[c].isn[d] != seq \
                    and _taken_over(T, S, table, R, L, c, d, ts):
                c, d = _open(T, S, table, free, R, L, ts, flags, k)
            elif _z_ended(T[c], S[NOW], d, flags, seq):
                _z_emit(T[c], Z, S)
                _z_start(T[c], d, flags, np.int64(b_sport[i]), np.int64(b_dport[i]), ts)
        else:
            c, d = _open(T, S, table, free, R, L, ts, flags, k)
        r = T[c]
        if b_analysis[i]:  # what Wireshark said of the segment (tshark engine)
            for a in range(len(r.ws)):
                r.ws[a] += (b_analysis[i] >> a) & 1
        if _segment(r, d, flags, seq, b_ack[i], np.int64(b_win[i]), np.int64(b_plen[i]),
                    np.int64(b_ipid[i]), np.int64(b_wscale[i]), ts, tw, ft,
                    np.int64(b_iplen[i]), b_cut[i], b_bad_sum[i]):
            _schedule(r, H, S, c)
        _touch(T, L, c)
    return n, DONE


@njit(cache=True, nogil=True)
def finish(T, S, table, R, L, end):
    """Tracker.finish: retire every live connection, in the order of their ids. Returns
    False if the retired list has no room for them all (make room and call again)."""
    live = np.empty(np.int64(S[LIVE]), dtype=np.int64)
    j = 0
    for t in range(3):
        c = L[3 * t + HEAD]
        while c >= 0:
            live[j] = c
            j += 1
            c = T[c].lru_next
    if S[RETIRED_N] + len(live) > len(R):
        return False
    cids = np.empty(len(live), dtype=np.int64)
    for j in range(len(live)):
        cids[j] = T[live[j]].cid
    order = np.argsort(cids, kind="mergesort")
    for c in live[order]:
        _expire(T[c], end, S[TIME_WAIT_S], S[FIN_TIMEOUT_S])
        _retire(T, S, table, R, L, c, end)
    S[HEAP_N] = 0
    return True


@njit(cache=True)
def new_table():
    """An empty connection table (made in compiled code, whose cache spares a compilation
    on every run)."""
    return Dict.empty(key_type=_KEY, value_type=types.int64)


class FastTracker:
    """Tracker's interface (`feed` a Batch instead of `segment`), on the compiled engine."""

    def __init__(self, settings: Settings, summary: Summary, slots: int = 0) -> None:
        """`slots`: how many to start with; by default as many as the connection limit
        allows (np.zeros takes memory only as slots are used), or 65,536 with no limit."""
        slots = slots or (_slot_cap(settings.max_connections) if settings.max_connections
                          else 1 << 16)
        self.settings = settings
        self.summary = summary
        self.folds = new_folds()
        self.limits = np.array([settings.stuck_after.get(st, np.nan) for st in STATES])
        self.T = np.zeros(slots, SLOT)
        self.free = np.arange(slots - 1, -1, -1, dtype=np.int64)
        self.heap = np.zeros(max(slots, 4), HEAP)
        self.retired = np.zeros(max(slots, 2), RETIRED)
        self.table = new_table()
        self.lists = np.array([-1, -1, 0] * 3, np.int64)
        self.zlines = np.zeros(1024, ZLINE)
        #: connection id -> the conn.log fields of the connections Zeek ended on its 4-tuple
        #: while it went on (Connection.zeek_ended), kept until it retires
        self.zeek_ended: dict[int, list[dict[str, object]]] = {}
        self.S = np.zeros(NS)
        self.S[[NOW, NEXT_SWEEP]] = -np.inf
        self.S[FREE_N] = slots
        self.S[[TIME_WAIT_S, FIN_TIMEOUT_S, LINGER_S, LIMIT]] = (
            settings.time_wait, settings.fin_timeout, settings.linger, settings.max_connections)

    @property
    def connections(self) -> int:
        return int(self.S[CONNECTIONS])

    @property
    def peak_live(self) -> int:
        return int(self.S[PEAK])

    @property
    def live(self) -> int:
        return int(self.S[LIVE])

    @property
    def evicted(self) -> list[int]:
        """Evictions by tier (Tracker.evicted)."""
        return [int(v) for v in self.S[EVICTED:EVICTED + 3]]

    def feed(self, batch: Batch) -> None:
        i, n = 0, len(batch.ts)
        while i < n:
            i, why = run(self.T, self.heap, self.S, self.table, self.free, self.retired,
                         self.lists, self.zlines, batch, i, n)
            self._zeek_lines()
            self._hand_on()
            if why == NEED_SLOTS and self.S[FREE_N] < 2:
                self._grow_slots()
            elif why == NEED_HEAP:
                self._compact_heap()

    def _compact_heap(self) -> None:
        """Drop the superseded entries (of connections retired or rescheduled) if they are
        most of the heap, else grow it: its size follows the live connections."""
        n = int(self.S[HEAP_N])
        if n >= 2 * self.live + 1024:
            h = self.heap[:n]
            owner = self.T[h["slot"]]
            h = h[(owner["cid"] == h["cid"]) & (owner["scheduled"] == h["due"])]
            self.heap[:len(h)] = h[np.lexsort((h["cid"], h["due"]))]  # sorted: a heap
            self.S[HEAP_N] = n = len(h)
        if n + 4 > len(self.heap) // 2:
            self.heap = _grown(self.heap)

    def finish(self, end: float) -> None:
        while not finish(self.T, self.S, self.table, self.retired, self.lists, end):
            self._hand_on()
            self.retired = np.zeros(max(len(self.retired), self.live), RETIRED)
        self._hand_on()
        self.summary.absorb(self.folds)
        self.folds = new_folds()

    def _grow_slots(self) -> None:
        """Half as many slots again, up to the connection limit and a sixteenth of it more
        (slots of evicted connections are freed only between calls to `run`)."""
        old, limit = len(self.T), self.settings.max_connections
        new = old + max(old // 2, 2)
        if limit:
            new = max(min(new, _slot_cap(limit)), old + 2)
        self.T = _grown(self.T, new)
        n = int(self.S[FREE_N])
        spare = np.arange(new - 1, old - 1, -1, dtype=np.int64)
        self.free = np.concatenate([spare, self.free[:n], np.zeros(old, np.int64)])
        self.S[FREE_N] = n + new - old
        self.retired = np.zeros(new, RETIRED)  # empty: _hand_on ran

    def _zeek_lines(self) -> None:
        """Take in the connections Zeek ended in the run (counted as Zeek connections)."""
        n = int(self.S[ZLINES_N])
        for z in self.zlines[:n]:
            fields = _zeek_view(z).fields()
            self.summary.zeek_states[str(fields["conn_state"])] += 1
            self.zeek_ended.setdefault(int(z["cid"]), []).append(fields)
        self.S[ZLINES_N] = 0

    def _hand_on(self) -> None:
        """Pass each retired connection on, in order, and free its slot."""
        n = int(self.S[RETIRED_N])
        if not n:
            return
        slots, times = self.retired["slot"][:n].copy(), self.retired["time"][:n].copy()
        self.S[RETIRED_N] = 0
        f = self.folds
        stuck = np.zeros(n, np.bool_)
        kinds, closers = np.empty(n, np.int8), np.empty(n, np.int8)
        tl = self.summary.timeline
        tl.start(float(times.min()))  # analyze has started it at the first record
        fold(self.T, slots, times, self.limits, f["by_roles"], f["end_closer"], f["final"],
             f["anomalies"], f["counts"], f["hist"], f["max"], f["min"], f["max_censored"],
             f["sides"], f["round_trip"], f["wireshark"], f["zeek"], stuck, kinds, closers,
             tl.origin, tl.delta, tl.width)
        summary = self.summary
        if summary.on_brief is not None:
            summary.on_brief(self.briefs(slots, kinds, closers))
        if summary.on_zeek is not None:
            for start in range(0, n, 4096):  # a few thousand at a time: memory stays low
                summary.on_zeek(self.zeek_records(slots[start:start + 4096]))
        for i in (range(n) if summary.on_record is not None else np.flatnonzero(stuck)):
            conn = self.connection(int(slots[i]))
            if stuck[i]:
                summary.add_stuck(conn, float(times[i]))
            summary.record(conn)
        if self.zeek_ended:
            for cid in self.T["cid"][slots].tolist():
                self.zeek_ended.pop(cid, None)
        self.T.view(np.uint8).reshape(len(self.T), SLOT.itemsize)[slots] = 0
        k = int(self.S[FREE_N])
        self.free[k:k + n] = slots[::-1]
        self.S[FREE_N] = k + n

    def briefs(self, slots: np.ndarray, kinds: np.ndarray,
               closers: np.ndarray) -> list[list[Any]]:
        """The connections in `slots` in brief (summary.BRIEF_FIELDS), read in bulk from
        the packed records: no Connection built."""
        T = self.T
        v6, hi, lo = T["v6"][slots].tolist(), T["ip_hi"][slots].tolist(), T["ip_lo"][slots].tolist()
        ports, states = T["port"][slots].tolist(), T["st"][slots].tolist()
        first = T["first_ts"][slots].tolist()
        return [[_address(v, h[0], o[0], p[0]), _address(v, h[1], o[1], p[1]), t,
                 END_NAMES[k], CLOSER_NAMES[c], STATE_NAMES[st[0]], STATE_NAMES[st[1]]]
                for v, h, o, p, st, t, k, c in zip(v6, hi, lo, ports, states, first,
                                                   kinds.tolist(), closers.tolist(),
                                                   strict=True)]

    def zeek_records(self, slots: np.ndarray) -> list[dict[str, Any]]:
        """The connections in `slots` as Zeek sees them (summary.zeek_record; `zeek` as
        ZeekConn.fields gives it), read in bulk from the packed records: no Connection
        built."""
        T = self.T
        n = len(slots)
        states, sizes = np.empty(n, np.int8), np.empty((n, 2), np.int64)
        zeek_columns(T, slots, states, sizes)
        v6, hi, lo, ports = (T[f][slots].tolist() for f in ("v6", "ip_hi", "ip_lo", "port"))
        cid, orig, first, last, missed, hlen, pkts, ipb = (T[f][slots].tolist() for f in (
            "cid", "z_orig", "z_first", "z_last_ts", "z_missed", "z_hlen", "z_pkts", "z_ipb"))
        hist = T["z_hist"][slots].tobytes()
        out = []
        for i, (state, size) in enumerate(zip(states.tolist(), sizes.tolist(), strict=True)):
            o, r = orig[i], 1 - orig[i]
            duration = last[i] - first[i]
            z = {"ts": first[i], "orig": "client" if o == 0 else "server",
                 "conn_state": CONN_STATES[state],
                 "history": hist[i * ZEEK_HISTORY:i * ZEEK_HISTORY + hlen[i]].decode("ascii"),
                 "missed_bytes": missed[i], "duration": duration if duration > 0 else None,
                 "orig_bytes": size[o] if duration > 0 else None,
                 "resp_bytes": size[r] if duration > 0 else None,
                 "orig_pkts": pkts[i][o], "orig_ip_bytes": ipb[i][o],
                 "resp_pkts": pkts[i][r], "resp_ip_bytes": ipb[i][r]}
            rec: dict[str, Any] = {
                "client": _address(v6[i], hi[i][0], lo[i][0], ports[i][0]),
                "server": _address(v6[i], hi[i][1], lo[i][1], ports[i][1]), "zeek": z}
            ended = self.zeek_ended.get(cid[i])
            if ended:
                rec["zeek"], *rec["zeek_later"] = [*ended, z]
            out.append(rec)
        return out

    def connection(self, c: int) -> Connection:
        """Slot c as a machine.Connection, for the summary and the records."""
        r = self.T[c]
        v6 = bool(r["v6"])
        eps = []
        for e in range(2):
            hi, lo = int(r["ip_hi"][e]), int(r["ip_lo"][e])
            ip = (hi.to_bytes(8, "big") + lo.to_bytes(8, "big")) if v6 else lo.to_bytes(4, "big")
            ep = Endpoint(ip, int(r["port"][e]))
            ep.state = STATES[r["st"][e]]
            k = int(r["ntr"][e])
            ep.transitions = [(t, STATES[s], bool(tm)) for t, s, tm in zip(
                r["tr_ts"][e, :k].tolist(), r["tr_st"][e, :k].tolist(),
                r["tr_timer"][e, :k].tolist(), strict=True)]
            ep.left_censored = bool(r["left"][e])
            isn, fin_seq = int(r["isn"][e]), int(r["fin_seq"][e])
            ep.isn = None if isn < 0 else isn
            ep.syn_ts, ep.syn_acked = float(r["syn_ts"][e]), bool(r["syn_acked"][e])
            ep.fin_seq = None if fin_seq < 0 else fin_seq
            ep.fin_acked = bool(r["fin_acked"][e])
            ep.packets, ep.payload = int(r["packets"][e]), int(r["payload"][e])
            ep.syns, ep.fins, ep.rsts = int(r["syns"][e]), int(r["fins"][e]), int(r["rsts"][e])
            eps.append(ep)
        roles = ROLE_NAMES[r["roles"]]
        conn = Connection(int(r["cid"]), float(r["first_ts"]), eps[0], eps[1], roles,
                          roles != Roles.SYN)
        conn.last_ts = float(r["last_ts"])
        conn.evicted = bool(r["evicted"])
        reset_by = int(r["reset_by"])
        conn.reset_by = None if reset_by < 0 else reset_by
        conn.anomalies = {ANOMALY_NAMES[a]: int(v) for a, v in enumerate(r["anom"]) if v}
        conn.zeek = _zeek_view(r)
        conn.zeek_ended = self.zeek_ended.get(conn.id, [])
        if self.summary.wireshark is not None:
            conn.wireshark = {name: int(v) for name, v in zip(WIRESHARK_ANALYSIS, r["ws"],
                                                               strict=True) if v}
        return conn


def _zeek_view(r: Any) -> ZeekConn:
    """The Zeek view kept in a slot or a ZLINE, for its conn.log fields."""
    hist = bytes(r["z_hist"][:int(r["z_hlen"])]).decode("ascii")
    return ZeekConn.rebuilt(int(r["z_orig"]), hist, float(r["z_first"]), float(r["z_last_ts"]),
                            int(r["z_missed"]), [
        {"state": int(r["z_state"][e]), "prev": int(r["z_prev"][e]),
         "last_rel": int(r["z_last_rel"][e]), "ack_rel": int(r["z_ack_rel"][e]),
         "fins": int(r["z_fins"][e]), "packets": int(r["z_pkts"][e]),
         "ip_bytes": int(r["z_ipb"][e])} for e in range(2)])


@lru_cache(maxsize=65536)
def _host(v6: int, hi: int, lo: int) -> str:
    if v6:
        return f"[{ip_text(hi.to_bytes(8, 'big') + lo.to_bytes(8, 'big'))}]"
    return ip_text(lo.to_bytes(4, "big"))


def _address(v6: int, hi: int, lo: int, port: int) -> str:
    """Endpoint.address, from a packed record's fields."""
    return f"{_host(v6, hi, lo)}:{port}"


def _slot_cap(limit: int) -> int:
    """Slots for a connection limit: evicted connections' slots are freed between calls
    to `run`, so a sixteenth more (at least 1,024) spares a return per eviction."""
    return limit + max(limit // 16, 1024)


def _grown(a: np.ndarray, size: int = 0) -> np.ndarray:
    """A copy of `a` `size` long (default: half as long again), the new part zeroed."""
    out = np.zeros(size or len(a) + max(len(a) // 2, 2), a.dtype)
    out[:len(a)] = a
    return out


# ---- folding retired connections into the summary's aggregates -------------------------

NBINS = 2000  # duration bins: 1 us .. 10**14 s at 100 a decade, plus the <= 1 us bin


def new_folds() -> dict[str, np.ndarray]:
    """The aggregates `fold` adds to, for Summary.absorb."""
    z = np.zeros
    return {"by_roles": z(3, np.int64),
            "end_closer": z((len(END_NAMES), len(CLOSER_NAMES)), np.int64),
            "final": z((2, 10), np.int64), "anomalies": z(len(ANOMALY_NAMES), np.int64),
            "counts": z((10, 4), np.int64), "hist": z((10, 4, NBINS + 1), np.int64),
            "max": np.zeros(10), "min": np.full(10, np.inf), "max_censored": np.zeros(10),
            "sides": z(UNTOLD + 1, np.int64), "round_trip": np.array([np.inf, 0.0]),
            "wireshark": z(len(WIRESHARK_ANALYSIS), np.int64),
            "zeek": z(len(CONN_STATES), np.int64)}


_side = njit(cache=True, nogil=True)(vantage_side)


@njit(cache=True, nogil=True)
def _handshake(r, sides, round_trip):
    """verdict.handshake and vantage_side, counted into `sides` and `round_trip`."""
    if r.roles != 0 or r.isn[0] == -1 or r.isn[1] == -1 or not r.syn_acked[1]:
        return
    for k in range(r.ntr[1]):
        if r.tr_st[1, k] == ESTABLISHED:
            syn_rtt, ack_gap = r.syn_ts[1] - r.syn_ts[0], r.tr_ts[1, k] - r.syn_ts[1]
            if syn_rtt >= 0 and ack_gap >= 0:
                side = _side(syn_rtt, ack_gap)
                sides[side] += 1
                if side != UNTOLD:
                    round_trip[0] = min(round_trip[0], syn_rtt + ack_gap)
                    round_trip[1] = max(round_trip[1], syn_rtt + ack_gap)
            return


_end_code = njit(cache=True, nogil=True)(end_code)
_closer_code = njit(cache=True, nogil=True)(closer_code)


@njit(cache=True, nogil=True)
def _end_kind(r):
    """verdict.end_code of a packed record."""
    return _end_code(r.reset_by, r.fin_seq[0] != -1, r.fin_seq[1] != -1, r.isn[1] != -1,
                     r.syn_acked[1] != 0, r.roles != 0, r.evicted != 0)


@njit(cache=True, nogil=True)
def _closer(r):
    """verdict.closer_code of a packed record."""
    active = [False, False]
    for e in range(2):
        for k in range(r.ntr[e]):
            if r.tr_st[e, k] == FIN_WAIT_1:
                active[e] = True
    return _closer_code(active[0], active[1])


@njit(cache=True, nogil=True, inline="always")
def _time_bin(t, origin, delta, width):
    """Timeline.bin."""
    while True:
        i = np.int64((t - origin) / width[0]) if t > origin else 0
        if i < delta.shape[1]:
            return i
        half = delta.shape[1] // 2
        for s in range(delta.shape[0]):
            for b in range(half):
                delta[s, b] = delta[s, 2 * b] + delta[s, 2 * b + 1]
            delta[s, half:] = 0
        width[0] *= 2


@njit(cache=True, nogil=True)
def fold(T, slots, times, limits, by_roles, end_closer, final, anomalies, counts, hist, dmax,
         dmin, dmax_censored, sides, round_trip, wireshark, zeek, stuck, kinds, closers,
         origin, tl_delta, tl_width):
    """Summary.add for each retired slot, into the aggregate arrays and the timeline
    (timeline.py); stuck[i] is set when connection i has an interval longer than its
    state's limit (NaN: no limit), for the caller to report it; kinds[i] and closers[i] get
    its end kind and closer."""
    for i in range(len(slots)):
        r, end = T[slots[i]], times[i]
        kinds[i], closers[i] = _end_kind(r), _closer(r)
        end_closer[kinds[i], closers[i]] += 1
        by_roles[r.roles] += 1
        _handshake(r, sides, round_trip)
        for a in range(len(wireshark)):
            wireshark[a] += r.ws[a]
        zeek[_z_conn_state(r)] += 1
        for a in range(anomalies.shape[0]):
            anomalies[a] += r.anom[a]
        stuck[i] = False
        for e in range(2):
            final[e, r.st[e]] += 1
            n = r.ntr[e]
            for k in range(n):
                state = r.tr_st[e, k]
                if state == CLOSED:
                    continue
                start = r.tr_ts[e, k]
                left = k == 0 and r.left[e]
                if k + 1 < n:
                    stop = r.tr_ts[e, k + 1]
                    censor = 2 if left else 0
                    tl_delta[state, _time_bin(stop, origin, tl_delta, tl_width)] -= 1
                else:
                    stop = end
                    censor = 3 if left else 1
                tl_delta[state, _time_bin(start, origin, tl_delta, tl_width)] += 1
                d = max(stop - start, 0.0)
                counts[state, censor] += 1
                b = 0 if d <= 1e-6 else np.int64(np.log10(d / 1e-6) * 100) + 1
                hist[state, censor, min(b, NBINS)] += 1
                if censor == 0:
                    dmax[state] = max(dmax[state], d)
                    dmin[state] = min(dmin[state], d)
                else:
                    dmax_censored[state] = max(dmax_censored[state], d)
                if not np.isnan(limits[state]) and d > limits[state]:
                    stuck[i] = True
