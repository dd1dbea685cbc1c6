"""Transcripts: crafted segment sequences in, endpoint states and verdicts out."""

from pcapstate.decode import Segment
from pcapstate.settings import Settings
from pcapstate.summary import Summary
from pcapstate.table import Tracker
from pcapstate.verdict import closer, end_kind, stuck
from pcapstate.vocab import ACK, FIN, PSH, RST, SYN

C = (bytes([10, 0, 0, 1]), 40000)
S = (bytes([10, 0, 0, 2]), 80)
FLAGS = {"S": SYN, "A": ACK, "F": FIN, "R": RST, "P": PSH}


class Transcript:
    """Feeds segments to a Tracker; keeps every retired connection."""

    def __init__(self, **settings):
        self.settings = Settings(**settings)
        self.retired = []
        self.summary = Summary(self.settings)
        self.tracker = Tracker(self.settings, self._retire)
        self.ipid = 0

    def _retire(self, conn, now):
        self.retired.append((conn, now))
        self.summary.add(conn, now)

    def send(self, ts, direction, flags, seq, ack=0, plen=0, win=65535, src=C, dst=S):
        a, b = (src, dst) if direction == ">" else (dst, src)
        self.ipid += 1
        f = sum(FLAGS[c] for c in flags)
        self.tracker.segment(ts, Segment(a[0], b[0], a[1], b[1], seq & 0xFFFFFFFF,
                                         ack & 0xFFFFFFFF, f, win, plen, self.ipid, b""))
        return self

    def finish(self, end):
        self.tracker.finish(end)
        return [c for c, _ in self.retired]


def states(e):
    return [st.value for _, st, _ in e.transitions]


def handshake(t, ts=0.0, cisn=1000, sisn=5000):
    t.send(ts, ">", "S", cisn)
    t.send(ts + 0.001, "<", "SA", sisn, cisn + 1)
    t.send(ts + 0.002, ">", "A", cisn + 1, sisn + 1)


def test_client_closes_first_and_ends_in_time_wait():
    t = Transcript()
    handshake(t)
    t.send(0.01, ">", "A", 1001, 5001, plen=100)
    t.send(0.02, "<", "A", 5001, 1101, plen=50)
    t.send(1.0, ">", "FA", 1101, 5051)
    t.send(1.001, "<", "A", 5051, 1102)
    t.send(2.0, "<", "FA", 5051, 1102)
    t.send(2.001, ">", "A", 1102, 5052)
    [conn] = t.finish(10.0)
    client, server = conn.ep
    assert states(client) == ["SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT"]
    assert states(server) == ["SYN_RCVD", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"]
    # the server's CLOSE_WAIT starts when the client's FIN was captured
    assert server.transitions[2][0] == 1.0
    assert client.transitions[1][0] == 0.001  # ESTABLISHED at the SYN/ACK's time
    assert end_kind(conn) == "closed" and closer(conn) == "client"
    assert client.payload == 100 and server.payload == 50


def test_time_wait_expires_after_the_assumed_timer():
    t = Transcript(time_wait=30.0)
    handshake(t)
    t.send(1.0, ">", "FA", 1001, 5001)
    t.send(1.1, "<", "FA", 5001, 1002)
    t.send(1.2, ">", "A", 1002, 5002)
    [conn] = t.finish(100.0)
    client = conn.ep[0]
    assert client.state == "CLOSED"
    assert client.transitions[-1] == (31.1, "CLOSED", True)  # 30 s after TIME_WAIT began


def test_retired_after_close_then_port_reuse_is_a_new_connection():
    t = Transcript()
    handshake(t)
    t.send(1.0, ">", "FA", 1001, 5001)
    t.send(1.1, "<", "FA", 5001, 1002)
    t.send(1.2, ">", "A", 1002, 5002)
    # the client reuses the 4-tuple while its old socket is in TIME_WAIT
    handshake(t, ts=5.0, cisn=90000, sisn=70000)
    old, new = t.finish(6.0)
    assert old.ep[0].transitions[-1][:2] == (5.0, "CLOSED")
    assert end_kind(old) == "closed"
    assert states(new.ep[0]) == ["SYN_SENT", "ESTABLISHED"]
    assert new.id == old.id + 1


def test_close_wait_leak_is_reported_grouped_by_service():
    t = Transcript()
    for i in range(3):
        src = (C[0], 40000 + i)
        t.send(i, ">", "S", 1000, src=src)
        t.send(i + 0.001, "<", "SA", 5000, 1001, src=src)
        t.send(i + 0.002, ">", "A", 1001, 5001, src=src)
        t.send(i + 0.5, ">", "FA", 1001, 5001, src=src)
        t.send(i + 0.501, "<", "A", 5001, 1002, src=src)
    conns = t.finish(40.0)
    assert [c.ep[1].state for c in conns] == ["CLOSE_WAIT"] * 3
    assert [c.ep[0].state for c in conns] == ["FIN_WAIT_2"] * 3
    [group] = t.summary.findings()
    assert group["state"] == "CLOSE_WAIT" and group["service"] == "10.0.0.2:80"
    assert group["role"] == "server" and group["count"] == 3 and group["still_open"] == 3
    assert group["oldest"] == 39.5
    assert all(end_kind(c) == "half_closed" and closer(c) == "client" for c in conns)


def test_orphaned_fin_wait_2_expires_and_late_data_draws_a_reset():
    t = Transcript(fin_timeout=60.0)
    handshake(t)
    t.send(1.0, ">", "FA", 1001, 5001)
    t.send(1.001, "<", "A", 5001, 1002)
    # 80 s later the stuck server finally writes; the client's socket is long gone
    t.send(81.0, "<", "PA", 5001, 1002, plen=10)
    t.send(81.001, ">", "R", 1002)
    [conn] = t.finish(90.0)
    client, server = conn.ep
    assert client.transitions[-1] == (61.001, "CLOSED", True)
    assert server.transitions[-1][:2] == (81.001, "CLOSED")
    assert end_kind(conn) == "reset_by_client" and closer(conn) == "client"
    [s] = stuck(conn, 90.0, t.settings)
    assert s.state == "CLOSE_WAIT" and s.outcome == "reset_by_peer" and s.duration == 80.001


def test_half_close_keeps_fin_wait_2_alive_past_the_timer():
    t = Transcript(fin_timeout=60.0)
    handshake(t)
    t.send(1.0, ">", "FA", 1001, 5001)
    t.send(1.001, "<", "A", 5001, 1002)
    for i in range(8):  # the server keeps sending for 80 s; the client keeps acknowledging
        ts = 10.0 * (i + 1)
        t.send(ts, "<", "A", 5001 + 1000 * i, 1002, plen=1000)
        t.send(ts + 0.001, ">", "A", 1002, 6001 + 1000 * i)
    t.send(90.0, "<", "FA", 13001, 1002)
    t.send(90.001, ">", "A", 1002, 13002)
    [conn] = t.finish(91.0)
    client, server = conn.ep
    assert states(client)[-2:] == ["FIN_WAIT_2", "TIME_WAIT"]
    assert states(server)[-3:] == ["CLOSE_WAIT", "LAST_ACK", "CLOSED"]
    assert end_kind(conn) == "closed"


def test_simultaneous_close_goes_through_closing_on_both_sides():
    t = Transcript()
    handshake(t)
    t.send(1.0, ">", "FA", 1001, 5001)
    t.send(1.0005, "<", "FA", 5001, 1001)  # sent before the client's FIN arrived
    t.send(1.001, ">", "A", 1002, 5002)
    t.send(1.0015, "<", "A", 5002, 1002)
    [conn] = t.finish(2.0)
    assert closer(conn) == "both"
    assert conn.ep[0].state == "TIME_WAIT" and conn.ep[1].state == "TIME_WAIT"
    assert "CLOSING" in states(conn.ep[0])


def test_refused_connection():
    t = Transcript()
    t.send(0.0, ">", "S", 1000)
    t.send(0.0001, "<", "RA", 0, 1001)
    [conn] = t.finish(1.0)
    assert end_kind(conn) == "refused"
    assert states(conn.ep[0]) == ["SYN_SENT", "CLOSED"] and states(conn.ep[1]) == []


def test_rst_outside_the_window_changes_nothing():
    t = Transcript()
    handshake(t)
    t.send(0.5, "<", "R", 5001 + 10_000_000)  # far beyond the client's window
    [conn] = t.finish(1.0)
    assert conn.anomalies == {"rst_out_of_window": 1}
    assert conn.ep[0].state == "ESTABLISHED" and end_kind(conn) == "open"


def test_rst_inside_the_window_aborts_both_endpoints():
    t = Transcript()
    handshake(t)
    t.send(0.5, "<", "R", 5001)
    [conn] = t.finish(1.0)
    assert end_kind(conn) == "reset_by_server"
    assert conn.ep[0].state == "CLOSED" and conn.ep[1].state == "CLOSED"


def test_retransmitted_syn_is_not_a_new_connection_but_a_new_isn_is():
    t = Transcript()
    t.send(0.0, ">", "S", 1000)
    t.send(1.0, ">", "S", 1000)
    t.send(3.0, ">", "S", 777777)
    first, second = t.finish(4.0)
    assert first.anomalies == {"syn_retransmitted": 1}
    assert end_kind(first) == "unanswered" and end_kind(second) == "unanswered"


def test_sequence_numbers_wrap_around():
    t = Transcript()
    cisn = 0xFFFFFFF0
    handshake(t, cisn=cisn, sisn=0xFFFFFFFE)
    t.send(0.01, ">", "A", cisn + 1, 0xFFFFFFFF, plen=100)  # data crosses 2**32
    fin = (cisn + 101) & 0xFFFFFFFF
    t.send(1.0, ">", "FA", fin, 0xFFFFFFFF)
    t.send(1.001, "<", "A", 0xFFFFFFFF, fin + 1)
    t.send(1.002, "<", "FA", 0xFFFFFFFF, fin + 1)
    t.send(1.003, ">", "A", fin + 1, 0)
    [conn] = t.finish(2.0)
    assert states(conn.ep[1])[-3:] == ["CLOSE_WAIT", "LAST_ACK", "CLOSED"]
    assert conn.ep[0].state == "TIME_WAIT"


def test_capture_started_mid_stream_marks_the_inference():
    t = Transcript()
    t.send(0.0, "<", "A", 5001, 1001, plen=10)  # from port 80 to 40000: 80 is the server
    t.send(1.0, ">", "FA", 1001, 5011)
    t.send(1.001, "<", "FA", 5011, 1002)
    t.send(1.002, ">", "A", 1002, 5012)
    [conn] = t.finish(2.0)
    assert conn.roles == "port" and conn.mid_stream
    assert conn.ep[0].port == 40000 and conn.ep[0].left_censored
    assert closer(conn) == "client" and end_kind(conn) == "closed"
    established = t.summary.durations["ESTABLISHED"].counts
    assert established["left"] == 2


def test_duplicate_and_backwards_segments_are_counted_not_applied():
    t = Transcript()
    handshake(t)
    seg = Segment(C[0], S[0], C[1], S[1], 1001, 5001, ACK, 100, 10, 42, b"")
    t.tracker.segment(0.5, seg)
    t.tracker.segment(0.5001, seg)  # the same segment seen on a second interface
    t.send(0.4, "<", "A", 5001, 1011)  # timestamp goes backwards
    [conn] = t.finish(1.0)
    assert conn.anomalies == {"duplicate_segment": 1, "timestamp_backwards": 1}
    assert conn.ep[0].packets == 3
