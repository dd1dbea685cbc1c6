"""Never a silent answer about packets pcapstate did not read (issue 17): the result's
`coverage` says what share of the records the verdict covers and names what was not
decoded; TCP inside an encapsulation the fast decoder does not read (here MPLS, built with
dpkt around a real kernel capture's frames) makes the verdict say so, never "nothing
wrong", and `--fail-on` exit 3 instead of passing. tshark's decode of the same file is the
oracle that the TCP was there."""

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


def in_mpls(frame: bytes) -> bytes:
    """The Ethernet frame's payload behind one MPLS label (100, bottom of stack, TTL 64)."""
    eth = dpkt.ethernet.Ethernet(frame)
    label = struct.pack("!I", (100 << 12) | (1 << 8) | 64)
    return eth.dst + eth.src + struct.pack("!H", 0x8847) + label + bytes(eth.data)


def write(path: Path, records: list[tuple[float, bytes]]) -> Path:
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB)
        for ts, frame in records:
            w.writepkt(frame, ts)
    return path


def in_vxlan(frame: bytes) -> bytes:
    """The Ethernet frame inside VXLAN (RFC 7348: UDP to port 4789, VNI 42) between two
    tunnel endpoints."""
    vxlan = struct.pack("!II", 0x08000000, 42 << 8) + frame
    udp = dpkt.udp.UDP(sport=49152, dport=4789, data=vxlan)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=bytes([192, 0, 2, 1]), dst=bytes([192, 0, 2, 2]), p=17, data=udp)
    ip.len = len(ip)
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800,
                                        data=ip))


@pytest.fixture
def all_mpls(tmp_path) -> Path:
    return write(tmp_path / "mpls.pcap", [(ts, in_mpls(f)) for ts, f in frames(LEAK)])


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_sees_the_tcp_inside(all_mpls):
    out = subprocess.run(["tshark", "-r", str(all_mpls), "-Y", "tcp && mpls", "-T", "fields",
                          "-e", "frame.number"], capture_output=True, text=True, check=True)
    assert len(out.stdout.split()) == len(frames(LEAK)) == 101


def test_tcp_only_inside_mpls_is_not_nothing_wrong(all_mpls, tmp_path, capsys):
    result = analyze([str(all_mpls)])
    assert result["coverage"] == {"records": 101, "decoded": 0, "share": 0.0,
                                  "not_decoded": {"mpls": 101}, "tcp_unread": True}
    assert result["connections"]["total"] == 0
    assert any(w.startswith("101 of 101 records (100.0%) were not decoded (mpls 101)") and
               w.endswith("--engine tshark may read them") for w in result["warnings"])
    report = tmp_path / "r.md"
    code = main(["analyze", str(all_mpls), "--report", str(report), "--fail-on", "close-wait"])
    out, err = capsys.readouterr()
    assert code == 3
    assert "could be decoded: the capture was not analysed" in out
    assert "pcapstate: inconclusive:" in err
    text = report.read_text()
    assert "Nothing wrong found" not in text and "the capture was not analysed" in text


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_the_tshark_engine_reads_it_as_the_plain_capture(all_mpls):
    """The same connections and findings as the plain sample, the coverage whole."""
    mpls, plain = analyze([str(all_mpls)], engine="tshark"), analyze([str(LEAK)])
    assert mpls["coverage"]["share"] == 1.0 and not mpls["coverage"]["tcp_unread"]
    assert mpls["connections"]["by_end"] == plain["connections"]["by_end"]
    assert [(f["state"], f["count"]) for f in mpls["findings"]] == \
        [(f["state"], f["count"]) for f in plain["findings"]] == [("CLOSE_WAIT", 5)]


def test_half_inside_mpls_says_what_share_was_analysed(tmp_path, capsys):
    recs = frames(LEAK)
    mixed = write(tmp_path / "mixed.pcap",
                  [(ts, in_mpls(f) if i % 2 else f) for i, (ts, f) in enumerate(recs)])
    result = analyze([str(mixed)])
    cov = result["coverage"]
    assert cov["not_decoded"] == {"mpls": 50} and cov["decoded"] == 51
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
                                  "tcp_unread": False}
    assert result["warnings"] == []
    assert main(["analyze", str(path), "--fail-on", "any", "-q"]) == 0
    saved = tmp_path / "r.json"
    assert main(["analyze", str(path), "-q", "--json", str(saved)]) == 0
    assert main(["report", str(saved), "--report", str(tmp_path / "r.md")]) == 0
    assert "Nothing wrong found" in (tmp_path / "r.md").read_text()


def test_tcp_inside_vxlan_is_named_as_not_read(tmp_path, capsys):
    vxlan = write(tmp_path / "vxlan.pcap", [(ts, in_vxlan(f)) for ts, f in frames(LEAK)])
    if shutil.which("tshark"):  # the oracle: the TCP is there
        out = subprocess.run(["tshark", "-r", str(vxlan), "-Y", "tcp && vxlan", "-T",
                              "fields", "-e", "frame.number"], capture_output=True, text=True,
                             check=True)
        assert len(out.stdout.split()) == 101
    result = analyze([str(vxlan)])
    assert result["coverage"]["not_decoded"] == {"vxlan": 101}
    assert result["coverage"]["tcp_unread"] and result["accounting"]["other"] == {"vxlan": 101}
    assert main(["analyze", str(vxlan), "--fail-on", "any", "-q"]) == 3
