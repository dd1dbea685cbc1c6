"""The connection records' JSON text (derive/records.py lines), made a column at a time:
the very bytes orjson writes for the records' dicts, which are read back from it."""

import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest

from pcapstate.derive.texts import gather, json_columns, json_texts, words
from pcapstate.pipeline import analyze

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@pytest.mark.parametrize(("name", "engine"), [
    ("vxlan.pcap", "fast"),  # in a tunnel
    ("idle_leak.pcap", "fast"),  # zeek_later, a move by a timer
    ("late_leak.pcap", "fast"),  # moves inferred, closed_by null
    ("ipv6.pcap", "fast"),
    ("time_wait_pressure.pcap", "fast"),
    pytest.param("keepalive_race.pcap", "tshark", marks=pytest.mark.skipif(
        shutil.which("tshark") is None, reason="tshark not installed")),  # Wireshark's flags
])
def test_lines_are_what_orjson_writes_of_the_records(name: str, engine: str) -> None:
    chunks: list[bytes] = []
    recs: list[dict] = []
    analyze([str(SAMPLES / name)], on_lines=chunks.append, on_record=recs.append,
            engine=engine)
    text = b"".join(chunks)
    assert text.count(b"\n") == len(recs) > 0
    assert text == b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in recs)
    # the record's fields in their order (docs/json.md), the optional ones where they are
    order = ["id", "client", "server", "roles_from", "mid_stream", "first_ts", "last_ts",
             "end", "closer", "closer_evidence", "closed_by", "reset_by", "endpoints",
             "anomalies", "evicted", "tunnel", "wireshark_analysis", "zeek", "zeek_later"]
    for r in recs:
        assert list(r) == [k for k in order if k in r]
        assert ("wireshark_analysis" in r) == (engine == "tshark")
        for e in r["endpoints"].values():
            assert list(e) == ["final_state", "packets", "payload_bytes", "syn", "fin", "rst",
                               "transitions"]
            for t in e["transitions"]:
                assert list(t) == [k for k in ("ts", "state", "timer", "inferred") if k in t]
                assert all(t[k] is True for k in ("timer", "inferred") if k in t)
    if name == "vxlan.pcap":
        assert all("tunnel" in r for r in recs)
    moves = [t for r in recs for e in r["endpoints"].values() for t in e["transitions"]]
    if name == "idle_leak.pcap":
        assert any("zeek_later" in r for r in recs) and any("timer" in t for t in moves)
    if name == "late_leak.pcap":
        assert any("inferred" in t for t in moves)
        assert any(r["closed_by"] is None for r in recs)


def _conversation(times: list[float]) -> list[tuple[float, bytes]]:
    """A connection opened, a byte each way, closed by the client: a frame at each time."""
    import dpkt

    c, s = (40000, bytes([192, 0, 2, 1])), (80, bytes([192, 0, 2, 2]))
    steps = [(c, s, dpkt.tcp.TH_SYN, 100, 0, b""), (s, c, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK,
                                                     500, 101, b""),
             (c, s, dpkt.tcp.TH_ACK, 101, 501, b"a"), (s, c, dpkt.tcp.TH_ACK, 501, 102, b"b"),
             (c, s, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK, 102, 502, b""),
             (s, c, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK, 502, 103, b""),
             (c, s, dpkt.tcp.TH_ACK, 103, 503, b"")]
    frames = []
    for t, ((sport, src), (dport, dst), flags, seq, ack, data) in zip(times, steps,
                                                                       strict=True):
        tcp = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, data=data,
                           win=1000)
        ip = dpkt.ip.IP(src=src, dst=dst, p=6, data=tcp)
        frames.append((t, bytes(dpkt.ethernet.Ethernet(src=bytes(6), dst=bytes(6), data=ip))))
    return frames


@pytest.mark.parametrize(("start", "ns"), [
    (1_795_548_284.123456, False),  # whole microseconds: written by compiled code
    (1_795_548_284.123456789, True),  # nanoseconds: orjson's texts
    (0.000123, False),  # under a second: orjson's (1.23e-4)
    (4_294_967_294.999, False),  # the last seconds a pcap holds (32 bits)
])
def test_times_are_written_as_orjson_writes_them(tmp_path: Path, start: float,
                                                  ns: bool) -> None:
    """A record's times: whole microseconds from 1 s to 2**33 s are written by compiled
    code (records._micros), the other floats by orjson; either way orjson's text."""
    import struct

    times = [start + k * 0.0011 + (k * 0.000000007 if ns else 0) for k in range(7)]
    out = struct.pack("<IHHiIII", 0xA1B23C4D if ns else 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for t, frame in _conversation(times):
        sec, frac = divmod(round(t * (1e9 if ns else 1e6)), 10**9 if ns else 10**6)
        out += struct.pack("<IIII", sec, frac, len(frame), len(frame)) + frame
    capture = tmp_path / "c.pcap"
    capture.write_bytes(out)
    chunks: list[bytes] = []
    recs: list[dict] = []
    analyze([str(capture)], on_lines=chunks.append, on_record=recs.append)
    assert len(recs) == 1 and recs[0]["end"] == "closed"
    assert b"".join(chunks) == orjson.dumps(recs[0], option=orjson.OPT_APPEND_NEWLINE)
    moves = [t["ts"] for e in recs[0]["endpoints"].values() for t in e["transitions"]]
    whole = [round(v * 1e6) / 1e6 == v and 1 <= v < 2**33 for v in moves]
    assert all(whole) == (not ns and start >= 1)


def test_lines_end_as_asked_and_are_read_back_alike() -> None:
    """Lines that end with the result array's separator (render/output.py SEPARATOR) are
    JSON Lines' lines, the newline written as it; on_record's dicts read from them too."""
    from pcapstate.render.output import SEPARATOR

    texts: dict[str, list[bytes]] = {"\n": [], SEPARATOR: []}
    recs: dict[str, list[dict]] = {"\n": [], SEPARATOR: []}
    for end in texts:
        analyze([str(SAMPLES / "time_wait_pressure.pcap")], on_lines=lambda t, end=end:
                texts[end].append(bytes(t)), on_record=recs[end].append, line_end=end)
    lines, separated = (b"".join(texts[end]) for end in ("\n", SEPARATOR))
    assert lines.count(b"\n") == len(recs["\n"]) > 1
    assert separated == lines.replace(b"\n", SEPARATOR.encode())
    assert recs["\n"] == recs[SEPARATOR]


def test_texts_are_orjsons_even_with_a_comma_inside() -> None:
    for values in (np.array(["a,b", None, 'say "hi"', "é\n"], object),
                   np.array([1.5, 1e16, 1e-7, 0.1, 1796161191.08386]),
                   np.array([0, -3, 2**40], np.int64), np.array([True, False]),
                   np.array([], np.int64), np.array([], object)):
        assert json_texts(values).strings() == [orjson.dumps(v).decode()
                                                for v in values.tolist()]
    values = [("C1", "C2"), None, ("C3",), 7]  # a list as it is, sets of strings as tuples
    assert json_texts(values).strings() == [orjson.dumps(v).decode() for v in values]


def test_columns_texts_come_from_one_call_cut_where_json_says() -> None:
    columns = [np.array([1, -2], np.int64), [], np.array(['a,"]', None, "[{x}] \\"], object),
               [{"k": [1, "b,c"]}, ("d", 3)], np.array([0.5, 1e300]), np.array([True]), []]
    texts = json_columns(columns)
    assert [t.strings() for t in texts] == [
        [orjson.dumps(v).decode() for v in (c.tolist() if isinstance(c, np.ndarray) else c)]
        for c in columns]
    assert len({id(t.data) for t in texts}) == 1  # one buffer, which gather reads in place


def test_gather_puts_each_line_together_from_its_parts() -> None:
    names = words(["zero", "one", "", "trois é"])
    values = json_texts(np.array([7, -1, 30, 2**40, 0]))
    picks = np.array([3, 0, 2, 1, -1])  # -1: the last, as numpy's (a Coded column's None)
    listed = ["zero", "one", "", "trois é"]
    lines = gather(["<", values, "|", (names, picks), "", ">"], 5)
    expected = [f"<{v}|{listed[p]}>"
                for v, p in zip([7, -1, 30, 2**40, 0], picks.tolist(), strict=True)]
    assert lines.strings() == expected
    assert lines.data.tobytes() == "".join(expected).encode()
    # a table that two parts pick from, each its own way
    twice = gather([(names, picks), "/", (names, picks[::-1]), values], 5)
    assert twice.strings() == [f"{listed[a]}/{listed[b]}{v}" for a, b, v in zip(
        picks.tolist(), picks[::-1].tolist(), [7, -1, 30, 2**40, 0], strict=True)]
    # units of lines: 2, none, 3 (and none again)
    units = gather([(names, picks), ","], 5, np.array([0, 2, 2, 5, 5]))
    assert units.strings() == ["trois é,zero,", "", ",one,trois é,", ""]
    assert gather(["x", values], 0).strings() == []


def test_one_picked_part_lays_the_texts_one_after_another() -> None:
    """What a Parquet string column of names is made of (render/parquet.py _names)."""
    names = words(["zero", "", "trois é", "one"])
    at = np.array([2, 0, 0, 1, 3, 2])
    texts = gather([(names, at)], len(at))
    assert texts.strings() == [["zero", "", "trois é", "one"][a] for a in at.tolist()]
    assert texts.start[0] == 0 and (texts.start[1:] == texts.stop[:-1]).all()  # laid out
    assert texts.data.tobytes() == "".join(texts.strings()).encode()
    assert gather([(names, np.array([], np.int64))], 0).strings() == []


def test_address_texts_are_the_addresses_written_by_compiled_code() -> None:
    """The Parquet file's client and server (address_texts, compiled) are the addresses as
    the JSON record and the conn.log write them (_addresses, Python's): IPv4 and IPv6 hosts,
    ports from 0 to 65535."""
    from pcapstate.derive.records import _addresses, _endpoints, address_texts
    from pcapstate.track.slots import ROW

    rows = np.zeros(4, ROW)
    rows["v6"] = [0, 1, 0, 1]
    rows["ip_lo"] = [[0x0A000001, 0xC0000202], [1, 2**64 - 1], [0, 0xFFFFFFFF], [0, 5]]
    rows["ip_hi"] = [[0, 0], [0x20010DB800000000, 0xFE80000000000000], [0, 0], [0, 0]]
    rows["port"] = [[0, 65535], [443, 1], [80, 8080], [9, 10]]
    ends = _endpoints(rows)
    expected = _addresses(ends)
    got = address_texts(ends)
    assert [t.strings() for t in got] == [expected[:, e].tolist() for e in range(2)]
    assert expected[1].tolist() == ["[2001:db8::1]:443", "[fe80::ffff:ffff:ffff:ffff]:1"]
    assert expected[0].tolist() == ["10.0.0.1:0", "192.0.2.2:65535"]
