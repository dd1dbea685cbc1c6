"""--zeek-conn: a conn.log that Zeek's tools read, with Zeek's conn_state and history for
the kernel samples (the values Zeek's rules give; Zeek itself is not installed here)."""

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pcapstate.cli import main
from pcapstate.derive.records import ZEEK_FIELDS
from pcapstate.render.zeeklog import FIELDS, TYPES
from tests.transcript import record_entries

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def conn_log(tmp_path, sample, *extra):
    out = tmp_path / "conn.log"
    assert main(["analyze", str(SAMPLES / sample), "--zeek-conn", str(out), "-q", *extra]) == 0
    return out.read_text()


def rows(text):
    """conn.log entries by #fields name, as zeek-cut reads them."""
    lines = text.splitlines()
    fields = next(ln for ln in lines if ln.startswith("#fields\t")).split("\t")[1:]
    return [dict(zip(fields, ln.split("\t"), strict=True)) for ln in lines
            if not ln.startswith("#")]


def test_conn_log_format(tmp_path):
    text = conn_log(tmp_path, "refused.pcap")
    lines = text.splitlines()
    assert lines[:5] == ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)",
                         "#unset_field\t-", "#path\tconn"]
    assert lines[5].startswith("#open\t") and lines[-1].startswith("#close\t")
    assert lines[6] == "#fields\t" + "\t".join(FIELDS)
    assert lines[7] == "#types\t" + "\t".join(TYPES)
    entries = rows(text)
    assert [(e["conn_state"], e["history"]) for e in entries] == [
        ("REJ", "Sr"), ("REJ", "Sr"), ("SF", "ShADadFf")]
    first = entries[0]
    assert first["id.resp_p"] == "9999" and first["proto"] == "tcp"
    assert first["ts"].count(".") == 1 and len(first["ts"].split(".")[1]) == 6
    for unset in ("service", "tunnel_parents"):
        assert first[unset] == "-"
    # 127.0.0.1: in Zeek's private address space, local by default since Zeek 6.0
    assert (first["local_orig"], first["local_resp"]) == ("T", "T")
    assert first["missed_bytes"] == "0"
    # a SYN (20 + 20 bytes of headers + 20 of options) answered by a RST (40 bytes)
    assert (first["orig_pkts"], first["orig_ip_bytes"], first["resp_pkts"],
            first["resp_ip_bytes"]) == ("1", "60", "1", "40")
    assert len({e["uid"] for e in entries}) == 3 and all(e["uid"][0] == "C" for e in entries)
    assert [e["uid"] for e in rows(conn_log(tmp_path, "refused.pcap"))] == \
        [e["uid"] for e in entries]  # the same capture gives the same uids


@pytest.mark.parametrize(("sample", "expected"), [
    ("client_close.pcap", {("SF", "ShADadFf"): 3}),
    ("server_close.pcap", {("SF", "ShADadfF"): 3}),  # the responder's FIN first
    ("close_wait_leak.pcap", {("S2", "ShADaF"): 5}),  # Zeek has no CLOSE_WAIT: S2
    ("close_wait_reset.pcap", {("RSTO", "ShADaFdR"): 2}),
    ("rst_abort.pcap", {("RSTO", "ShADaR"): 2}),
    # T: payload sent again; G at the 1st, 10th and 100th content gap: tcpdump's snaplen
    # of 96 cut every payload, which Zeek counts missed once acknowledged
    ("lossy.pcap", {("SF", "ShADaGGTGFf"): 1}),
    ("mid_stream.pcap", {("SF", "DdAFaf"): 1}),  # no SYN seen
])
def test_kernel_samples(tmp_path, sample, expected):
    got = Counter((e["conn_state"], e["history"]) for e in rows(conn_log(tmp_path, sample)))
    assert got == expected


def test_byte_and_packet_counts(tmp_path):
    e = rows(conn_log(tmp_path, "client_close.pcap"))[0]
    assert (e["orig_bytes"], e["resp_bytes"], e["orig_pkts"], e["resp_pkts"]) == \
        ("8", "301", "6", "4")  # an 8-byte request, a 301-byte reply
    assert float(e["duration"]) > 0


def test_json_lines_variant(tmp_path, capsys):
    assert main(["analyze", str(SAMPLES / "close_wait_leak.pcap"), "--zeek-conn-json", "-",
                 "-q"]) == 0
    entries = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert len(entries) == 5
    assert {(e["conn_state"], e["history"]) for e in entries} == {("S2", "ShADaF")}
    assert "service" not in entries[0] and entries[0]["id.resp_p"] == 5001


def test_two_outputs_cannot_share_standard_output(capsys):
    assert main(["analyze", str(SAMPLES / "refused.pcap"), "--zeek-conn", "-", "--json",
                 "-"]) == 2
    assert "cannot both write to standard output" in capsys.readouterr().err


def craft(path, packets, ports=(35634, 80), snaplen=0):
    """packets: (seconds, from originator, flags, seq, ack, payload bytes, TCP option
    bytes) between 141.142.220.118 and 208.80.152.2, on `ports` (originator's first);
    `snaplen`: each packet captured up to so many bytes, as tcpdump -s does."""
    import struct

    import dpkt

    orig, resp = (b"\x8d\x8e\xdc\x76", ports[0]), (b"\xd0\x50\x98\x02", ports[1])
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen or 65535,
                            dpkt.pcap.DLT_RAW))
        for t, out, flags, seq, ack, size, opts in packets:
            (src, sport), (dst, dport) = (orig, resp) if out else (resp, orig)
            tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags,
                               win=1024, off=(20 + opts) // 4, opts=b"\x01" * opts,
                               data=b"x" * size)
            ip = dpkt.ip.IP(src=src, dst=dst, p=6, ttl=64, data=tcp)
            ip.len = len(ip)
            frame = bytes(ip)
            kept = frame[:snaplen] if snaplen else frame
            ts = 1_300_000_000 + t
            f.write(struct.pack("<IIII", int(ts), round((ts % 1) * 1e6), len(kept),
                                len(frame)) + kept)
    return str(path)


ZEEK_COLUMNS = ("duration", "orig_bytes", "resp_bytes", "conn_state", "missed_bytes",
                "history", "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes")
S_, A_, P_ = 0x02, 0x10, 0x08


@pytest.mark.parametrize(("packets", "zeek_line"), [
    # mid-stream: "0.061329 463 350 OTH F F 0 DdA 2 567 1 402"
    ([(0.0, True, P_ | A_, 1000, 5000, 463, 12), (0.030, False, P_ | A_, 5000, 1463, 350, 12),
      (0.061329, True, A_, 1463, 5350, 0, 12)],
     ("0.061329", "463", "350", "OTH", "0", "DdA", "2", "567", "1", "402")),
    # never closed: "0.120041 534 412 S1 F F 0 ShADad 4 750 3 576"
    ([(0.0, True, S_, 1000, 0, 0, 20), (0.030, False, S_ | A_, 5000, 1001, 0, 20),
      (0.031, True, A_, 1001, 5001, 0, 12), (0.032, True, P_ | A_, 1001, 5001, 534, 12),
      (0.060, False, A_, 5001, 1535, 0, 12), (0.090, False, P_ | A_, 5001, 1535, 412, 12),
      (0.120041, True, A_, 1535, 5413, 0, 12)],
     ("0.120041", "534", "412", "S1", "0", "ShADad", "4", "750", "3", "576")),
])
def test_zeeks_own_lines(tmp_path, packets, zeek_line):
    """Two connections of Zeek's baseline core.tcp.rxmit-history/conn-2.log (trace
    wikipedia.trace), rebuilt packet for packet from what the line says (sizes, order,
    duration): pcapstate's conn.log columns are Zeek's, to the digit, local_orig and
    local_resp F for these public addresses as well. (Zeek's service is not computed
    here.)"""
    path = craft(tmp_path / "c.pcap", packets)
    out = tmp_path / "conn.log"
    assert main(["analyze", path, "--zeek-conn", str(out), "-q"]) == 0
    (e,) = rows(out.read_text())
    assert tuple(e[c] for c in ZEEK_COLUMNS) == zeek_line
    assert (e["local_orig"], e["local_resp"]) == ("F", "F")
    assert (e["id.orig_h"], e["id.orig_p"], e["id.resp_h"], e["id.resp_p"]) == \
        ("141.142.220.118", "35634", "208.80.152.2", "80")


def test_a_lone_synack_as_zeek_logs_it(tmp_path):
    """The same baseline: "- - - OTH F F 0 ^h 0 0 1 48", a SYN-ACK from port 80 alone."""
    import dpkt

    path = tmp_path / "h.pcap"
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_RAW)
        tcp = dpkt.tcp.TCP(sport=80, dport=6705, seq=1, ack=2, flags=S_ | A_, win=1024,
                           off=7, opts=b"\x01" * 8)
        ip = dpkt.ip.IP(src=b"\xad\xc0\xa3\x80", dst=b"\x8d\x8e\xdc\xeb", p=6, data=tcp)
        ip.len = len(ip)
        w.writepkt(bytes(ip), 1_300_000_000)
    out = tmp_path / "conn.log"
    assert main(["analyze", str(path), "--zeek-conn", str(out), "-q"]) == 0
    (e,) = rows(out.read_text())
    assert tuple(e[c] for c in ZEEK_COLUMNS) == \
        ("-", "-", "-", "OTH", "0", "^h", "0", "0", "1", "48")
    assert (e["local_orig"], e["local_resp"]) == ("F", "F")
    assert (e["id.orig_h"], e["id.orig_p"], e["id.resp_p"]) == ("141.142.220.235", "6705", "80")


def test_a_synack_before_its_syn(tmp_path):
    """Zeek's core.connection_flipped situation through a capture: "Hs^ADadFf"."""
    from pcapstate.pipeline import analyze

    F_ = 0x01
    # (seconds, from the originator as the crafter sees it, flags, seq, ack, size, options)
    packets = [(0.0, False, S_ | A_, 5000, 1001, 0, 0), (0.001, True, S_, 1000, 0, 0, 0),
               (0.002, True, A_, 1001, 5001, 0, 0), (0.003, True, P_ | A_, 1001, 5001, 10, 0),
               (0.004, False, A_, 5001, 1011, 0, 0), (0.005, False, P_ | A_, 5001, 1011, 20, 0),
               (0.006, True, A_, 1011, 5021, 0, 0), (0.007, True, F_ | A_, 1011, 5021, 0, 0),
               (0.008, False, F_ | A_, 5021, 1012, 0, 0), (0.009, True, A_, 1012, 5022, 0, 0)]
    records: list[dict] = []
    analyze([craft(tmp_path / "r.pcap", packets, ports=(40000, 5555))],
            on_record=records.append)
    zeek = [(r["zeek"]["history"], r["zeek"]["conn_state"]) for r in records]
    assert zeek == [("Hs^ADadFf", "SF")]


def test_local_networks_set_local_orig_and_local_resp(tmp_path, capsys):
    """As Zeek with Site::local_nets: T or F per side; TSV writes T/F, JSON true/false.
    Since Zeek 6.0 the private address space is local by default (base/utils/site.zeek,
    Site::private_address_space_is_local)."""
    entries = rows(conn_log(tmp_path, "ipv6.pcap", "--zeek-local-nets", "::1/128"))
    assert {(e["local_orig"], e["local_resp"]) for e in entries} == {("T", "T")}
    entries = rows(conn_log(tmp_path, "vantage_client.pcap", "--zeek-local-nets",
                            "192.0.2.0/24, 10.77.0.2"))
    assert {(e["id.orig_h"], e["local_orig"], e["id.resp_h"], e["local_resp"])
            for e in entries} == {("10.77.0.1", "F", "10.77.0.2", "T")}
    assert main(["analyze", str(SAMPLES / "vantage_client.pcap"), "--zeek-conn-json", "-",
                 "--zeek-local-nets", "10.77.0.1/24", "-q"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {(e["local_orig"], e["local_resp"]) for e in lines} == {(True, True)}
    with pytest.raises(SystemExit):
        main(["analyze", str(SAMPLES / "refused.pcap"), "--zeek-local-nets", "10.0.0/8x"])
    assert "not a network: '10.0.0/8x'" in capsys.readouterr().err
    # by default Zeek's private address space (10.77.0.0/16 is in 10/8); 'none': unset, as
    # Zeek before 6.0; 'private' kept beside a network of one's own
    for nets, local in ((), "T"), (("--zeek-local-nets", "none"), "-"), (
            ("--zeek-local-nets", "private,192.0.2.0/24"), "T"):
        entries = rows(conn_log(tmp_path, "vantage_client.pcap", *nets))
        assert {(e["local_orig"], e["local_resp"]) for e in entries} == {(local, local)}


@pytest.mark.parametrize("engine", ["fast", "tshark"])
def test_checksums_as_zeek_checks_them(tmp_path, capsys, engine):
    """--zeek-checksums: one request whose payload was corrupted after its checksum was
    computed: Zeek marks it C and never delivers its 8 bytes, which the server's ACK then
    shows missing (G, missed_bytes 8). Without the option: the connection as captured."""
    if engine == "tshark" and shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    data = bytearray((SAMPLES / "vantage_client.pcap").read_bytes())
    pos = 24
    for _ in range(3):  # to the fourth record: the client's 8-byte request
        pos += 16 + int.from_bytes(data[pos + 8:pos + 12], "little")
    length = int.from_bytes(data[pos + 8:pos + 12], "little")
    data[pos + 16 + length - 1] ^= 0xFF  # its last payload byte
    bad = tmp_path / "bad checksum.pcap"
    bad.write_bytes(bytes(data))

    def first(*extra):
        assert main(["analyze", str(bad), "--zeek-conn", "-", "-q", "--engine", engine,
                     *extra]) == 0
        return rows(capsys.readouterr().out)[0]

    checked = first("--zeek-checksums")
    assert checked["conn_state"] == "SF" and checked["missed_bytes"] == "8"
    assert checked["history"] == "ShACaGdFf"
    # the corrupted one is not counted: 5 packets and 268 IP bytes, not 6 and 328
    assert (checked["orig_pkts"], checked["orig_ip_bytes"]) == ("5", "268")
    plain = first()
    assert (plain["history"], plain["missed_bytes"], plain["orig_pkts"],
            plain["orig_ip_bytes"]) == ("ShADadFf", "0", "6", "328")


def test_zeeks_line_for_a_capture_of_headers_only(tmp_path):
    """core.tcp.rxmit-history/conn-1.log (trace tcp/retransmit-fast009.trace, read with -C):
    "60.991770 474 23783 RSTO - - 24257 ShADaGdgtR 17 1250 22 28961": every payload byte
    of both sides missed, so the trace holds headers only. Rebuilt with that: the request
    (474 bytes) acknowledged unseen (G), 17 responses acknowledged in 9 steps (one g: the
    tenth would add another), 3 segments sent again (t), then the client's RST."""
    packets = [(0.0, True, S_, 1000, 0, 0, 20), (0.030, False, S_ | A_, 5000, 1001, 0, 20),
               (0.031, True, A_, 1001, 5001, 0, 12), (0.032, True, P_ | A_, 1001, 5001, 474, 12),
               (0.060, False, A_, 5001, 1475, 0, 0)]
    acks = 0
    for i in range(17):
        packets.append((0.1 + 0.01 * i, False, A_, 5001 + 1400 * i, 1475,
                        1400 if i < 16 else 1383, 0))
        if i % 2 or i == 16:
            acks += 1
            packets.append((0.105 + 0.01 * i, True, A_, 1475, 5001 + 1400 * i +
                            (1400 if i < 16 else 1383), 0, 12 if acks <= 4 else 0))
    for k in range(3):
        packets.append((1.0 + k, False, A_, 12001, 1475, 1426, 0))
    for k in range(4):
        packets.append((5.0 + k, True, A_, 1475, 28784, 0, 4 if k == 0 else 0))
    packets.append((60.991770, True, 0x04 | A_, 1475, 28784, 0, 0))
    path = craft(tmp_path / "c.pcap", packets, snaplen=52)
    out = tmp_path / "conn.log"
    assert main(["analyze", path, "--zeek-conn", str(out), "-q"]) == 0
    (e,) = rows(out.read_text())
    assert tuple(e[c] for c in ZEEK_COLUMNS) == (
        "60.991770", "474", "23783", "RSTO", "24257", "ShADaGdgtR", "17", "1250", "22",
        "28961")


def test_zeeks_inactivity_timeout_splits_a_connection_as_its_baseline_shows(tmp_path):
    """core.expire-all-timers/conn-all.log (trace tcp/retransmit-timeout.pcapng, 10.0.0.1:51889
    -> 192.168.0.1:80): 18 bytes, their ACK, and the same 18 bytes again 300 s after the
    ACK; Zeek's inactivity timeout (5 minutes) ended the first connection, the segment
    sent again began a second. Zeek's lines: "0.000010 18 0 OTH 0 Da 1 58 1 40" and
    "- - - OTH 0 D 1 58 0 0" (the baseline masks the timestamps)."""
    packets = [(0.0, True, P_ | A_, 1000, 5000, 18, 0), (0.00001, False, A_, 5000, 1018, 0, 0),
               (300.00001, True, P_ | A_, 1000, 5000, 18, 0)]
    path, out = craft(tmp_path / "t.pcap", packets, ports=(51889, 80)), tmp_path / "conn.log"
    assert main(["analyze", path, "--zeek-conn", str(out), "-q"]) == 0
    got = [tuple(e[c] for c in ZEEK_COLUMNS) for e in rows(out.read_text())]
    assert got == [("0.000010", "18", "0", "OTH", "0", "Da", "1", "58", "1", "40"),
                   ("-", "-", "-", "OTH", "0", "D", "1", "58", "0", "0")]
    assert len({e["uid"] for e in rows(out.read_text())}) == 2


def test_the_conn_log_is_the_same_as_the_records_say(tmp_path):
    """The conn.log is written in bulk from the engine's arrays (derive/records.py
    conn_entries, no record built): its lines say what the records' `zeek` and
    `zeek_later` say, in the same order, on every sample (Zeek's later connections
    included), in TSV and in JSON."""
    from tests.test_samples import EXPECTED, captures

    later = 0
    for expected in EXPECTED:
        tsv, lines, jsonl = (tmp_path / n for n in ("conn.log", "conn.json", "records.jsonl"))
        assert main(["analyze", *captures(expected), "-q", "--zeek-conn", str(tsv),
                     "--zeek-conn-json", str(lines), "--jsonl", str(jsonl)]) in (0, 1)
        records = [json.loads(line) for line in jsonl.read_text().splitlines()]
        want = [e for r in records for e in record_entries(r)]
        assert [_tsv_of(e) for e in want] == [
            {k: e[k] for k in _TSV_OF} for e in rows(tsv.read_text())], expected.name
        assert [{k: v for k, v in _json_of(e).items() if v is not None} for e in want] == [
            {k: e[k] for k in e if k in _TSV_OF}
            for e in map(json.loads, lines.read_text().splitlines())], expected.name
        assert len(want) >= len(records) > 0, expected.name
        later += sum(len(r.get("zeek_later", ())) for r in records)
    assert later >= 4  # idle_leak's and syn_timeout's


#: The conn.log's columns a record says, and the entry's (record_entries) they come from
_TSV_OF = {"ts": "ts", "id.orig_h": "orig_h", "id.orig_p": "orig_p", "id.resp_h": "resp_h",
           "id.resp_p": "resp_p", **{c: c for c in ZEEK_COLUMNS}}


def _json_of(entry):
    return {k: entry[v] for k, v in _TSV_OF.items()}


def _tsv_of(entry):
    """Zeek's TSV text of an entry's values: times with 6 decimals, unset as -, an empty
    history as (empty)."""
    out = {}
    for k, v in _json_of(entry).items():
        out[k] = "-" if v is None else f"{v:.6f}" if isinstance(v, float) else \
            str(v) or "(empty)"
    return out


def test_tunnel_parents_tie_a_tunnels_connections_together(tmp_path):
    """samples/vxlan.pcap (the kernel's VXLAN, VNIs 42 and 43): each connection's
    tunnel_parents holds one uid, its tunnel's, the same for the connections of one VNI and
    different between the two; a connection in no tunnel has none (above)."""
    entries = rows(conn_log(tmp_path, "vxlan.pcap"))
    by_port = {}
    for e in entries:
        assert e["tunnel_parents"].startswith("C") and "," not in e["tunnel_parents"]
        by_port.setdefault(e["tunnel_parents"], set()).add(e["id.orig_p"][:2])
    # the leaked connections' client ports are 42xxx in VNI 42 and 43xxx in VNI 43
    assert sorted(ports - {"45"} for ports in by_port.values()) == [{"42"}, {"43"}]


def test_a_bare_zeek_has_no_likely_server_ports(tmp_path):
    """`zeek -b` loading base/protocols/conn alone: likely_server_ports is empty, so a
    lone SYN-ACK from port 80 is not flipped at creation (as in Zeek's bare-mode
    core.connection_flipped run): "H", its sender the originator."""
    import dpkt

    path = tmp_path / "h.pcap"
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_RAW)
        tcp = dpkt.tcp.TCP(sport=80, dport=6705, seq=1, ack=2, flags=S_ | A_, win=1024)
        ip = dpkt.ip.IP(src=b"\xad\xc0\xa3\x80", dst=b"\x8d\x8e\xdc\xeb", p=6, data=tcp)
        ip.len = len(ip)
        w.writepkt(bytes(ip), 1_300_000_000)
    out = tmp_path / "conn.log"
    for extra, history, orig_p in (([], "^h", "6705"), (["--zeek-bare"], "H", "80")):
        assert main(["analyze", str(path), "--zeek-conn", str(out), "-q", *extra]) == 0
        (e,) = rows(out.read_text())
        assert (e["history"], e["id.orig_p"]) == (history, orig_p)


def test_uids_are_the_base62_of_each_keys_hash():
    """The uids made in bulk are each key's 96-bit blake2b hash (hashlib's: the compiled
    one's keys of one block, several, none, and not ASCII) in base 62 after a C, as the
    plain conversion writes it, hashes with leading zero digits included."""
    import hashlib

    from pcapstate.derive.texts import words
    from pcapstate.render.zeeklog import _uids

    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

    def plain(key):
        n = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=12).digest(), "big")
        out = ""
        while n:
            n, d = divmod(n, 62)
            out = digits[d] + out
        return "C" + out

    keys = [f"10.0.0.{i % 250}:{i}|10.0.0.1:80|{i / 7:.6f}" for i in range(20000)]
    keys += ["", "é" * 70, *("x" * n for n in (127, 128, 129, 256, 257, 1000))]
    got = _uids(words(keys))
    assert got == [plain(k) for k in keys]
    assert min(map(len, got)) < max(map(len, got)) == 18  # 17 digits, or fewer
    assert _uids(words([])) == []


def test_times_are_written_as_zeek_writes_them():
    """derive/records.py fixed6, by compiled code where it can tell the rounding: the same
    text as "%.6f" (Zeek's times and intervals) for a capture's times, durations, values
    near a half microsecond, 0 and -0, the largest it writes and beyond, NaN."""
    import random

    from pcapstate.derive.records import fixed6

    rng = random.Random(7)
    values = [1796369227.524035, 0.00022006034851074219, 5e-7, 4.9999999e-7, 2.5e-6,
              1.0000005, 123.4565, 0.0, -0.0, 4294967295.999999, 4294967296.5, -1.5,
              float("nan"), float("inf")]
    values += [rng.random() * 10 ** rng.randint(-7, 10) for _ in range(20000)]
    values += [rng.randint(0, 2**31) / 1e6 + rng.randint(0, 4) * 1e-9 for _ in range(20000)]
    assert fixed6(np.array(values)).strings() == [f"{v:.6f}" for v in values]


def test_zeeks_view_is_followed_only_when_asked_or_held(capsys):
    """Zeek's view costs a record per live connection: without --zeek or an output that
    holds it, the tracker keeps no Zeek table, the result no Zeek counts and the summary no
    Zeek line. With --zeek, the summary counts every line of the conn.log: an unanswered SYN
    sent again past Zeek's 5 s attempt timer is one connection to pcapstate and several S0
    lines to Zeek."""
    from pcapstate.derive.summary import Summary
    from pcapstate.pipeline import analyze
    from pcapstate.settings import Settings
    from pcapstate.track.connections import Tracker

    assert len(Tracker(Settings(), lambda *_: None, slots=8).V) == 0
    assert len(Tracker(Settings(zeek=True), lambda *_: None, slots=8).V) == 8
    with pytest.raises(ValueError, match="Zeek's view"):
        Summary(Settings(), on_record=print)
    capture = str(SAMPLES / "syn_timeout.pcap")
    plain = analyze([capture])
    assert plain["settings"]["zeek"] is False
    assert "zeek_conn_states" not in plain["connections"]
    states: list[str] = []
    keys: list[list[str]] = []

    def on_zeek(entries: dict) -> None:
        states.extend(entries["conn_state"])
        keys.append(list(entries))

    held = analyze([capture], on_zeek=on_zeek)
    assert held["settings"]["zeek"] is True
    # a library's user may lay the columns out in their order: the conn.log's fields' first
    assert all(k[:len(ZEEK_FIELDS) + 1] == [*ZEEK_FIELDS, "timed"] for k in keys) and keys
    assert len(states) > held["connections"]["total"] == 1 and set(states) == {"S0"}
    assert held["connections"]["zeek_conn_states"] == Counter(states)
    assert analyze([capture], Settings(zeek=True))["connections"]["zeek_conn_states"] \
        == Counter(states)

    assert main(["analyze", capture]) == 0
    assert "Zeek" not in capsys.readouterr().out
    for asked in ("--zeek", "--zeek-bare"):
        assert main(["analyze", capture, asked]) == 0
        assert f"  Zeek's conn_state: S0 {len(states)} ({len(states)} of Zeek's " \
            "connections" in capsys.readouterr().out, asked
    # checked, the SYNs' checksums (captured on their sender, left to the card) are wrong:
    # Zeek marks them and goes no further (docs/zeek.md), its view is still counted
    assert main(["analyze", capture, "--zeek-checksums"]) == 0
    assert "  Zeek's conn_state: OTH " in capsys.readouterr().out
