"""The capture reader on files written byte by byte here, good and broken. A pcap's records
are read in batches (the compiled walk decodes them): what each frame was is checked by its
TCP sequence number and payload length, against dpkt's reading of the same bytes."""

import gzip
import io
import os
import struct
import threading

import dpkt
import pytest

from pcapstate.read.capture import CaptureError, open_capture, open_captures


def segment(i: int, size: int = 10) -> bytes:
    """An Ethernet frame holding a TCP segment whose sequence number (1000 i) and payload
    length (size + i) say which one it is."""
    tcp = dpkt.tcp.TCP(sport=40000 + i, dport=80, seq=1000 * i, flags=dpkt.tcp.TH_ACK,
                       data=bytes([i % 256]) * (size + i))
    ip = dpkt.ip.IP(src=bytes([192, 0, 2, 1]), dst=bytes([192, 0, 2, 2]), p=6, data=tcp)
    return bytes(dpkt.ethernet.Ethernet(src=bytes(6), dst=bytes(6), data=ip))


FRAMES = [segment(i) for i in range(5)]
SEGMENTS = [(1000 * i, 10 + i) for i in range(5)]  # (sequence number, payload length)
TIMES = [1_700_000_000.25 + i * 0.5 for i in range(5)]


def pcap(records=None, order="<", ns=False, linktype=1, snaplen=65535):
    """Records (timestamp, frame), or (timestamp, frame, original length); the original
    length is the frame's + 3 unless given."""
    records = list(zip(TIMES, FRAMES, strict=True)) if records is None else records
    magic = 0xA1B23C4D if ns else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    for ts, frame, *orig in records:
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if ns else 1e6))
        out += struct.pack(order + "IIII", sec, frac, len(frame), *orig or [len(frame) + 3])
        out += frame
    return out


def read(cap, rows=1 << 16):
    """The capture's batches: the timestamps, and (sequence number, payload length) of each
    record."""
    batches = [(b.ts.tolist(), list(zip(b.seq.tolist(), b.plen.tolist(), strict=True)))
               for b in cap.batches(rows=rows)]
    return [t for ts, _ in batches for t in ts], [s for _, segs in batches for s in segs]


def by_dpkt(data):
    """dpkt's reading of the same pcap bytes, as `read` gives them."""
    records = list(dpkt.pcap.Reader(io.BytesIO(data)))
    segs = [dpkt.ethernet.Ethernet(frame).data.data for _, frame in records]
    return [float(ts) for ts, _ in records], [(s.seq, len(s.data)) for s in segs]


def block(btype, body, order="<"):
    body += bytes(-len(body) % 4)
    n = len(body) + 12
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def shb(order="<"):
    return block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), order)


def idb(linktype, tsresol=None, snaplen=0, order="<"):
    opts = b""
    if tsresol is not None:
        opts = struct.pack(order + "HH", 9, 1) + bytes([tsresol, 0, 0, 0])
        opts += struct.pack(order + "HH", 0, 0)
    return block(1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts, order)


def epb(iface, units, frame, order="<"):
    return block(6, struct.pack(order + "IIIII", iface, units >> 32, units & 0xFFFFFFFF,
                                len(frame), len(frame) + 3) + frame, order)


def write(tmp_path, data, name="c.pcap"):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("ns", [False, True])
def test_pcap_both_resolutions_and_byte_orders(tmp_path, order, ns):
    data = pcap(order=order, ns=ns)
    path = write(tmp_path, data)
    cap = open_capture(path)
    assert cap.format == ("pcap-ns" if ns else "pcap") and cap.linktypes == {1}
    assert cap.first_ts == pytest.approx(TIMES[0])
    ts, segs = read(cap)
    assert segs == SEGMENTS and (ts, segs) == (pytest.approx(by_dpkt(data)[0], abs=1e-9),
                                               by_dpkt(data)[1])
    assert ts == pytest.approx(TIMES, abs=1e-6)
    assert cap.records == 5 and not cap.warnings
    # the original length, read in the file's byte order: one below its captured length
    cap = open_capture(write(tmp_path, pcap([(1.0, FRAMES[0], len(FRAMES[0]) - 1)],
                                            order=order, ns=ns)))
    assert read(cap)[1] == SEGMENTS[:1]
    assert cap.warnings == [f"{path}: 1 record whose original length is below its captured "
                            "length"]


def test_iterating_a_pcap_is_refused(tmp_path):
    """A pcap's records are walked by compiled code, in batches, only."""
    cap = open_capture(write(tmp_path, pcap()))
    with pytest.raises(TypeError, match="a pcap capture is read by Capture.batches()"):
        iter(cap)


def test_records_straddle_chunk_boundaries(tmp_path):
    records = [(1.0 + i, segment(i, 999)) for i in range(3000)]  # ~3 MB
    data = pcap(records)
    cap = open_capture(write(tmp_path, data))
    ts, segs = read(cap)
    assert len(segs) == 3000 and (ts, segs) == by_dpkt(data)
    assert segs == [(1000 * i, 999 + i) for i in range(3000)]
    assert cap.bytes_read == len(data)


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_interfaces_with_their_own_linktype_and_resolution(tmp_path, order):
    data = (shb(order) + idb(1, order=order) + idb(101, tsresol=9, order=order)
            + block(0x0BAD, b"unknown block", order)
            + epb(0, 1_700_000_000_250_000, FRAMES[0], order)
            + epb(1, 1_700_000_000_750_000_000, FRAMES[1], order)
            + block(5, b"\x00" * 8, order))  # interface statistics: skipped
    cap = open_capture(write(tmp_path, data, "c.pcapng"))
    got = list(cap)
    assert cap.format == "pcapng" and cap.linktypes == {1, 101}
    assert [(lt, f) for _, lt, f, _ in got] == [(1, FRAMES[0]), (101, FRAMES[1])]
    assert [t for t, _, _, _ in got] == pytest.approx([1_700_000_000.25, 1_700_000_000.75])


def test_pcapng_power_of_two_resolution_and_simple_packets(tmp_path):
    spb = block(3, struct.pack("<I", len(FRAMES[2])) + FRAMES[2])
    data = shb() + idb(1, tsresol=0x80 | 10) + epb(0, 1024 * 5, FRAMES[0]) + spb
    got = list(open_capture(write(tmp_path, data, "c.pcapng")))
    assert got[0][0] == 5.0
    assert got[1][2] == FRAMES[2] and got[1][0] == 5.0  # no timestamp: the previous one


PCAPNG = shb() + idb(1) + b"".join(epb(0, 10**6 * i, f) for i, f in enumerate(FRAMES))


@pytest.mark.parametrize("name,data", [("pcap", pcap()), ("pcapng", PCAPNG)])
def test_gzip_is_detected_by_content(tmp_path, name, data):
    cap = open_capture(write(tmp_path, gzip.compress(data), "c.bin"))
    assert cap.compressed
    assert read(cap)[1] == SEGMENTS
    assert cap.bytes_read == len(data)
    if name == "pcapng":
        assert [f for _, _, f, _ in cap] == FRAMES


def test_gzip_that_ends_early_keeps_what_was_read(tmp_path):
    data = pcap([(1.0 + i, bytes(100)) for i in range(2000)])
    cut = gzip.compress(data)[:-200]
    cap = open_capture(write(tmp_path, cut))
    ts, _ = read(cap)
    assert 0 < len(ts) < 2000 and cap.records == len(ts)
    assert ts == [1.0 + i for i in range(len(ts))]  # the first records, whole
    assert len(cap.warnings) == 1 and "gzip stream ends early" in cap.warnings[0]


@pytest.mark.parametrize("name,data", [("pcap", pcap()), ("pcapng", PCAPNG)])
def test_stdin(monkeypatch, name, data):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    [cap] = open_captures(["-"])
    assert cap.first_ts == pytest.approx(TIMES[0] if name == "pcap" else 0.0)
    assert cap.size is None  # a stream
    assert read(cap)[1] == SEGMENTS  # what was peeked is not lost
    assert cap.records == 5 and not cap.warnings


def test_a_pcap_stream_gives_what_has_come_at_once(tmp_path):
    """A stream's records are decoded as they come (each chunk read is a batch), not when
    more comes: the first two are had while the writer waits to write the rest."""
    fifo = tmp_path / "live.pcap"
    os.mkfifo(fifo)
    data = pcap()
    head = len(pcap(list(zip(TIMES[:2], FRAMES[:2], strict=True))))
    had = threading.Event()

    def writer() -> None:
        with open(fifo, "wb") as f:
            f.write(data[:head])  # one write, under PIPE_BUF: read whole
            f.flush()
            had.wait(30)
            f.write(data[head:])

    threading.Thread(target=writer, daemon=True).start()
    cap = open_capture(str(fifo))
    batches = cap.batches()
    first = next(batches).seq.tolist()
    had.set()
    assert first == [seq for seq, _ in SEGMENTS[:2]]
    assert [s for b in batches for s in b.seq.tolist()] == [s for s, _ in SEGMENTS[2:]]
    assert cap.records == 5 and not cap.warnings


def test_rotated_files_are_ordered_by_their_first_timestamp(tmp_path):
    first = write(tmp_path, pcap(list(zip(TIMES[:2], FRAMES[:2], strict=True))), "a.pcap1")
    second = write(tmp_path, pcap(list(zip(TIMES[2:], FRAMES[2:], strict=True))), "a.pcap")
    caps = open_captures([second, first])
    assert [c.path for c in caps] == [first, second]
    assert [s for c in caps for s in read(c)[1]] == SEGMENTS


def test_the_first_timestamp_of_an_empty_file_joined_to_another(tmp_path):
    """`cat idle.pcap busy.pcap`: the first record is the second section's, in its own
    byte order and resolution."""
    joined = write(tmp_path, pcap([]) + pcap(order=">", ns=True))
    cap = open_capture(joined)
    assert cap.first_ts == pytest.approx(TIMES[0])
    assert read(cap) == (pytest.approx(TIMES, abs=1e-6), SEGMENTS)
    assert "a second pcap file header at byte 24" in cap.warnings[0]


def test_empty_pcap_with_a_header_is_a_valid_capture(tmp_path):
    cap = open_capture(write(tmp_path, pcap([])))
    assert cap.first_ts is None and list(cap.batches()) == []
    assert cap.records == 0 and not cap.warnings


@pytest.mark.parametrize("data,message,offset", [
    (b"", "empty file", 0),
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a pcap or pcapng file (magic 89504e47)", 0),
    (pcap()[:10], "capture ends inside the pcap file header", 10),
    (shb() + struct.pack("<II", 6, 13) + bytes(8), "corrupt pcapng block", 28),
    (shb() + epb(3, 0, b"x"), "undeclared interface", 28),
])
def test_bad_before_the_first_record_is_an_error(tmp_path, data, message, offset):
    path = write(tmp_path, data)
    with pytest.raises(CaptureError) as e:
        open_capture(path)
    assert message in str(e.value) and e.value.offset == offset
    assert str(e.value).startswith(f"{path}: byte {offset}: ")


@pytest.mark.parametrize("data,message,first_ts", [
    (pcap([(1.0, bytes(300000))], snaplen=65535), "record claims 300,000 bytes", 1.0),
    (pcap()[:24 + 16 + 5], "capture ends in the middle of a record", TIMES[0]),
    (pcap()[:24 + 5], "capture ends in the middle of a record", None),
], ids=["too long", "cut in the record", "cut in its header"])
def test_a_bad_first_pcap_record_is_an_error_when_read(tmp_path, data, message, first_ts):
    """open_capture reads a pcap's first record header alone (its timestamp); what is wrong
    with the record is found by the compiled walk, before any record: an error."""
    path = write(tmp_path, data)
    cap = open_capture(path)
    assert cap.first_ts == (pytest.approx(first_ts) if first_ts else None)
    with pytest.raises(CaptureError) as e:
        list(cap.batches())
    assert str(e.value) == f"{path}: byte 24: {message}" + (" (snaplen 65,535): corrupt"
                                                            if "claims" in message else "")


def test_bad_after_records_is_a_warning(tmp_path):
    good = pcap()
    cut = write(tmp_path, good[:-4], "cut.pcap")
    cap = open_capture(cut)
    assert read(cap)[1] == SEGMENTS[:4] and cap.records == 4
    assert cap.warnings == [f"{cut}: byte {len(good) - 16 - len(FRAMES[4])}: capture ends in "
                            "the middle of a record; 4 records read before it"]
    huge = write(tmp_path, good + struct.pack("<IIII", 1, 0, 2**31, 2**31), "huge.pcap")
    cap = open_capture(huge)
    assert read(cap)[1] == SEGMENTS and "record claims 2,147,483,648 bytes" in cap.warnings[0]


def test_files_that_cannot_be_opened(tmp_path):
    with pytest.raises(CaptureError, match="No such file"):
        open_capture(str(tmp_path / "missing.pcap"))
    with pytest.raises(CaptureError, match="is a folder"):
        open_capture(str(tmp_path))
    with pytest.raises(CaptureError, match="standard input"):
        open_captures(["-", str(tmp_path / "x")])


def isb(iface, units, drops=None):
    opts = b""
    if drops is not None:
        opts = struct.pack("<HHQ", 5, 8, drops) + struct.pack("<HH", 0, 0)
    return block(5, struct.pack("<III", iface, units >> 32, units & 0xFFFFFFFF) + opts)


@pytest.mark.parametrize("units", [7_000_000_000, 7_000_000])  # as the spec says; as dumpcap
def test_pcapng_statistics_give_the_capture_end_and_drops(tmp_path, units):
    data = shb() + idb(1, tsresol=9) + epb(0, 5_000_000_000, FRAMES[0]) + isb(0, units, 12)
    cap = open_capture(write(tmp_path, data, "c.pcapng"))
    assert len(list(cap)) == 1
    assert cap.end_ts == 7.0 and cap.dropped == 12


def test_capture_end_before_the_last_packet_is_ignored(tmp_path):
    data = shb() + idb(1, tsresol=9) + epb(0, 5_000_000_000, FRAMES[0]) + isb(0, 1)
    cap = open_capture(write(tmp_path, data, "c.pcapng"))
    list(cap)
    assert cap.end_ts is None and cap.dropped == 0
