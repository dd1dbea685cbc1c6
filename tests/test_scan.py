"""The compiled decoder (pcapstate.scan) against the reference decoder (pcapstate.decode):
the same verdict and the same fields for every record of every sample, for the frames of
tests/test_decode.py, and for random frames."""

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcapstate.capture import open_captures
from pcapstate.corpus import is_capture
from pcapstate.decode import Segment, decode, window_scale
from pcapstate.scan import NOT_SYN, TCP, Batch, decode_one, kind_name, scan_pcap
from tests import test_decode as frames

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
LINKTYPES = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 999]


def as_reference(b: Batch, i: int) -> Segment | str:
    """Row i of a Batch, in the shape `decode` returns."""
    kind = int(b.kind[i])
    if kind != TCP:
        return kind_name(kind)

    def addr(hi, lo):
        if b.v6[i]:
            return int(hi).to_bytes(8, "big") + int(lo).to_bytes(8, "big")
        return int(lo).to_bytes(4, "big")

    return (addr(b.src_hi[i], b.src_lo[i]), addr(b.dst_hi[i], b.dst_lo[i]), int(b.sport[i]),
            int(b.dport[i]), int(b.seq[i]), int(b.ack[i]), int(b.flags[i]), int(b.win[i]),
            int(b.plen[i]), int(b.ipid[i]), int(b.wscale[i]), int(b.iplen[i]))


def reference(linktype: int, frame: bytes, origlen: int) -> Segment | str | tuple:
    seg = decode(linktype, frame, origlen)
    if isinstance(seg, str):
        return seg
    ws = window_scale(seg.opts) if seg.flags & 0x02 else NOT_SYN
    return (*seg[:10], -1 if ws is None else ws, seg.iplen)


def same(linktype: int, frame: bytes, origlen: int | None = None) -> None:
    origlen = len(frame) if origlen is None else origlen
    assert as_reference(decode_one(linktype, frame, origlen), 0) == \
        reference(linktype, frame, origlen)


@pytest.mark.parametrize("path", sorted(p for p in SAMPLES.iterdir() if is_capture(p.name)),
                         ids=lambda p: p.name)
def test_every_sample_record(path):
    for cap in open_captures([str(path)]):
        for _, linktype, frame, origlen in cap:
            same(linktype, frame, origlen)


def test_the_reference_decoders_frames():
    t4, t6 = frames.ip4(), frames.ip6()
    syn = frames.ip4(frames.tcp(flags=0x02, opts=b"\x02\x04\x05\xb4\x01\x03\x03\x07"))
    cases = [
        (1, frames.ether(t4)), (1, frames.ether(t4, tags=(0x8100, 0x88A8))),
        (1, frames.ether(t6, 0x86DD)), (1, frames.ether(b"x" * 28, 0x0806)),
        (1, frames.ether(b"", 0x1234)), (1, frames.ether(syn)),
        (101, t4), (101, t6), (228, t4), (229, t6), (12, b"\x50" + t4[1:]),
        (113, b"\x00" * 14 + b"\x08\x00" + t4), (276, b"\x86\xdd" + b"\x00" * 18 + t6),
        (0, struct.pack("<I", 2) + t4), (108, struct.pack(">I", 24) + t6),
        (0, struct.pack("<I", 99) + t4), (999, t4),
        (101, frames.ip4(b"x" * 8, p=17)), (101, frames.ip4(mf=1)),
        (101, frames.ip6(nxt=0, ext=b"\x06\x00" + b"\x00" * 6)),
        (101, frames.ip6(nxt=44, ext=b"\x06\x00" + b"\x00" * 6)),
    ]
    for linktype, frame in cases:
        same(linktype, frame)
        for cut in (1, 13, 20, 33, 40, 54, 60):  # cut by a snaplen
            if cut < len(frame):
                same(linktype, frame[:cut], len(frame))


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(LINKTYPES), st.binary(max_size=120), st.integers(0, 200))
def test_random_frames(linktype, frame, extra):
    same(linktype, frame, len(frame) + extra % 3 * extra)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([0, 1, 101, 113, 276]), st.binary(min_size=20, max_size=80),
       st.integers(0, 60))
def test_random_tails_after_valid_headers(linktype, tail, cut):
    head = {0: struct.pack("<I", 2), 1: frames.ether(b""), 101: b"",
            113: b"\x00" * 14 + b"\x08\x00", 276: b"\x08\x00" + b"\x00" * 18}[linktype]
    ip = bytearray(frames.ip4(frames.tcp(flags=0x12, payload=b"")))
    frame = head + bytes(ip[:20]) + tail
    same(linktype, frame[: len(frame) - cut % len(frame)], len(frame))


def test_scan_pcap_walks_a_whole_file_in_pieces():
    data = (SAMPLES / "close_wait_leak.pcap").read_bytes()
    buf = np.frombuffer(data, dtype=np.uint8)
    out = Batch.empty(7)  # small, so the scan returns FULL and resumes
    pos, rows, odd = 24, [], np.zeros(2, np.int64)
    while True:
        pos, n, status = scan_pcap(buf, pos, False, 1e-6, 1, 262144, 262144, out, odd, False)
        rows += [as_reference(out, i) for i in range(n)]
        if status != 1:
            break
    assert pos == len(data) and odd.tolist() == [0, 0]
    cap = open_captures([str(SAMPLES / "close_wait_leak.pcap")])[0]
    assert rows == [reference(lt, fr, ol) for _, lt, fr, ol in cap]
