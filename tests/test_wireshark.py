"""The tshark engine: Wireshark's dissectors feeding the same state machine. It must agree
with the fast engine on every sample, bit for bit, and read what the fast decoder cannot."""

import json
import shutil
import struct
import subprocess

import dpkt
import pytest

from pcapstate.cli import main
from pcapstate.pipeline import analyze
from tests.test_samples import EXPECTED, captures

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")

T0 = 1_700_000_000.0
C, S = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"
RADIOTAP = 127  # LINKTYPE_IEEE802_11_RADIOTAP


def result_and_records(files, engine):
    """The result and records, less what only the tshark engine adds: Wireshark's own
    analysis counts (the cross-check compares those), and which of the fast engine's paths
    read what (coverage.unwrapped)."""
    records: list[dict] = []
    result = analyze(files, on_record=records.append, engine=engine)
    result.pop("elapsed_seconds")
    result.pop("decoder")
    result["coverage"].pop("unwrapped")
    assert ("wireshark_analysis" in result["connections"]) == (engine == "tshark")
    result["connections"].pop("wireshark_analysis", None)
    for r in records:
        r.pop("wireshark_analysis", None)
    return result, records


@pytest.mark.parametrize("expected", EXPECTED, ids=lambda p: p.name.split(".")[0])
def test_every_sample_gives_the_same_result_as_the_fast_engine(expected):
    files = captures(expected)
    fast, tshark = (result_and_records(files, e) for e in ("fast", "tshark"))
    assert json.dumps(fast, sort_keys=True) == json.dumps(tshark, sort_keys=True)


def segments():
    """(time, from client, flags, seq, ack, payload) of one connection the client closes."""
    S_, A, F, P = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN, dpkt.tcp.TH_PUSH
    return [(0.000, True, S_, 100, 0, b""), (0.010, False, S_ | A, 900, 101, b""),
            (0.020, True, A, 101, 901, b""), (0.030, True, P | A, 101, 901, b"hello"),
            (0.040, False, A, 901, 106, b""), (0.500, True, F | A, 106, 901, b""),
            (0.510, False, F | A, 901, 107, b""), (0.520, True, A, 107, 902, b"")]


def ip_packet(out, flags, seq, ack, data):
    src, dst, sport, dport = (C, S, 40000, 80) if out else (S, C, 80, 40000)
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=512,
                       data=data)
    ip = dpkt.ip.IP(src=src, dst=dst, p=6, ttl=64, id=seq & 0xFFFF, data=tcp)
    ip.len = len(ip)
    return bytes(ip)


def write(path, linktype, frame):
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f, linktype=linktype)
        for t, out, flags, seq, ack, data in segments():
            w.writepkt(frame(ip_packet(out, flags, seq, ack, data), out), T0 + t)
    return str(path)


def radiotap_80211(packet, out):
    """Radiotap (no fields) + an 802.11 data frame to or from the AP + LLC/SNAP + IPv4."""
    radiotap = struct.pack("<BBHI", 0, 0, 8, 0)
    station, ap = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"
    fc = b"\x08\x01" if out else b"\x08\x02"  # data, to DS / from DS
    addrs = ap + station + ap if out else station + ap + ap
    return radiotap + fc + b"\x00\x00" + addrs + b"\x00\x00" + \
        b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + packet


def gre_ethernet(packet, out):
    """Ethernet + outer IPv4 + GRE (protocol IPv4) + the inner packet."""
    outer = dpkt.ip.IP(src=b"\xc0\x00\x02\x01", dst=b"\xc0\x00\x02\x02", p=47, ttl=64,
                       data=b"\x00\x00\x08\x00" + packet)
    outer.len = len(outer)
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + bytes(outer)


@pytest.mark.parametrize(("name", "linktype", "frame", "fast_counts"), [
    ("80211", RADIOTAP, radiotap_80211, {"undecodable": {"unsupported_linktype_127": 8}}),
    ("gre", 1, gre_ethernet, None),  # the fast engine's slow path reads GRE too
])
def test_what_wireshark_decodes(tmp_path, name, linktype, frame, fast_counts):
    path = write(tmp_path / f"{name}.pcap", linktype, frame)
    fast = analyze([path])
    if fast_counts:
        assert fast["connections"]["total"] == 0  # counted, not silently dropped:
        assert {k: fast["accounting"][k] for k in fast_counts} == fast_counts
        assert fast["coverage"]["tcp_unread"]
    else:
        assert fast["coverage"]["unwrapped"] == {"gre": 8}
    engines = ["tshark", "auto"] if linktype == RADIOTAP else ["tshark", "fast"]
    for engine in engines:
        got = analyze([path], engine=engine)
        assert got["decoder"]["engine"] == engine.replace("auto", "tshark")
        assert got["accounting"]["tcp_segments"] == 8
        conns = got["connections"]
        assert conns["total"] == 1 and conns["by_end_and_closer"] == {"closed": {"client": 1}}
        assert conns["final_states"] == {"client": {"TIME_WAIT": 1}, "server": {"CLOSED": 1}}
        assert got["vantage"]["between"] == 1  # SYN/ACK 10 ms after the SYN, ACK 10 later
    if linktype == RADIOTAP:
        auto = analyze([path], engine="auto")["decoder"]
        assert auto["reason"] == "link type 127: not decoded by the fast engine"


def test_auto_keeps_the_fast_engine_when_it_reads_every_link_type():
    path = captures(EXPECTED[0])
    assert analyze(path, engine="auto")["decoder"] == {
        "engine": "fast", "reason": "every link type decoded by the fast engine"}


def test_without_tshark_the_error_names_the_package(monkeypatch, capsys):
    from pyshark.tshark import tshark

    def missing(*args, **kwargs):
        raise tshark.TSharkNotFoundException("TShark not found. Try adding its location")

    monkeypatch.setattr(tshark, "get_process_path", missing)
    assert main(["analyze", captures(EXPECTED[0])[0], "--engine", "tshark"]) == 2
    err = capsys.readouterr().err
    assert "Debian package tshark" in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_file_cut_short_is_read_up_to_the_cut_with_a_warning(tmp_path, capsys):
    path = tmp_path / "cut.pcap"
    path.write_bytes((EXPECTED[0].parent / "client_close.pcap").read_bytes()[:1500])
    assert main(["analyze", str(path), "--engine", "tshark", "-q"]) == 0
    err = capsys.readouterr().err
    assert "cut short in the middle of a packet" in err and "(13 records read)" in err
    assert analyze([str(path)], engine="tshark")["accounting"]["records"] == \
        analyze([str(path)])["accounting"]["records"] == 13


def test_a_file_tshark_cannot_read_at_all_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "empty.pcap"
    path.write_bytes((EXPECTED[0].parent / "client_close.pcap").read_bytes()[:24] + b"\x01")
    code = main(["analyze", str(path), "--engine", "tshark", "-q"])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err and err.count("\n") <= 1


@pytest.mark.parametrize("expected", EXPECTED, ids=lambda p: p.name.split(".")[0])
def test_pcapstate_and_wireshark_agree_on_every_sample(expected):
    """The cross-check: same connections, ends, closers and final states from both decoders,
    and pcapstate's retransmission and keep-alive counts equal to Wireshark's analysis."""
    from pcapstate.check.crosscheck import cross_check

    check = cross_check(captures(expected))
    assert check["disagreements"] == []
    assert check["connections"]["fast"] == check["connections"]["tshark"] > 0
    r, k = check["segments_sent_again"], check["keep_alives"]
    assert r["pcapstate"] == r["wireshark"] and k["pcapstate"] == k["wireshark"]


def test_wireshark_counts_per_connection_on_the_lossy_sample():
    """Real losses (samples/wire.py dropped every 40th data segment): Wireshark calls the six
    segments sent again fast retransmissions and out-of-order; pcapstate counts six too."""
    records: list[dict] = []
    result = analyze(captures(next(p for p in EXPECTED if p.name.startswith("lossy"))),
                     on_record=records.append, engine="tshark")
    ws = result["connections"]["wireshark_analysis"]
    assert ws["resent"] == 6 == result["connections"]["anomalies"]["retransmission"]
    assert ws["resent"] <= ws.get("retransmission", 0) + ws.get("fast_retransmission", 0) \
        + ws.get("out_of_order", 0) + ws.get("spurious_retransmission", 0)
    assert ws["duplicate_ack"] > 0
    assert records[0]["wireshark_analysis"] == ws  # one connection: its counts are the totals


def test_cross_check_exits_1_and_names_the_connection_on_a_disagreement(tmp_path, capsys):
    """802.11 with radiotap: only Wireshark's dissectors see the connection inside."""
    path = write(tmp_path / "wifi.pcap", RADIOTAP, radiotap_80211)
    assert main(["analyze", path, "--cross-check", "-q"]) == 1
    out = capsys.readouterr().out
    assert "10.0.0.1:40000 -> 10.0.0.2:80: only the tshark engine sees it" in out
    assert out.startswith("Cross-check: 0 connections by the fast engine, 1 by tshark")


def test_what_tshark_cannot_read_is_refused_in_one_line(tmp_path, capsys):
    """tshark reads a file by name: a stream, or a compression it does not know (bzip2, xz),
    is refused with the way round it, not a tshark error."""
    import bz2
    import lzma
    import os
    import threading
    from pathlib import Path

    data = (Path(__file__).resolve().parent.parent / "samples" / "ipv6.pcap").read_bytes()
    for name, packed in (("x.pcap.bz2", bz2.compress(data)), ("x.pcap.xz", lzma.compress(data))):
        (tmp_path / name).write_bytes(packed)
        assert main(["analyze", str(tmp_path / name), "--engine", "tshark", "-q"]) == 2
        kind = "bzip2" if name.endswith("bz2") else "xz"
        assert capsys.readouterr().err == (
            f"pcapstate: error: {tmp_path / name}: tshark does not read {kind}-compressed "
            "captures: decompress it first, or use --engine fast\n")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(data))
    writer.start()
    assert main(["analyze", str(fifo), "--engine", "tshark", "-q"]) == 2
    writer.join(timeout=10)
    assert "the tshark engine reads files, not streams" in capsys.readouterr().err


def test_a_window_scale_over_14_is_taken_as_14(tmp_path):
    """RFC 7323 2.3: a shift over 14 is used as 14, by both decoders (tshark shows the 16
    offered). The server's RST 100,000 past the client's last acknowledgment is in the
    client's window of 65,535 scaled by 14, and ends the connection; without the scale it
    would be refused, out of window."""
    A, R = dpkt.tcp.TH_ACK, dpkt.tcp.TH_RST
    scale16 = b"\x03\x03\x10\x01"  # window scale 16, a NOP

    def packet(out, flags, seq, ack, opts=b""):
        src, dst, sport, dport = (C, S, 40000, 80) if out else (S, C, 80, 40000)
        tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags,
                           win=65535, off=5 + len(opts) // 4, opts=opts)
        ip = dpkt.ip.IP(src=src, dst=dst, p=6, ttl=64, id=seq & 0xFFFF, data=tcp)
        ip.len = len(ip)
        return bytes(ip)

    path = tmp_path / "scale16.pcap"
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_RAW)
        for t, frame in enumerate([packet(True, dpkt.tcp.TH_SYN, 100, 0, scale16),
                                   packet(False, dpkt.tcp.TH_SYN | A, 900, 101, scale16),
                                   packet(True, A, 101, 901),
                                   packet(False, R | A, 901 + 100_000, 101)]):
            w.writepkt(frame, T0 + 0.01 * t)
    shown = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e",
                            "tcp.options.wscale.shift"], capture_output=True, text=True)
    assert shown.stdout.split()[:2] == ["16", "16"]
    for engine in ("fast", "tshark"):
        got = analyze([str(path)], engine=engine)["connections"]
        assert got["by_end_and_closer"] == {"reset_by_server": {"server": 1}}, engine
        assert "rst_out_of_window" not in got["anomalies"], engine


def test_the_rst_window_is_reckoned_in_64_bits_uncompiled():
    """A window of 65,535 scaled by 16 is 4,294,901,760: held in 32 bits, as the slot keeps
    the window, it would wrap (NumPy keeps a 32-bit integer 32 bits wide when shifted)."""
    import numpy as np

    from pcapstate.track.endpoints import rst_acceptable
    from pcapstate.track.slots import ESTABLISHED

    check = getattr(rst_acceptable, "py_func", rst_acceptable)  # the uncompiled function
    assert check(ESTABLISHED, True, dpkt.tcp.TH_RST, 5001 + 100_000, 0, 900, 5001,
                 np.int32(65535), np.int8(16))
