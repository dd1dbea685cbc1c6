"""Zeek's view of a TCP connection: its endpoint states, `history` letters and `conn_state`,
computed by Zeek's published rules (the TCP session adapter, TCP_Endpoint and
scripts/base/protocols/conn/main.zeek), packet by packet, beside pcapstate's own state
machine. Zeek's states are coarser than RFC 9293's (no CLOSE_WAIT, no FIN_WAIT_2); where
pcapstate knows more, it says so in its own fields, never in these.

This is the reference, written to be read; docs/zeek.md says where it follows Zeek and
where it cannot (checksums, analyzer-driven role flips, timers).
"""

import math
import re

from pcapstate.seq import MASK, delta
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


class ZeekEndpoint:
    __slots__ = ("state", "prev", "start", "last", "last_rel", "ack", "ack_rel", "seen",
                 "last_syn", "last_fin", "last_rst", "rxmit", "rxmit_next", "win0",
                 "win0_next", "fins", "packets", "ip_bytes", "did_close", "fin_seq",
                 "reassembled", "trimmed", "blocks", "top", "eof", "gaps", "gaps_next",
                 "bad_sums", "bad_sums_next")

    def __init__(self) -> None:
        self.state = self.prev = INACTIVE
        self.start = self.last = self.ack = 0  # sequence numbers, absolute
        self.last_rel = self.ack_rel = 0  # the same, relative to `start`
        self.seen = 0  # history bits
        self.last_syn = self.last_fin = self.last_rst = 0  # relative
        self.rxmit, self.rxmit_next = 0, 1  # logarithmic counters: 1, 10, 100, ...
        self.win0, self.win0_next = 0, 1
        self.fins = self.packets = self.ip_bytes = 0
        self.did_close = False
        self.fin_seq = 0  # relative: one past the latest FIN
        # The reassembler of this endpoint's data (TCP_Reassembler), relative sequence
        # numbers: data up to `reassembled` was delivered, the peer's ACKs reached
        # `trimmed`; `blocks` wait above a hole, [low, high) in order; `top`: the end of
        # the data kept so far (Zeek keeps it, delivered or not, until it is acknowledged);
        # `eof`: all of it delivered after the endpoint's FIN or RST (CheckEOF).
        self.reassembled, self.trimmed, self.top = 1, 0, 0
        self.blocks: list[tuple[int, int]] = []
        self.eof = False
        self.gaps, self.gaps_next = 0, 1  # content gaps, for the logarithmic G
        self.bad_sums, self.bad_sums_next = 0, 1  # bad checksums, for the logarithmic C

    def is_clean(self) -> bool:
        """Zeek's is_clean: established, or closed from established."""
        return self.state == ESTABLISHED or (self.state == CLOSED and self.prev == ESTABLISHED)

    def deliver_blocks(self) -> None:
        """Deliver the waiting blocks that now follow on from what was delivered."""
        while self.blocks and self.blocks[0][0] <= self.reassembled:
            self.reassembled = max(self.reassembled, self.blocks.pop(0)[1])

    def set_state(self, state: int) -> None:
        if state != self.state:
            self.prev, self.state = self.state, state

    def close_on(self, fin: int, rst: int) -> bool:
        """A FIN closes the endpoint, then a RST resets it (both in one packet: reset);
        True if either did (do_close)."""
        if fin:
            self.set_state(CLOSED)
        if rst:
            self.set_state(RESET)
        return bool(fin or rst)

    def size(self, peer: "ZeekEndpoint") -> int:
        """TCP_Endpoint::Size: bytes by sequence numbers, data never seen included."""
        if self.prev == SYN_SENT and self.state == RESET and peer.state == INACTIVE:
            return 0
        size = max(self.last_rel, self.ack_rel)
        if size:
            size -= 1  # the SYN
        if self.fins and size:
            size -= 1
        return size


class ZeekConn:
    """One connection as Zeek tracks it. `orig` is 0 or 1: which of pcapstate's endpoints
    (client, server) Zeek calls the originator."""

    __slots__ = ("orig", "ep", "history", "first_ts", "last_ts", "partial", "missed",
                 "attempt_at", "end_at", "deferred")

    def __init__(self, first_sender: int, flags: int, sport: int, dport: int,
                 ts: float) -> None:
        """`first_sender`: pcapstate's index of the first packet's sender, whose ports are
        `sport` and `dport`."""
        self.orig = first_sender
        self.ep = (ZeekEndpoint(), ZeekEndpoint())  # by pcapstate's index
        self.history = ""
        self.first_ts = self.last_ts = ts
        self.partial = False  # is_partial: an endpoint's first packet was no SYN
        self.missed = 0  # bytes in content gaps, both directions (conn.log's missed_bytes)
        self.attempt_at = self.end_at = math.inf  # Zeek's timers that would end it
        self.deferred = False  # close_deferred: a close waits for data to be delivered
        if flips_at_creation(flags, sport, dport):
            self.flip()

    @classmethod
    def rebuilt(cls, orig: int, history: str, first_ts: float, last_ts: float, missed: int,
                endpoints: list[dict[str, int]]) -> "ZeekConn":
        """A finished view from what the compiled engine keeps (fasttable.py): enough for
        `fields`."""
        z = cls.__new__(cls)
        z.orig, z.history, z.first_ts, z.last_ts = orig, history, first_ts, last_ts
        z.missed = missed
        z.attempt_at = z.end_at = math.inf
        z.ep = (ZeekEndpoint(), ZeekEndpoint())
        for e, parts in zip(z.ep, endpoints, strict=True):
            for name, value in parts.items():
                setattr(e, name, value)
        return z

    def flip(self) -> None:
        """FlipRoles (which also resets is_partial)."""
        self.orig = 1 - self.orig
        self.history += "^"
        self.partial = False

    def ended(self, now: float, sender: int, flags: int, seq: int) -> bool:
        """Whether Zeek takes a segment from pcapstate's endpoint `sender` at network time
        `now` (the latest timestamp so far) as the first of a new connection on this
        4-tuple: because one of its timers ended this one before (Zeek runs the timers due
        before each packet), or because the segment is a SYN that IsReuse takes for a new
        connection. Checked before `packet`, for every segment but a connection's first."""
        o, r = self.ep[self.orig], self.ep[1 - self.orig]
        if now >= self.end_at or now >= self.last_ts + INACTIVITY or (
                now >= self.last_ts + HANDSHAKE_INACTIVITY  # no endpoint ever left the
                and max(o.state, o.prev, r.state, r.prev) <= SYN_ACK_SENT):  # handshake
            return True
        if now >= self.attempt_at:
            self.attempt_at = math.inf  # the timer fired: it ends the connection or not
            if o.state in (SYN_SENT, SYN_ACK_SENT) and r.state == INACTIVE:
                return True
        if o.state == INACTIVE and r.state == INACTIVE and now > self.last_ts + LINGER:
            return True
        if not flags & SYN:
            return False
        first = o  # IsReuse: the endpoint whose SYN the segment is compared with
        if flags & ACK:
            if o.state != INACTIVE:
                return False  # not a half connection
            first = r
        if o.did_close or r.did_close:  # IsClosed
            return True
        if seq == first.start:
            return False  # the same SYN again
        # a SYN after its SYN-ACK (captured in the wrong order) is no new connection
        return bool(flags & ACK) or first.state != SYN_ACK_SENT or r.state != INACTIVE \
            or seq != r.start

    def _check(self, sender: int, bit: int, letter: str) -> bool:
        """Zeek's CheckHistory: append the letter the first time; True if seen before."""
        e = self.ep[sender]
        if e.seen & bit:
            return True
        e.seen |= bit
        self._add(sender, letter)
        return False

    def _add(self, sender: int, letter: str) -> None:
        if len(self.history) < ZEEK_HISTORY:
            self.history += letter if sender == self.orig else letter.lower()

    def packet(self, ts: float, sender: int, flags: int, seq: int, ack: int, plen: int,
               win: int, iplen: int = 0, cut: bool = False, bad_sum: bool = False) -> None:
        """One segment from pcapstate's endpoint `sender` (SA::Process); `iplen`: its IP
        packet's length, for the IP byte counts (ConnSize); `cut`: its payload was not
        captured whole (snaplen); `bad_sum`: its checksum is wrong, so Zeek marks it (C,
        at the 1st, 10th, 100th...) and goes no further with it."""
        e, peer = self.ep[sender], self.ep[1 - sender]
        if bad_sum:
            e.bad_sums += 1
            if e.bad_sums == e.bad_sums_next:
                self._add(sender, "C")
                e.bad_sums_next *= 10
            return
        is_orig = sender == self.orig
        syn, fin, rst = flags & SYN, flags & FIN, flags & RST
        if not e.packets:  # SetPartialStatus
            if is_orig:
                self.partial = not syn or bool(flags & ACK)
            elif not self.partial:
                self.partial = not syn
        seg_len = (0 if rst else plen) + (1 if syn else 0) + (1 if fin else 0)
        one_past = (seq + seg_len) & MASK
        self._init(e, flags, seq, one_past)
        rel = (seq - e.start) & MASK  # relative sequence number (connections under 4 GB)
        self._history(sender, e, flags, rel, plen)
        if win == 0 and not rst and peer.state != CLOSED and e.state != RESET:
            e.win0 += 1
            if e.win0 == e.win0_next:
                self._add(sender, "W")
                e.win0_next *= 10
        if not (self.ep[0].did_close and self.ep[1].did_close):
            self.last_ts = ts
        if flags & ACK:
            if peer.state == INACTIVE:
                peer.start = peer.last = peer.ack = (ack - 1) & MASK
                peer.last_rel = peer.ack_rel = 0
            elif not rst:
                d = delta(ack, peer.ack)
                if d > 0:
                    peer.ack = ack
                    peer.ack_rel += d
        self._last_seq(sender, e, flags, one_past, plen)
        e.packets += 1
        e.ip_bytes += iplen
        if fin:
            e.fins += 1
            e.fin_seq = rel + seg_len
        do_close = self._states(ts, e, peer, is_orig, flags, seq, plen)
        if flags & ACK:
            self._acked(1 - sender, max(delta(ack, peer.start), 0))
        if plen and not rst and not cut:
            self._data(e, rel + (1 if syn else 0), plen)
        self._check_eof(sender)
        if do_close:
            self._closed(sender)

    def _pending(self, d: int) -> bool:
        """TCP_Reassembler::DataPending: endpoint d's data is not all delivered (up to its
        FIN), or it has not reset and its peer has data kept, not yet acknowledged."""
        x, peer = self.ep[d], self.ep[1 - d]
        if x.last_rel < x.reassembled:
            return False
        if x.reassembled not in (x.last_rel - 1, x.last_rel):
            return True
        return x.state != RESET and peer.top > peer.trimmed

    def _check_eof(self, d: int) -> None:
        """CheckEOF: once endpoint d has sent its FIN (or RST) and all is delivered, a close
        that waited (ConnectionClosed found data pending) goes ahead, for this endpoint."""
        x = self.ep[d]
        if not x.eof and (x.fins or x.state in (CLOSED, RESET)) and not self._pending(d):
            x.eof = True
            if self.deferred:  # EndpointEOF
                self.deferred = False
                self._closed(d)

    def _closed(self, d: int) -> None:
        """ConnectionClosed for endpoint d: deferred while data is pending; once complete
        (a RST, both closed, or the peer silent) Zeek cancels its other timers and ends the
        connection CLOSE_DELAY later."""
        if self._pending(d):
            self.deferred = True
            return
        self.deferred = False
        x, peer = self.ep[d], self.ep[1 - d]
        if x.did_close:
            return
        x.did_close = True
        if x.state == RESET or peer.did_close or peer.state == INACTIVE:
            self.attempt_at = math.inf  # CancelTimers, then ConnDeleteTimer
            self.end_at = self.last_ts + CLOSE_DELAY

    def _acked(self, d: int, up_to: int) -> None:
        """The peer acknowledged endpoint d's data up to `up_to` (AckReceived): what was
        never delivered below it is a content gap."""
        x = self.ep[d]
        if x.fins and up_to >= x.fin_seq:
            up_to = x.fin_seq - 1
        if up_to <= x.trimmed:
            return
        if up_to > x.reassembled and not (up_to <= 2 and self.partial):  # Undelivered
            while x.blocks and x.blocks[0][0] < up_to:
                low = x.blocks[0][0]
                if low > x.reassembled:
                    self._gap(d, low - x.reassembled)
                    x.reassembled = low
                x.deliver_blocks()
            if up_to > x.reassembled:
                self._gap(d, up_to - x.reassembled)
            x.reassembled = max(x.reassembled, up_to)
        x.blocks = [b for b in x.blocks if b[1] > up_to]
        x.trimmed = max(x.trimmed, up_to)
        self._check_eof(d)

    def _gap(self, d: int, length: int) -> None:
        """A content gap in endpoint d's data (Gap): counted, and lettered G/g at the
        1st, 10th, 100th..., while both endpoints are clean."""
        if not (self.ep[0].is_clean() and self.ep[1].is_clean()):
            return
        x = self.ep[d]
        x.gaps += 1
        if x.gaps == x.gaps_next:
            self._add(d, "G")
            x.gaps_next *= 10
        self.missed += length

    def _data(self, x: ZeekEndpoint, low: int, length: int) -> None:
        """Payload at relative `low` (DataSent): delivered if it follows on, kept as a
        block if above a hole, dropped below what was acknowledged."""
        high = low + length
        low = max(low, x.trimmed)
        if high <= low:
            return
        x.top = max(x.top, high)
        if low <= x.reassembled:
            x.reassembled = max(x.reassembled, high)
            x.deliver_blocks()
            return
        merged = [(lo, hi) for lo, hi in x.blocks if hi < low or lo > high]
        for lo, hi in x.blocks:
            if not (hi < low or lo > high):
                low, high = min(low, lo), max(high, hi)
        merged.append((low, high))
        if len(merged) <= MAX_BLOCKS:
            x.blocks = sorted(merged)

    def _init(self, e: ZeekEndpoint, flags: int, seq: int, one_past: int) -> None:
        """init_endpoint: where the endpoint's sequence space starts."""
        syn = flags & SYN
        fresh = (e.state == INACTIVE
                 or (e.state in (SYN_SENT, SYN_ACK_SENT) and syn and seq != e.start)
                 or (e.state in (ESTABLISHED, PARTIAL) and syn)
                 or (e.state == RESET and syn and e.prev == INACTIVE))
        if not fresh:
            return
        if syn:
            e.start = e.ack = seq
            e.last = one_past
        else:
            e.start = e.ack = (seq - 1) & MASK
            e.last = seq
        e.ack_rel = 0
        e.last_rel = delta(e.last, e.start)

    def _history(self, sender: int, e: ZeekEndpoint, flags: int, rel: int,
                 plen: int) -> None:
        syn, fin, rst = flags & SYN, flags & FIN, flags & RST
        bits = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
        if bits > 1:
            if fin and rst:
                self._check(sender, _FIN_RST, "I")
            else:
                self._check(sender, _MULTI, "Q")
        elif syn:
            code = "H" if flags & ACK else "S"
            if self._check(sender, _SYN, code) and rel != e.last_syn:
                self._add(sender, code)
            e.last_syn = rel
        elif fin:
            if self._check(sender, _FIN, "F") and rel + plen != e.last_fin:
                self._add(sender, "F")
            e.last_fin = rel + plen
        elif rst:
            if self._check(sender, _RST, "R") and rel != e.last_rst:
                self._add(sender, "R")
            e.last_rst = rel
        elif plen > 0:
            self._check(sender, _DATA, "D")
        elif flags & ACK:
            self._check(sender, _ACK, "A")

    def _last_seq(self, sender: int, e: ZeekEndpoint, flags: int, one_past: int,
                  plen: int) -> None:
        """update_last_seq: a payload that does not reach past the highest sequence number
        seen is a retransmission ('T', logarithmically)."""
        d = delta(one_past, e.last)
        if flags & (SYN | RST) and abs(d) > _JUMP:
            return
        if flags & FIN and e.last == (e.start + 1) & MASK:
            e.last_rel += d
            e.last = one_past  # a FIN right after the SYN
        elif e.state == RESET:
            return
        elif d > 0:
            e.last_rel += d
            e.last = one_past
        elif plen > 0:
            e.rxmit += 1
            if e.rxmit == e.rxmit_next:
                self._add(sender, "T")
                e.rxmit_next *= 10

    def _states(self, ts: float, e: ZeekEndpoint, peer: ZeekEndpoint, is_orig: bool,
                flags: int, seq: int, plen: int) -> bool:
        """UpdateStateMachine, on the sender's state; True if the segment closes the
        sender (do_close)."""
        syn, fin, rst, ack = flags & SYN, flags & FIN, flags & RST, flags & ACK
        state, do_close = e.state, False
        if state == INACTIVE:
            if syn:
                if is_orig:
                    e.set_state(SYN_ACK_SENT if ack else SYN_SENT)
                    self.attempt_at = ts + ATTEMPT
                else:
                    if not ack and peer.state == SYN_ACK_SENT and seq == e.start:
                        self.flip()  # the SYN came after its SYN-ACK: roles reversed
                        peer.set_state(ESTABLISHED)
                    if peer.state == SYN_SENT:
                        peer.set_state(ESTABLISHED)
                    e.set_state(ESTABLISHED)
            do_close = e.close_on(fin, rst)
            if e.state == INACTIVE:
                orig = self.ep[self.orig]
                if not is_orig and plen == 0 and orig.state == SYN_SENT:
                    pass  # a pure ACK to a SYN
                elif ack and peer.state == ESTABLISHED:
                    e.set_state(ESTABLISHED)  # the SYN was missed: not partial after all
                    self.partial = False
                else:
                    e.set_state(PARTIAL)
        elif state in (SYN_SENT, SYN_ACK_SENT):
            do_close = e.close_on(fin, rst)
        elif state in (ESTABLISHED, PARTIAL):
            if syn and state == PARTIAL and peer.state == INACTIVE and not ack:
                e.set_state(SYN_SENT)
            if fin and not rst:
                e.set_state(CLOSED)
                do_close = True
                if peer.state == RESET and peer.prev == CLOSED:
                    peer.set_state(CLOSED)
            if rst:
                e.set_state(RESET)
                do_close = True
        elif state == CLOSED:
            if rst and peer.state != CLOSED:
                e.set_state(RESET)
                do_close = not e.did_close
                self.end_at = min(self.end_at, ts + RESET_DELAY)  # ResetTimer
        return do_close

    def conn_state(self) -> str:
        """main.zeek's conn_state, from the two endpoint states (and the history)."""
        o, r = self.ep[self.orig], self.ep[1 - self.orig]
        return CONN_STATES[conn_state_code(o.state, r.state, o.size(r) == 0 and r.size(o) == 0,
                                           _syn_then_reset(self.history))]

    def fields(self) -> dict[str, object]:
        """The conn.log fields this view gives (duration and bytes unset when the duration
        is 0, as Zeek logs them)."""
        o, r = self.ep[self.orig], self.ep[1 - self.orig]
        duration = self.last_ts - self.first_ts
        return {"ts": self.first_ts, "orig": "client" if self.orig == 0 else "server",
                "conn_state": self.conn_state(), "history": self.history,
                "missed_bytes": self.missed,
                "duration": duration if duration > 0 else None,
                "orig_bytes": o.size(r) if duration > 0 else None,
                "resp_bytes": r.size(o) if duration > 0 else None,
                "orig_pkts": o.packets, "orig_ip_bytes": o.ip_bytes,
                "resp_pkts": r.packets, "resp_ip_bytes": r.ip_bytes}


_CS = {name: i for i, name in enumerate(CONN_STATES)}
S0, S1, SF, REJ, S2, S3 = _CS["S0"], _CS["S1"], _CS["SF"], _CS["REJ"], _CS["S2"], _CS["S3"]
RSTO, RSTR, RSTOS0, RSTRH = _CS["RSTO"], _CS["RSTR"], _CS["RSTOS0"], _CS["RSTRH"]
SH, SHR, OTH = _CS["SH"], _CS["SHR"], _CS["OTH"]


def conn_state_code(os: int, rs: int, sizes_zero: bool, syn_then_reset: bool) -> int:
    """main.zeek's conn_state, as its code in CONN_STATES, from the originator's and the
    responder's endpoint states; `sizes_zero`: neither sent a byte by sequence numbers
    (TCP_Endpoint::Size), `syn_then_reset`: the history reads ^?S[^HAFGIQ]*R. The one rule:
    the compiled engine compiles this function."""
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


def _syn_then_reset(history: str) -> bool:
    """main.zeek's `/\\^?S[^HAFGIQ]*R.*/ == history`: a whole, case-sensitive match."""
    return re.fullmatch(r"\^?S[^HAFGIQ]*R.*", history, re.DOTALL) is not None


#: Zeek's likely_server_ports for TCP, as its default scripts fill it (init-bare.zeek
#: declares it empty; each protocol's scripts/base/protocols/*/main.zeek adds its server
#: ports): http 80 81 631 1080 3128 8000 8080 8888; ftp 21 2811; ssl 443 563 585 614 636 989
#: 990 992 993 995 5223; smtp 25 587; dns 53; ssh 22; smb 139 445; dce-rpc 135; krb 88;
#: irc 6666-6669; xmpp 5222 5269; modbus 502; ldap 389 3268; rdp 3389; socks 1080; imap
#: 143; finger 79; dnp3 20000; mqtt 1883; postgresql 5432; redis 6379; and, from Zeek 8.1
#: (where Analyzer::register_for_ports adds an analyzer's server ports itself), mysql
#: 1434 3306. Zeek 6.x to 8.0 lack 1434 and 3306 (and 5432 before 7.1, 6379 before 8.0);
#: a Zeek built without Spicy lacks 79, 389, 3268, 5432 and 6379. Read from zeek/zeek's
#: scripts (commits 015b935c, 0708ae7a, 0b720288 among others). fasttable.py compiles
#: this set in, and numba's cache follows fasttable.py's changes, not this file's: change
#: fasttable.py with it.
LIKELY_SERVER_PORTS = frozenset({
    21, 22, 25, 53, 79, 80, 81, 88, 135, 139, 143, 389, 443, 445, 502, 563, 585, 587, 614,
    631, 636, 989, 990, 992, 993, 995, 1080, 1434, 1883, 2811, 3128, 3268, 3306, 3389,
    5222, 5223, 5269, 5432, 6379, 6666, 6667, 6668, 6669, 8000, 8080, 8888, 20000})


def flips_at_creation(flags: int, sport: int, dport: int) -> bool:
    """Whether Zeek makes the first packet's receiver the originator (IPBasedAnalyzer
    NewConn): never for a plain SYN; else when the sender's port is a likely server port
    (and, if both are, the lower one, for a packet without SYN)."""
    return flips(flags, sport, dport, sport in LIKELY_SERVER_PORTS,
                 dport in LIKELY_SERVER_PORTS)


def flips(flags: int, sport: int, dport: int, sport_likely: bool, dport_likely: bool) -> bool:
    """flips_at_creation, told whether each port is a likely server port. The one rule: the
    compiled engine compiles this function."""
    if flags & SYN and not flags & ACK:
        return False
    if not sport_likely:
        return False
    if dport_likely:
        return not flags & SYN and sport < dport
    return True
