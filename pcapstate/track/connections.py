"""The table of live connections: finds each segment's connection, opens new ones, applies
the timers, evicts from a full table and retires connections, in compiled code over arrays,
a batch of decoded segments (decode/frames.py's Batch) at a time.

Memory is bounded by the live connections: a connection closed on both sides (by FIN, RST
or an expired timer) is retired once `Settings.linger` has passed and its slot reused.
Timers are kept in a heap ordered by deadline and checked once per second of capture time.
The live connections are bounded by `Settings.max_connections`: a new connection beyond
it first evicts one (`_evict`), retired marked `evicted` and counted by its tier
(vocab.Tier).

`Tracker` is the Python side: it grows the arrays when they fill and hands retired
connections out, in batches, as copies of their packed records (track/slots.py), to
whoever folds or writes them (derive/).
"""

from collections.abc import Callable

import numpy as np

from pcapstate.decode.frames import TCP, Batch
from pcapstate.jit import borrowing, njit, records
from pcapstate.settings import Settings
from pcapstate.track import zeek_view
from pcapstate.track.endpoints import (
    clock_of,
    closed,
    control,
    deadline,
    enter,
    expire,
    segment,
    unpack,
)
from pcapstate.track.slots import (
    BY_PORT,
    BY_SYN,
    BY_SYNACK,
    CLOSED,
    ESTABLISHED,
    MOVES,
    ROW,
    SLOT,
    SYN_RCVD,
    SYN_SENT,
    T_ATTEMPT,
    T_FINISHED,
    T_OPEN,
    TIME_WAIT,
)
from pcapstate.vocab import ACK, SYN, WIRESHARK_ANALYSIS

borrowed = borrowing()
_SWEEP_EVERY = 1.0  # seconds of capture time
_EPHEMERAL = 32768  # Linux's default ip_local_port_range starts here
#: A handshake attempt this long without a segment is evicted before any open connection:
#: Linux's initial retransmission timeout (RFC 6298): a live attempt would have sent again.
ATTEMPT_QUIET = 1.0

# Scalars kept in one float64 array, so the compiled code can update them.
NOW, NEXT_SWEEP, CONNECTIONS, PEAK, HEAP_N, FREE_N, RETIRED_N, TIME_WAIT_S, FIN_TIMEOUT_S, \
    LINGER_S, LIVE, LIMIT, EVICTED = range(13)  # EVICTED: one count per tier, from here
ZLINES_N = EVICTED + 3  # Zeek's views ended in the run (in Z), waiting
ZEEK_BARE = ZLINES_N + 1  # 1: Zeek's view has no likely server ports (settings.zeek_bare)
# A partition (Tracker's `share`) follows only the connections whose key's share (_share)
# is PART of PARTS (0: every connection); AT is the number of the record in hand (the
# batches' rows counted from the capture's first, BASE at this batch's), OPENED_N the
# connections opened since the opened list was last emptied: their records' numbers
AT, BASE, PARTS, PART, OPENED_N = range(ZEEK_BARE + 1, ZEEK_BARE + 6)
KEYS_N = OPENED_N + 1  # the connection table's keys
# The slots free are FREE_N: those given back, in the free list (_given_back), and the slots
# from FRESH on, never taken (so the free list takes memory only as slots come back).
FRESH = KEYS_N + 1
NS = FRESH + 1
# What a call stopped for.
DONE, NEED_SLOTS, NEED_HEAP, NEED_RETIRE, NEED_ZLINES, NEED_OPENED, NEED_KEYS = range(7)

#: The connection table: a key (_canonical) to its connection, by open addressing (linear
#: probing) in an array of a power of two entries, at most half full (NEED_KEYS): each
#: entry holds the key's hash (_mix) and its value, 2 * slot + the index of the endpoint
#: that sends in the key's direction (-1: empty). The key itself is the slot's own
#: addresses and ports (_key), compared when the hashes are equal: 8 bytes an entry, 16 to
#: 32 a key (numba's typed dict took about 114 a key, and was slower).
TABLE = np.dtype([("hash", np.int32), ("value", np.int32)])
TABLE_SEED = 0x2545F4914F6CDD1D  # the table's hash, unlike the partitions' (_share)
# The tiers' lists: LISTS[3 * t + HEAD] is tier t's most recently active slot (-1: none),
# LISTS[3 * t + TAIL] its least, LISTS[3 * t + COUNT] its length.
HEAD, TAIL, COUNT = range(3)
# The timer heap (earliest due first, ties by connection id) and the retired list: each
# retired slot, the capture time it retired at, the number of the record in hand then (AT;
# inf at the capture's end), and the deadline its timer was due at (-inf at the capture's
# end, inf when a segment retired it): a single run's order, in which partitions' retired
# connections are merged (Tracker.handed)
HEAP = np.dtype([("due", np.float64), ("cid", np.int64), ("slot", np.int32)])
RETIRED = np.dtype([("slot", np.int64), ("time", np.float64), ("at", np.float64),
                    ("due", np.float64)])
#: Retired connections handed on at most at a time (the retired list's length): their
#: copies take at most this many records' memory (track/slots.py ROW, 745 bytes each, and
#: zeek_view.VIEW, 551)
HAND_ON = 1 << 12


@njit(cache=True, nogil=True, inline="always")
def looks_like_server(sport, dport):
    """With no SYN seen: is the sender of this segment the server? Well-known ports first,
    then Linux's ephemeral range, then the lower port."""
    if (sport < 1024) != (dport < 1024):
        return sport < 1024
    if (sport >= _EPHEMERAL) != (dport >= _EPHEMERAL):
        return dport >= _EPHEMERAL
    return sport < dport


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
def _schedule(r, P, H, S, c):
    """The connection's deadline in the timer heap. One that moves later is left where it
    was: the heap's entry comes due first and is moved on then (_sweep). Most moves are
    later (each segment of a closed connection puts its retirement off): on the benchmark
    capture, 448,536 entries pushed and 324,714 of them popped superseded before, 277,552
    and 31,402 now."""
    due = deadline(r, P, S[TIME_WAIT_S], S[FIN_TIMEOUT_S], S[LINGER_S])
    if np.isnan(due) or due >= r.scheduled:
        return
    r.scheduled = due
    _heap_push(H, S, due, r.cid, c)


@njit(cache=True, nogil=True, inline="always")
def _key(r, e):
    """The key of segments that endpoint e sends: (source address high and low 64 bits,
    destination's, tunnel << 33 | IPv6 flag << 32 | source port << 16 | destination
    port)."""
    o = 1 - e
    ports = (np.int64(r.tunnel) << 33) | (np.int64(r.v6) << 32) \
        | (np.int64(r.port[e]) << 16) | np.int64(r.port[o])
    return (np.int64(r.ip_hi[e]), np.int64(r.ip_lo[e]), np.int64(r.ip_hi[o]),
            np.int64(r.ip_lo[o]), ports)


@njit(cache=True, nogil=True, inline="always")
def _canonical(k):
    """The table's one key for both directions of a 4-tuple (the lower endpoint first),
    and 1 if `k`, a sender's key, was turned round to make it. The value at a key is
    2 * slot + the index of the endpoint that sends in the key's direction."""
    src_hi, src_lo, dst_hi, dst_lo, ports = k
    sport, dport = (ports >> 16) & 0xFFFF, ports & 0xFFFF
    if src_hi < dst_hi or (src_hi == dst_hi and (
            src_lo < dst_lo or (src_lo == dst_lo and sport <= dport))):
        return k, 0
    return (dst_hi, dst_lo, src_hi, src_lo, (ports >> 32 << 32) | (dport << 16) | sport), 1


@njit(cache=True, nogil=True, inline="always")
def _tier(r):
    """The connection's tier (vocab.Tier), by its endpoints' states."""
    a, b = r.st[0], r.st[1]
    if (a == CLOSED or a == TIME_WAIT) and (b == CLOSED or b == TIME_WAIT):
        return T_FINISHED
    if a <= SYN_RCVD and b <= SYN_RCVD:  # CLOSED, SYN_SENT or SYN_RCVD
        return T_ATTEMPT
    return T_OPEN


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
    """The connection is the most recently active of its tier (by its states now)."""
    t = _tier(T[c])
    if T[c].tier != t or L[3 * t + HEAD] != c:
        _unlink(T, L, c)
        _link(T, L, c, t)


@njit(cache=True, nogil=True)
def _evict(T, P, S, table, R, L, now):
    """Make room: retire the least recently active finished connection; without one, the
    least recently active handshake attempt if attempts hold half the table or more (a
    flood) or if it has been quiet for ATTEMPT_QUIET; else whichever of that attempt and the
    least recently active open connection has been quiet longer. So a flood of SYNs
    recycles its own attempts and leaves idle connections (CLOSE_WAIT...) alone, while
    handshakes in progress are not broken up to keep connections idle for longer."""
    finished, attempt = L[3 * T_FINISHED + TAIL], L[3 * T_ATTEMPT + TAIL]
    open_ = L[3 * T_OPEN + TAIL]
    if finished >= 0:
        t = T_FINISHED
    elif open_ < 0 or (attempt >= 0 and (2 * L[3 * T_ATTEMPT + COUNT] >= S[LIVE]
                                         or now - T[attempt].last_ts >= ATTEMPT_QUIET
                                         or T[attempt].last_ts <= T[open_].last_ts)):
        t = T_ATTEMPT
    else:
        t = T_OPEN
    c = L[3 * t + TAIL]
    r = T[c]
    expire(r, P, now, S[TIME_WAIT_S], S[FIN_TIMEOUT_S])
    r.evicted = True
    S[EVICTED + t] += 1
    _retire(T, S, table, R, L, c, now)


@njit(cache=True, nogil=True)
def _retire(T, S, table, R, L, c, now):
    r = T[c]
    r.scheduled = np.nan
    k, _ = _canonical(_key(r, 0))
    i = _find(T, table, k, _mix(k, TABLE_SEED))
    if table[i].value >= 0 and table[i].value // 2 == c:
        _remove(table, S, i)
    _unlink(T, L, c)
    S[LIVE] -= 1
    i = np.int64(S[RETIRED_N])
    R[i].slot = c
    R[i].time = now
    R[i].at = S[AT]
    R[i].due = np.inf
    S[RETIRED_N] = i + 1


@njit(cache=True, nogil=True)
def _sweep(T, P, H, S, table, R, L, now):
    tw, ft, linger = S[TIME_WAIT_S], S[FIN_TIMEOUT_S], S[LINGER_S]
    while S[HEAP_N] > 0 and H[0].due <= now:
        if S[RETIRED_N] >= len(R):
            return False
        due, cid, c = _heap_pop(H, S)
        r = T[c]
        if r.cid != cid or r.scheduled != due:
            continue  # superseded by an earlier deadline, or retired
        r.scheduled = np.nan
        if deadline(r, P, tw, ft, linger) > due:  # put off since (_schedule)
            _schedule(r, P, H, S, c)
            continue
        expire(r, P, now, tw, ft)
        retire_at = deadline(r, P, tw, ft, linger)
        if closed(r) and not np.isnan(retire_at) and now >= retire_at:
            _retire(T, S, table, R, L, c, now)
            R[np.int64(S[RETIRED_N]) - 1].due = due
        else:
            _schedule(r, P, H, S, c)
    return True


@njit(cache=True, nogil=True)
def _open(T, P, V, S, table, free, R, L, opened, ts, flags, key):
    """A new connection for a segment with this table key; returns (slot, index of its
    sender). A partition notes the record that opened it in `opened`."""
    if S[LIMIT] > 0 and S[LIVE] >= S[LIMIT]:
        _evict(T, P, S, table, R, L, ts)
    src_hi, src_lo, dst_hi, dst_lo, ports = key
    sport, dport = (ports >> 16) & 0xFFFF, ports & 0xFFFF
    n = _given_back(T, S)
    if n > 0:
        c = np.int64(free[n - 1])
    else:
        c = np.int64(S[FRESH])
        S[FRESH] = c + 1
    S[FREE_N] -= 1
    if flags & SYN and not flags & ACK:
        d, roles = 0, BY_SYN
    elif flags & SYN:
        d, roles = 1, BY_SYNACK
    else:
        d, roles = (1, BY_PORT) if looks_like_server(sport, dport) else (0, BY_PORT)
    r = T[c]  # zeroed when it was freed
    for e in range(2):
        r.isn[e] = -1
        r.fin_seq[e] = -1
        r.last_ack[e] = -1
        r.nxt[e] = -1
        r.wscale[e] = -1
        r.last_seen[e] = -1.0
        r.crossed[e] = np.nan
        r.zw_since[e] = np.nan
    r.ip_hi[d], r.ip_lo[d], r.port[d] = src_hi, src_lo, sport
    r.ip_hi[1 - d], r.ip_lo[1 - d], r.port[1 - d] = dst_hi, dst_lo, dport
    S[CONNECTIONS] += 1
    r.cid = np.int64(S[CONNECTIONS])
    if S[PARTS] > 0:
        opened[np.int64(S[OPENED_N])] = S[AT]
        S[OPENED_N] += 1
    r.roles = roles
    r.v6 = (ports >> 32) & 1
    r.tunnel = ports >> 33
    r.first_ts = ts
    r.last_ts = ts
    r.data_ts = ts
    r.reset_by = -1
    r.talked = -1
    r.scheduled = np.nan
    if len(V):
        zeek_view.start(V[c], d, flags, sport, dport, ts, S[ZEEK_BARE] > 0)
    if roles == BY_SYNACK:  # the client's SYN is not in the capture, but the SYN/ACK proves it
        enter(r, P, 0, ts, SYN_SENT, False)
        r.left[0] = True
        r.syn_acked[0] = True
    elif roles == BY_PORT:
        for e in range(2):
            enter(r, P, e, ts, ESTABLISHED, False)
            r.left[e] = True
    k, turned = _canonical(key)
    h = _mix(k, TABLE_SEED)
    i = _find(T, table, k, h)
    table[i].hash = h
    if key == _key(r, 1 - d):
        # a connection of a socket to itself: both directions are one key; segments are
        # taken as the peer's
        table[i].value = 2 * c + 1 - d
    else:
        table[i].value = 2 * c + (d ^ turned)
    S[KEYS_N] += 1
    _link(T, L, c, _tier(r))
    S[LIVE] += 1
    S[PEAK] = max(S[PEAK], S[LIVE])
    return c, d


@njit(cache=True, nogil=True)
def _taken_over(T, P, S, table, R, L, c, d, ts):
    """A SYN with a new sequence number from endpoint d of slot c: does it start a new
    connection? Yes if the receiver is CLOSED or in TIME_WAIT and the sender too, or in
    SYN_SENT; then whatever is left of the old one is gone, and it is retired."""
    r = T[c]
    expire(r, P, ts, S[TIME_WAIT_S], S[FIN_TIMEOUT_S])
    rs, ss = r.st[1 - d], r.st[d]
    if (rs == CLOSED or rs == TIME_WAIT) and (ss == CLOSED or ss == TIME_WAIT
                                              or ss == SYN_SENT):
        for e in range(2):
            if r.st[e] == TIME_WAIT:
                r.tw_reused = True
            if r.st[e] != CLOSED:
                enter(r, P, e, ts, CLOSED, False)
        _retire(T, S, table, R, L, c, ts)
        return True
    return False


@njit(cache=True, nogil=True)
def _z_emit(r, cid, Z, S):
    """Keep Zeek view r of connection cid, ended (zeek_view.ended), in Z: the Zeek
    connections that ended on the 4-tuple while pcapstate's connection went on, handed out
    with it."""
    z = Z[np.int64(S[ZLINES_N])]
    S[ZLINES_N] += 1
    z.cid = cid
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


@njit(cache=True, nogil=True, inline="always")
def _share(key, parts):
    """Which of `parts` partitions follows the connection of this canonical key."""
    return _mix(key, 0) % np.int64(parts)


@njit(cache=True, nogil=True, inline="always")
def _mix(key, seed):
    """A 31-bit hash of a key: its words mixed in turn by xorshift64 from `seed`, folded to
    31 bits, then multiplied and shifted twice (MurmurHash2's constant) so that every bit
    of the key reaches the low bits a modulo of a power of two reads. In int64, products
    under 2**62: the same compiled and not, with no overflow."""
    h = np.int64(seed)
    for w in key:
        h ^= w
        h ^= h << np.int64(13)
        h ^= h >> np.int64(7)
        h ^= h << np.int64(17)
    low = np.int64(0x7FFFFFFF)
    x = (h ^ (h >> np.int64(31)) ^ (h >> np.int64(62))) & low
    for shift in (15, 13):
        x = (x * np.int64(0x5BD1E995)) & low
        x ^= x >> np.int64(shift)
    return x


@njit(cache=True, nogil=True)
def _find(T, table, key, h):
    """The entry of `key` (canonical, its hash h) in the table, or the empty one where it
    would go."""
    mask = len(table) - 1
    i = h & mask
    while table[i].value >= 0:
        if table[i].hash == h and _canonical(_key(T[table[i].value // 2], 0))[0] == key:
            return i
        i = (i + 1) & mask
    return i


@njit(cache=True, nogil=True)
def _remove(table, S, i):
    """Empty entry i, moving back the entries after it that would not be found past the
    hole (linear probing's deletion, with no tombstones)."""
    mask = len(table) - 1
    j = i
    while True:
        j = (j + 1) & mask
        if table[j].value < 0:
            break
        home = table[j].hash & mask  # the entry at j stays if found from there past i
        stays = i < home <= j if i < j else home > i or home <= j
        if not stays:
            table[i].hash, table[i].value = table[j].hash, table[j].value
            i = j
    table[i].value = -1
    S[KEYS_N] -= 1


@njit(cache=True, nogil=True)
def rehash(old, table):
    """Put the entries of `old` into `table` (empty, larger)."""
    mask = len(table) - 1
    for k in range(len(old)):
        if old[k].value >= 0:
            i = old[k].hash & mask
            while table[i].value >= 0:
                i = (i + 1) & mask
            table[i].hash, table[i].value = old[k].hash, old[k].value


@njit(cache=True, nogil=True)
def run(T, P, V, W, H, S, table, free, R, L, Z, opened, B, start, n):
    """Each segment of rows start..n-1 of B (TCP rows only), in order: find or open its
    connection, apply it (and to its Zeek view in V, the slots' own, if V is not empty),
    schedule the connection's timers. Stops early, returning the row
    to resume from and why, when the slots, the heap, the retired list, Zeek's ended
    views (Z) or the opened list need room. A partition's table keeps the clock (and
    its timers) with every segment, and takes only its share of them."""
    T, P, V, W, H, S = borrowed(T), borrowed(P), borrowed(V), borrowed(W), borrowed(H), \
        borrowed(S)
    table, free, R, L, Z, opened = borrowed(table), borrowed(free), borrowed(R), borrowed(L), \
        borrowed(Z), borrowed(opened)
    tw, ft = S[TIME_WAIT_S], S[FIN_TIMEOUT_S]
    (b_ts, b_kind, b_v6, b_src_hi, b_src_lo, b_dst_hi, b_dst_lo, b_sport, b_dport, b_seq,
     b_ack, b_flags, b_win, b_plen, b_ipid, b_wscale, b_synopt, b_analysis, b_iplen, b_cut,
     b_bad_sum, b_tunnel) = B
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
        if S[OPENED_N] + 2 > len(opened):
            return i, NEED_OPENED
        if 2 * (S[KEYS_N] + 2) > len(table):
            return i, NEED_KEYS
        S[AT] = S[BASE] + i
        ts = b_ts[i]
        if ts > S[NOW]:
            if ts >= S[NEXT_SWEEP]:
                if not _sweep(T, P, H, S, table, R, L, ts):
                    return i, NEED_RETIRE
                S[NEXT_SWEEP] = ts + _SWEEP_EVERY
            S[NOW] = ts
        flags, seq = np.int64(b_flags[i]), b_seq[i]
        ports = (np.int64(b_tunnel[i]) << 33) | (np.int64(b_v6[i]) << 32) \
            | (np.int64(b_sport[i]) << 16) | np.int64(b_dport[i])
        k = (np.int64(b_src_hi[i]), np.int64(b_src_lo[i]), np.int64(b_dst_hi[i]),
             np.int64(b_dst_lo[i]), ports)
        key, turned = _canonical(k)
        if S[PARTS] > 0 and _share(key, S[PARTS]) != S[PART]:
            continue
        v = table[_find(T, table, key, _mix(key, TABLE_SEED))].value
        if v >= 0:
            c, d = v // 2, (v % 2) ^ turned
            if flags & SYN and not flags & ACK and T[c].isn[d] != seq \
                    and _taken_over(T, P, S, table, R, L, c, d, ts):
                c, d = _open(T, P, V, S, table, free, R, L, opened, ts, flags, k)
            elif len(V) and zeek_view.ended(V[c], S[NOW], d, flags, seq):
                _z_emit(V[c], T[c].cid, Z, S)
                zeek_view.start(V[c], d, flags, np.int64(b_sport[i]), np.int64(b_dport[i]), ts,
                                S[ZEEK_BARE] > 0)
        else:
            c, d = _open(T, P, V, S, table, free, R, L, opened, ts, flags, k)
        r = T[c]
        if b_analysis[i]:  # what Wireshark said of the segment (tshark engine)
            for a in range(W.shape[1]):
                W[c, a] += (b_analysis[i] >> a) & 1
        wn, plen = np.int64(b_win[i]), np.int64(b_plen[i])
        if len(V):  # Zeek's view sees every segment, duplicates too
            zeek_view.packet(V[c], d, flags, seq, b_ack[i], plen, wn, ts, np.int64(b_iplen[i]),
                             b_cut[i], b_bad_sum[i])
        at = segment(r, d, flags, seq, b_ack[i], wn, plen, np.int64(b_ipid[i]), ts,
                     clock_of(r, P, ts, S[NOW]))
        if not np.isnan(at) and control(r, P, d, flags, seq, b_ack[i], wn, plen,
                                        np.int64(b_wscale[i]), np.int64(b_synopt[i]), at,
                                        tw, ft):
            _schedule(r, P, H, S, c)
        _touch(T, L, c)
    return n, DONE


@njit(cache=True, nogil=True)
def live_slots(T, S, upto):
    """The slots of the live connections whose ids are at most `upto`, in the order of
    their ids (between calls to run: the slots of retired connections are zeroed then).
    Found in one pass over the slots ever taken, in memory's order (a walk of the tier
    lists went from slot to slot at random: 42 against 5-7 ms for 97,659 connections); each
    id (less the least) and slot packed in one number, sorted in place, so that a full
    table's ending takes 8 bytes a connection (slots are below 2**31: the tier lists'
    links are 32 bits); sorted by id apart when the ids span 2**32 or more."""
    out = np.empty(np.int64(S[FRESH]), dtype=np.int64)
    j, least, most = 0, np.int64(1) << 62, np.int64(0)
    for c in range(len(out)):
        cid = T[c].cid
        if cid > 0 and cid <= upto:
            out[j] = c
            j += 1
            least, most = min(least, cid), max(most, cid)
    out = out[:j]
    if j and most - least >= 1 << 32:
        cids = np.empty(j, dtype=np.int64)
        for i in range(j):
            cids[i] = T[out[i]].cid
        return out[np.argsort(cids, kind="mergesort")]
    for i in range(j):
        out[i] |= (T[out[i]].cid - least) << 31
    out.sort()
    out &= (1 << 31) - 1
    return out


@njit(cache=True, nogil=True)
def finish(T, P, S, table, R, L, end, slots):
    """The capture is over at `end`: retire these live connections, in this order (the
    retired list has room for them)."""
    T, P, S, table, R, L = borrowed(T), borrowed(P), borrowed(S), borrowed(table), \
        borrowed(R), borrowed(L)
    S[AT] = np.inf
    for c in slots:
        expire(T[c], P, end, S[TIME_WAIT_S], S[FIN_TIMEOUT_S])
        _retire(T, S, table, R, L, c, end)
        R[np.int64(S[RETIRED_N]) - 1].due = -np.inf
    if S[LIVE] == 0:
        S[HEAP_N] = 0


@njit(cache=True, nogil=True)
def take_out(T, T_bytes, P, W, V_bytes, S, free, slots, rows, rows_bytes, views_bytes):
    """The retired connections in these slots taken out of the table, in one compiled call
    (each numpy call this replaced let go of Python's lock, then waited to get it back from
    the thread that writes records): their records into `rows`, copied as bytes (numpy
    copies records field by field, ten times slower), then unpacked (endpoints.unpack);
    their Wireshark counts into their `ws` from W, zeroed there, unless W is empty;
    their Zeek views' bytes into `views_bytes` from V's, unless V is empty; their slots
    zeroed and given back to the free list, the last first."""
    k, n = _given_back(T, S), len(slots)
    for i in range(n):
        c = slots[i]
        _copy(rows_bytes[i], T_bytes[c])
        unpack(T[c], P, rows[i])
        if len(W):
            rows[i].ws[:] = W[c]
            W[c] = 0
        if len(V_bytes):
            _copy(views_bytes[i], V_bytes[c])
        _zero(T_bytes[c])
        free[k + n - 1 - i] = c
    S[FREE_N] += n


@njit(cache=True, nogil=True, inline="always")
def _given_back(T, S):
    """How many slots the free list holds (FRESH)."""
    return np.int64(S[FREE_N]) - (len(T) - np.int64(S[FRESH]))


@njit(cache=True, nogil=True, inline="always")
def _copy(to, bytes_):
    """`bytes_` into the start of `to`, by a loop that LLVM makes one memcpy: numba's slice
    assignment copies byte by byte (162 against 25 ns for a slot, 553 bytes)."""
    for j in range(len(bytes_)):
        to[j] = bytes_[j]


@njit(cache=True, nogil=True, inline="always")
def _zero(bytes_):
    """`bytes_` zeroed (one memset: _copy)."""
    for j in range(len(bytes_)):
        bytes_[j] = 0


def new_table(size: int = 1024) -> np.ndarray:
    """An empty connection table (TABLE) of `size` entries, a power of two."""
    table = records(np.zeros(size, TABLE))
    table["value"] = -1
    return table


#: What a Tracker hands out for each batch of connections it retires: their packed records
#: with their moves whole (track/slots.py ROW), a copy of their Zeek views (zeek_view.VIEW;
#: none when Settings.zeek is off), the capture time each was retired at, and, by connection
#: id, the Zeek views that ended on its 4-tuple while it went on, oldest first.
Retire = Callable[[np.ndarray, np.ndarray, np.ndarray, dict[int, list[np.void]]], None]


class Tracker:
    """Feed it Batches in capture order (`feed`), then `finish`; it hands every connection
    it retires to `on_retired` (Retire), in batches, in the order they retired.

    A partition of the table (`share`: (part, parts)) is fed every batch and follows only
    the connections of its share (_share); what it adds to merge with the other partitions
    into a single run's order: `handed`, the retired list's entries (RETIRED) of the
    connections it last handed on, and `opened()`, the numbers of the records that opened
    its connections (its ids 1, 2, ... in turn)."""

    def __init__(self, settings: Settings, on_retired: Retire, slots: int = 0,
                 share: tuple[int, int] = (0, 0)) -> None:
        """`slots`: how many to start with; by default as many as the connection limit
        allows (np.zeros takes memory only as slots are used), or 65,536 with no limit."""
        slots = slots or (_slot_cap(settings.max_connections) if settings.max_connections
                          else 1 << 16)
        self.settings = settings
        self.on_retired = on_retired
        self.T = records(np.zeros(slots, SLOT))
        #: the blocks of the slots' later moves (endpoints.enter), one for each endpoint
        self.P = records(np.zeros(2 * slots + 1, MOVES))
        #: each slot's Zeek view, when followed (zeek_view.start sets every field read)
        self.V = records(np.zeros(slots if settings.zeek else 0, zeek_view.VIEW))
        #: each slot's counts of Wireshark's analysis flags (slots.ROW ws), once a batch has
        #: any (the tshark engine's)
        self.W = np.zeros((0, len(WIRESHARK_ANALYSIS)), np.int32)
        self.free = np.zeros(slots, np.int32)
        self.heap = records(np.zeros(max(slots, 4), HEAP))
        self.retired = records(np.zeros(HAND_ON, RETIRED))
        self.table = new_table()
        self.lists = np.array([-1, -1, 0] * 3, np.int64)
        self.zlines = records(np.zeros(1024, zeek_view.VIEW))
        self.handed = np.zeros(0, RETIRED)
        self._opened = np.zeros(1 << 16 if share[1] else 2)
        self._opened_now: list[np.ndarray] = []
        self.fed = 0  # the records fed
        #: connection id -> the Zeek views that ended on its 4-tuple while it went on, kept
        #: until it retires
        self.zeek_ended: dict[int, list[np.void]] = {}
        self.S = np.zeros(NS)
        self.S[[NOW, NEXT_SWEEP]] = -np.inf
        self.S[FREE_N] = slots
        self.S[[TIME_WAIT_S, FIN_TIMEOUT_S, LINGER_S, LIMIT, ZEEK_BARE]] = (
            settings.time_wait, settings.fin_timeout, settings.linger, settings.max_connections,
            settings.zeek_bare)
        self.S[[PART, PARTS]] = share

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
        """Evictions by tier (vocab.Tier)."""
        return [int(v) for v in self.S[EVICTED:EVICTED + 3]]

    def feed(self, batch: Batch) -> None:
        i, n = 0, len(batch.ts)
        if not len(self.W) and batch.analysis.any():
            self.W = np.zeros((len(self.T), self.W.shape[1]), np.int32)
        self.S[BASE] = self.fed
        while i < n:
            i, why = run(self.T, self.P, self.V, self.W, self.heap, self.S, self.table, self.free,
                         self.retired, self.lists, self.zlines, self._opened, batch, i, n)
            self._keep_zeek_ended()
            if self.S[OPENED_N]:
                self._opened_now.append(self._opened[:int(self.S[OPENED_N])].astype(np.int64))
                self.S[OPENED_N] = 0
            self._hand_on()
            if why == NEED_SLOTS and self.S[FREE_N] < 2:
                self._grow_slots()
            elif why == NEED_HEAP:
                self._compact_heap()
            elif why == NEED_KEYS:
                old, self.table = self.table, new_table(2 * len(self.table))
                rehash(old, self.table)
        self.fed += n

    def opened(self) -> np.ndarray:
        """The numbers of the records that opened a partition's connections since the last
        call, in the order of the connections' ids."""
        got = np.concatenate(self._opened_now) if self._opened_now else np.zeros(0, np.int64)
        self._opened_now = []
        return got

    def first_live(self) -> int:
        """The id of its first live connection, 0 for none (between calls to feed and
        finish: the slots of retired connections are zeroed then)."""
        cids = self.T["cid"]
        return int(cids[cids > 0].min()) if self.live else 0

    def finish(self, end: float, upto: float = np.inf) -> None:
        """The capture is over at `end`: retire every live connection (a partition: those
        of its ids up to `upto`), handed on HAND_ON at most at a time."""
        self._hand_on()
        slots = live_slots(self.T, self.S, float(upto))
        for start in range(0, len(slots), HAND_ON):
            finish(self.T, self.P, self.S, self.table, self.retired, self.lists, end,
                   slots[start:start + HAND_ON])
            self._hand_on()

    def _compact_heap(self) -> None:
        """Drop the superseded entries (of connections retired or rescheduled) if they are
        most of the heap, else grow it: its size follows the live connections."""
        n = int(self.S[HEAP_N])
        if n >= 2 * self.live + 1024:
            h = self.heap[:n]  # each entry's slot's two fields (not the whole records)
            h = h[(self.T["cid"][h["slot"]] == h["cid"])
                  & (self.T["scheduled"][h["slot"]] == h["due"])]
            self.heap[:len(h)] = h[np.lexsort((h["cid"], h["due"]))]  # sorted: a heap
            self.S[HEAP_N] = n = len(h)
        if n + 4 > len(self.heap) // 2:
            self.heap = _grown(self.heap)

    def _grow_slots(self) -> None:
        """Half as many slots again, up to the connection limit and a sixteenth of it more
        (slots of evicted connections are freed only between calls to `run`)."""
        old, limit = len(self.T), self.settings.max_connections
        new = old + max(old // 2, 2)
        if limit:
            new = max(min(new, _slot_cap(limit)), old + 2)
        self.T = _grown(self.T, new)
        self.P = _grown(self.P, 2 * new + 1)
        if len(self.V):
            self.V = _grown(self.V, new)
        if len(self.W):
            self.W = np.concatenate([self.W, np.zeros((new - old, self.W.shape[1]), np.int32)])
        self.free = np.concatenate([self.free, np.zeros(new - old, np.int32)])
        self.S[FREE_N] += new - old

    def _keep_zeek_ended(self) -> None:
        """Keep the Zeek views that ended in the run with their connections."""
        n = int(self.S[ZLINES_N])
        for z in self.zlines[:n].copy():
            self.zeek_ended.setdefault(int(z["cid"]), []).append(z)
        self.S[ZLINES_N] = 0

    def _hand_on(self) -> None:
        """Hand the retired connections on, in order, and free their slots."""
        n = int(self.S[RETIRED_N])
        if not n:
            return
        slots, times = self.retired["slot"][:n].copy(), self.retired["time"][:n].copy()
        if self.S[PARTS]:
            self.handed = self.retired[:n].copy()
        self.S[RETIRED_N] = 0
        rows = records(np.empty(n, ROW))
        if not len(self.W):
            rows["ws"] = 0
        view = zeek_view.VIEW
        views = np.empty((n if len(self.V) else 0, view.itemsize), np.uint8)
        take_out(self.T, self.T.view(np.uint8).reshape(len(self.T), SLOT.itemsize), self.P,
                 self.W, self.V.view(np.uint8).reshape(len(self.V), view.itemsize), self.S,
                 self.free, slots, rows, rows.view(np.uint8).reshape(n, ROW.itemsize), views)
        views = records(views.view(view).reshape(len(views)))
        ended = {}
        if self.zeek_ended:
            for cid in rows["cid"].tolist():
                earlier = self.zeek_ended.pop(cid, None)
                if earlier:
                    ended[cid] = earlier
        self.on_retired(rows, views, times, ended)


def _slot_cap(limit: int) -> int:
    """Slots for a connection limit: evicted connections' slots are freed between calls
    to `run`, so a sixteenth more (at least 1,024) spares a return per eviction."""
    return limit + max(limit // 16, 1024)


def _grown(a: np.ndarray, size: int = 0) -> np.ndarray:
    """A copy of `a` `size` long (default: half as long again), the new part zeroed."""
    out = records(np.zeros(size or len(a) + max(len(a) // 2, 2), a.dtype))
    out[:len(a)] = a
    return out

