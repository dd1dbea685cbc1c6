"""Diagnoses (derive/diagnoses.py, docs/diagnoses.md) on crafted transcripts: each rule,
and the look-alike it must not take for it. Expected values come from the scenario and RFC
9293; the kernel samples (tests/test_samples.py) show each on real traffic."""

import pytest

from pcapstate.vocab import SYN_SACK, SYN_TS
from tests.transcript import C, Transcript, handshake


def diagnoses(t: Transcript, end: float) -> dict[str, dict]:
    t.finish(end)
    return {d["name"]: d for d in t.result()["diagnoses"]}


def exchange(t: Transcript) -> None:
    """A request and its response after the handshake: client seq 1101, server 5051."""
    handshake(t)
    t.send(0.01, ">", "PA", 1001, 5001, plen=100)
    t.send(0.02, "<", "PA", 5001, 1101, plen=50)
    t.send(0.03, ">", "A", 1101, 5051)


def test_a_reset_without_ack_answering_data_is_a_peer_gone():
    """The server's host lost the socket (a reboot, a killed process whose FIN was lost):
    the client's next request is answered as RFC 9293 3.10.7.1 says a CLOSED port answers:
    RST, its sequence number the request's acknowledgment, no ACK."""
    t = Transcript()
    exchange(t)
    t.send(10.0, ">", "PA", 1101, 5051, plen=30)
    t.send(10.001, "<", "R", 5051)
    found = diagnoses(t, 11.0)
    assert set(found) == {"peer_gone"}
    gone = found["peer_gone"]
    assert (gone["side"], gone["count"], gone["observed"]) == ("server", 1, True)
    assert gone["evidence"][0]["last_heard"] == 0.02  # the server's response
    assert gone["by_reset"] == 1


def test_an_abort_from_a_live_socket_is_not_a_peer_gone_but_loses_the_request():
    """The same RST with an ACK comes from a socket that exists (close() with the request
    unread, SO_LINGER 0): the request is lost, the peer did not vanish."""
    t = Transcript()
    exchange(t)
    t.send(10.0, ">", "PA", 1101, 5051, plen=30)
    t.send(10.001, "<", "RA", 5051, 1131)
    found = diagnoses(t, 11.0)
    assert set(found) == {"reset_with_data_loss"}
    lost = found["reset_with_data_loss"]
    assert (lost["side"], lost["count"], lost["bytes_lost"]) == ("server", 1, 30)
    assert not lost["observed"] and lost["inferred_from"]


def test_an_abort_after_a_completed_exchange_loses_nothing():
    t = Transcript()
    exchange(t)
    t.send(0.05, ">", "RA", 1101, 5051)  # the client, SO_LINGER 0, all read
    assert diagnoses(t, 1.0) == {}


def test_segments_sent_again_unanswered_are_a_peer_gone_by_silence():
    t = Transcript()
    exchange(t)
    for ts in (5.0, 5.2, 5.6, 6.4, 8.0):  # the first, then 4 sent again
        t.send(ts, ">", "PA", 1101, 5051, plen=30)
    t.send(11.2, ">", "RA", 1131, 5051)  # tcp_retries2 ran out
    found = diagnoses(t, 12.0)
    gone = found["peer_gone"]
    assert (gone["side"], gone["count"], gone["observed"]) == ("server", 1, False)
    assert gone["by_silence"] == 1 and "no answer" in gone["inferred_from"]


def test_segments_sent_again_with_answers_between_are_loss_not_a_peer_gone():
    t = Transcript()
    exchange(t)
    for k in range(4):  # each sent twice, each then acknowledged: a lossy path
        ts = 5.0 + k
        seq = 1101 + 30 * k
        t.send(ts, ">", "PA", seq, 5051, plen=30)
        t.send(ts + 0.2, ">", "PA", seq, 5051, plen=30)
        t.send(ts + 0.21, "<", "A", 5051, seq + 30)
    assert "peer_gone" not in diagnoses(t, 20.0)


@pytest.mark.parametrize(("ack", "race"), [(5051, True), (5052, False)])
def test_a_request_crossing_the_servers_fin_is_a_keepalive_race(ack, race):
    """The server closes the connection idle for 2 s; the client's request, sent before the
    FIN arrived, does not acknowledge it, and the server's closed socket answers it with a
    RST. A request that acknowledges the FIN was sent knowing: not a race."""
    t = Transcript()
    exchange(t)
    t.send(2.02, "<", "FA", 5051, 1101)
    t.send(2.0205, ">", "PA", 1101, ack, plen=40)
    t.send(2.021, "<", "R", 5052)
    found = diagnoses(t, 3.0)
    assert ("keepalive_race" in found) == race
    if race:
        d = found["keepalive_race"]
        assert (d["side"], d["count"], d["observed"]) == ("server", 1, True)
        assert d["server_idle_timeout"] == pytest.approx(2.0, rel=0.05)
        # idle as captured, 2.0005 s, less the trip to the client and back that the
        # handshake shows (its SYN/ACK to ACK, 1 ms)
        assert d["client_reuse_idle_min"] == pytest.approx(1.9995, abs=1e-6)
        assert "reset_with_data_loss" not in found  # the race says why the request was lost


def test_a_connect_that_needed_its_syn_again_is_slow():
    """The first SYN never reached the listener (dropped): one SYN-ACK, 1 s late."""
    t = Transcript()
    t.send(0.0, ">", "S", 1000)
    t.send(1.0, ">", "S", 1000)
    t.send(1.001, "<", "SA", 5000, 1001)
    t.send(1.002, ">", "A", 1001, 5001)
    d = diagnoses(t, 2.0)["syn_retransmitted"]
    assert (d["side"], d["count"], d["syn_dropped"], d["synack_lost"]) == ("client", 1, 1, 0)
    assert d["added_latency_min"] == d["added_latency_max"] == pytest.approx(1.0)


def test_a_lost_synack_is_told_from_a_dropped_syn():
    t = Transcript()
    t.send(0.0, ">", "S", 1000)
    t.send(0.001, "<", "SA", 5000, 1001)  # lost after the capture point
    t.send(1.0, ">", "S", 1000)
    t.send(1.001, "<", "SA", 5000, 1001)
    t.send(1.002, ">", "A", 1001, 5001)
    d = diagnoses(t, 2.0)["syn_retransmitted"]
    assert (d["syn_dropped"], d["synack_lost"]) == (0, 1)


@pytest.mark.parametrize("rst", [False, True])
def test_a_handshake_ack_the_listener_did_not_take_is_a_full_accept_queue(rst):
    """The client's ACK was captured, yet the listener sends its SYN-ACK again (its accept
    queue full, the ACK dropped), or answers the ACK with a RST (tcp_abort_on_overflow=1);
    not a peer that vanished."""
    t = Transcript()
    handshake(t)
    if rst:
        t.send(0.003, "<", "R", 5001)
    else:
        t.send(1.0, "<", "SA", 5000, 1001)
    found = diagnoses(t, 2.0)
    assert set(found) == {"accept_queue_overflow"}
    d = found["accept_queue_overflow"]
    assert (d["side"], d["count"], d["by_rst"], d["by_drop"]) == (
        "server", 1, int(rst), int(not rst))


@pytest.mark.parametrize("client_ts,kept_before,cookie", [
    (False, True, True),  # Linux's cookie for a client without timestamps: no options left
    (False, False, True),  # the same, the listener never seen keeping them: said so
    (True, True, False),  # with timestamps a cookie keeps them (hidden in the timestamp)
])
def test_a_synack_without_the_options_offered_is_a_syn_cookie(client_ts, kept_before, cookie):
    """A SYN offering window scaling and SACK; the listener's SYN-ACK carries neither (nor
    timestamps): the SYN cookie a full request queue (or tcp_syncookies=2) makes for a
    client that sent no timestamps. An inference: a listener with both turned off answers
    so too, which the service's other SYN-ACKs tell apart."""
    offered = SYN_SACK | (SYN_TS if client_ts else 0)
    t = Transcript()
    if kept_before:  # an earlier client, answered with the options
        other = (C[0], 40001)
        t.send(0.0, ">", "S", 700, src=other, wscale=7, synopt=SYN_SACK)
        t.send(0.001, "<", "SA", 900, 701, src=other, wscale=7, synopt=SYN_SACK)
        t.send(0.002, ">", "A", 701, 901, src=other)
    t.send(1.0, ">", "S", 1000, wscale=7, synopt=offered)
    t.send(1.001, "<", "SA", 5000, 1001, synopt=offered & SYN_TS)
    t.send(1.002, ">", "A", 1001, 5001)
    found = diagnoses(t, 2.0)
    assert set(found) == ({"accept_queue_overflow"} if cookie else set())
    if cookie:
        d = found["accept_queue_overflow"]
        assert (d["side"], d["count"], d["by_syn_cookie"], d["by_drop"], d["observed"]) == (
            "server", 1, 1, 0, False)
        assert d["options_kept_otherwise"] is kept_before
        assert ("turned off" in d["verdict"]) is not kept_before
        assert d["evidence"][0]["packets"][1]["ts"] == 1.001


def test_a_zero_window_for_seconds_is_a_stalled_receiver():
    t = Transcript()
    exchange(t)
    t.send(1.0, ">", "PA", 1101, 5051, plen=1000)
    t.send(1.01, "<", "A", 5051, 2101, win=0)
    t.send(1.2, ">", "A", 2100, 5051, plen=1)  # window probes
    t.send(1.6, ">", "A", 2100, 5051, plen=1)
    t.send(4.01, "<", "A", 5051, 2101, win=65535)
    d = diagnoses(t, 5.0)["zero_window_stall"]
    assert (d["side"], d["count"], d["recovered"]) == ("server", 1, 1)
    assert d["longest"] == pytest.approx(3.0)


def test_a_short_zero_window_is_no_stall():
    t = Transcript()
    exchange(t)
    t.send(1.01, "<", "A", 5051, 1101, win=0)
    t.send(1.5, "<", "A", 5051, 1101, win=65535)
    assert "zero_window_stall" not in diagnoses(t, 5.0)


@pytest.mark.parametrize(("step", "pressure"), [(1, True), (2, False)])
def test_time_wait_holding_every_port_in_use_is_pressure(step, pressure):
    """150 connections in 15 s, each closed first by the client: all 150 in TIME_WAIT at
    once. From 150 consecutive ports (a range of 150: every one held) it is pressure; from
    every other port of 300 (as Linux picks them in a large range), it is not."""
    t = Transcript()
    for i in range(150):
        ts, src = i * 0.1, (C[0], 40000 + step * i)
        handshake(t, ts=ts, src=src)
        t.send(ts + 0.01, ">", "FA", 1001, 5001, src=src)
        t.send(ts + 0.011, "<", "FA", 5001, 1002, src=src)
        t.send(ts + 0.012, ">", "A", 1002, 5002, src=src)
    found = diagnoses(t, 30.0)
    assert ("time_wait_pressure" in found) == pressure
    if pressure:
        d = found["time_wait_pressure"]
        assert (d["side"], d["count"], d["time_wait_peak"], d["host"]) == (
            "client", 150, 150, "10.0.0.1")
        assert d["ports_seen"] == [40000, 40149] and d["share_of_ports"] == 1.0


def test_time_wait_pressure_is_said_for_each_client_host():
    """Two client hosts of one service, each holding every port it used in TIME_WAIT: a
    diagnosis for each host (the second did not take the first's place)."""
    t = Transcript()
    for h, host in enumerate((b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x03")):
        for i in range(120 - 20 * h):
            ts, src = 100 * h + i * 0.1, (host, 40000 + i)
            handshake(t, ts=ts, src=src)
            t.send(ts + 0.01, ">", "FA", 1001, 5001, src=src)
            t.send(ts + 0.011, "<", "FA", 5001, 1002, src=src)
            t.send(ts + 0.012, ">", "A", 1002, 5002, src=src)
    t.finish(300.0)
    found = [d for d in t.result()["diagnoses"] if d["name"] == "time_wait_pressure"]
    assert [(d["host"], d["count"], d["time_wait_peak"]) for d in found] == [
        ("10.0.0.1", 120, 120), ("10.0.0.3", 100, 100)]


def test_refused_connections_are_grouped_into_bursts():
    """Refused at 0-2 s and 20-21 s, accepted at 10 s and 30 s: two bursts of a service
    that accepted before and after."""
    t = Transcript()
    handshake(t, ts=-5.0, src=(C[0], 42000))
    for i, ts in enumerate((0.0, 1.0, 2.0, 20.0, 21.0)):
        src = (C[0], 41000 + i)
        t.send(ts, ">", "S", 1000, src=src)
        t.send(ts + 0.001, "<", "RA", 0, 1001, src=src)
    handshake(t, ts=30.0, src=(C[0], 42001))
    d = diagnoses(t, 40.0)["refused_burst"]
    assert (d["count"], len(d["bursts"]), d["accepted_before_and_after"]) == (5, 2, True)
    assert [(b["from"], b["to"], b["count"]) for b in d["bursts"]] == [
        (0.0, 2.0, 3), (20.0, 21.0, 2)]


def test_diagnoses_come_worst_kind_first():
    """A leak before TIME_WAIT pressure of forty times as many connections: the kinds are
    ranked (sockets or data lost, then failed or stalled connections, then pressure), the
    count only within a kind. Two kernel samples read as one capture: close_wait_leak's 5
    sockets left in CLOSE_WAIT, time_wait_pressure's 200 connections."""
    from pathlib import Path

    from pcapstate.derive.diagnoses import SEVERITY
    from pcapstate.pipeline import analyze

    samples = Path(__file__).resolve().parent.parent / "samples"
    result = analyze([str(samples / "close_wait_leak.pcap"),
                      str(samples / "time_wait_pressure.pcap")])
    assert [(d["name"], d["count"]) for d in result["diagnoses"]] == [
        ("close_wait_leak", 5), ("time_wait_pressure", 200)]
    for name in ("syn_cookies.pcap", "close_wait_reset.pcap", "refused_burst.pcap"):
        found = analyze([str(samples / name)])["diagnoses"]
        ranks = [(SEVERITY.index(d["name"]), -d["count"]) for d in found]
        assert ranks == sorted(ranks) and found, name


@pytest.mark.parametrize("held", [4, 8, 1 << 14])
def test_time_wait_examples_do_not_depend_on_how_facts_are_counted(monkeypatch, held):
    """The diagnoses count their connections' facts a batch at a time (HELD; a Dask run's
    batches fall elsewhere): a TIME_WAIT whose 4-tuple a new connection took over comes
    first among the examples even when 5 others were counted in an earlier batch. Eight
    connections from one client end in TIME_WAIT by their timer, then a ninth whose
    4-tuple is taken over by a SYN while in TIME_WAIT."""
    from pcapstate.derive import diagnoses

    monkeypatch.setattr(diagnoses, "HELD", held)
    t = Transcript(time_wait=10.0)

    def connection(ts, port, isn=1000):
        src = (C[0], port)
        handshake(t, ts, isn, 5000, src=src)
        t.send(ts + 0.01, ">", "FA", isn + 1, 5001, src=src)
        t.send(ts + 0.011, "<", "FA", 5001, isn + 2, src=src)
        t.send(ts + 0.012, ">", "A", isn + 2, 5002, src=src)

    for k in range(8):
        connection(k * 0.1, 40000 + k)
    connection(20.0, 41000)
    connection(24.0, 40100)  # the first eight retire by their timers meanwhile
    connection(25.0, 41000, isn=900000)  # takes over the ninth's 4-tuple in TIME_WAIT
    t.finish(300.0)
    (d,) = [d for d in t.result()["diagnoses"] if d["name"] == "time_wait_pressure"]
    assert d["reused_in_time_wait"] == 1
    assert [e["conn_id"] for e in d["evidence"]] == [9, 1, 2, 3, 4]
