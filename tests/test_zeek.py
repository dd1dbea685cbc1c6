"""Zeek's view (pcapstate/track/zeek_view.py) as transcripts (tests/transcript.py): segments
in, through the one engine, the `zeek` part of the connection's record out (history,
conn_state, conn.log fields, and `zeek_later` when Zeek began other connections on the
4-tuple). Each expected value is one Zeek itself logged for the same situation, in its btest
baselines (testing/btest/Baseline/ in the zeek repository, named per test) or as main.zeek's
conn_state documents it."""

from typing import Any

import pytest

from pcapstate.vocab import ACK as A
from pcapstate.vocab import FIN as F
from pcapstate.vocab import PSH as P
from pcapstate.vocab import RST as R
from pcapstate.vocab import SYN as S
from tests.transcript import FLAGS, Transcript

C, SV = 0, 1  # the sender of a segment: pcapstate's client or server
CLIENT_IP, SERVER_IP = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])


def letters(flags: int) -> str:
    return "".join(k for k, bit in FLAGS.items() if flags & bit)


def feed(rows, ports=(40000, 80), cut=(), **settings: Any) -> list[dict[str, Any]]:
    """rows: (ts, sender, flags, seq, ack, payload length[, window]), between the client
    10.0.0.1 and the server 10.0.0.2; `ports`: the first sender's source and destination
    ports; `cut`: the rows (by number) whose payload was not captured whole. Every
    connection's record; each names the client as the test means it."""
    t = Transcript(**settings)
    here, there = (CLIENT_IP, ports[0]), (SERVER_IP, ports[1])
    client, server = (here, there) if rows[0][1] == C else ((CLIENT_IP, ports[1]),
                                                            (SERVER_IP, ports[0]))
    for i, (ts, sender, flags, seq, ack, plen, *win) in enumerate(rows):
        t.send(ts, ">" if sender == C else "<", letters(flags), seq, ack, plen,
               win[0] if win else 512, src=client, dst=server, cut=i in cut)
    records = t.finish(rows[-1][0] + 100)
    for r in records:
        assert r["client"] == f"10.0.0.1:{client[1]}", r["client"]
    return records


def timed(segments):
    """segments: (sender, flags, seq, ack, payload length[, window]), 1 ms apart."""
    return [(i / 1000, *s) for i, s in enumerate(segments)]


def run(segments, ports=(40000, 80), cut=(), **settings: Any) -> dict[str, Any]:
    """The conn.log fields of Zeek's one connection over `segments` (1 ms apart), which
    pcapstate too takes as one connection."""
    [record] = feed(timed(segments), ports, cut, **settings)
    assert "zeek_later" not in record, record["zeek_later"]
    return record["zeek"]


HANDSHAKE = [(C, S, 100, 0, 0), (SV, S | A, 900, 101, 0), (C, A, 101, 901, 0)]
CLOSE = [(C, F | A, 111, 921, 0), (SV, F | A, 921, 112, 0), (C, A, 112, 922, 0)]
EXCHANGE = [(C, P | A, 101, 901, 10), (SV, A, 901, 111, 0), (SV, P | A, 901, 111, 20),
            (C, A, 111, 921, 0)]


@pytest.mark.parametrize(("name", "segments", "history", "state"), [
    # the everyday connection (core.tcp.flip-without-syn shows ^hADadFf for one without SYN)
    ("normal", HANDSHAKE + EXCHANGE + CLOSE, "ShADadFf", "SF"),
    ("attempt", [(C, S, 100, 0, 0)], "S", "S0"),
    ("attempt repeated", [(C, S, 100, 0, 0), (C, S, 100, 0, 0)], "S", "S0"),
    # REJ: "Sr", two SYNs and two RSTs with the same sequence numbers making one letter each
    # (a SYN after the responder's RST would be a new connection: IsReuse, once closed)
    ("rejected", [(C, S, 100, 0, 0), (C, S, 100, 0, 0), (SV, R | A, 0, 101, 0),
                  (SV, R | A, 0, 101, 0)], "Sr", "REJ"),
    # conn_state-RST-behavior: SR and SaR are RSTOS0, SaFR is OTH
    ("syn then rst", [(C, S, 100, 0, 0), (C, R, 101, 0, 0)], "SR", "RSTOS0"),
    ("syn, ack, rst", [(C, S, 100, 0, 0), (SV, A, 900, 101, 0), (C, R, 101, 0, 0)], "SaR",
     "RSTOS0"),
    ("syn, ack, fin, rst", [(C, S, 100, 0, 0), (SV, A, 900, 101, 0), (C, F, 101, 0, 0),
                            (C, R, 102, 0, 0)], "SaFR", "OTH"),
    ("lone rst", [(C, R, 100, 0, 0)], "R", "OTH"),
    ("established", HANDSHAKE + EXCHANGE, "ShADad", "S1"),
    ("synack is enough for S1", HANDSHAKE[:2], "Sh", "S1"),
    ("originator aborts", HANDSHAKE + EXCHANGE + [(C, R | A, 111, 921, 0)], "ShADadR",
     "RSTO"),
    ("responder aborts", HANDSHAKE + EXCHANGE + [(SV, R | A, 921, 111, 0)], "ShADadr",
     "RSTR"),
    ("originator closes, no answer", HANDSHAKE + EXCHANGE + CLOSE[:1], "ShADadF", "S2"),
    ("responder closes, no answer", HANDSHAKE + EXCHANGE + [(SV, F | A, 921, 111, 0)],
     "ShADadf", "S3"),
    ("syn then fin", [(C, S, 100, 0, 0), (C, F, 101, 0, 0)], "SF", "SH"),
    ("midstream", [(C, P | A, 5000, 7000, 10), (SV, P | A, 7000, 5010, 10),
                   (C, A, 5010, 7010, 0)], "DdA", "OTH"),
    ("syn+fin", [(C, S | F, 100, 0, 0)], "Q", "SH"),  # SYN_SENT, then CLOSED by the FIN
    ("fin+rst", HANDSHAKE + [(C, F | R | A, 101, 901, 0)], "ShAI", "RSTO"),
])
def test_history_and_conn_state(name, segments, history, state):
    z = run(segments)
    # the client's first segment, from a port no server's, never flips the roles
    assert (z["history"], z["conn_state"], z["orig"]) == (history, state, "client")


def test_fin_sent_again_at_the_same_place_is_one_letter():
    z = run(HANDSHAKE + EXCHANGE + CLOSE[:1] + CLOSE)
    assert z["history"] == "ShADadFf"


def test_retransmissions_are_logged_logarithmically():
    """core.tcp.tcp-dups: the second T appears at the tenth retransmission."""
    resend = [(C, P | A, 101, 901, 10)] * 10
    z = run(HANDSHAKE + EXCHANGE[:1] + resend[:9])
    assert z["history"] == "ShADT"
    z = run(HANDSHAKE + EXCHANGE[:1] + resend)
    assert z["history"] == "ShADTT"


def test_zero_window_is_w():
    z = run(HANDSHAKE + [(SV, A, 901, 101, 0, 0)])
    assert z["history"] == "ShAaw"


def test_a_synack_from_a_server_port_flips_the_roles():
    """core.tcp.rxmit-history conn-2: a lone SYN-ACK from port 80 is logged "^h", OTH."""
    z = run([(SV, S | A, 900, 101, 0)], ports=(80, 40000))
    assert (z["history"], z["conn_state"], z["orig"]) == ("^h", "OTH", "client")


def flipped_at_creation(flags: int, sport: int, dport: int) -> bool:
    """Whether Zeek made the receiver of a connection's first segment (these flags, from
    `sport` to `dport`) its originator: the `orig` it logs is not the sender, and the history
    opens with ^ (the one must go with the other)."""
    t = Transcript()
    t.send(0.0, ">", letters(flags), 7, 9 if flags & A else 0,
           src=(CLIENT_IP, sport), dst=(SERVER_IP, dport))
    [record] = t.finish(100.0)
    z = record["zeek"]
    sender = "client" if record["client"] == f"10.0.0.1:{sport}" else "server"
    flipped = z["orig"] != sender
    assert z["history"].startswith("^") == flipped, (z, record["client"])
    return flipped


def test_flips_at_creation():
    assert not flipped_at_creation(S, 80, 40000)  # a plain SYN never flips
    assert flipped_at_creation(S | A, 80, 40000)
    assert flipped_at_creation(A, 80, 40000)
    assert not flipped_at_creation(A, 40000, 80)
    assert flipped_at_creation(A, 80, 443) and not flipped_at_creation(A, 443, 80)
    # Zeek's list, not the well-known range: MySQL's 3306 is in it (Zeek 8.1), 8443 and
    # 1000 are not
    assert flipped_at_creation(A, 3306, 50000) and flipped_at_creation(A, 20000, 50000)
    assert not flipped_at_creation(A, 8443, 50000)
    assert not flipped_at_creation(A, 1000, 50000)


def test_flips_by_zeeks_ports_in_one_capture():
    """Several connections from servers' ports (to pcapstate, by its own rule: the
    ephemeral port is the client's), each flipped or not by Zeek's list."""
    t = Transcript()
    ports = [3306, 8443, 1000, 443, 20000, 5001]
    for i, port in enumerate(ports):
        t.send(i * 0.1, ">", "AP", 7, 9, plen=10, src=(SERVER_IP, port),
               dst=(CLIENT_IP, 50000 + i))
    records = t.finish(100.0)
    assert [r["server"] for r in records] == [f"10.0.0.2:{port}" for port in ports]
    assert [r["zeek"]["history"] for r in records] == ["^d", "D", "D", "^d", "^d", "D"]
    assert [r["zeek"]["orig"] for r in records] == \
        ["client", "server", "server", "client", "client", "server"]


def test_bytes_come_from_sequence_numbers():
    f = run(HANDSHAKE + EXCHANGE + CLOSE)
    assert (f["orig_bytes"], f["resp_bytes"], f["orig_pkts"], f["resp_pkts"]) == (10, 20, 6, 4)
    assert f["duration"] == pytest.approx(0.008)  # the last ACK, after both FINs, not counted
    single = run([(C, S, 100, 0, 0)])
    assert single["duration"] is single["orig_bytes"] is None  # Zeek logs "-"


@pytest.mark.parametrize(("second", "history", "state"), [
    ((SV, R | A, 901, 101, 0), "^hr", "RSTRH"),  # the responder's SYN-ACK, then its RST
    ((SV, F | A, 901, 101, 0), "^hf", "SHR"),  # the responder's SYN-ACK, then its FIN
])
def test_responder_only(second, history, state):
    """Only the responder speaks (no SYN seen): Zeek flips at the SYN-ACK from port 80."""
    z = run([(SV, S | A, 900, 101, 0), second], ports=(80, 40000))
    assert (z["history"], z["conn_state"], z["orig"]) == (history, state, "client")


def test_a_synack_captured_before_its_syn_flips_the_roles():
    """core.connection_flipped (trace tcp/handshake-reorder.trace): "Hs^ADadFf"."""
    reordered = [HANDSHAKE[1], HANDSHAKE[0], *HANDSHAKE[2:], *EXCHANGE, *CLOSE]
    z = run(reordered, ports=(5555, 40000))  # no likely server port: no flip at creation
    assert (z["history"], z["conn_state"], z["orig"]) == ("Hs^ADadFf", "SF", "client")


def test_a_synack_seen_first_flips_at_the_next_ack_or_data():
    """core.tcp.flip-without-syn (Zeek 5.1 on, zeek/zeek#2191; trace
    tcp/http-on-irc-port-missing-syn.pcapng): the first packet is the server's SYN-ACK from
    port 80 to port 6669, both likely server ports, so no flip at creation; the client's
    ACK that follows flips the roles and the history becomes ^h: "^hADadFf", SF, the
    client the originator. Without a likely port at all the same happens."""
    rows = [HANDSHAKE[1], HANDSHAKE[2], *EXCHANGE, *CLOSE]
    for ports in ((80, 6669), (5555, 40000)):
        z = run(rows, ports=ports)
        assert (z["history"], z["conn_state"], z["orig"]) == ("^hADadFf", "SF", "client")
        assert (z["orig_pkts"], z["resp_pkts"]) == (5, 4)  # each packet on its sender's side
    # a FIN or a RST as the second packet does not flip; the server's own ACK does
    z = run([HANDSHAKE[1], (SV, A, 901, 101, 0)], ports=(5555, 40000))
    assert (z["history"], z["orig"]) == ("^ha", "client")
    z = run([HANDSHAKE[1], (SV, F | A, 901, 101, 0)], ports=(5555, 40000))
    assert (z["history"], z["orig"]) == ("HF", "server")


def test_an_offload_frame_of_ip_length_zero(tmp_path):
    """A segmentation-offload frame captured on its sender (IPv4 total length 0, 3,000
    bytes of payload), through the decoder: zeek -C reads the TCP payload as far as it was
    captured and adds no IP bytes (ConnSize adds TotalLen(), 0); Zeek checking checksums
    drops the packet before any connection sees it (IPAnalyzer::AnalyzePacket,
    "ip_hdr_len_zero", zeek/zeek#1831), so the server's ACK of its data is a content gap.
    From Zeek's source; no baseline has such a frame."""
    import dpkt

    from pcapstate.pipeline import analyze
    from pcapstate.settings import Settings

    def frame(src, dst, sport, dport, flags, seq, ack, payload=b"", zero=False):
        tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags,
                           win=512, data=payload)
        ip = dpkt.ip.IP(src=src, dst=dst, p=6, ttl=64, data=tcp)
        raw = bytearray(bytes(ip))  # lengths and checksums computed
        if zero:
            raw[2:4] = b"\0\0"
        return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + bytes(raw)

    c, sv = (CLIENT_IP, 40000), (SERVER_IP, 80)
    frames = [frame(*c[:1], *sv[:1], c[1], sv[1], S, 100, 0),
              frame(*sv[:1], *c[:1], sv[1], c[1], S | A, 900, 101),
              frame(*c[:1], *sv[:1], c[1], sv[1], A, 101, 901),
              frame(*c[:1], *sv[:1], c[1], sv[1], A | P, 101, 901, bytes(3000), zero=True),
              frame(*sv[:1], *c[:1], sv[1], c[1], A, 901, 3101)]
    path = tmp_path / "tso.pcap"
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f, snaplen=65535)
        for i, fr in enumerate(frames):
            w.writepkt(fr, 1.0 + i / 1000)

    def zeek(**settings: Any) -> dict[str, Any]:
        records: list[dict[str, Any]] = []
        analyze([str(path)], Settings(**settings), on_record=records.append)
        [record] = records
        return record["zeek"]

    z = zeek()
    assert (z["history"], z["orig_bytes"], z["orig_pkts"], z["orig_ip_bytes"]) == \
        ("ShADa", 3000, 3, 2 * 40)
    z = zeek(zeek_checksums=True)  # and the server's ACK of the data passes a gap
    assert (z["history"], z["orig_pkts"], z["orig_ip_bytes"], z["missed_bytes"]) == \
        ("ShAaG", 2, 2 * 40, 3000)


def gaps(segments, cut=()):
    """Like `run`, with the payload of the segments numbered in `cut` not captured."""
    z = run(segments, cut=cut)
    return z["history"], z["missed_bytes"]


def test_content_gaps():
    """TCP_Reassembler: payload never seen below the peer's ACK is a gap (G for the
    originator's data, g for the responder's), counted in missed_bytes."""
    request = [(C, P | A, 101, 901, 10), (SV, A, 901, 111, 0)]
    assert gaps(HANDSHAKE + request + [(C, F | A, 111, 901, 0), (SV, F | A, 901, 112, 0)]) \
        == ("ShADaFf", 0)
    # the FIN acknowledges 20 bytes of the responder's that were never seen
    assert gaps(HANDSHAKE + request + [(C, F | A, 111, 921, 0)]) == ("ShADaFg", 20)
    # the request not captured, but acknowledged
    assert gaps(HANDSHAKE + request[1:] + [(C, F | A, 111, 901, 0)]) == ("ShAaGF", 10)
    # captured, but cut by the snaplen: the same to Zeek
    assert gaps(HANDSHAKE + request, cut={3}) == ("ShADaG", 10)
    # out of order: the second half first, then the first (T to Zeek, as anything below
    # the highest sequence number); acknowledged after: no gap
    halves = [(C, P | A, 106, 901, 5), (C, P | A, 101, 901, 5), (SV, A, 901, 111, 0)]
    assert gaps(HANDSHAKE + halves) == ("ShADTa", 0)
    # the first half never seen: only it is missed
    assert gaps(HANDSHAKE + [halves[0], halves[2]]) == ("ShADaG", 5)
    # an ACK of the FIN alone is not a gap (the FIN's octet is capped off)
    assert gaps(HANDSHAKE + [(C, F | A, 101, 901, 0), (SV, A, 901, 102, 0)]) == ("ShAFa", 0)


def test_gaps_in_zeeks_baseline_situation():
    """core.tcp.miss-end-data: the responder's 2,902 bytes before its FIN were never
    captured; the originator's ACK of the FIN reveals them: SF, ShADafgF, missed 2902."""
    segments = HANDSHAKE + [(C, P | A, 101, 901, 10), (SV, A, 901, 111, 0),
                            (SV, F | A, 901 + 2902, 111, 0), (C, A, 111, 901 + 2903, 0),
                            (C, F | A, 111, 901 + 2903, 0), (SV, A, 3804, 112, 0)]
    z = run(segments)
    assert (z["history"], z["conn_state"], z["missed_bytes"]) == ("ShADafgF", "SF", 2902)


def test_no_gap_where_zeek_reports_none():
    # a RST acknowledging unseen data: its sender is reset, not clean
    assert gaps(HANDSHAKE + [(SV, R | A, 901, 200, 0)]) == ("ShAr", 0)
    # a connection seen from the middle: an ACK of 2 or less is not a gap
    assert gaps([(C, A, 5000, 7001, 0), (SV, A, 7000, 5002, 0)]) == ("Aa", 0)


def test_gap_letters_are_logarithmic():
    segments = list(HANDSHAKE)
    for k in range(12):  # twelve holes, each revealed by its own ACK
        segments.append((SV, A, 901, 111 + 20 * k, 0))
    history, missed = gaps(segments)
    assert history == "ShAaGG" and missed == 12 * 20 - 10


# ---- Zeek's timers and connection reuse: one of pcapstate's connections, several of Zeek's

def zeek_lines(rows, **settings: Any):
    """rows: (ts, sender, flags, seq, ack, payload length), client 10.0.0.1:40000, server
    10.0.0.2:80; per pcapstate connection, its Zeek connections as (ts, history,
    conn_state, orig_pkts, resp_pkts)."""
    return [[(z["ts"], z["history"], z["conn_state"], z["orig_pkts"], z["resp_pkts"])
             for z in (r["zeek"], *r.get("zeek_later", ()))] for r in feed(rows, **settings)]


def test_an_unanswered_syn_retried_past_the_attempt_timer_is_several_connections():
    """AttemptTimer: 5 s after the originator's SYN with no answer, Zeek logs the attempt
    and forgets it; Linux's retries at 1, 3, 7 and 15 s make three lines of S0."""
    rows = [(t, C, S, 100, 0, 0) for t in (0.0, 1.0, 3.0, 7.0, 15.0)]
    assert zeek_lines(rows) == [[(0.0, "S", "S0", 3, 0), (7.0, "S", "S0", 1, 0),
                                 (15.0, "S", "S0", 1, 0)]]
    # the timer is due at 5 s exactly: a retry then is already a new connection (retries
    # a second apart, as Linux's first ones, tcp_syn_linear_timeouts)
    linear = [(float(t), C, S, 100, 0, 0) for t in range(5)]
    assert len(zeek_lines([*linear, (5.0, C, S, 100, 0, 0)])[0]) == 2
    assert len(zeek_lines([*linear, (4.999, C, S, 100, 0, 0)])[0]) == 1


def test_the_attempt_timer_spares_an_answered_handshake():
    rows = [(0.0, C, S, 100, 0, 0), (1.0, SV, S | A, 900, 101, 0), (9.0, C, A, 101, 901, 0)]
    assert zeek_lines(rows) == [[(0.0, "ShA", "S1", 2, 1)]]


def handshake_at(t):
    return [(t, C, S, 100, 0, 0), (t + 0.1, SV, S | A, 900, 101, 0),
            (t + 0.2, C, A, 101, 901, 0), (t + 0.3, C, P | A, 101, 901, 10),
            (t + 0.4, SV, A, 901, 111, 0)]


@pytest.mark.parametrize(("idle", "lines"), [(299.9, 1), (300.0, 2)])
def test_five_minutes_of_silence_end_zeeks_connection(idle, lines):
    """tcp_inactivity_timeout: 5 minutes without a packet; the next packet (data here)
    starts a connection that Zeek sees from the middle."""
    rows = handshake_at(0.0) + [(0.4 + idle, C, P | A, 111, 901, 10)]
    [got] = zeek_lines(rows)
    assert len(got) == lines
    if lines == 2:
        assert got[1] == (300.4, "D", "OTH", 1, 0)


def test_a_closed_connection_is_kept_five_seconds():
    """ConnDeleteTimer: tcp_close_delay after the close completed (the second FIN); a FIN
    sent again later than that is a connection of its own, seen from the middle."""
    closing = [(0.5, C, F | A, 111, 901, 0), (0.6, SV, F | A, 901, 112, 0)]
    for late, lines in ((5.599, 1), (5.6, 2)):
        [got] = zeek_lines(handshake_at(0.0) + closing + [(late, SV, F | A, 901, 112, 0)])
        assert len(got) == lines, late
    assert got[0][1:3] == ("ShADaFf", "SF")
    assert got[1] == (5.6, "^f", "SHR", 0, 1)  # from port 80: its receiver is the originator


def test_a_syn_on_a_closed_connection_is_a_new_one_even_with_the_old_sequence_number():
    """IsReuse: once an endpoint has closed, any SYN starts a new connection (pcapstate
    keeps a SYN with the old initial sequence number in the old one)."""
    rows = handshake_at(0.0) + [(0.5, C, R | A, 111, 901, 0), (1.0, C, S, 100, 0, 0)]
    got = zeek_lines(rows)
    assert len(got) == 1  # one connection to pcapstate
    assert [line[1:3] for line in got[0]] == [("ShADaR", "RSTO"), ("S", "S0")]


def test_a_syn_with_a_new_sequence_number_is_a_new_connection():
    """IsReuse on a connection not closed: a SYN with another initial sequence number
    (Zeek's SYN_seq_jump); the same SYN again is the same connection."""
    again = zeek_lines([(0.0, C, S, 100, 0, 0), (1.0, C, S, 100, 0, 0)])
    assert [len(c) for c in again] == [1]
    jump = zeek_lines([(0.0, C, S, 100, 0, 0), (1.0, C, S, 5000, 0, 0)])
    assert sum(len(c) for c in jump) == 2


def after_bad_checksums(ts, flags, seq, ack=0):
    """The histories of Zeek's connections on a 4-tuple where the client's SYN and then an
    ACK came with a bad checksum (at 0 and 3 s), then this segment of the client's at `ts`.
    (A second bad SYN would already be a new connection to IsReuse: see below.)"""
    t = Transcript(zeek_checksums=True)  # in a capture, what has the decoder mark bad_sum
    t.send(0.0, ">", "S", 100, win=512, bad_sum=True)
    t.send(3.0, ">", "A", 101, 901, win=512, bad_sum=True)
    t.send(ts, ">", flags, seq, ack, win=512)
    [record] = t.finish(ts + 100)
    return [z["history"] for z in (record["zeek"], *record.get("zeek_later", ()))]


def test_a_connection_of_bad_checksums_only_expires_after_five_quiet_seconds():
    """With checksums checked, segments with bad ones never move Zeek's states: its expire
    timer ends a connection whose endpoints are both INACTIVE once it has been quiet for
    tcp_connection_linger (and `ts` is not refreshed by such segments: the 5 s count from
    the first one, at 0)."""
    assert after_bad_checksums(5.0, "A", 101, 901) == ["CA"]
    assert after_bad_checksums(5.001, "A", 101, 901) == ["C", "A"]
    # and a SYN finds the originator's sequence space unset: to IsReuse, a new connection
    # (before the 5 s are up)
    assert after_bad_checksums(4.0, "S", 100) == ["C", "S"]


def test_a_close_waits_while_data_is_pending():
    """ConnectionClosed defers a close while the closing endpoint's data is not all
    delivered (a hole before its FIN) or its peer holds data not yet acknowledged
    (TCP_Reassembler::DataPending). Here neither close ever completes: so the final ACK
    still counts in the duration (only both closes stop the clock) and no delete timer
    ends the connection 5 s later."""
    rows = HANDSHAKE + [(C, P | A, 111, 901, 10),  # [101, 111) never seen: a hole
                        (C, F | A, 121, 901, 0), (SV, F | A, 901, 101, 0),
                        (C, A, 122, 902, 0)]
    z = run(rows)
    assert (z["history"], z["conn_state"]) == ("ShADFf", "SF")
    assert z["duration"] == pytest.approx(0.006)  # to the last segment
    [later] = feed(timed(rows) + [(0.006 + 6.0, C, A, 122, 902, 0)])
    assert "zeek_later" not in later  # one connection still, to Zeek as to pcapstate
    # with the hole filled before the FIN, the closes go through at once
    rows = HANDSHAKE + [(C, P | A, 101, 901, 10), (C, P | A, 111, 901, 10),
                        (SV, A, 901, 121, 0), (C, F | A, 121, 901, 0),
                        (SV, F | A, 901, 122, 0), (C, A, 122, 902, 0)]
    z = run(rows)
    assert z["duration"] == pytest.approx(0.007)  # to the second FIN
    # and the delete timer ends Zeek's connection 5 s after it, not before
    [before] = feed(timed(rows) + [(0.007 + 4.999, C, A, 122, 902, 0)])
    assert "zeek_later" not in before
    [after] = feed(timed(rows) + [(0.007 + 5.0, C, A, 122, 902, 0)])
    assert len(after["zeek_later"]) == 1
