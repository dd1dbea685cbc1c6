"""Transcripts of the TCP state machine: crafted segment sequences in, endpoint states and
verdicts out, through the one engine (tests/transcript.py). Expected values come from the
scenario and RFC 9293."""

import pytest

from pcapstate.render.text import stuck_words
from tests.transcript import C, Transcript, final, handshake, states, transitions


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
    assert states(conn, "client") == ["SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2",
                                      "TIME_WAIT"]
    assert states(conn, "server") == ["SYN_RCVD", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK",
                                      "CLOSED"]
    # the server's CLOSE_WAIT starts when the client's FIN was captured
    assert transitions(conn, "server")[2][0] == 1.0
    assert transitions(conn, "client")[1][0] == 0.001  # ESTABLISHED at the SYN/ACK's time
    assert conn["end"] == "closed" and conn["closer"] == "client"
    assert conn["endpoints"]["client"]["payload_bytes"] == 100
    assert conn["endpoints"]["server"]["payload_bytes"] == 50


def test_time_wait_expires_after_the_assumed_timer():
    t = Transcript(time_wait=30.0)
    handshake(t)
    t.send(1.0, ">", "FA", 1001, 5001)
    t.send(1.1, "<", "FA", 5001, 1002)
    t.send(1.2, ">", "A", 1002, 5002)
    [conn] = t.finish(100.0)
    assert final(conn, "client") == "CLOSED"
    assert transitions(conn, "client")[-1] == (31.1, "CLOSED", True)  # 30 s after TIME_WAIT


def test_retired_after_close_then_port_reuse_is_a_new_connection():
    t = Transcript()
    handshake(t)
    t.send(1.0, ">", "FA", 1001, 5001)
    t.send(1.1, "<", "FA", 5001, 1002)
    t.send(1.2, ">", "A", 1002, 5002)
    # the client reuses the 4-tuple while its old socket is in TIME_WAIT
    handshake(t, ts=5.0, cisn=90000, sisn=70000)
    old, new = t.finish(6.0)
    assert transitions(old, "client")[-1][:2] == (5.0, "CLOSED")
    assert old["end"] == "closed"
    assert states(new, "client") == ["SYN_SENT", "ESTABLISHED"]
    assert new["id"] == old["id"] + 1


def test_a_reset_connection_retires_linger_after_its_last_segment_however_often_put_off():
    """Reset (both endpoints CLOSED), a connection retires `linger` after its last segment:
    each segment after the RST puts that off (track/connections.py _schedule leaves the
    heap's earlier entry, _sweep moves it on when it comes due). Not retired by a sweep
    past its first deadlines (4.0), retired once by the one after its last (5.0)."""
    t = Transcript(linger=2.0)
    handshake(t)
    t.send(0.5, ">", "R", 1001)
    for ts in (1.0, 1.5, 2.0, 2.5):  # retirement put off to 3.0, 3.5, 4.0 and 4.5
        t.send(ts, "<", "A", 5001, 1001)
    other = (C[0], 40001)
    t.send(4.0, ">", "S", 70000, src=other)  # sweeps (a second apart) run at 4.0 and 5.0
    assert t.records == []
    t.send(5.0, ">", "S", 70000, src=other)
    [reset] = t.records
    assert reset["id"] == 1 and reset["end"] == "reset_by_client"
    assert reset["last_ts"] == 2.5
    assert [r["id"] for r in t.finish(6.0)] == [1, 2]


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
    assert [final(c, "server") for c in conns] == ["CLOSE_WAIT"] * 3
    assert [final(c, "client") for c in conns] == ["FIN_WAIT_2"] * 3
    [group] = t.result()["findings"]
    assert group["state"] == "CLOSE_WAIT" and group["service"] == "10.0.0.2:80"
    assert group["role"] == "server" and group["count"] == 3 and group["still_open"] == 3
    assert group["oldest"] == 39.5
    assert all(c["end"] == "half_closed" and c["closer"] == "client" for c in conns)
    assert group["closed_first_by"] == {"client": 3} and group["at_capture_end"] == 3


def test_counts_at_capture_end_add_up_with_those_under_the_threshold():
    """ss at capture end would list every CLOSE_WAIT socket, young or old: the finding
    counts both, and says both."""
    t = Transcript()
    for i, fin in enumerate((1.0, 2.0, 35.0)):  # the last one 5 s in CLOSE_WAIT at the end
        src = (C[0], 40000 + i)
        handshake(t, ts=fin - 0.5, src=src)
        t.send(fin, ">", "FA", 1001, 5001, src=src)
        t.send(fin + 0.001, "<", "A", 5001, 1002, src=src)
    t.finish(40.0)
    [group] = t.result()["findings"]
    assert (group["count"], group["still_open"], group["at_capture_end"]) == (2, 2, 3)
    assert stuck_words(group, 10.0) == "3 in CLOSE_WAIT at capture end, 2 of them for longer " \
        "than 10s"


def test_orphaned_fin_wait_2_expires_and_late_data_draws_a_reset():
    t = Transcript(fin_timeout=60.0)
    handshake(t)
    t.send(1.0, ">", "FA", 1001, 5001)
    t.send(1.001, "<", "A", 5001, 1002)
    # 80 s later the stuck server finally writes; the client's socket is long gone
    t.send(81.0, "<", "PA", 5001, 1002, plen=10)
    t.send(81.001, ">", "R", 1002)
    [conn] = t.finish(90.0)
    assert transitions(conn, "client")[-1] == (61.001, "CLOSED", True)
    assert transitions(conn, "server")[-1][:2] == (81.001, "CLOSED")
    assert conn["end"] == "reset_by_client" and conn["closer"] == "client"
    [group] = t.result()["findings"]
    [s] = group["examples"]
    assert s["state"] == "CLOSE_WAIT" and s["outcome"] == "reset_by_peer"
    assert s["duration"] == 80.001 and (s["fin_ts"], s["rst_ts"]) == (1.0, 81.001)


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
    assert states(conn, "client")[-2:] == ["FIN_WAIT_2", "TIME_WAIT"]
    assert states(conn, "server")[-3:] == ["CLOSE_WAIT", "LAST_ACK", "CLOSED"]
    assert conn["end"] == "closed"


def test_simultaneous_close_goes_through_closing_on_both_sides():
    t = Transcript()
    handshake(t)
    t.send(1.0, ">", "FA", 1001, 5001)
    t.send(1.0005, "<", "FA", 5001, 1001)  # sent before the client's FIN arrived
    t.send(1.001, ">", "A", 1002, 5002)
    t.send(1.0015, "<", "A", 5002, 1002)
    [conn] = t.finish(2.0)
    assert conn["closer"] == "both"
    assert final(conn, "client") == "TIME_WAIT" and final(conn, "server") == "TIME_WAIT"
    assert "CLOSING" in states(conn, "client")


def test_refused_connection():
    t = Transcript()
    t.send(0.0, ">", "S", 1000)
    t.send(0.0001, "<", "RA", 0, 1001)
    [conn] = t.finish(1.0)
    assert conn["end"] == "refused"
    assert states(conn, "client") == ["SYN_SENT", "CLOSED"] and states(conn, "server") == []


def test_rst_outside_the_window_changes_nothing():
    t = Transcript()
    handshake(t)
    t.send(0.5, "<", "R", 5001 + 10_000_000)  # far beyond the client's window
    [conn] = t.finish(1.0)
    assert conn["anomalies"] == {"rst_out_of_window": 1}
    assert final(conn, "client") == "ESTABLISHED" and conn["end"] == "open"


def test_rst_inside_the_window_aborts_both_endpoints():
    t = Transcript()
    handshake(t)
    t.send(0.5, "<", "R", 5001)
    [conn] = t.finish(1.0)
    assert conn["end"] == "reset_by_server"
    assert final(conn, "client") == "CLOSED" and final(conn, "server") == "CLOSED"


def test_retransmitted_syn_is_not_a_new_connection_but_a_new_isn_is():
    t = Transcript()
    t.send(0.0, ">", "S", 1000)
    t.send(1.0, ">", "S", 1000)
    t.send(3.0, ">", "S", 777777)
    first, second = t.finish(4.0)
    assert first["anomalies"] == {"syn_retransmitted": 1}
    assert first["end"] == "unanswered" and second["end"] == "unanswered"


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
    assert states(conn, "server")[-3:] == ["CLOSE_WAIT", "LAST_ACK", "CLOSED"]
    assert final(conn, "client") == "TIME_WAIT"


def test_capture_started_mid_stream_marks_the_inference():
    t = Transcript()
    t.send(0.0, "<", "A", 5001, 1001, plen=10)  # from port 80 to 40000: 80 is the server
    t.send(1.0, ">", "FA", 1001, 5011)
    t.send(1.001, "<", "FA", 5011, 1002)
    t.send(1.002, ">", "A", 1002, 5012)
    [conn] = t.finish(2.0)
    assert conn["roles_from"] == "port" and conn["mid_stream"]
    assert conn["client"] == "10.0.0.1:40000"
    assert conn["closer"] == "client" and conn["end"] == "closed"
    # the server's data shows it had not closed: the client's FIN was the first
    assert conn["closer_evidence"] == "fin_seen"
    established = t.result()["durations"]["ESTABLISHED"]
    assert established["left_censored"] == 2  # both began before the capture


def test_a_fin_answered_by_a_reset_late_in_the_capture_shows_the_peer_closed_first():
    """A capture that begins after the client closed: the server's FIN, long after, is
    answered by the client's kernel with a RST (no socket: seq = the FIN's ack, no ACK
    flag). The client closed first; the server had been in CLOSE_WAIT, a leak."""
    t = Transcript()
    t.send(5.0, "<", "FA", 5001, 1001)
    t.send(5.0001, ">", "R", 1001)
    [conn] = t.finish(6.0)
    assert conn["closer"] == "client" and conn["closer_evidence"] == "inferred"
    assert conn["closed_by"] is None and conn["end"] == "reset_by_client"
    assert states(conn, "server") == ["CLOSE_WAIT", "LAST_ACK", "CLOSED"]
    assert states(conn, "client") == ["CLOSED"]
    assert [t.get("inferred", False) for t in conn["endpoints"]["server"]["transitions"]] \
        == [True, False, False]
    [finding] = t.result()["findings"]
    assert (finding["state"], finding["role"], finding["inferred"], finding["count"]) \
        == ("CLOSE_WAIT", "server", True, 1)
    assert finding["examples"][0]["rst_ts"] == 5.0001
    assert t.result()["connections"]["by_closer_evidence"] == {"inferred": 1}


@pytest.mark.parametrize("before", [
    [(4.0, ">", "PA", 1001, 5001, 100)],  # the client sent data in the capture: it was open
    [(4.0, ">", "A", 1001, 5001, 0), (4.5, ">", "PA", 1001, 5001, 10)],
])
def test_a_reset_from_a_peer_seen_open_is_not_an_earlier_close(before):
    """The client was seen sending data, so it had not closed before the capture: its RST
    answering the server's FIN is not a close before the capture (its socket went away
    later: a peer that vanished), and the server closed first."""
    t = Transcript()
    for ts, way, flags, seq, ack, plen in before:
        t.send(ts, way, flags, seq, ack, plen=plen)
    end = 1001 + sum(b[5] for b in before)
    t.send(5.0, "<", "FA", 5001, end)
    t.send(5.0001, ">", "R", end)
    [conn] = t.finish(6.0)
    assert conn["closer"] == "server" and conn["closer_evidence"] == "fin_seen"
    assert not t.result()["findings"]


def test_a_fin_acknowledged_late_in_the_capture_leaves_the_closer_unknown():
    """The server's FIN, acknowledged, in a capture that began after the connection opened
    and shows nothing else of the client: the client may have closed before the capture
    (its FIN_WAIT_2 acknowledging it) or be in CLOSE_WAIT now. The closer is the first in
    the capture, said as unknown."""
    t = Transcript()
    t.send(5.0, "<", "FA", 5001, 1001)
    t.send(5.001, ">", "A", 1001, 5002)
    [conn] = t.finish(6.0)
    assert conn["closer"] == "server" and conn["closer_evidence"] == "unknown"
    assert conn["closed_by"] == "fin"


def test_duplicate_and_backwards_segments_are_counted_not_applied():
    t = Transcript()
    handshake(t)
    t.send(0.5, ">", "A", 1001, 5001, plen=10, win=100, ipid=42)
    t.send(0.5001, ">", "A", 1001, 5001, plen=10, win=100, ipid=42)  # seen on a 2nd interface
    t.send(0.4, "<", "A", 5001, 1011)  # timestamp goes backwards
    [conn] = t.finish(1.0)
    assert conn["anomalies"] == {"duplicate_segment": 1, "timestamp_backwards": 1}
    assert conn["endpoints"]["client"]["packets"] == 3


def test_a_syn_retried_in_vain_gives_up_by_its_backoff():
    """Linux retransmits an unanswered SYN (first at the same interval, tcp_syn_linear_
    timeouts, then doubling it) and gives up when its retries run out (ETIMEDOUT): its
    socket is gone. SYNs at 0, 1 and 2 s, then none: the next was due at 3 s (the same
    interval again, the first two alike), and none came, so the client gave up at 3 s, by
    a timer. Doubling intervals (0, 1, 3, 7 s: the next due 8 s after the last) likewise;
    a capture that ends before the missing SYN is overdue leaves the client in SYN_SENT."""
    t = Transcript()
    for ts in (0.0, 1.0, 2.0):
        t.send(ts, ">", "S", 1000)
    [conn] = t.finish(10.0)
    assert transitions(conn, "client") == [(0.0, "SYN_SENT", False), (3.0, "CLOSED", True)]
    assert conn["end"] == "unanswered" and conn["endpoints"]["client"]["syn"] == 3

    def doubling(end: float) -> dict:
        t = Transcript()
        for ts in (0.0, 1.0, 3.0, 7.0):
            t.send(ts, ">", "S", 1000)
        [conn] = t.finish(end)
        return conn

    assert transitions(doubling(40.0), "client")[-1] == (15.0, "CLOSED", True)
    # the next SYN due at 15 s: not overdue until an eighth of its 8 s (and 200 ms) later
    assert final(doubling(16.1), "client") == "SYN_SENT"
    assert final(doubling(16.3), "client") == "CLOSED"


def test_a_synack_retried_in_vain_drops_the_request():
    """The listener's SYN-ACKs never reach the client (the client keeps sending its SYN,
    answered each time with the same SYN-ACK): the server retransmits its SYN-ACK with a
    doubling backoff (tcp_synack_retries) and then drops the request: its endpoint is
    CLOSED by a timer when the next was due (0.001 + 1 + 2 + 4 = 7.001 s), while the
    client, whose SYNs go on, is still trying."""
    t = Transcript()
    synacks = [(ts, "<", "SA", 5000, 1001) for ts in (0.001, 1.001, 3.001)]
    syns = [(float(ts), ">", "S", 1000, 0) for ts in range(11)]
    for segment in sorted(synacks + syns):
        t.send(*segment)
    [conn] = t.finish(12.0)
    assert transitions(conn, "server")[-1] == (pytest.approx(7.001), "CLOSED", True)
    assert final(conn, "client") == "SYN_SENT"


@pytest.mark.parametrize(("fin_at", "sent_before"), [(5.05, True), (5.5, False)])
def test_a_segment_sent_before_the_peers_reset_arrived_is_taken(fin_at, sent_before):
    """Captured at the server, 100 ms round trip from the client (its handshake says so).
    The server's RST, answering the client's request, is captured at once; the client's
    FIN, captured 30 ms later, was sent before that RST reached it: the client was alive,
    went to LAST_ACK, and closed when the RST arrived (inferred). Half a second later, the
    FIN could not have been: a packet after the close."""
    t = Transcript()
    t.send(0.0, ">", "S", 1000)
    t.send(0.0001, "<", "SA", 5000, 1001)
    t.send(0.1, ">", "A", 1001, 5001)
    t.send(5.0, "<", "FA", 5001, 1001)
    t.send(5.02, ">", "PA", 1001, 5001, plen=40)  # the request crossing the FIN
    t.send(5.0201, "<", "R", 5002)
    t.send(fin_at, ">", "FA", 1041, 5002)
    [conn] = t.finish(10.0)
    if sent_before:
        assert states(conn, "client")[-3:] == ["CLOSE_WAIT", "LAST_ACK", "CLOSED"]
        assert conn["endpoints"]["client"]["transitions"][-1] == {
            "ts": fin_at, "state": "CLOSED", "inferred": True}
        assert "packet_after_close" not in conn["anomalies"]
    else:
        assert states(conn, "client")[-1] == "CLOSED" and "LAST_ACK" not in states(conn,
                                                                                 "client")
        assert conn["anomalies"]["packet_after_close"] == 1
    assert conn["end"] == "reset_by_server" and final(conn, "server") == "CLOSED"
