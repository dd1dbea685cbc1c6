"""The compiled engine: the connection table and the per-endpoint state machine of
table.py and machine.py, over columns (numba), for batches of decoded records.

machine.py and table.py are the specification, written for people; this module does what
they do, step for step, on arrays: a connection is a slot, an endpoint a (slot, index) pair,
the timer heap three arrays. tests/test_fasttable.py runs both engines on every sample and on
random segment sequences and requires the same connections, transitions and verdicts.

The Python side (`FastTracker`) grows the arrays when they fill. Retired connections are
folded into the summary's aggregates by compiled code (`fold`, verdict.py's rules); only
those with a stuck endpoint, and every one when records are asked for, become a
machine.Connection for the summary's Python code.
"""

import numpy as np
from numba import njit, types
from numba.typed import Dict

from pcapstate.machine import Connection, Endpoint
from pcapstate.scan import TCP, Batch
from pcapstate.settings import Settings
from pcapstate.summary import Summary
from pcapstate.vocab import ANOMALIES, Roles, State

STATES = list(State)
(CLOSED, SYN_SENT, SYN_RCVD, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING,
 LAST_ACK, TIME_WAIT) = range(10)
ANOMALY_NAMES = list(ANOMALIES)
(A_BACKWARDS, A_DUPLICATE, A_SYN_RETX, A_SYNACK_RETX, A_FIN_RETX, A_SYN_INSIDE,
 A_FIN_SEQ_CHANGED, A_RST_OUT, A_RST_AFTER, A_PACKET_AFTER, A_FIN_BEFORE,
 A_BAD_SYNACK) = range(12)
ROLE_NAMES = [Roles.SYN, Roles.SYNACK, Roles.PORT]
MAXT = 16  # transitions per endpoint: each kind of move happens at most once, 12 at most

_M = 0xFFFFFFFF
_HALF = 1 << 31
_DUPLICATE_WINDOW = 0.001
_UNKNOWN_SCALE = 14
_SWEEP_EVERY = 1.0
_EPHEMERAL = 32768
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10

# Scalars kept in one float64 array, so the compiled code can update them.
NOW, NEXT_SWEEP, CONNECTIONS, PEAK, HEAP_N, FREE_N, RETIRED_N, TIME_WAIT_S, FIN_TIMEOUT_S, \
    LINGER_S = range(10)
# What a call stopped for.
DONE, NEED_SLOTS, NEED_HEAP, NEED_RETIRE = 0, 1, 2, 3

_KEY = types.UniTuple(types.int64, 5)


def _columns(n: int) -> dict[str, np.ndarray]:
    """Every per-connection array, for n slots."""
    z = np.zeros
    return {
        # per endpoint: [slot, 0 = client / 1 = server]
        "st": z((n, 2), np.int8), "ntr": z((n, 2), np.int8),
        "tr_ts": z((n, 2, MAXT)), "tr_st": z((n, 2, MAXT), np.int8),
        "tr_timer": z((n, 2, MAXT), np.bool_), "left": z((n, 2), np.bool_),
        "isn": z((n, 2), np.int64), "syn_ts": z((n, 2)), "syn_acked": z((n, 2), np.bool_),
        "fin_seq": z((n, 2), np.int64), "fin_ts": z((n, 2)), "fin_acked": z((n, 2), np.bool_),
        "last_ack": z((n, 2), np.int64), "win": z((n, 2), np.int64),
        "wscale": z((n, 2), np.int64), "fw2_alive": z((n, 2), np.bool_),
        "packets": z((n, 2), np.int64), "payload": z((n, 2), np.int64),
        "syns": z((n, 2), np.int64), "fins": z((n, 2), np.int64), "rsts": z((n, 2), np.int64),
        "sig": z((n, 2, 5), np.int64), "last_seen": z((n, 2)),
        "ip_hi": z((n, 2), np.uint64), "ip_lo": z((n, 2), np.uint64),
        "port": z((n, 2), np.int64),
        # per connection
        "cid": z(n, np.int64), "roles": z(n, np.int8), "v6": z(n, np.bool_),
        "first_ts": z(n), "last_ts": z(n), "reset_by": z(n, np.int8),
        "anom": z((n, len(ANOMALY_NAMES)), np.int64), "scheduled": z(n),
    }


COLUMNS = list(_columns(0))


@njit(cache=True, nogil=True, inline="always")
def _after_or_at(a, b):
    return (a - b) & _M < _HALF


@njit(cache=True, nogil=True, inline="always")
def _enter(T, c, e, ts, state, timer):
    st, ntr, tr_ts, tr_st, tr_timer = T[0], T[1], T[2], T[3], T[4]
    if st[c, e] == state:
        return
    k = ntr[c, e]
    if k > 0 and ts < tr_ts[c, e, k - 1]:
        ts = tr_ts[c, e, k - 1]
    if k < MAXT:
        tr_ts[c, e, k] = ts
        tr_st[c, e, k] = state
        tr_timer[c, e, k] = timer
        ntr[c, e] = k + 1
    st[c, e] = state


@njit(cache=True, nogil=True, inline="always")
def _since(T, c, e):
    return T[2][c, e, T[1][c, e] - 1]


@njit(cache=True, nogil=True, inline="always")
def _closed(T, c):
    return T[0][c, 0] == CLOSED and T[0][c, 1] == CLOSED


@njit(cache=True, nogil=True, inline="always")
def _expire(T, c, now, tw, ft):
    st, fw2_alive = T[0], T[15]
    for e in range(2):
        if st[c, e] == TIME_WAIT and now >= _since(T, c, e) + tw:
            _enter(T, c, e, _since(T, c, e) + tw, CLOSED, True)
        elif st[c, e] == FIN_WAIT_2 and not fw2_alive[c, e] and now >= _since(T, c, e) + ft:
            _enter(T, c, e, _since(T, c, e) + ft, CLOSED, True)


@njit(cache=True, nogil=True, inline="always")
def _deadline(T, c, tw, ft, linger):
    """The next timer or eviction time; NaN for none."""
    if _closed(T, c):
        return T[30][c] + linger
    due = np.inf
    for e in range(2):
        if T[0][c, e] == TIME_WAIT:
            due = min(due, _since(T, c, e) + tw)
        elif T[0][c, e] == FIN_WAIT_2 and not T[15][c, e]:
            due = min(due, _since(T, c, e) + ft)
    return due if due < np.inf else np.nan


@njit(cache=True, nogil=True, inline="always")
def _weird(T, c, a):
    T[32][c, a] += 1


@njit(cache=True, nogil=True)
def _rst(T, c, d, s, r, flags, seq, ack, ts):
    (st, _, _, _, _, _, isn, _, syn_acked, _, _, _, last_ack, win, wscale) = T[:15]
    T[20][c, s] += 1
    if st[c, r] == SYN_SENT and not syn_acked[c, r]:
        ok = (flags & ACK) != 0 and isn[c, r] != -1 and ack == (isn[c, r] + 1) & _M
    elif last_ack[c, r] == -1:
        ok = True
    else:
        scale = _UNKNOWN_SCALE if wscale[c, r] == -1 else wscale[c, r]
        ok = (seq - last_ack[c, r]) & _M <= max(win[c, r] << scale, 1)
    if not ok:
        _weird(T, c, A_RST_OUT)
        return
    if T[31][c] == -1:
        T[31][c] = d
    _enter(T, c, s, ts, CLOSED, False)
    _enter(T, c, r, ts, CLOSED, False)


@njit(cache=True, nogil=True)
def _syn(T, c, s, r, flags, seq, ack, ws, ts):
    st, isn, syn_ts, syn_acked, wscale = T[0], T[6], T[7], T[8], T[14]
    synack = (flags & ACK) != 0
    if isn[c, s] == -1:
        isn[c, s] = seq
        syn_ts[c, s] = ts
        T[18][c, s] = 1
        wscale[c, s] = ws
        if isn[c, r] != -1 and (wscale[c, s] == -1 or wscale[c, r] == -1):
            wscale[c, s] = 0
            wscale[c, r] = 0
        if synack:
            if isn[c, r] != -1 and ack != (isn[c, r] + 1) & _M:
                _weird(T, c, A_BAD_SYNACK)
            if st[c, s] == CLOSED:
                _enter(T, c, s, ts, SYN_RCVD, False)
        elif st[c, s] == CLOSED:
            _enter(T, c, s, ts, SYN_SENT, False)
    elif seq == isn[c, s]:
        T[18][c, s] += 1
        _weird(T, c, A_SYNACK_RETX if synack else A_SYN_RETX)
        if not syn_acked[c, s]:
            syn_ts[c, s] = ts
    else:
        _weird(T, c, A_SYN_INSIDE)


@njit(cache=True, nogil=True, inline="always")
def _own_fin_acked(state):
    if state == FIN_WAIT_1:
        return FIN_WAIT_2
    if state == CLOSING:
        return TIME_WAIT
    if state == LAST_ACK:
        return CLOSED
    return -1


@njit(cache=True, nogil=True, inline="always")
def _peer_fin_received(state):
    if state == ESTABLISHED or state == SYN_RCVD:
        return CLOSE_WAIT
    if state == FIN_WAIT_1:
        return CLOSING
    if state == FIN_WAIT_2:
        return TIME_WAIT
    return -1


@njit(cache=True, nogil=True, inline="always")
def _sent_fin(state):
    if state == ESTABLISHED or state == SYN_RCVD:
        return FIN_WAIT_1
    if state == CLOSE_WAIT:
        return LAST_ACK
    return -1


@njit(cache=True, nogil=True)
def _control(T, c, d, flags, seq, ack, wn, plen, ws, ts, tw, ft):
    s, r = d, 1 - d
    (st, _, _, _, _, _, isn, syn_ts, syn_acked, fin_seq, fin_ts, fin_acked, last_ack, win,
     _, fw2_alive) = T[:16]
    if st[c, s] == FIN_WAIT_2 and not flags & RST and flags & ACK and last_ack[c, s] != -1 \
            and ack != last_ack[c, s] and _after_or_at(ack, last_ack[c, s]):
        fw2_alive[c, s] = True
    _expire(T, c, ts, tw, ft)
    if _closed(T, c) and not flags & SYN:
        _weird(T, c, A_RST_AFTER if flags & RST else A_PACKET_AFTER)
        return
    if flags & RST:
        _rst(T, c, d, s, r, flags, seq, ack, ts)
        return
    win[c, s] = wn
    if flags & ACK:
        if isn[c, r] != -1 and not syn_acked[c, r] and _after_or_at(ack, isn[c, r] + 1):
            syn_acked[c, r] = True
            if st[c, r] == SYN_RCVD:
                _enter(T, c, r, ts, ESTABLISHED, False)
            if st[c, s] == CLOSED:
                _enter(T, c, s, syn_ts[c, r], SYN_RCVD, False)
            elif st[c, s] == SYN_SENT:
                _enter(T, c, s, syn_ts[c, r], ESTABLISHED if syn_acked[c, s] else SYN_RCVD,
                       False)
        if fin_seq[c, r] != -1 and not fin_acked[c, r] and _after_or_at(ack, fin_seq[c, r] + 1):
            fin_acked[c, r] = True
            nxt = _own_fin_acked(st[c, r])
            if nxt >= 0:
                _enter(T, c, r, ts, nxt, False)
            nxt = _peer_fin_received(st[c, s])
            if nxt >= 0:
                _enter(T, c, s, fin_ts[c, r], nxt, False)
        last_ack[c, s] = ack
    if flags & SYN:
        _syn(T, c, s, r, flags, seq, ack, ws, ts)
    if flags & FIN:
        fs = (seq + plen + (1 if flags & SYN else 0)) & _M
        if fin_seq[c, s] == -1:
            fin_seq[c, s] = fs
            fin_ts[c, s] = ts
            T[19][c, s] = 1
            nxt = _sent_fin(st[c, s])
            if nxt >= 0:
                _enter(T, c, s, ts, nxt, False)
            elif st[c, s] == SYN_SENT:
                _weird(T, c, A_FIN_BEFORE)
        elif fs == fin_seq[c, s]:
            T[19][c, s] += 1
            _weird(T, c, A_FIN_RETX)
            if not fin_acked[c, s]:
                fin_ts[c, s] = ts
        else:
            _weird(T, c, A_FIN_SEQ_CHANGED)


@njit(cache=True, nogil=True)
def _segment(T, c, d, flags, seq, ack, wn, plen, ipid, ws, ts, tw, ft):
    """Connection.segment: True if a state changed."""
    st, ntr, sig, last_seen = T[0], T[1], T[21], T[22]
    s = d
    if ts < T[30][c]:
        _weird(T, c, A_BACKWARDS)
        ts = T[30][c]
    T[30][c] = ts
    if sig[c, s, 0] == ipid and sig[c, s, 1] == seq and sig[c, s, 2] == ack \
            and sig[c, s, 3] == flags and sig[c, s, 4] == plen \
            and ts - last_seen[c, s] < _DUPLICATE_WINDOW:
        _weird(T, c, A_DUPLICATE)
        return False
    sig[c, s, 0] = ipid
    sig[c, s, 1] = seq
    sig[c, s, 2] = ack
    sig[c, s, 3] = flags
    sig[c, s, 4] = plen
    last_seen[c, s] = ts
    T[16][c, s] += 1
    T[17][c, s] += plen
    if not flags & (SYN | FIN | RST) and st[c, s] == ESTABLISHED \
            and st[c, 1 - s] == ESTABLISHED:
        if flags & ACK:
            T[12][c, s] = ack
        T[13][c, s] = wn
        return False
    moves = ntr[c, 0] + ntr[c, 1]
    _control(T, c, d, flags, seq, ack, wn, plen, ws, ts, tw, ft)
    return ntr[c, 0] + ntr[c, 1] != moves


@njit(cache=True, nogil=True)
def _heap_push(H, S, due, cid, slot):
    hd, hc, hs = H
    i = np.int64(S[HEAP_N])
    S[HEAP_N] = i + 1
    while i > 0:
        p = (i - 1) // 2
        if hd[p] < due or (hd[p] == due and hc[p] < cid):
            break
        hd[i], hc[i], hs[i] = hd[p], hc[p], hs[p]
        i = p
    hd[i], hc[i], hs[i] = due, cid, slot


@njit(cache=True, nogil=True)
def _heap_pop(H, S):
    hd, hc, hs = H
    n = np.int64(S[HEAP_N]) - 1
    S[HEAP_N] = n
    top = (hd[0], hc[0], hs[0])
    due, cid, slot = hd[n], hc[n], hs[n]
    i = 0
    while True:
        k = 2 * i + 1
        if k >= n:
            break
        if k + 1 < n and (hd[k + 1] < hd[k] or (hd[k + 1] == hd[k] and hc[k + 1] < hc[k])):
            k += 1
        if due < hd[k] or (due == hd[k] and cid < hc[k]):
            break
        hd[i], hc[i], hs[i] = hd[k], hc[k], hs[k]
        i = k
    if n > 0:
        hd[i], hc[i], hs[i] = due, cid, slot
    return top


@njit(cache=True, nogil=True)
def _schedule(T, H, S, c):
    due = _deadline(T, c, S[TIME_WAIT_S], S[FIN_TIMEOUT_S], S[LINGER_S])
    if not np.isnan(due) and due != T[33][c]:
        T[33][c] = due
        _heap_push(H, S, due, T[26][c], c)


@njit(cache=True, nogil=True, inline="always")
def _key(T, c, e):
    """The table key of segments that endpoint e of slot c sends."""
    o = 1 - e
    ports = (np.int64(T[28][c]) << 32) | (T[25][c, e] << 16) | T[25][c, o]
    return (np.int64(T[23][c, e]), np.int64(T[24][c, e]), np.int64(T[23][c, o]),
            np.int64(T[24][c, o]), ports)


@njit(cache=True, nogil=True)
def _retire(T, S, table, R, c, now):
    T[33][c] = np.nan
    for e in range(2):
        k = _key(T, c, e)
        if k in table and table[k] // 2 == c:
            del table[k]
    i = np.int64(S[RETIRED_N])
    R[0][i] = c
    R[1][i] = now
    S[RETIRED_N] = i + 1


@njit(cache=True, nogil=True)
def _sweep(T, H, S, table, R, now):
    hd, hc, hs = H
    tw, ft, linger = S[TIME_WAIT_S], S[FIN_TIMEOUT_S], S[LINGER_S]
    while S[HEAP_N] > 0 and hd[0] <= now:
        if S[RETIRED_N] >= len(R[0]):
            return False
        due, cid, c = _heap_pop(H, S)
        if T[26][c] != cid or T[33][c] != due:
            continue  # superseded by a later deadline, or retired
        T[33][c] = np.nan
        _expire(T, c, now, tw, ft)
        retire_at = _deadline(T, c, tw, ft, linger)
        if _closed(T, c) and not np.isnan(retire_at) and now >= retire_at:
            _retire(T, S, table, R, c, now)
        else:
            _schedule(T, H, S, c)
    return True


@njit(cache=True, nogil=True, inline="always")
def _looks_like_server(sport, dport):
    if (sport < 1024) != (dport < 1024):
        return sport < 1024
    if (sport >= _EPHEMERAL) != (dport >= _EPHEMERAL):
        return dport >= _EPHEMERAL
    return sport < dport


@njit(cache=True, nogil=True)
def _open(T, S, table, free, ts, B, i):
    """A new connection for row i of batch B; returns (slot, index of its sender)."""
    flags, sport, dport = B[11][i], np.int64(B[7][i]), np.int64(B[8][i])
    n = np.int64(S[FREE_N]) - 1
    S[FREE_N] = n
    c = free[n]
    if flags & SYN and not flags & ACK:
        d, roles = 0, 0
    elif flags & SYN:
        d, roles = 1, 1
    else:
        d, roles = (1, 2) if _looks_like_server(sport, dport) else (0, 2)
    for e in range(2):
        T[0][c, e] = CLOSED
        T[1][c, e] = 0
        T[5][c, e] = False
        T[6][c, e] = -1
        T[7][c, e] = 0.0
        T[8][c, e] = False
        T[9][c, e] = -1
        T[10][c, e] = 0.0
        T[11][c, e] = False
        T[12][c, e] = -1
        T[13][c, e] = 0
        T[14][c, e] = -1
        T[15][c, e] = False
        T[16][c, e] = 0
        T[17][c, e] = 0
        T[18][c, e] = 0
        T[19][c, e] = 0
        T[20][c, e] = 0
        T[21][c, e, :] = -1
        T[22][c, e] = -1.0
    T[23][c, d], T[24][c, d], T[25][c, d] = B[3][i], B[4][i], sport
    T[23][c, 1 - d], T[24][c, 1 - d], T[25][c, 1 - d] = B[5][i], B[6][i], dport
    S[CONNECTIONS] += 1
    T[26][c] = np.int64(S[CONNECTIONS])
    T[27][c] = roles
    T[28][c] = B[2][i]
    T[29][c] = ts
    T[30][c] = ts
    T[31][c] = -1
    T[32][c, :] = 0
    T[33][c] = np.nan
    if roles == 1:
        _enter(T, c, 0, ts, SYN_SENT, False)
        T[5][c, 0] = True
        T[8][c, 0] = True
    elif roles == 2:
        for e in range(2):
            _enter(T, c, e, ts, ESTABLISHED, False)
            T[5][c, e] = True
    table[_key(T, c, 0)] = 2 * c
    table[_key(T, c, 1)] = 2 * c + 1
    S[PEAK] = max(S[PEAK], len(table) // 2)
    return c, d


@njit(cache=True, nogil=True)
def _taken_over(T, S, table, R, c, d, ts):
    _expire(T, c, ts, S[TIME_WAIT_S], S[FIN_TIMEOUT_S])
    rs, ss = T[0][c, 1 - d], T[0][c, d]
    if (rs == CLOSED or rs == TIME_WAIT) and (ss == CLOSED or ss == TIME_WAIT
                                              or ss == SYN_SENT):
        for e in range(2):
            if T[0][c, e] != CLOSED:
                _enter(T, c, e, ts, CLOSED, False)
        _retire(T, S, table, R, c, ts)
        return True
    return False


@njit(cache=True, nogil=True)
def run(T, H, S, table, free, R, B, start, n):
    """Tracker.segment for rows start..n-1 of B (TCP rows only). Stops early, returning the
    row to resume from and why, when the slots, the heap or the retired list need room."""
    tw, ft = S[TIME_WAIT_S], S[FIN_TIMEOUT_S]
    for i in range(start, n):
        if B[1][i] != TCP:
            continue
        # Room for the worst this row can need: two new slots, two heap entries, two
        # retirements (a sweep checks its own room).
        if S[FREE_N] < 2:
            return i, NEED_SLOTS
        if S[HEAP_N] + 4 > len(H[0]):
            return i, NEED_HEAP
        if S[RETIRED_N] + 2 > len(R[0]):
            return i, NEED_RETIRE
        ts = B[0][i]
        if ts > S[NOW]:
            if ts >= S[NEXT_SWEEP]:
                if not _sweep(T, H, S, table, R, ts):
                    return i, NEED_RETIRE
                S[NEXT_SWEEP] = ts + _SWEEP_EVERY
            S[NOW] = ts
        flags, seq = np.int64(B[11][i]), B[9][i]
        ports = (np.int64(B[2][i]) << 32) | (np.int64(B[7][i]) << 16) | np.int64(B[8][i])
        k = (np.int64(B[3][i]), np.int64(B[4][i]), np.int64(B[5][i]), np.int64(B[6][i]), ports)
        v = table.get(k, -1)
        if v >= 0:
            c, d = v // 2, v % 2
            if flags & SYN and not flags & ACK and T[6][c, d] != seq \
                    and _taken_over(T, S, table, R, c, d, ts):
                c, d = _open(T, S, table, free, ts, B, i)
        else:
            c, d = _open(T, S, table, free, ts, B, i)
        if _segment(T, c, d, flags, seq, B[10][i], np.int64(B[12][i]), np.int64(B[13][i]),
                    np.int64(B[14][i]), np.int64(B[15][i]), ts, tw, ft):
            _schedule(T, H, S, c)
    return n, DONE


@njit(cache=True, nogil=True)
def finish(T, S, table, R, end):
    """Tracker.finish: retire every live connection, in the order of their ids. Returns
    False if the retired list has no room for them all (make room and call again)."""
    live = np.empty(len(table) // 2, dtype=np.int64)
    j = 0
    for v in table.values():
        if v % 2 == 0:
            live[j] = v // 2
            j += 1
    if S[RETIRED_N] + len(live) > len(R[0]):
        return False
    order = np.argsort(T[26][live], kind="mergesort")
    for c in live[order]:
        _expire(T, c, end, S[TIME_WAIT_S], S[FIN_TIMEOUT_S])
        _retire(T, S, table, R, c, end)
    S[HEAP_N] = 0
    return True


def new_table():
    return Dict.empty(key_type=_KEY, value_type=types.int64)


class FastTracker:
    """Tracker's interface (`feed` a Batch instead of `segment`), on the compiled engine."""

    def __init__(self, settings: Settings, summary: Summary, slots: int = 1 << 12) -> None:
        self.settings = settings
        self.summary = summary
        self.folds = new_folds()
        self.limits = np.array([settings.stuck_after.get(st, np.nan) for st in STATES])
        self.cols = _columns(slots)
        self.free = np.arange(slots - 1, -1, -1, dtype=np.int64)
        self.heap: tuple[np.ndarray, ...] = (np.zeros(slots * 2), np.zeros(slots * 2, np.int64),
                     np.zeros(slots * 2, np.int64))
        self.retired: tuple[np.ndarray, ...] = (np.zeros(slots, np.int64), np.zeros(slots))
        self.table = new_table()
        self.S = np.zeros(10)
        self.S[[NOW, NEXT_SWEEP]] = -np.inf
        self.S[FREE_N] = slots
        self.S[[TIME_WAIT_S, FIN_TIMEOUT_S, LINGER_S]] = (
            settings.time_wait, settings.fin_timeout, settings.linger)

    @property
    def T(self) -> tuple:
        return tuple(self.cols[k] for k in COLUMNS)

    @property
    def connections(self) -> int:
        return int(self.S[CONNECTIONS])

    @property
    def peak_live(self) -> int:
        return int(self.S[PEAK])

    @property
    def live(self) -> int:
        return len(self.table) // 2

    def feed(self, batch: Batch) -> None:
        i, n = 0, len(batch.ts)
        while i < n:
            i, why = run(self.T, self.heap, self.S, self.table, self.free, self.retired,
                         batch, i, n)
            self._hand_on()
            if why == NEED_SLOTS and self.S[FREE_N] < 2:
                self._grow_slots()
            elif why == NEED_HEAP:
                self.heap = tuple(np.concatenate([h, np.zeros_like(h)]) for h in self.heap)
            elif why == NEED_RETIRE and len(self.retired[0]) < 2:
                self.retired = tuple(np.zeros(2, r.dtype) for r in self.retired)

    def finish(self, end: float) -> None:
        while not finish(self.T, self.S, self.table, self.retired, end):
            self.retired = tuple(np.zeros(len(r) * 2, r.dtype) for r in self.retired)
            self._hand_on()
        self._hand_on()
        self.summary.absorb(self.folds)
        self.folds = new_folds()

    def _grow_slots(self) -> None:
        old = len(self.cols["cid"])
        self.cols = {k: np.concatenate([v, np.zeros_like(v)]) for k, v in self.cols.items()}
        spare = np.arange(2 * old - 1, old - 1, -1, dtype=np.int64)
        n = int(self.S[FREE_N])
        self.free = np.concatenate([spare, self.free[:n], np.zeros(old, np.int64)])
        self.S[FREE_N] = n + old
        self.retired = tuple(np.concatenate([r, np.zeros_like(r)]) for r in self.retired)

    def _hand_on(self) -> None:
        """Pass each retired connection on, in order, and free its slot."""
        n = int(self.S[RETIRED_N])
        if not n:
            return
        slots, times = self.retired[0][:n].copy(), self.retired[1][:n].copy()
        self.S[RETIRED_N] = 0
        f = self.folds
        stuck = np.zeros(n, np.bool_)
        fold(self.T, slots, times, self.limits, f["by_end"], f["by_closer"], f["by_roles"],
             f["final"], f["anomalies"], f["counts"], f["hist"], f["max"], f["min"],
             f["max_censored"], stuck)
        summary = self.summary
        for i in (range(n) if summary.on_record is not None else np.flatnonzero(stuck)):
            conn = self.connection(int(slots[i]))
            if stuck[i]:
                summary.add_stuck(conn, float(times[i]))
            summary.record(conn)
        k = int(self.S[FREE_N])
        self.free[k:k + n] = slots[::-1]
        self.S[FREE_N] = k + n

    def connection(self, c: int) -> Connection:
        """Slot c as a machine.Connection, for the summary and the records."""
        col = self.cols
        v6 = bool(col["v6"][c])
        eps = []
        for e in range(2):
            hi, lo = int(col["ip_hi"][c, e]), int(col["ip_lo"][c, e])
            ip = (hi.to_bytes(8, "big") + lo.to_bytes(8, "big")) if v6 else lo.to_bytes(4, "big")
            ep = Endpoint(ip, int(col["port"][c, e]))
            ep.state = STATES[col["st"][c, e]]
            k = int(col["ntr"][c, e])
            ep.transitions = [(t, STATES[s], bool(tm)) for t, s, tm in zip(
                col["tr_ts"][c, e, :k].tolist(), col["tr_st"][c, e, :k].tolist(),
                col["tr_timer"][c, e, :k].tolist(), strict=True)]
            ep.left_censored = bool(col["left"][c, e])
            isn, fin_seq = int(col["isn"][c, e]), int(col["fin_seq"][c, e])
            ep.isn = None if isn < 0 else isn
            ep.syn_acked = bool(col["syn_acked"][c, e])
            ep.fin_seq = None if fin_seq < 0 else fin_seq
            ep.fin_acked = bool(col["fin_acked"][c, e])
            ep.packets, ep.payload = int(col["packets"][c, e]), int(col["payload"][c, e])
            ep.syns, ep.fins = int(col["syns"][c, e]), int(col["fins"][c, e])
            ep.rsts = int(col["rsts"][c, e])
            eps.append(ep)
        roles = ROLE_NAMES[col["roles"][c]]
        conn = Connection(int(col["cid"][c]), float(col["first_ts"][c]), eps[0], eps[1], roles,
                          roles != Roles.SYN)
        conn.last_ts = float(col["last_ts"][c])
        reset_by = int(col["reset_by"][c])
        conn.reset_by = None if reset_by < 0 else reset_by
        conn.anomalies = {ANOMALY_NAMES[a]: int(v) for a, v in enumerate(col["anom"][c]) if v}
        return conn


# ---- folding retired connections into the summary's aggregates -------------------------

NBINS = 2000  # duration bins: 1 us .. 10**14 s at 100 a decade, plus the <= 1 us bin


def new_folds() -> dict[str, np.ndarray]:
    """The aggregates `fold` adds to, for Summary.absorb."""
    z = np.zeros
    return {"by_end": z(8, np.int64), "by_closer": z(4, np.int64), "by_roles": z(3, np.int64),
            "final": z((2, 10), np.int64), "anomalies": z(len(ANOMALY_NAMES), np.int64),
            "counts": z((10, 4), np.int64), "hist": z((10, 4, NBINS + 1), np.int64),
            "max": np.zeros(10), "min": np.full(10, np.inf), "max_censored": np.zeros(10)}


@njit(cache=True, nogil=True)
def _end_kind(T, c):
    """verdict.end_kind, as the index of the EndKind member."""
    isn, syn_acked, fin_seq, reset_by = T[6], T[8], T[9], T[31][c]
    mid_stream = T[27][c] != 0
    if reset_by != -1:
        if reset_by == 1 and isn[c, 1] == -1 and not mid_stream:
            return 4
        return 2 if reset_by == 0 else 3
    if fin_seq[c, 0] != -1 and fin_seq[c, 1] != -1:
        return 0
    if fin_seq[c, 0] != -1 or fin_seq[c, 1] != -1:
        return 1
    if not mid_stream and isn[c, 1] == -1:
        return 5
    if isn[c, 1] != -1 and not syn_acked[c, 1]:
        return 6
    return 7


@njit(cache=True, nogil=True)
def _closer(T, c):
    """verdict.closer, as the index of the Closer member."""
    active = [False, False]
    for e in range(2):
        for k in range(T[1][c, e]):
            if T[3][c, e, k] == FIN_WAIT_1:
                active[e] = True
    if active[0] and active[1]:
        return 2
    if active[0]:
        return 0
    if active[1]:
        return 1
    return 3


@njit(cache=True, nogil=True)
def fold(T, slots, times, limits, by_end, by_closer, by_roles, final, anomalies, counts, hist,
         dmax, dmin, dmax_censored, stuck):
    """Summary.add for each retired slot, into the aggregate arrays; stuck[i] is set when
    connection i has an interval longer than its state's limit (NaN: no limit), for the
    caller to report it."""
    for i in range(len(slots)):
        c, end = slots[i], times[i]
        by_end[_end_kind(T, c)] += 1
        by_closer[_closer(T, c)] += 1
        by_roles[T[27][c]] += 1
        for a in range(anomalies.shape[0]):
            anomalies[a] += T[32][c, a]
        stuck[i] = False
        for e in range(2):
            final[e, T[0][c, e]] += 1
            n = T[1][c, e]
            for k in range(n):
                state = T[3][c, e, k]
                if state == CLOSED:
                    continue
                start = T[2][c, e, k]
                left = k == 0 and T[5][c, e]
                if k + 1 < n:
                    stop = T[2][c, e, k + 1]
                    censor = 2 if left else 0
                else:
                    stop = end
                    censor = 3 if left else 1
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
