"""The connection table: finds each segment's connection, starts new instances, retires
closed ones.

Memory is bounded by the live connections: a connection closed on both sides (by FIN, RST
or an expired timer) is handed to `on_close` once `Settings.linger` has passed and then
forgotten. Timers are kept in a heap ordered by deadline and checked once per second of
capture time. And the live connections are bounded by `Settings.max_connections`: a new
connection beyond it first evicts one (`_evict`), handed to `on_close` marked `evicted`
and counted by its tier (vocab.Tier).
"""

import heapq
from collections import OrderedDict
from collections.abc import Callable

from pcapstate.decode import Segment
from pcapstate.machine import Connection, Endpoint
from pcapstate.settings import Settings
from pcapstate.vocab import ACK, SYN, Roles, State, Tier
from pcapstate.zeek import ZeekConn

_SWEEP_EVERY = 1.0  # seconds of capture time
_EPHEMERAL = 32768  # Linux's default ip_local_port_range starts here
_FREE = (State.CLOSED, State.TIME_WAIT)  # a new SYN may take over from these
#: A handshake attempt this long without a segment is evicted before any open connection:
#: Linux's initial retransmission timeout (RFC 6298): a live attempt would have sent again.
ATTEMPT_QUIET = 1.0


class Tracker:
    """Feed it segments in capture order; it calls `on_close(conn, now)` for each
    connection it retires, and for every remaining one at `finish`."""

    def __init__(self, settings: Settings,
                 on_close: Callable[[Connection, float], None]) -> None:
        self.settings = settings
        self.on_close = on_close
        #: (src, sport, dst, dport) -> (connection, index of the endpoint that sends this way)
        self.table: dict[tuple[bytes, int, bytes, int], tuple[Connection, int]] = {}
        self.heap: list[tuple[float, int, Connection]] = []
        #: the live connections by tier, least recently active first (id -> connection)
        self.tiers: list[OrderedDict[int, Connection]] = [OrderedDict() for _ in Tier]
        self.evicted = [0] * len(Tier)  # evictions by tier
        self.now = float("-inf")
        self.next_sweep = float("-inf")
        self.connections = 0
        self.peak_live = 0

    def segment(self, ts: float, seg: Segment) -> None:
        src, dst, sport, dport, seq, ack, flags, win, plen, ipid, opts, iplen, cut, bad = seg
        if ts > self.now:
            self.now = ts
            if ts >= self.next_sweep:
                self.sweep(ts)
                self.next_sweep = ts + _SWEEP_EVERY
        hit = self.table.get((src, sport, dst, dport))
        if hit is None:
            conn, d = self._open(ts, src, sport, dst, dport, flags)
        else:
            conn, d = hit
            if flags & SYN and not flags & ACK and conn.ep[d].isn != seq \
                    and self._taken_over(conn, d, ts):
                conn, d = self._open(ts, src, sport, dst, dport, flags)
            elif conn.zeek is not None and conn.zeek.ended(self.now, d, flags, seq):
                # Zeek would log what it had and start a new connection here
                conn.zeek_ended.append(conn.zeek.fields())
                conn.zeek = ZeekConn(d, flags, sport, dport, ts)
        s = self.settings
        if conn.segment(ts, d, flags, seq, ack, win, plen, ipid, opts, s.time_wait,
                        s.fin_timeout, iplen, cut, bad):
            self._schedule(conn)
        self._touch(conn)

    def _touch(self, conn: Connection) -> None:
        """The connection is the most recently active of its tier (by its states now)."""
        tier = self.tiers[Tier.of(conn.ep[0].state, conn.ep[1].state)]
        if conn.id in tier:
            tier.move_to_end(conn.id)
            return
        for other in self.tiers:
            other.pop(conn.id, None)
        tier[conn.id] = conn

    def _evict(self, ts: float) -> None:
        """Make room: retire the least recently active finished connection; without one,
        the least recently active handshake attempt if attempts hold half the table or
        more (a flood) or if it has been quiet for ATTEMPT_QUIET; else whichever of that
        attempt and the least recently active open connection has been quiet longer. So
        a flood of SYNs recycles its own attempts and leaves idle connections
        (CLOSE_WAIT...) alone, while handshakes in progress are not broken up to keep
        connections idle for longer."""
        finished, attempt, open_ = (next(iter(tier.values()), None) for tier in self.tiers)
        if finished is not None:
            t = Tier.FINISHED
        elif open_ is None or (attempt is not None and (
                2 * len(self.tiers[Tier.ATTEMPT]) >= self.live
                or ts - attempt.last_ts >= ATTEMPT_QUIET or attempt.last_ts <= open_.last_ts)):
            t = Tier.ATTEMPT
        else:
            t = Tier.OPEN
        _, conn = self.tiers[t].popitem(last=False)
        conn.expire(ts, self.settings.time_wait, self.settings.fin_timeout)
        conn.evicted = True
        self.evicted[t] += 1
        self._retire(conn, ts)

    def _taken_over(self, conn: Connection, d: int, ts: float) -> bool:
        """A SYN with a new sequence number: does it start a new connection?"""
        s = self.settings
        conn.expire(ts, s.time_wait, s.fin_timeout)
        sender, receiver = conn.ep[d], conn.ep[1 - d]
        if receiver.state in _FREE and (sender.state in _FREE or sender.state is State.SYN_SENT):
            conn.reuse(ts)
            self._retire(conn, ts)
            return True
        return False

    def _open(self, ts: float, src: bytes, sport: int, dst: bytes, dport: int,
              flags: int) -> tuple[Connection, int]:
        limit = self.settings.max_connections
        if limit and self.live >= limit:
            self._evict(ts)
        sender, receiver = Endpoint(src, sport), Endpoint(dst, dport)
        if flags & SYN and not flags & ACK:
            d, roles = 0, Roles.SYN
        elif flags & SYN:
            d, roles = 1, Roles.SYNACK
        else:
            d, roles = (1, Roles.PORT) if looks_like_server(sport, dport) else (0, Roles.PORT)
        client, server = (sender, receiver) if d == 0 else (receiver, sender)
        self.connections += 1
        conn = Connection(self.connections, ts, client, server, roles, roles != Roles.SYN)
        conn.zeek = ZeekConn(d, flags, sport, dport, ts)
        if roles == Roles.SYNACK:
            # The client's SYN is not in the capture, but the SYN/ACK proves it was sent.
            client.enter(ts, State.SYN_SENT)
            client.left_censored = client.syn_acked = True
        elif roles == Roles.PORT:
            for e in conn.ep:
                e.enter(ts, State.ESTABLISHED)
                e.left_censored = True
        self.table[(src, sport, dst, dport)] = (conn, d)
        self.table[(dst, dport, src, sport)] = (conn, 1 - d)
        self._touch(conn)
        self.peak_live = max(self.peak_live, self.live)
        return conn, d

    def _schedule(self, conn: Connection) -> None:
        s = self.settings
        due = conn.deadline(s.time_wait, s.fin_timeout, s.linger)
        if due is not None and due != conn.scheduled:
            conn.scheduled = due
            if len(self.heap) >= 2 * self.live + 1024:  # mostly superseded: drop those
                self.heap = [h for h in self.heap if h[2].scheduled == h[0]]
                heapq.heapify(self.heap)
            heapq.heappush(self.heap, (due, conn.id, conn))

    def sweep(self, now: float) -> None:
        """Apply due timers and retire the connections that are closed and lingered."""
        heap = self.heap
        while heap and heap[0][0] <= now:
            due, _, conn = heapq.heappop(heap)
            if conn.scheduled != due:
                continue  # superseded by a later deadline, or already retired
            conn.scheduled = None
            s = self.settings
            conn.expire(now, s.time_wait, s.fin_timeout)
            retire_at = conn.deadline(s.time_wait, s.fin_timeout, s.linger)
            if conn.closed() and retire_at is not None and now >= retire_at:
                self._retire(conn, now)
            else:
                self._schedule(conn)

    def _retire(self, conn: Connection, now: float) -> None:
        conn.scheduled = None
        c, s = conn.ep
        for key in ((c.ip, c.port, s.ip, s.port), (s.ip, s.port, c.ip, c.port)):
            if self.table.get(key, (None,))[0] is conn:
                del self.table[key]
        for tier in self.tiers:
            tier.pop(conn.id, None)
        self.on_close(conn, now)

    def finish(self, end: float) -> None:
        """The capture is over at `end`: retire every connection still in the table."""
        s = self.settings
        live = sorted((c for tier in self.tiers for c in tier.values()), key=lambda c: c.id)
        for conn in live:
            conn.expire(end, s.time_wait, s.fin_timeout)
            self._retire(conn, end)
        self.heap.clear()

    @property
    def live(self) -> int:
        return sum(len(tier) for tier in self.tiers)


def looks_like_server(sport: int, dport: int) -> bool:
    """With no SYN seen: is the sender of this segment the server? Well-known ports first,
    then Linux's ephemeral range, then the lower port."""
    if (sport < 1024) != (dport < 1024):
        return sport < 1024
    if (sport >= _EPHEMERAL) != (dport >= _EPHEMERAL):
        return dport >= _EPHEMERAL
    return sport < dport
