"""The fixed-offset decoder against frames dpkt builds, and against random bytes."""

import struct
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcapstate.decode import Segment, decode, window_scale
from pcapstate.vocab import ACK, SYN

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

SRC4, DST4 = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])
SRC6, DST6 = bytes(15) + b"\x01", bytes(15) + b"\x02"


def tcp(flags=ACK, payload=b"xyz", opts=b""):
    return dpkt.tcp.TCP(sport=40000, dport=80, seq=123, ack=456, flags=flags, win=999,
                        off=(20 + len(opts)) // 4, opts=opts, data=payload)


def ip4(l4=None, p=dpkt.ip.IP_PROTO_TCP, **kw):
    pkt = dpkt.ip.IP(src=SRC4, dst=DST4, p=p, id=77, data=l4 if l4 is not None else tcp(), **kw)
    return bytes(pkt)


def ip6(l4=None, nxt=dpkt.ip.IP_PROTO_TCP, ext=b""):
    body = ext + bytes(l4 if l4 is not None else tcp())
    hdr = struct.pack("!IHBB", 6 << 28, len(body), nxt, 64) + SRC6 + DST6
    return hdr + body


def ether(payload, etype=0x0800, tags=()):
    frame = b"\x02" * 6 + b"\x04" * 6
    for tpid in tags:
        frame += struct.pack("!HH", tpid, 100)
    return frame + struct.pack("!H", etype) + payload


def expect_tcp(result, src=SRC4, dst=DST4, ipid=77):
    assert isinstance(result, Segment), result
    assert (result.src, result.dst, result.sport, result.dport) == (src, dst, 40000, 80)
    assert (result.seq, result.ack, result.flags, result.win, result.plen) == (123, 456, ACK,
                                                                               999, 3)
    assert result.ipid == ipid


@pytest.mark.parametrize("tags", [(), (0x8100,), (0x88A8, 0x8100)])
def test_ethernet_with_vlan_tags(tags):
    frame = ether(ip4(), tags=tags)
    expect_tcp(decode(1, frame, len(frame)))


def test_linux_cooked_sll_and_sll2():
    sll = b"\x00\x00\x03\x04\x00\x06" + b"\x02" * 8 + b"\x08\x00" + ip4()
    expect_tcp(decode(113, sll, len(sll)))
    sll2 = b"\x86\xdd\x00\x00" + bytes(16) + ip6()
    expect_tcp(decode(276, sll2, len(sll2)), SRC6, DST6, 0)


@pytest.mark.parametrize("linktype", [101, 12, 228])
def test_raw_ip(linktype):
    frame = ip4()
    expect_tcp(decode(linktype, frame, len(frame)))


@pytest.mark.parametrize("linktype,header", [
    (0, struct.pack("<I", 2)), (0, struct.pack(">I", 2)), (108, struct.pack(">I", 2)),
    (0, struct.pack("<I", 30))])
def test_bsd_loopback(linktype, header):
    frame = header + (ip6() if header in (struct.pack("<I", 30),) else ip4())
    result = decode(linktype, frame, len(frame))
    assert isinstance(result, Segment)


def test_ipv6_extension_headers_are_skipped():
    hop = bytes([60, 0]) + bytes(6)  # hop-by-hop, next: destination options
    dst = bytes([6, 0]) + bytes(6)  # destination options, next: TCP
    frame = ether(ip6(nxt=0, ext=hop + dst), etype=0x86DD)
    expect_tcp(decode(1, frame, len(frame)), SRC6, DST6, 0)


def test_fragments_and_other_protocols_are_named():
    frag = ether(ip4(mf=1))
    assert decode(1, frag, len(frag)) == "other:ipv4_fragment"
    frag6 = ether(ip6(nxt=44, ext=bytes([6, 0, 0, 1]) + bytes(4)), etype=0x86DD)
    assert decode(1, frag6, len(frag6)) == "other:ipv6_fragment"
    udp = ether(ip4(dpkt.udp.UDP(sport=1, dport=2), p=17))
    assert decode(1, udp, len(udp)) == "other:udp"
    arp = ether(bytes(28), etype=0x0806)
    assert decode(1, arp, len(arp)) == "other:arp"
    assert decode(147, b"abc", 3) == "bad:unsupported_linktype_147"


def test_cut_by_snaplen_keeps_the_segment_while_the_tcp_header_is_there():
    frame = ether(ip4(tcp(payload=b"x" * 1000)))
    result = decode(1, frame[:54], len(frame))  # headers only, as with -s 54
    assert isinstance(result, Segment) and result.plen == 1000
    assert decode(1, frame[:40], len(frame)) == "bad:cut_by_snaplen"
    assert decode(1, frame[:40], 40) == "bad:truncated"


def test_bad_headers():
    frame = bytearray(ether(ip4()))
    frame[14] = 0x43  # IHL of 3 words
    assert decode(1, bytes(frame), len(frame)) == "bad:ipv4_header"
    frame = bytearray(ether(ip4()))
    frame[14 + 20 + 12] = 0xF0  # TCP data offset of 60 bytes, past the segment
    assert decode(1, bytes(frame), len(frame)) == "bad:tcp_data_offset"


def test_syn_options_give_the_window_scale():
    opts = b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + bytes(8) + b"\x01\x03\x03\x07"
    frame = ether(ip4(tcp(flags=SYN, payload=b"", opts=opts)))
    result = decode(1, frame, len(frame))
    assert result.opts == opts and window_scale(result.opts) == 7
    assert window_scale(b"\x01\x01\x00") is None
    assert window_scale(b"\x03\x03") is None  # cut short


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([0, 1, 12, 101, 108, 113, 228, 229, 276, 999]), st.binary(max_size=120))
def test_random_bytes_never_raise(linktype, frame):
    result = decode(linktype, frame, len(frame))
    assert isinstance(result, Segment | str)


def test_tcp_checksums_as_wireshark_finds_them():
    """decode.checksum_ok and the compiled check against tshark's verdicts on samples:
    loopback captures (the kernel leaves the checksum to a card that is not there: all
    wrong), a TUN path (all right), IPv6, and a capture whose payloads were cut (not
    checked). The counts are tshark's (-o tcp.check_checksum:TRUE, tcp.checksum.status)."""
    from pcapstate.scan import decode_one

    expected = {"client_close.pcap": (30, 0), "ipv6.pcap": (20, 0),
                "vantage_client.pcap": (0, 30), "lossy.pcap": (0, 174)}
    for name, (bad, good) in expected.items():
        with open(SAMPLES / name, "rb") as f:
            reader = dpkt.pcap.Reader(f)
            frames = [(reader.datalink(), buf) for _, buf in reader]
        segs = [decode(lt, buf, len(buf), True) for lt, buf in frames]
        fast = [decode_one(lt, buf, len(buf), True) for lt, buf in frames]
        checked = [not s.cut for s in segs]
        assert (sum(s.bad_sum for s in segs), sum(checked) - sum(s.bad_sum for s in segs)) \
            == (bad, good), name
        assert [bool(b.bad_sum[0]) for b in fast] == [s.bad_sum for s in segs], name
