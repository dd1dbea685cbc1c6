"""The per-endpoint TCP state machine of one connection. No I/O, no decoding.

A connection owns two endpoints, the client (index 0, the sender of the first SYN) and the
server (index 1). A segment from one endpoint changes the sender's state (it sent a SYN or a
FIN) and, through its acknowledgment number, both endpoints' states: an ACK that covers the
peer's SYN or FIN is the evidence that the sender *received* it (so the sender moves, to
ESTABLISHED or CLOSE_WAIT, say) and that the peer's control segment *arrived* (so the peer
moves, to FIN_WAIT_2 or CLOSED, say). A receipt is stamped with the capture time of the
segment received, the best estimate of when it reached the endpoint; an arrival with the
time of the ACK. Only an in-window RST changes state. Timers (TIME_WAIT, orphaned
FIN_WAIT_2) emit no packet and are applied lazily by `expire`.
"""

import math
from functools import lru_cache
from ipaddress import ip_address

from pcapstate.decode import window_scale
from pcapstate.seq import MASK, after_or_at
from pcapstate.vocab import ACK, ANOMALIES, FIN, RST, SYN, State, codes
from pcapstate.zeek import ZeekConn

CLOSED, SYN_SENT, SYN_RCVD, ESTABLISHED = (
    State.CLOSED, State.SYN_SENT, State.SYN_RCVD, State.ESTABLISHED)
FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT = (
    State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK,
    State.TIME_WAIT)

# What an event does to an endpoint's state; a state not in the map is left alone.
_SENT_FIN = {ESTABLISHED: FIN_WAIT_1, SYN_RCVD: FIN_WAIT_1, CLOSE_WAIT: LAST_ACK}
_OWN_FIN_ACKED = {FIN_WAIT_1: FIN_WAIT_2, CLOSING: TIME_WAIT, LAST_ACK: CLOSED}
_PEER_FIN_RECEIVED = {ESTABLISHED: CLOSE_WAIT, SYN_RCVD: CLOSE_WAIT, FIN_WAIT_1: CLOSING,
                      FIN_WAIT_2: TIME_WAIT}


def code_table(moves: dict[State, State]) -> tuple[int, ...]:
    """A map of states as the compiled engine reads it: by state code, the code of the state
    it moves to, -1 for a state it leaves alone."""
    code = {st: i for i, st in enumerate(State)}
    return tuple(code[moves[st]] if st in moves else -1 for st in State)


#: The maps above, by state code, for the compiled engine (fasttable.py).
SENT_FIN, OWN_FIN_ACKED, PEER_FIN_RECEIVED = (
    code_table(_SENT_FIN), code_table(_OWN_FIN_ACKED), code_table(_PEER_FIN_RECEIVED))

#: Assumed window scale when the SYNs were not seen: the largest, so that a RST is never
#: called out of window for want of knowing the scale.
_UNKNOWN_SCALE = 14

_CODE = codes(State)
_SYN_SENT, _TIME_WAIT, _FIN_WAIT_2 = (_CODE[State.SYN_SENT], _CODE[State.TIME_WAIT],
                                      _CODE[State.FIN_WAIT_2])


def rst_acceptable(state: int, syn_acked: bool, flags: int, seq: int, ack: int, isn: int,
                   last_ack: int, win: int, wscale: int) -> bool:
    """Whether a RST is taken by its receiver, in `state` (a code), whose SYN was or was not
    acknowledged, whose initial sequence number, last acknowledgment, window and window
    scale are these (-1: not seen). In SYN-SENT it must acknowledge the SYN (RFC 9293,
    3.10.7.3); else its sequence number must fall in the receiver's window (with the largest
    scale when the SYNs were not seen), or anywhere when nothing of that window is known.
    The one rule: the compiled engine compiles this function."""
    if state == _SYN_SENT and not syn_acked:
        return (flags & ACK) != 0 and isn != -1 and ack == (isn + 1) & MASK
    if last_ack == -1:
        return True
    scale = _UNKNOWN_SCALE if wscale == -1 else wscale
    return (seq - last_ack) & MASK <= max(win << scale, 1)


def timer_at(state: int, since: float, fw2_alive: bool, time_wait: float,
             fin_timeout: float) -> float:
    """When an endpoint's timer fires, in `state` (a code) since `since`: TIME_WAIT after
    `time_wait`, an orphaned FIN_WAIT_2 (its peer not heard since) after `fin_timeout`;
    infinity for a state without a timer. The one rule: the compiled engine compiles it."""
    if state == _TIME_WAIT:
        return since + time_wait
    if state == _FIN_WAIT_2 and not fw2_alive:
        return since + fin_timeout
    return math.inf
#: Two captures of one segment (on two interfaces) arrive closer together than this; a
#: retransmission never does (Linux's smallest retransmission timeout is 200 ms).
_DUPLICATE_WINDOW = 0.001


class Endpoint:
    """One side of a connection: its state, its transitions and what it sent."""

    __slots__ = (
        "ip", "port", "state", "transitions", "left_censored", "isn", "syn_ts", "syn_acked",
        "fin_seq", "fin_ts", "fin_acked", "last_ack", "nxt", "win", "wscale", "fw2_alive",
        "packets", "payload", "syns", "fins", "rsts", "last_sig", "last_seen")

    def __init__(self, ip: bytes, port: int) -> None:
        self.ip = ip
        self.port = port
        self.state = CLOSED
        #: (timestamp, state entered, entered by a timer rather than a segment)
        self.transitions: list[tuple[float, State, bool]] = []
        self.left_censored = False  # its first state began before the capture
        self.isn: int | None = None
        self.syn_ts = 0.0  # capture time of the latest transmission of its SYN
        self.syn_acked = False
        self.fin_seq: int | None = None  # the sequence number its FIN occupies
        self.fin_ts = 0.0
        self.fin_acked = False
        self.last_ack: int | None = None  # highest acknowledgment it sent: its RCV.NXT
        self.nxt: int | None = None  # one past the highest sequence number it sent: SND.NXT
        self.win = 0  # its last advertised window, unscaled
        self.wscale: int | None = None
        self.fw2_alive = False  # acknowledged new data in FIN_WAIT_2: half-closed, not orphaned
        self.packets = 0
        self.payload = 0
        self.syns = self.fins = self.rsts = 0
        self.last_sig: tuple = ()
        self.last_seen = -1.0

    def enter(self, ts: float, state: State, timer: bool = False) -> None:
        """Move to `state` at `ts` (never before the previous transition)."""
        if state is self.state:
            return
        if self.transitions and ts < self.transitions[-1][0]:
            ts = self.transitions[-1][0]
        self.transitions.append((ts, state, timer))
        self.state = state

    def since(self) -> float:
        """When the current state was entered."""
        return self.transitions[-1][0]

    def timer_at(self, time_wait: float, fin_timeout: float) -> float:
        """machine.timer_at of this endpoint (infinity for one that never left CLOSED)."""
        if not self.transitions:
            return math.inf
        return timer_at(_CODE[self.state], self.since(), bool(self.fw2_alive), time_wait,
                        fin_timeout)

    def address(self) -> str:
        ip = ip_text(self.ip)
        return f"[{ip}]:{self.port}" if ":" in ip else f"{ip}:{self.port}"


@lru_cache(maxsize=4096)
def ip_text(ip: bytes) -> str:
    """An address as people write it (IPv6 compressed)."""
    return str(ip_address(ip))


class Connection:
    """One instance of a TCP connection on a 4-tuple."""

    __slots__ = ("id", "ep", "roles", "mid_stream", "first_ts", "last_ts", "reset_by",
                 "anomalies", "scheduled", "wireshark", "zeek", "zeek_ended", "evicted")

    def __init__(self, cid: int, ts: float, client: Endpoint, server: Endpoint, roles: str,
                 mid_stream: bool) -> None:
        """`mid_stream`: the client's SYN was not seen; the caller sets the first states."""
        self.id = cid
        self.ep = (client, server)
        self.roles = roles
        self.mid_stream = mid_stream  # no SYN from the client was seen
        self.first_ts = ts
        self.last_ts = ts
        self.reset_by: int | None = None  # index of the endpoint whose RST ended it
        self.anomalies: dict[str, int] = {}
        self.scheduled: float | None = None  # the deadline the connection table holds for it
        #: Wireshark's analysis flags counted over its segments (tshark engine only)
        self.wireshark: dict[str, int] | None = None
        #: Zeek's view of it (conn_state, history), fed every segment by the table
        self.zeek: ZeekConn | None = None
        #: the conn.log fields of the connections Zeek ended on this 4-tuple (its timers,
        #: a SYN it takes for a new connection) while this one went on; `zeek` began after
        self.zeek_ended: list[dict[str, object]] = []
        #: dropped from a full connection table (Settings.max_connections) before it ended
        self.evicted = False

    @property
    def client(self) -> Endpoint:
        return self.ep[0]

    @property
    def server(self) -> Endpoint:
        return self.ep[1]

    def weird(self, name: str) -> None:
        assert name in ANOMALIES, name
        self.anomalies[name] = self.anomalies.get(name, 0) + 1

    def closed(self) -> bool:
        return self.ep[0].state is CLOSED and self.ep[1].state is CLOSED

    def segment(self, ts: float, d: int, flags: int, seq: int, ack: int, win: int,
                plen: int, ipid: int, opts: bytes, time_wait: float,
                fin_timeout: float, iplen: int = 0, cut: bool = False,
                bad_sum: bool = False) -> bool:
        """Apply one segment sent by endpoint `d`. True if it changed a state (so that the
        connection's timers may have changed). `iplen`, `cut` (its payload was not
        captured whole) and `bad_sum` (a wrong checksum) are for Zeek's view."""
        s = self.ep[d]
        if self.zeek is not None:  # Zeek sees every segment, duplicates too
            self.zeek.packet(ts, d, flags, seq, ack, plen, win, iplen, cut, bad_sum)
        if ts < self.last_ts:
            self.weird("timestamp_backwards")
            ts = self.last_ts
        self.last_ts = ts
        sig = (ipid, seq, ack, flags, plen)
        if sig == s.last_sig and ts - s.last_seen < _DUPLICATE_WINDOW:
            self.weird("duplicate_segment")
            return False
        s.last_sig = sig
        s.last_seen = ts
        s.packets += 1
        s.payload += plen
        if not flags & RST:
            self._sequence(s, flags, seq, plen)
        if not flags & (SYN | FIN | RST) and (
                s.state is ESTABLISHED and self.ep[1 - d].state is ESTABLISHED):
            # Data transfer: nothing to acknowledge that could change a state.
            if flags & ACK:
                s.last_ack = ack
            s.win = win
            return False
        r = self.ep[1 - d]
        moves = len(s.transitions) + len(r.transitions)
        self._control(ts, d, s, r, flags, seq, ack, win, plen, opts, time_wait, fin_timeout)
        return len(s.transitions) + len(r.transitions) != moves

    def _sequence(self, s: Endpoint, flags: int, seq: int, plen: int) -> None:
        """Wireshark's sequence analysis, in part: a keep-alive sits one below the highest
        sequence number sent so far, a retransmitted (or reordered) segment starts below
        it; SYNs and FINs sent again are counted apart."""
        end = (seq + plen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)) & MASK
        if s.nxt is not None:
            if plen <= 1 and seq == (s.nxt - 1) & MASK and not flags & (SYN | FIN):
                self.weird("keep_alive")
            elif plen and not flags & (SYN | FIN) and not after_or_at(seq, s.nxt):
                self.weird("retransmission")
            if not after_or_at(s.nxt, end):
                s.nxt = end
        else:
            s.nxt = end

    def _control(self, ts: float, d: int, s: Endpoint, r: Endpoint, flags: int, seq: int,
                 ack: int, win: int, plen: int, opts: bytes, time_wait: float,
                 fin_timeout: float) -> None:
        if s.state is FIN_WAIT_2 and not flags & RST and flags & ACK and s.last_ack is not None \
                and ack != s.last_ack and after_or_at(ack, s.last_ack):
            s.fw2_alive = True  # an orphaned socket answers new data with a RST, not an ACK
        self.expire(ts, time_wait, fin_timeout)
        if self.closed() and not flags & SYN:
            self.weird("rst_after_close" if flags & RST else "packet_after_close")
            return
        if flags & RST:
            self._rst(ts, d, s, r, flags, seq, ack)
            return
        s.win = win
        if flags & ACK:
            if r.isn is not None and not r.syn_acked and after_or_at(ack, r.isn + 1):
                # s received r's SYN (at the SYN's time) and r learns its SYN arrived.
                r.syn_acked = True
                if r.state is SYN_RCVD:
                    r.enter(ts, ESTABLISHED)
                if s.state is CLOSED:
                    s.enter(r.syn_ts, SYN_RCVD)
                elif s.state is SYN_SENT:
                    s.enter(r.syn_ts, ESTABLISHED if s.syn_acked else SYN_RCVD)
            if r.fin_seq is not None and not r.fin_acked and after_or_at(ack, r.fin_seq + 1):
                r.fin_acked = True
                if r.state in _OWN_FIN_ACKED:
                    r.enter(ts, _OWN_FIN_ACKED[r.state])
                if s.state in _PEER_FIN_RECEIVED:
                    s.enter(r.fin_ts, _PEER_FIN_RECEIVED[s.state])
            s.last_ack = ack
        if flags & SYN:
            self._syn(ts, s, r, flags, seq, ack, opts)
        if flags & FIN:
            fin_seq = (seq + plen + (1 if flags & SYN else 0)) & MASK
            if s.fin_seq is None:
                s.fin_seq, s.fin_ts, s.fins = fin_seq, ts, 1
                if s.state in _SENT_FIN:
                    s.enter(ts, _SENT_FIN[s.state])
                elif s.state is SYN_SENT:
                    self.weird("fin_before_handshake")
            elif fin_seq == s.fin_seq:
                s.fins += 1
                self.weird("fin_retransmitted")
                if not s.fin_acked:
                    s.fin_ts = ts
            else:
                self.weird("fin_seq_changed")

    def _syn(self, ts: float, s: Endpoint, r: Endpoint, flags: int, seq: int, ack: int,
             opts: bytes) -> None:
        synack = bool(flags & ACK)
        if s.isn is None:
            s.isn, s.syn_ts, s.syns = seq, ts, 1
            s.wscale = window_scale(opts)
            if r.isn is not None and (s.wscale is None or r.wscale is None):
                s.wscale = r.wscale = 0  # scaling is used only if both SYNs offer it
            if synack:
                if r.isn is not None and ack != (r.isn + 1) & MASK:
                    self.weird("bad_synack_ack")
                if s.state is CLOSED:  # its ACK did not cover a SYN we saw
                    s.enter(ts, SYN_RCVD)
            elif s.state is CLOSED:
                s.enter(ts, SYN_SENT)
        elif seq == s.isn:
            s.syns += 1
            self.weird("synack_retransmitted" if synack else "syn_retransmitted")
            if not s.syn_acked:
                s.syn_ts = ts
        else:
            self.weird("syn_inside_connection")

    def _rst(self, ts: float, d: int, s: Endpoint, r: Endpoint, flags: int, seq: int,
             ack: int) -> None:
        s.rsts += 1
        ok = rst_acceptable(_CODE[r.state], bool(r.syn_acked), flags, seq, ack,
                            -1 if r.isn is None else r.isn,
                            -1 if r.last_ack is None else r.last_ack, r.win,
                            -1 if r.wscale is None else r.wscale)
        if not ok:
            self.weird("rst_out_of_window")
            return
        if self.reset_by is None:
            self.reset_by = d
        s.enter(ts, CLOSED)
        r.enter(ts, CLOSED)

    def expire(self, now: float, time_wait: float, fin_timeout: float) -> None:
        """Apply the timers that ran out by `now`: TIME_WAIT, orphaned FIN_WAIT_2."""
        for e in self.ep:
            at = e.timer_at(time_wait, fin_timeout)
            if now >= at:
                e.enter(at, CLOSED, timer=True)

    def deadline(self, time_wait: float, fin_timeout: float, linger: float) -> float | None:
        """The next capture time at which a timer or eviction is due, if any."""
        if self.closed():
            return self.last_ts + linger
        due = min(e.timer_at(time_wait, fin_timeout) for e in self.ep)
        return None if due == math.inf else due

    def reuse(self, ts: float) -> None:
        """A new connection takes over the 4-tuple: whatever is left of this one is gone."""
        for e in self.ep:
            if e.state is not CLOSED:
                e.enter(ts, CLOSED)
