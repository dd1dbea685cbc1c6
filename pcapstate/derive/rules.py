"""The diagnoses' rules (docs/diagnoses.md): which retired connections each one picks, in
compiled code, a batch at a time. `pick` gives every connection a mask of the rules that
picked it (a bit each, per endpoint where the rule concerns one side) and the facts the
rules that count every connection read (FACTS: when a handshake completed, how long a
server's connection was idle before its FIN, when each endpoint was in TIME_WAIT).
derive/diagnoses.py and derive/lifecycle.py then build the evidence of the few picked, and
count the facts, per service, in bulk.
"""

import math

import numpy as np

from pcapstate.derive.verdict import C_SERVER, E_REFUSED
from pcapstate.jit import njit
from pcapstate.track.endpoints import GIVE_UP_AFTER
from pcapstate.track.slots import BY_SYN, CLOSED, SYN_RCVD, SYN_SENT, TIME_WAIT
from pcapstate.vocab import SYN_SACK, SYN_TS, SYN_WS

#: A receiver that advertises a zero window for longer than this has stalled.
STALL_AFTER = 1.0
#: The idle times before a server's own FIN, per service, in a histogram: bins per decade
#: from IDLE_FLOOR seconds (bin 0: up to it; the last: IDLE_BINS decades on and more).
IDLE_PER_DECADE, IDLE_FLOOR, IDLE_BINS = 50, 1e-3, 300

# The rules' bits. Those of one endpoint's: the client's bit; the server's, the next one.
GAVE_UP = 1 << 0  # handshake_timeout: its SYN (SYN-ACK) given up by its timer
SLOW_CONNECT = 1 << 2  # syn_retransmitted: connected after the client sent its SYN again
OVERFLOW = 1 << 3  # accept_queue_overflow: SYN-ACK sent again after the handshake ACK ...
OVERFLOW_RST = 1 << 4  # ... or that ACK answered by a RST
REFUSED = 1 << 5  # refused_burst
STALL = 1 << 6  # zero_window_stall: the endpoint advertised a zero window too long
GONE_RESET = 1 << 8  # peer_gone: a RST from a host with no socket answered a segment
GONE_SILENT = 1 << 9  # peer_gone: the endpoint sent again and again, never answered
RACE = 1 << 11  # keepalive_race
DATA_LOST = 1 << 12  # reset_with_data_loss
SYN_COOKIE = 1 << 13  # accept_queue_overflow: a SYN-ACK without the options offered
#: The diagnosis each rule's bits are a sign of (a connection that shows it; whether its
#: service is diagnosed is for the counts of all to say), in vocab.DIAGNOSES' order
SIGNS = (("peer_gone", GONE_RESET | GONE_SILENT | GONE_SILENT << 1),
         ("reset_with_data_loss", DATA_LOST), ("keepalive_race", RACE),
         ("syn_retransmitted", SLOW_CONNECT),
         ("accept_queue_overflow", OVERFLOW | OVERFLOW_RST | SYN_COOKIE),
         ("handshake_timeout", GAVE_UP | GAVE_UP << 1), ("refused_burst", REFUSED),
         ("zero_window_stall", STALL | STALL << 1))

#: What the counting rules read of every connection. The fields named as the packed
#: record's (track/slots.py) are copies, so that derive/records.address and
#: verdict.service_of read either; accepted: its handshake completed; idle_bin: the bin of
#: the server's idle time before its FIN (closed first by the server), -1 none;
#: options_kept: the server's SYN-ACK carried the window scale or SACK the client's SYN
#: offered without timestamps (as a SYN cookie's cannot); tw_at,
#: tw_left: when each endpoint entered TIME_WAIT and left it (its timer, a new connection
#: on the 4-tuple, or retirement), NaN never.
FACTS = np.dtype([
    ("cid", np.int64), ("v6", np.uint8), ("tunnel", np.int32), ("ip_hi", np.uint64, 2),
    ("ip_lo", np.uint64, 2), ("port", np.int64, 2), ("first_ts", np.float64),
    ("fin_ts", np.float64, 2), ("tw_reused", np.uint8), ("accepted", np.uint8),
    ("idle_bin", np.int16), ("options_kept", np.uint8), ("tw_at", np.float64, 2),
    ("tw_left", np.float64, 2),
])


@njit(cache=True, nogil=True)
def stall_longest(r, e, end):
    """Endpoint e's longest zero-window stretch, to `end` if it was still in one."""
    since = r.zw_since[e]
    return max(np.float64(r.zw_longest[e]), 0.0 if math.isnan(since) else end - since)


@njit(cache=True, nogil=True)
def pick(rows, times, kinds, closers, picks, facts):
    """The rules' bits of each retired connection (`rows`, retired at `times`; their end
    kinds and closers, as derive/fold.py gave them) into `picks`, its FACTS into `facts`."""
    for i in range(len(rows)):
        r, f, p = rows[i], facts[i], 0
        for e in range(2):
            k = r.ntr[e] - 1
            if k >= 1 and r.tr_st[e, k] == CLOSED and r.tr_timer[e, k] == 1 and (
                    r.tr_st[e, k - 1] == SYN_SENT or r.tr_st[e, k - 1] == SYN_RCVD):
                p |= GAVE_UP << e
            if r.zw_stalls[e] > 0 and stall_longest(r, e, times[i]) >= STALL_AFTER:
                p |= STALL << e
        accepted = r.roles == BY_SYN and r.syn_acked[0] != 0 and r.syn_acked[1] != 0
        if accepted and r.syns[0] > 1:
            p |= SLOW_CONNECT
        if kinds[i] == E_REFUSED:
            p |= REFUSED
        # Linux makes a SYN cookie's SYN-ACK for a client that sent no timestamps without
        # the window scale and SACK (they cannot be kept; with timestamps they are hidden
        # in the timestamp, and nothing in the packets tells the cookie)
        offered = r.syn_opts[0] & (SYN_WS | SYN_SACK)
        untimed = r.roles == BY_SYN and r.isn[1] != -1 and offered != 0 \
            and r.syn_opts[0] & SYN_TS == 0
        if untimed and r.syn_opts[1] & (SYN_WS | SYN_SACK | SYN_TS) == 0:
            p |= SYN_COOKIE
        reset = r.reset_by >= 0 and kinds[i] != E_REFUSED and r.inferred == 0
        # a RST without ACK whose sequence number is the last acknowledgment, from the
        # side that sent no FIN: no socket there
        answered = reset and r.rst_answer != 0 and r.fin_seq[max(r.reset_by, 0)] == -1
        # the listener answers the handshake's ACK so, having sent nothing since its
        # SYN-ACK: a full accept queue with tcp_abort_on_overflow=1, not a vanished peer
        overflow = answered and r.reset_by == 1 and r.syn_acked[1] != 0 \
            and r.payload[1] == 0 and r.heard[1] == r.syn_ts[1]
        if overflow:
            p |= OVERFLOW | OVERFLOW_RST
        elif r.synack_after_ack > 0:
            p |= OVERFLOW
        if answered and not overflow:
            p |= GONE_RESET
        else:
            for e in range(2):
                if r.quiet_retx[e] >= GIVE_UP_AFTER:
                    p |= GONE_SILENT << e
        server_fin = closers[i] == C_SERVER and r.fin_seq[1] != -1
        crossed = server_fin and r.reset_by == 1 and not math.isnan(r.crossed[0])
        if crossed:
            p |= RACE
        # (a race's request is lost too, and one sent on a connection the full accept
        # queue reset: the race, the overflow say why.) The server resets, not closes,
        # after the client's data: Linux's close() with data unread (or SO_LINGER 0)
        aborted = r.reset_by == 1 and r.run[0] > 0 and r.fin_seq[1] == -1
        if reset and not answered and not crossed and (
                r.rst_unacked[0] > 0 or r.rst_unacked[1] > 0 or aborted):
            p |= DATA_LOST
        picks[i] = p
        f.cid, f.v6, f.tunnel, f.first_ts = r.cid, r.v6, r.tunnel, r.first_ts
        f.tw_reused, f.accepted, f.idle_bin = r.tw_reused, accepted, -1
        f.options_kept = untimed and r.syn_opts[1] & offered != 0
        if server_fin:
            idle = np.float64(r.fin_idle[1])
            idle = idle if idle > IDLE_FLOOR else IDLE_FLOOR  # (NaN too)
            f.idle_bin = min(int(min(math.log10(idle / IDLE_FLOOR), 1e6) * IDLE_PER_DECADE),
                             IDLE_BINS)
        for e in range(2):
            f.ip_hi[e], f.ip_lo[e], f.port[e] = r.ip_hi[e], r.ip_lo[e], r.port[e]
            f.fin_ts[e], f.tw_at[e], f.tw_left[e] = r.fin_ts[e], np.nan, np.nan
            for k in range(r.ntr[e]):
                if r.tr_st[e, k] == TIME_WAIT:
                    f.tw_at[e] = r.tr_ts[e, k]
                    f.tw_left[e] = r.tr_ts[e, k + 1] if k + 1 < r.ntr[e] else times[i]
                    break


def service_keys(rows: np.ndarray) -> np.ndarray:
    """Each row's service (the server's address, port and tunnel) as numbers, a row each:
    what `groups` groups by."""
    return np.stack([rows["ip_hi"][:, 1], rows["ip_lo"][:, 1], rows["port"][:, 1].astype(
        np.uint64), rows["tunnel"].astype(np.uint64), rows["v6"].astype(np.uint64)], axis=1)


def groups(keys: np.ndarray, picked: np.ndarray, rows: np.ndarray | None = None,
           host: np.ndarray | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """The rows `picked` grouped by service (`keys`: service_keys of all the rows) and,
    given `host` (an endpoint index per picked row), by that endpoint's address in `rows`
    too: the index (into `picked`) of each group's first row, and each group's members
    (indices into `picked`, in order), the groups in order of their first rows."""
    keys = keys[picked]
    if host is not None and rows is not None:
        keys = np.concatenate([keys, np.stack([rows["ip_hi"][picked, host], rows["ip_lo"][
            picked, host], host.astype(np.uint64)], axis=1)], axis=1)
    keys = np.ascontiguousarray(keys, np.uint64)
    n = len(keys)
    first, order, sizes = np.empty(n, np.int64), np.empty(n, np.int64), np.zeros(n, np.int64)
    found = _group(keys, _hashes(keys), first, order, sizes)
    return first[:found], np.split(order, np.cumsum(sizes[:found])[:-1]) if found else []


def _hashes(keys: np.ndarray) -> np.ndarray:
    """A hash of each row of `keys`, every bit of it mixed into every bit of the hash
    (each column multiplied in, then MurmurHash3's finaliser): a hash table's slots are
    its low bits, and addresses of one subnet differ in few (numpy arrays wrap on
    overflow, silently)."""
    h = np.zeros(len(keys), np.uint64)
    for j in range(keys.shape[1]):
        h = (h ^ keys[:, j]) * np.uint64(0x9E3779B97F4A7C15)
    for shift, factor in ((33, 0xFF51AFD7ED558CCD), (33, 0xC4CEB9FE1A85EC53), (33, 0)):
        h ^= h >> np.uint64(shift)
        if factor:
            h *= np.uint64(factor)
    return h


@njit(cache=True, nogil=True)
def _group(keys, hashes, first, order, sizes):
    """Group the rows of `keys` that are equal, by a hash table (`hashes`: each row's):
    each group's first row into `first`, its size into `sizes` (given zeroed), and the
    rows, group after group, into `order`; returns how many groups."""
    n, width = keys.shape
    size = 2
    while size < 2 * n:
        size *= 2
    table = np.full(size, -1, np.int64)
    ids = np.empty(n, np.int64)
    found = 0
    for i in range(n):
        slot = np.int64(hashes[i] & np.uint64(size - 1))
        while True:
            g = table[slot]
            if g < 0:
                table[slot], first[found], ids[i] = found, i, found
                found += 1
                break
            same = True
            for j in range(width):
                if keys[first[g], j] != keys[i, j]:
                    same = False
                    break
            if same:
                ids[i] = g
                break
            slot = (slot + 1) & (size - 1)
        sizes[ids[i]] += 1
    start = np.zeros(found, np.int64)
    for g in range(1, found):
        start[g] = start[g - 1] + sizes[g - 1]
    for i in range(n):
        order[start[ids[i]]] = i
        start[ids[i]] += 1
    return found
