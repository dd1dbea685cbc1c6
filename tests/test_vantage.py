"""The vantage point: where on the path the capture was taken, read from the handshakes.
The kernel samples vantage_client and vantage_server (one path with a 20 ms round trip,
captured at each end) check the two ends; crafted handshakes check the rest."""

import dpkt
import pytest

from pcapstate.derive.verdict import BETWEEN, NEAR_CLIENT, NEAR_SERVER, UNTOLD, vantage_side
from pcapstate.pipeline import analyze

T0 = 1_700_000_000.0


@pytest.mark.parametrize(("syn_rtt", "ack_gap", "side"), [
    (0.020, 0.00001, NEAR_CLIENT),  # the whole round trip before the SYN/ACK
    (0.00001, 0.020, NEAR_SERVER),
    (0.010, 0.010, BETWEEN),
    (0.015, 0.005, BETWEEN),  # a quarter of the round trip on the client's side
    (0.00003, 0.00002, UNTOLD),  # loopback: a host's own processing time only
    (0.0, 0.0, UNTOLD),
])
def test_side_of_one_handshake(syn_rtt, ack_gap, side):
    assert vantage_side(syn_rtt, ack_gap) == side


def capture(path, handshakes):
    """One connection per (SYN to SYN/ACK, SYN/ACK to ACK) pair, each closed cleanly."""
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_RAW)
        for i, (a, b) in enumerate(handshakes):
            t, port = T0 + i, 40000 + i

            def seg(t, out, flags, seq, ack=0, port=port):
                src, dst = (b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02")
                sport, dport = port, 80
                if not out:
                    src, dst, sport, dport = dst, src, dport, sport
                tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags,
                                   win=512)
                ip = dpkt.ip.IP(src=src, dst=dst, p=6, ttl=64, data=tcp)
                ip.len = len(ip)
                w.writepkt(bytes(ip), t)

            S, A, F = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN
            seg(t, True, S, 100)
            seg(t + a, False, S | A, 900, 101)
            seg(t + a + b, True, A, 101, 901)
            seg(t + 0.5, True, F | A, 101, 901)
            seg(t + 0.5 + a, False, F | A, 901, 102)
            seg(t + 0.5 + a + b, True, A, 102, 902)
    return str(path)


@pytest.mark.parametrize(("handshakes", "estimate"), [
    ([(0.030, 0.00002)] * 3, "client"),
    ([(0.00002, 0.030)] * 3, "server"),
    ([(0.012, 0.018)] * 3, "between"),
    ([(0.030, 0.00002)] * 2 + [(0.00002, 0.030)] * 2, "mixed"),
    ([(0.00002, 0.00001)] * 3, "unknown"),
    ([], "unknown"),
    # too few tell: two (of two), or three of 31 (under a tenth)
    ([(0.030, 0.00002)] * 2, "unknown"),
    ([(0.030, 0.00002)] * 3 + [(0.00002, 0.00001)] * 28, "unknown"),
    ([(0.030, 0.00002)] * 3 + [(0.00002, 0.00001)] * 27, "client"),
])
def test_estimate(tmp_path, handshakes, estimate):
    result = analyze([capture(tmp_path / "c.pcap", handshakes)])
    v = result["vantage"]
    assert v["estimate"] == estimate
    assert v["handshakes"] == len(handshakes)
    if estimate not in ("unknown",):
        assert v["round_trip_min"] == pytest.approx(sum(handshakes[0]), abs=1e-6)


def test_a_handshake_without_its_syn_is_not_counted(tmp_path):
    """Connections picked up mid-stream say nothing of the vantage point."""
    path = tmp_path / "mid.pcap"
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_RAW)
        tcp = dpkt.tcp.TCP(sport=40000, dport=80, seq=5, ack=7, flags=dpkt.tcp.TH_ACK)
        ip = dpkt.ip.IP(src=b"\x0a\x00\x00\x01", dst=b"\x0a\x00\x00\x02", p=6, data=tcp)
        ip.len = len(ip)
        w.writepkt(bytes(ip), T0)
    assert analyze([str(path)])["vantage"]["handshakes"] == 0
