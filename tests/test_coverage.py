"""Never a silent answer about packets pcapstate did not read (issue 17): the result's
`coverage` says what share of the records the verdict covers and names what was not
decoded. TCP that could not be read (here: IP fragments of a real kernel capture's
segments whose first fragment was lost, so no datagram can be reassembled) makes the
verdict say so, never "nothing wrong", and `--fail-on` exit 3 instead of passing. tshark's
decode of the same file is the oracle that the fragments carried TCP; fragments whose
datagram is whole are reassembled and read."""

import shutil
import struct
import subprocess
from pathlib import Path

import dpkt
import pytest

from pcapstate.cli import main
from pcapstate.pipeline import analyze

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
LEAK = SAMPLES / "close_wait_leak.pcap"  # Ethernet, 101 records, 5 stuck in CLOSE_WAIT


def frames(path: Path) -> list[tuple[float, bytes]]:
    with path.open("rb") as f:
        return [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(f)]


def write(path: Path, records: list[tuple[float, bytes]]) -> Path:
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
        for ts, frame in records:
            w.writepkt(frame, ts)
    return path


def fragments(frame: bytes, size: int = 16) -> list[bytes]:
    """The Ethernet frame's IPv4 packet cut into fragments (RFC 791) of `size` payload
    bytes (a multiple of 8), in order."""
    ip = dpkt.ip.IP(frame[14:])
    header, payload = bytearray(frame[14:14 + ip.hl * 4]), frame[14 + ip.hl * 4:14 + ip.len]
    out = []
    for offset in range(0, len(payload), size):
        piece = payload[offset:offset + size]
        more = offset + size < len(payload)
        header[2:4] = (len(header) + len(piece)).to_bytes(2, "big")
        header[6:8] = ((0x2000 if more else 0) | offset // 8).to_bytes(2, "big")
        out.append(frame[:14] + bytes(header) + piece)
    return out


def tail_only(frame: bytes) -> bytes:
    """The last fragment of the frame's packet: its first fragment was lost."""
    return fragments(frame)[-1]


@pytest.fixture
def tails(tmp_path) -> Path:
    return write(tmp_path / "tails.pcap", [(ts, tail_only(f)) for ts, f in frames(LEAK)])


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_says_the_fragments_carry_tcp(tails):
    out = subprocess.run(["tshark", "-r", str(tails), "-Y", "ip.proto == 6 && ip.frag_offset > 0",
                          "-T", "fields", "-e", "frame.number"], capture_output=True, text=True,
                         check=True)
    assert len(out.stdout.split()) == len(frames(LEAK)) == 101


def test_tcp_only_in_lost_fragments_is_not_nothing_wrong(tails, tmp_path, capsys):
    result = analyze([str(tails)])
    assert result["coverage"] == {"records": 101, "decoded": 0, "share": 0.0,
                                  "not_decoded": {"ipv4_fragment": 101}, "unwrapped": {},
                                  "tcp_unread": True}
    assert result["connections"]["total"] == 0
    assert any(w.startswith("101 of 101 records (100.0%) were not decoded (ipv4 fragment 101)")
               for w in result["warnings"])
    report = tmp_path / "r.md"
    code = main(["analyze", str(tails), "--report", str(report), "--fail-on", "close-wait"])
    out, err = capsys.readouterr()
    assert code == 3
    assert "could be decoded: the capture was not analysed" in out
    assert "pcapstate: inconclusive:" in err
    text = report.read_text()
    assert "Nothing wrong found" not in text and "the capture was not analysed" in text


def test_whole_fragments_are_reassembled_into_the_same_answer(tmp_path):
    """Every packet of the sample in fragments of 16 bytes: the same connections and
    findings as the plain sample; every fragment read."""
    recs = [(ts + k * 1e-6, piece) for ts, f in frames(LEAK)
            for k, piece in enumerate(fragments(f))]
    result, plain = analyze([str(write(tmp_path / "f.pcap", recs))]), analyze([str(LEAK)])
    assert len(recs) > 500
    assert result["coverage"]["share"] == 1.0 and not result["coverage"]["tcp_unread"]
    assert result["coverage"]["unwrapped"] == {"ipv4_fragment": 101}
    assert result["connections"]["by_end"] == plain["connections"]["by_end"]
    assert result["connections"]["by_closer"] == plain["connections"]["by_closer"]
    assert [(f["state"], f["count"]) for f in result["findings"]] == \
        [(f["state"], f["count"]) for f in plain["findings"]] == [("CLOSE_WAIT", 5)]


def test_half_in_lost_fragments_says_what_share_was_analysed(tmp_path, capsys):
    recs = frames(LEAK)
    mixed = write(tmp_path / "mixed.pcap",
                  [(ts, tail_only(f) if i % 2 else f) for i, (ts, f) in enumerate(recs)])
    result = analyze([str(mixed)])
    cov = result["coverage"]
    assert cov["not_decoded"] == {"ipv4_fragment": 50} and cov["decoded"] == 51
    assert cov["share"] == pytest.approx(51 / 101) and cov["tcp_unread"]
    assert main(["analyze", str(mixed)]) == 0  # no --fail-on: a warning, not a failure
    assert "50 of the 101 records (49.5%) could not be decoded" in capsys.readouterr().out


def test_a_capture_of_udp_and_arp_only_is_not_an_error(tmp_path, capsys):
    udp = dpkt.udp.UDP(sport=5353, dport=5353, data=b"x" * 20)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=bytes([10, 0, 0, 1]), dst=bytes([10, 0, 0, 2]), p=17, data=udp)
    ip.len = len(ip)
    eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip)
    arp = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\xff" * 6, type=0x0806,
                                 data=bytes(dpkt.arp.ARP()))
    path = write(tmp_path / "udp.pcap", [(1.0, bytes(eth)), (2.0, bytes(arp))])
    result = analyze([str(path)])
    assert result["coverage"] == {"records": 2, "decoded": 2, "share": 1.0, "not_decoded": {},
                                  "unwrapped": {}, "tcp_unread": False}
    assert result["warnings"] == []
    assert main(["analyze", str(path), "--fail-on", "any", "-q"]) == 0
    saved = tmp_path / "r.json"
    assert main(["analyze", str(path), "-q", "--json", str(saved)]) == 0
    assert main(["report", str(saved), "--report", str(tmp_path / "r.md")]) == 0
    assert "Nothing wrong found" in (tmp_path / "r.md").read_text()


def test_a_udp_datagram_to_vxlans_port_that_is_not_vxlan_is_read_as_udp(tmp_path):
    """The port alone does not make a tunnel: a datagram to UDP 4789 without VXLAN's I
    flag is UDP, read (not TCP), and the verdict is whole."""
    udp = dpkt.udp.UDP(sport=40000, dport=4789, data=bytes(30))
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=bytes([10, 0, 0, 1]), dst=bytes([10, 0, 0, 2]), p=17, data=udp)
    ip.len = len(ip)
    eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip)
    result = analyze([str(write(tmp_path / "u.pcap", [(1.0, bytes(eth))]))])
    assert result["accounting"]["other"] == {"udp": 1}
    assert result["coverage"]["share"] == 1.0 and not result["coverage"]["tcp_unread"]


def pcapng(records: list[tuple[int, float, bytes]], linktypes: tuple[int, ...]) -> bytes:
    """A pcapng file: one interface per link type, (interface, time, frame) records."""
    def block(kind: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I",
                                                                             len(body) + 12)

    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += b"".join(block(1, struct.pack("<HHI", lt, 0, 65535)) for lt in linktypes)
    for iface, ts, frame in records:
        us = round(ts * 1e6)
        out += block(6, struct.pack("<IIIII", iface, us >> 32, us & 0xFFFFFFFF, len(frame),
                                    len(frame)) + frame)
    return out


def in_wifi(frame: bytes) -> bytes:
    """The Ethernet frame's packet in an 802.11 data frame (link type 105, no radiotap):
    a 24-byte header, then LLC/SNAP with the ethertype."""
    header = struct.pack("<HH", 0x0108, 0) + b"\x04" * 6 + b"\x02" * 6 + b"\x06" * 6 + bytes(2)
    return header + b"\xaa\xaa\x03\x00\x00\x00" + frame[12:]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_auto_hands_tshark_only_the_frames_no_other_path_reads(tmp_path):
    """A pcapng of two interfaces, every other frame of the sample on an 802.11 one (a link
    type neither the fast nor the slow path reads): `auto` decodes the Ethernet frames
    itself and only the others with tshark, and answers as on the plain sample; `fast`
    says that TCP went unread."""
    recs = [(i % 2, ts, in_wifi(f) if i % 2 else f) for i, (ts, f) in enumerate(frames(LEAK))]
    path = tmp_path / "two.pcapng"
    path.write_bytes(pcapng(recs, (1, 105)))
    plain = analyze([str(LEAK)])
    auto, fast = analyze([str(path)], engine="auto"), analyze([str(path)], engine="fast")
    assert auto["decoder"] == {"engine": "fast",
                               "reason": "link type 105: its frames decoded by tshark"}
    assert auto["coverage"]["unwrapped"] == {"tshark": 50} and auto["coverage"]["share"] == 1
    assert auto["connections"]["by_end"] == plain["connections"]["by_end"]
    assert [(f["state"], f["count"]) for f in auto["findings"]] == [("CLOSE_WAIT", 5)]
    assert fast["coverage"]["not_decoded"] == {"unsupported_linktype_105": 50}
    assert fast["coverage"]["tcp_unread"]


def test_a_corpus_check_does_not_pass_a_policy_on_unread_tcp(tmp_path, capsys):
    """pcapstate check: a capture whose TCP could not be read (lost fragments) matches its
    golden (nothing changed), but a policy (--fail-on) cannot pass on it: it fails, named
    inconclusive; without a policy the check passes, its golden holding the warning."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write(corpus / "tails.pcap", [(ts, tail_only(f)) for ts, f in frames(LEAK)])
    assert main(["check", str(corpus), "--update"]) == 0
    capsys.readouterr()
    assert main(["check", str(corpus)]) == 0
    assert main(["check", str(corpus), "--fail-on", "close-wait"]) == 1
    assert "inconclusive: records that may hold TCP were not decoded" in \
        capsys.readouterr().out


def test_a_capture_of_no_packets_is_not_nothing_wrong(tmp_path, capsys):
    """A pcap header and nothing after it (tcpdump stopped before the first packet): a
    warning, a verdict that says nothing was analysed, and --fail-on cannot pass."""
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    result = analyze([str(empty)])
    assert result["accounting"]["records"] == 0
    assert result["warnings"] == ["the capture holds no packets: nothing was analysed"]
    report = tmp_path / "r.md"
    assert main(["analyze", str(empty), "--fail-on", "any", "--report", str(report)]) == 3
    out, err = capsys.readouterr()
    assert "Stuck endpoints: none. The capture holds no packets: nothing was analysed." in out
    assert "pcapstate: inconclusive: the capture holds no packets, so --fail-on cannot " \
           "pass\n" in err
    text = report.read_text()
    assert "Nothing wrong found" not in text and "nothing was analysed" in text
    assert main(["analyze", str(empty), "-q"]) == 0  # no policy asked for: not an error
