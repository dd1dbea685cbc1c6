"""Zeek's view of a TCP connection: its endpoint states, `history` letters and `conn_state`,
computed by Zeek's published rules (the TCP session adapter, TCP_Endpoint, TCP_Reassembler
and scripts/base/protocols/conn/main.zeek), packet by packet, beside pcapstate's own state
machine, in a packed record of its own (VIEW) beside the connection's slot, kept only
when an output needs it (Settings.zeek). Zeek's states are coarser than RFC 9293's (no
CLOSE_WAIT, no FIN_WAIT_2); where pcapstate knows more, it says so in its own fields,
never in these. docs/zeek.md says where it follows Zeek and where it
cannot (checksums, analyzer-driven role flips, timers).

The functions are named after Zeek's (SetPartialStatus, init_endpoint, update_last_seq,
UpdateStateMachine, ConnectionClosed, CheckEOF, DataPending, AckReceived, DataSent ...).
"""

import numpy as np

from pcapstate.jit import njit
from pcapstate.track.seq import MASK, delta
from pcapstate.vocab import ACK, FIN, RST, SYN

#: History letters kept per connection by the compiled engine (Zeek keeps them all; past
#: this many, which only a connection with that many SYNs, FINs or RSTs at different
#: sequence numbers reaches, the history is cut).
ZEEK_HISTORY = 48

#: main.zeek's conn_state values; the compiled engine counts them by this order.
CONN_STATES = ("S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH",
               "SHR", "OTH")

# Zeek's endpoint states (TCP_Endpoint.h), by their numbers.
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)

# History bits (one letter per direction each; S and H share one).
_SYN, _FIN, _RST, _FIN_RST, _DATA, _ACK, _MULTI = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40
# Zeek's history letters (the originator's; the responder's are these in lower case) and
# the flip mark, as the bytes of the history
L_S, L_H, L_A, L_D, L_F, L_R, L_C = ord("S"), ord("H"), ord("A"), ord("D"), ord("F"), ord("R"), \
    ord("C")
L_G, L_I, L_Q, L_W, L_T, L_FLIP = ord("G"), ord("I"), ord("Q"), ord("W"), ord("T"), ord("^")
#: A SYN, RST or ACK whose sequence number jumps further than this is not believed.
_JUMP = 1 << 20
#: Out-of-order blocks of data kept per direction while a hole before them is open (Zeek
#: keeps up to 16 KiB before any ACK, 10 MiB after; the compiled record a fixed number).
MAX_BLOCKS = 4

# Zeek's timers that end a connection (init-bare.zeek's defaults), in seconds: a packet
# on the 4-tuple after one ran out starts a new connection in Zeek's view.
#: tcp_inactivity_timeout: no packet for this long (Session::InactivityTimer), once an
#: endpoint has left the handshake states (TCP_Endpoint::SetState sets it then) ...
INACTIVITY = 300.0
#: ... and udp_inactivity_timeout before (TCPAnalyzer::MakeSessionAdapter sets that one).
HANDSHAKE_INACTIVITY = 60.0
#: tcp_attempt_delay: after the originator's SYN, no answer yet (AttemptTimer).
ATTEMPT = 5.0
#: tcp_close_delay: after the close completed (ConnectionClosed's ConnDeleteTimer).
CLOSE_DELAY = 5.0
#: tcp_reset_delay: after a RST from an endpoint that had sent its FIN (ResetTimer).
RESET_DELAY = 5.0
#: tcp_connection_linger: the expire timer ends a connection quiet for longer than this
#: whose endpoints are both still INACTIVE (only segments with bad checksums seen).
LINGER = 5.0

#: The packed record of one connection's view (a row of the Tracker's Zeek table, beside
#: its slot in track/slots.py: followed only when an output needs Zeek's view,
#: Settings.zeek), per endpoint by pcapstate's index. cid: set only in the views handed out
#: that Zeek ended while pcapstate's connection went on (Tracker.zeek_ended).
VIEW = np.dtype([
    ("cid", np.int64),
    ("z_orig", np.int8), ("z_hist", np.uint8, ZEEK_HISTORY), ("z_hlen", np.int16),
    ("z_first", np.float64), ("z_last_ts", np.float64),
    ("z_state", np.int8, 2), ("z_prev", np.int8, 2), ("z_start", np.int64, 2),
    ("z_last", np.int64, 2), ("z_last_rel", np.int64, 2), ("z_ack", np.int64, 2),
    ("z_ack_rel", np.int64, 2), ("z_seen", np.int32, 2), ("z_lsyn", np.int64, 2),
    ("z_lfin", np.int64, 2), ("z_lrst", np.int64, 2), ("z_rx", np.int64, 2),
    ("z_w0", np.int64, 2),
    ("z_fins", np.int64, 2), ("z_pkts", np.int64, 2), ("z_ipb", np.int64, 2),
    ("z_closed", np.uint8, 2),
    # the reassembler of each endpoint's data (start says what each holds)
    ("z_fin_seq", np.int64, 2), ("z_reasm", np.int64, 2), ("z_trim", np.int64, 2),
    ("z_blk", np.int64, (2, MAX_BLOCKS, 2)), ("z_nblk", np.int8, 2), ("z_gap", np.int64, 2),
    ("z_missed", np.int64), ("z_partial", np.uint8),
    ("z_chk", np.int64, 2),  # bad checksums, for the C letter
    ("z_attempt", np.float64), ("z_end", np.float64),  # Zeek's timers that would end it
    ("z_top", np.int64, 2), ("z_eof", np.uint8, 2), ("z_deferred", np.uint8),
])

_CS = {name: i for i, name in enumerate(CONN_STATES)}
S0, S1, SF, REJ, S2, S3 = _CS["S0"], _CS["S1"], _CS["SF"], _CS["REJ"], _CS["S2"], _CS["S3"]
RSTO, RSTR, RSTOS0, RSTRH = _CS["RSTO"], _CS["RSTR"], _CS["RSTOS0"], _CS["RSTRH"]
SH, SHR, OTH = _CS["SH"], _CS["SHR"], _CS["OTH"]


@njit(cache=True, nogil=True)
def conn_state_code(os, rs, sizes_zero, syn_then_reset):
    """main.zeek's conn_state, as its code in CONN_STATES, from the originator's and the
    responder's endpoint states; `sizes_zero`: neither sent a byte by sequence numbers
    (TCP_Endpoint::Size), `syn_then_reset`: the history reads ^?S[^HAFGIQ]*R."""
    o_inactive = os == INACTIVE or os == PARTIAL
    r_inactive = rs == INACTIVE or rs == PARTIAL
    if rs == RESET:
        if os == SYN_SENT or os == SYN_ACK_SENT or (os == RESET and sizes_zero):
            return REJ
        return RSTRH if o_inactive else RSTR
    if os == RESET:
        if r_inactive:
            return RSTOS0 if syn_then_reset else OTH
        return RSTO
    if rs == CLOSED and os == CLOSED:
        return SF
    if os == CLOSED:
        return SH if r_inactive else S2
    if rs == CLOSED:
        return SHR if o_inactive else S3
    if os == SYN_SENT and rs == INACTIVE:
        return S0
    if os == ESTABLISHED and rs == ESTABLISHED:
        return S1
    return OTH


#: Zeek's likely_server_ports for TCP, as its default scripts fill it (init-bare.zeek
#: declares it empty; each protocol's scripts/base/protocols/*/main.zeek adds its server
#: ports): http 80 81 631 1080 3128 8000 8080 8888; ftp 21 2811; ssl 443 563 585 614 636 989
#: 990 992 993 995 5223; smtp 25 587; dns 53; ssh 22; smb 139 445; dce-rpc 135; krb 88;
#: irc 6666-6669; xmpp 5222 5269; modbus 502; ldap 389 3268; rdp 3389; socks 1080; imap
#: 143; finger 79; dnp3 20000; mqtt 1883; postgresql 5432; redis 6379; and, from Zeek 8.1
#: (where Analyzer::register_for_ports adds an analyzer's server ports itself), mysql
#: 1434 3306. Zeek 6.x to 8.0 lack 1434 and 3306 (and 5432 before 7.1, 6379 before 8.0);
#: a Zeek built without Spicy lacks 79, 389, 3268, 5432 and 6379. Read from zeek/zeek's
#: scripts (commits 015b935c, 0708ae7a, 0b720288 among others).
LIKELY_SERVER_PORTS = frozenset({
    21, 22, 25, 53, 79, 80, 81, 88, 135, 139, 143, 389, 443, 445, 502, 563, 585, 587, 614,
    631, 636, 989, 990, 992, 993, 995, 1080, 1434, 1883, 2811, 3128, 3268, 3306, 3389,
    5222, 5223, 5269, 5432, 6379, 6666, 6667, 6668, 6669, 8000, 8080, 8888, 20000})
_LIKELY = np.zeros(1 << 16, np.bool_)  # by port, for compiled code
_LIKELY[list(LIKELY_SERVER_PORTS)] = True


@njit(cache=True, nogil=True)
def flips(flags, sport, dport, bare=False):
    """Whether Zeek makes the first packet's receiver the originator (IPBasedAnalyzer
    NewConn): never for a plain SYN; else when the sender's port is a likely server port
    (and, if both are, the lower one, for a packet without SYN). `bare`: a `zeek -b` run
    loading base/protocols/conn alone, whose likely_server_ports is empty: never."""
    if bare:
        return False
    sport_likely, dport_likely = _LIKELY[sport], _LIKELY[dport]
    if flags & SYN and not flags & ACK:
        return False
    if not sport_likely:
        return False
    if dport_likely:
        return not flags & SYN and sport < dport
    return True


@njit(cache=True, nogil=True)
def _z_add(r, e, letter):
    """Append a history letter: upper case for the originator. A history longer than the
    record holds is cut (ZEEK_HISTORY)."""
    if r.z_hlen < len(r.z_hist):
        r.z_hist[r.z_hlen] = letter if e == r.z_orig or letter == L_FLIP else letter + 32
        r.z_hlen += 1


@njit(cache=True, nogil=True, inline="always")
def _z_tally(r, counts, e, letter):
    """One more of endpoint e's events counted in `counts` (z_rx, z_w0, z_gap, z_chk), and
    lettered at the 1st, 10th, 100th... (Connection::ScaledHistoryEntry: a threshold from 1
    that grows tenfold each time the count reaches it)."""
    counts[e] += 1
    n = counts[e]
    while n % 10 == 0:
        n //= 10
    if n == 1:
        _z_add(r, e, letter)


@njit(cache=True, nogil=True)
def _z_check(r, e, bit, letter):
    """CheckHistory: append the letter the first time; True if seen before."""
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
    """A FIN closes the endpoint, then a RST resets it (both in one packet: reset); True if
    either did (do_close)."""
    if fin:
        _z_set(r, e, CLOSED)
    if rst:
        _z_set(r, e, RESET)
    return fin != 0 or rst != 0


@njit(cache=True, nogil=True)
def _z_pending(r, x):
    """TCP_Reassembler::DataPending: endpoint x's data is not all delivered (up to its FIN),
    or it has not reset and its peer has data kept, not yet acknowledged."""
    if r.z_last_rel[x] < r.z_reasm[x]:
        return False
    if r.z_reasm[x] != r.z_last_rel[x] - 1 and r.z_reasm[x] != r.z_last_rel[x]:
        return True
    return r.z_state[x] != RESET and r.z_top[1 - x] > r.z_trim[1 - x]


@njit(cache=True, nogil=True)
def _z_conn_closed(r, x):
    """ConnectionClosed for endpoint x: deferred while data is pending; once complete (a
    RST, both closed, or the peer silent) Zeek cancels its other timers and ends the
    connection CLOSE_DELAY later."""
    if _z_pending(r, x):
        r.z_deferred = True
        return
    r.z_deferred = False
    if r.z_closed[x]:
        return
    r.z_closed[x] = True
    if r.z_state[x] == RESET or r.z_closed[1 - x] or r.z_state[1 - x] == INACTIVE:
        r.z_attempt = np.inf
        r.z_end = r.z_last_ts + CLOSE_DELAY


@njit(cache=True, nogil=True)
def _z_check_eof(r, x):
    """CheckEOF: once endpoint x has sent its FIN (or RST) and all is delivered, a close that
    waited (ConnectionClosed found data pending) goes ahead, for this endpoint."""
    if not r.z_eof[x] and (r.z_fins[x] > 0 or r.z_state[x] == CLOSED
                           or r.z_state[x] == RESET) and not _z_pending(r, x):
        r.z_eof[x] = True
        if r.z_deferred:
            r.z_deferred = False
            _z_conn_closed(r, x)


@njit(cache=True, nogil=True, inline="always")
def _z_clean(r, e):
    """is_clean: established, or closed from established."""
    return r.z_state[e] == ESTABLISHED or (r.z_state[e] == CLOSED
                                             and r.z_prev[e] == ESTABLISHED)


@njit(cache=True, nogil=True)
def _z_gap(r, x, length):
    """A content gap in endpoint x's data (Gap): counted, and lettered G/g at the 1st, 10th,
    100th..., while both endpoints are clean."""
    if not (_z_clean(r, 0) and _z_clean(r, 1)):
        return
    _z_tally(r, r.z_gap, x, L_G)
    r.z_missed += length


@njit(cache=True, nogil=True)
def _z_deliver(r, x):
    """Deliver the waiting blocks that now follow on from what was delivered."""
    while r.z_nblk[x] > 0 and r.z_blk[x, 0, 0] <= r.z_reasm[x]:
        r.z_reasm[x] = max(r.z_reasm[x], r.z_blk[x, 0, 1])
        for k in range(r.z_nblk[x] - 1):
            r.z_blk[x, k, 0], r.z_blk[x, k, 1] = r.z_blk[x, k + 1, 0], r.z_blk[x, k + 1, 1]
        r.z_nblk[x] -= 1


@njit(cache=True, nogil=True)
def _z_acked(r, x, up_to):
    """The peer acknowledged endpoint x's data up to `up_to` (AckReceived): what was never
    delivered below it is a content gap."""
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
    """Payload at relative `low` (DataSent): delivered if it follows on, kept as a block if
    above a hole (at most MAX_BLOCKS), dropped below what was acknowledged."""
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
def start(r, d, flags, sport, dport, ts, bare):
    """A new view, whose first segment comes from endpoint d (pcapstate's index) with these
    flags and ports. z_orig: which of pcapstate's endpoints Zeek calls the originator;
    z_partial: is_partial, an endpoint's first packet was no SYN; z_missed: bytes in content
    gaps (missed_bytes); z_attempt, z_end: Zeek's timers that would end it; z_deferred:
    close_deferred, a close waits for data to be delivered. The reassembler of each
    endpoint's data (TCP_Reassembler), relative sequence numbers: data up to z_reasm was
    delivered, the peer's ACKs reached z_trim; z_blk: blocks waiting above a hole, [low,
    high) in order; z_top: the end of the data kept so far (Zeek keeps it, delivered or not,
    until it is acknowledged); z_eof: all of it delivered after the endpoint's FIN or RST.
    `bare`: no likely server ports (flips)."""
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
        r.z_state[e] = r.z_prev[e] = INACTIVE
        r.z_start[e] = r.z_last[e] = r.z_last_rel[e] = r.z_ack[e] = r.z_ack_rel[e] = 0
        r.z_seen[e] = 0
        r.z_lsyn[e] = r.z_lfin[e] = r.z_lrst[e] = 0
        r.z_rx[e] = r.z_w0[e] = r.z_fins[e] = r.z_pkts[e] = r.z_ipb[e] = 0
        r.z_closed[e] = False
        r.z_fin_seq[e] = r.z_trim[e] = r.z_nblk[e] = r.z_gap[e] = r.z_chk[e] = 0
        r.z_reasm[e] = 1
        r.z_top[e] = 0
        r.z_eof[e] = False
    if flips(flags, sport, dport, bare):
        r.z_orig = 1 - d
        _z_add(r, 0, L_FLIP)


@njit(cache=True, nogil=True)
def ended(r, now, d, flags, seq):
    """Whether Zeek takes a segment from pcapstate's endpoint d at network time `now` (the
    latest timestamp so far) as the first of a new connection on this 4-tuple: because one
    of its timers ended this one before (Zeek runs the timers due before each packet), or
    because the segment is a SYN that IsReuse takes for a new connection. Asked before
    `packet`, for every segment but a connection's first."""
    o, p = r.z_orig, 1 - r.z_orig
    if now >= r.z_end or now >= r.z_last_ts + INACTIVITY or (
            now >= r.z_last_ts + HANDSHAKE_INACTIVITY
            and max(r.z_state[0], r.z_state[1], r.z_prev[0], r.z_prev[1]) <= SYN_ACK_SENT):
        return True
    if now >= r.z_attempt:
        r.z_attempt = np.inf
        if (r.z_state[o] == SYN_SENT or r.z_state[o] == SYN_ACK_SENT) \
                and r.z_state[p] == INACTIVE:
            return True
    if r.z_state[o] == INACTIVE and r.z_state[p] == INACTIVE and now > r.z_last_ts + LINGER:
        return True
    if not flags & SYN:
        return False
    first = o
    if flags & ACK:
        if r.z_state[o] != INACTIVE:
            return False
        first = p
    if r.z_closed[0] or r.z_closed[1]:
        return True
    if seq == r.z_start[first]:
        return False
    return (flags & ACK) != 0 or r.z_state[first] != SYN_ACK_SENT \
        or r.z_state[p] != INACTIVE or seq != r.z_start[p]


@njit(cache=True, nogil=True)
def packet(r, e, flags, seq, ack, plen, win, ts, iplen, cut, bad_sum):
    """One segment from pcapstate's endpoint e (SA::Process); `iplen`: its IP packet's
    length, for the IP byte counts (ConnSize); `cut`: its payload was not captured whole
    (snaplen); `bad_sum`: its checksum is wrong, so Zeek marks it (C, at the 1st, 10th,
    100th...) and goes no further with it. An IPv4 packet whose total length is 0 (a
    segmentation-offload frame captured on its sender) adds no IP bytes, and when checksums
    are checked (`iplen` -1) Zeek drops it before any connection sees it (IPAnalyzer)."""
    if iplen < 0:
        return
    if bad_sum:
        _z_tally(r, r.z_chk, e, L_C)
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
    one_past = (seq + seg_len) & MASK
    # init_endpoint
    st = r.z_state[e]
    if st == INACTIVE or ((st == SYN_SENT or st == SYN_ACK_SENT) and syn
                            and seq != r.z_start[e]) \
            or ((st == ESTABLISHED or st == PARTIAL) and syn) \
            or (st == RESET and syn and r.z_prev[e] == INACTIVE):
        if syn:
            r.z_start[e] = seq
            r.z_ack[e] = seq
            r.z_last[e] = one_past
        else:
            r.z_start[e] = (seq - 1) & MASK
            r.z_ack[e] = (seq - 1) & MASK
            r.z_last[e] = seq
        r.z_ack_rel[e] = 0
        r.z_last_rel[e] = delta(r.z_last[e], r.z_start[e])
    rel = (seq - r.z_start[e]) & MASK
    # history
    bits = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
    if bits > 1:
        if fin and rst:
            _z_check(r, e, _FIN_RST, L_I)
        else:
            _z_check(r, e, _MULTI, L_Q)
    elif syn:
        code = L_H if flags & ACK else L_S
        if _z_check(r, e, _SYN, code) and rel != r.z_lsyn[e]:
            _z_add(r, e, code)
        r.z_lsyn[e] = rel
    elif fin:
        if _z_check(r, e, _FIN, L_F) and rel + plen != r.z_lfin[e]:
            _z_add(r, e, L_F)
        r.z_lfin[e] = rel + plen
    elif rst:
        if _z_check(r, e, _RST, L_R) and rel != r.z_lrst[e]:
            _z_add(r, e, L_R)
        r.z_lrst[e] = rel
    elif plen > 0 or flags & ACK:
        if r.z_hlen == 1 and r.z_hist[0] == L_H:
            # only a SYN-ACK so far: its receiver was the client after all (Zeek 5.1 on,
            # TCP_Endpoint::CheckHistory): the roles flip, the history becomes ^h
            r.z_orig = 1 - r.z_orig
            is_orig = e == r.z_orig
            r.z_hist[0], r.z_hist[1], r.z_hlen = L_FLIP, L_H + 32, 2
        if plen > 0:
            _z_check(r, e, _DATA, L_D)
        else:
            _z_check(r, e, _ACK, L_A)
    # zero window
    if win == 0 and not rst and r.z_state[p] != CLOSED and r.z_state[e] != RESET:
        _z_tally(r, r.z_w0, e, L_W)
    if not (r.z_closed[0] and r.z_closed[1]):
        r.z_last_ts = ts
    if flags & ACK:
        if r.z_state[p] == INACTIVE:
            r.z_start[p] = (ack - 1) & MASK
            r.z_last[p] = (ack - 1) & MASK
            r.z_ack[p] = (ack - 1) & MASK
            r.z_last_rel[p] = 0
            r.z_ack_rel[p] = 0
        elif not rst:
            d = delta(ack, r.z_ack[p])
            if d > 0:
                r.z_ack[p] = ack
                r.z_ack_rel[p] += d
    # update_last_seq
    d = delta(one_past, r.z_last[e])
    if (syn or rst) and abs(d) > _JUMP:
        pass
    elif fin and r.z_last[e] == (r.z_start[e] + 1) & MASK:
        r.z_last_rel[e] += d
        r.z_last[e] = one_past
    elif r.z_state[e] == RESET:
        pass
    elif d > 0:
        r.z_last_rel[e] += d
        r.z_last[e] = one_past
    elif plen > 0:
        _z_tally(r, r.z_rx, e, L_T)
    r.z_pkts[e] += 1
    r.z_ipb[e] += iplen
    if fin:
        r.z_fins[e] += 1
        r.z_fin_seq[e] = rel + seg_len
    # the state machine, on the sender's state
    ack_flag = flags & ACK
    do_close = False
    st = r.z_state[e]
    if st == INACTIVE:
        if syn:
            if is_orig:
                _z_set(r, e, SYN_ACK_SENT if ack_flag else SYN_SENT)
                r.z_attempt = ts + ATTEMPT
            else:
                if not ack_flag and r.z_state[p] == SYN_ACK_SENT and seq == r.z_start[e]:
                    r.z_orig = 1 - r.z_orig  # the SYN came after its SYN-ACK
                    _z_add(r, 0, L_FLIP)
                    r.z_partial = False
                    _z_set(r, p, ESTABLISHED)
                if r.z_state[p] == SYN_SENT:
                    _z_set(r, p, ESTABLISHED)
                _z_set(r, e, ESTABLISHED)
        do_close = _z_close_on(r, e, fin, rst)
        if r.z_state[e] == INACTIVE:
            if not is_orig and plen == 0 and r.z_state[r.z_orig] == SYN_SENT:
                pass
            elif ack_flag and r.z_state[p] == ESTABLISHED:
                _z_set(r, e, ESTABLISHED)
                r.z_partial = False
            else:
                _z_set(r, e, PARTIAL)
    elif st == SYN_SENT or st == SYN_ACK_SENT:
        do_close = _z_close_on(r, e, fin, rst)
    elif st == ESTABLISHED or st == PARTIAL:
        if syn and st == PARTIAL and r.z_state[p] == INACTIVE and not ack_flag:
            _z_set(r, e, SYN_SENT)
        if fin and not rst:
            _z_set(r, e, CLOSED)
            do_close = True
            if r.z_state[p] == RESET and r.z_prev[p] == CLOSED:
                _z_set(r, p, CLOSED)
        if rst:
            _z_set(r, e, RESET)
            do_close = True
    elif st == CLOSED:
        if rst and r.z_state[p] != CLOSED:
            _z_set(r, e, RESET)
            do_close = not r.z_closed[e]
            r.z_end = min(r.z_end, ts + RESET_DELAY)
    if ack_flag:
        _z_acked(r, p, max(delta(ack, r.z_start[p]), 0))
    if plen and not rst and not cut:
        _z_data(r, e, rel + (1 if syn else 0), plen)
    _z_check_eof(r, e)
    if do_close:
        _z_conn_closed(r, e)


@njit(cache=True, nogil=True)
def _z_size(r, e):
    """TCP_Endpoint::Size: bytes by sequence numbers, data never seen included."""
    if r.z_prev[e] == SYN_SENT and r.z_state[e] == RESET \
            and r.z_state[1 - e] == INACTIVE:
        return 0
    size = max(r.z_last_rel[e], r.z_ack_rel[e])
    if size:
        size -= 1
    if r.z_fins[e] and size:
        size -= 1
    return size


@njit(cache=True, nogil=True)
def _z_syn_then_reset(r):
    """main.zeek's `/\\^?S[^HAFGIQ]*R.*/ == history`, over the history bytes."""
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


@njit(cache=True, nogil=True)
def conn_state(r):
    """main.zeek's conn_state of a view (VIEW), as its code in CONN_STATES."""
    o, p = r.z_orig, 1 - r.z_orig
    return conn_state_code(r.z_state[o], r.z_state[p],
                           _z_size(r, o) == 0 and _z_size(r, p) == 0, _z_syn_then_reset(r))


@njit(cache=True, nogil=True)
def columns(rows, states, sizes):
    """Each view's conn_state (its code in CONN_STATES) and its endpoints' sizes
    (TCP_Endpoint::Size), by pcapstate's index."""
    for i in range(len(rows)):
        r = rows[i]
        states[i] = conn_state(r)
        for e in range(2):
            sizes[i, e] = _z_size(r, e)

