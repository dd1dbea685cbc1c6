"""The decoder (pcapstate.decode.frames) against oracles that share no code with it:

- frames dpkt builds from known field values (every link type, VLAN tags, IPv6 extension
  headers, fragments, other protocols, snaplen cuts, bad headers, TCP options, checksums),
  and random frames dpkt builds the same way;
- frames with the shims between the link header and IP that the decoder follows (MPLS
  label stacks and Ethernet pseudowires, PPPoE sessions, 802.1ah, VN-tags, FabricPath,
  LLC/SNAP), built from their specifications, whole and cut;
- `by_dpkt`: dpkt reading each header of the same bytes (its own header classes), shims
  included, for every record of every sample and for random bytes;
- tshark's decode of every sample and of the known frames, field by field, checksum
  verdicts included (skipped without tshark);
- scan_pcap's walk of a whole file against the records its headers hold, read here, and
  what it hands to the slow path (decode/unwrap.py; tests/test_encapsulations.py tests
  what the slow path makes of it).
"""

import ipaddress
import itertools
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import NamedTuple

import dpkt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcapstate.check.corpus import is_capture
from pcapstate.decode.frames import (
    LINKTYPES,
    NO_WSCALE,
    NOT_SYN,
    TCP,
    Batch,
    decode_one,
    kind_name,
    scan_pcap,
    slow_rows,
)
from pcapstate.read.capture import open_captures
from pcapstate.vocab import ACK, SYN, SYN_SACK, SYN_TS

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SAMPLE_FILES = sorted(p for p in SAMPLES.iterdir() if is_capture(p.name))


def sample_records(path: Path) -> list[tuple[float, int, bytes, int]]:
    """(timestamp, link type, frame, original length) of each record of a sample: a pcap's
    read here from its record headers (pcapstate walks a pcap by compiled code only, into
    batches), a pcapng's as pcapstate's reader yields them."""
    if path.suffix == ".pcapng":
        return list(open_captures([str(path)])[0])
    data = path.read_bytes()
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    unit = 1e-9 if data[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0xFFFF
    records, pos = [], 24
    while pos < len(data):
        sec, frac, incl, orig = struct.unpack_from(order + "IIII", data, pos)
        records.append((sec + frac * unit, linktype, data[pos + 16 : pos + 16 + incl], orig))
        pos += 16 + incl
    return records


SRC4, DST4 = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])
SRC6, DST6 = bytes(15) + b"\x01", bytes(15) + b"\x02"


class Seg(NamedTuple):
    """A decoded TCP segment, as the tests compare it."""

    src: bytes  # 4 or 16 address bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    win: int
    plen: int
    ipid: int
    wscale: int  # the SYN's window scale, NO_WSCALE or NOT_SYN
    synopt: int  # the SYN's SACK-permitted and timestamps options (vocab.SYN_SACK, SYN_TS)
    iplen: int
    cut: bool
    bad_sum: bool


def row(b: Batch, i: int = 0) -> Seg | str:
    """Row i of a Batch: a Seg, or the accounting name of what else the record was."""
    kind = int(b.kind[i])
    if kind != TCP:
        return kind_name(kind)

    def addr(hi, lo) -> bytes:
        if b.v6[i]:
            return int(hi).to_bytes(8, "big") + int(lo).to_bytes(8, "big")
        assert hi == 0, "an IPv4 address has no high half"
        return int(lo).to_bytes(4, "big")

    return Seg(addr(b.src_hi[i], b.src_lo[i]), addr(b.dst_hi[i], b.dst_lo[i]), int(b.sport[i]),
               int(b.dport[i]), int(b.seq[i]), int(b.ack[i]), int(b.flags[i]), int(b.win[i]),
               int(b.plen[i]), int(b.ipid[i]), int(b.wscale[i]), int(b.synopt[i]), int(b.iplen[i]),
               bool(b.cut[i]), bool(b.bad_sum[i]))


def decode(linktype: int, frame: bytes, origlen: int | None = None,
           verify: bool = False) -> Seg | str:
    return row(decode_one(linktype, frame, len(frame) if origlen is None else origlen, verify))


# --- Frames built by dpkt, with known field values ---------------------------------------

def tcp(flags=ACK, payload=b"xyz", opts=b""):
    return dpkt.tcp.TCP(sport=40000, dport=80, seq=123, ack=456, flags=flags, win=999,
                        off=(20 + len(opts)) // 4, opts=opts, data=payload)


def ip4(l4=None, p=dpkt.ip.IP_PROTO_TCP, **kw):
    """An IPv4 packet; dpkt sets its length and both checksums."""
    pkt = dpkt.ip.IP(src=SRC4, dst=DST4, p=p, id=77, data=l4 if l4 is not None else tcp(), **kw)
    return bytes(pkt)


def ip6(l4=None, nxt=dpkt.ip.IP_PROTO_TCP, ext=b""):
    """An IPv6 packet (its TCP checksum left zero: wrong)."""
    body = ext + bytes(l4 if l4 is not None else tcp())
    hdr = struct.pack("!IHBB", 6 << 28, len(body), nxt, 64) + SRC6 + DST6
    return hdr + body


def ip6_summed(l4=None):
    """An IPv6 packet whose TCP checksum dpkt computes."""
    l4 = l4 if l4 is not None else tcp()
    return bytes(dpkt.ip6.IP6(src=SRC6, dst=DST6, nxt=6, hlim=64, plen=len(l4), data=l4))


def ether(payload, etype=0x0800, tags=()):
    frame = b"\x02" * 6 + b"\x04" * 6
    for tpid in tags:
        frame += struct.pack("!HH", tpid, 100)
    return frame + struct.pack("!H", etype) + payload


def expect_tcp(result, src=SRC4, dst=DST4, ipid=77):
    assert isinstance(result, Seg), result
    assert (result.src, result.dst, result.sport, result.dport) == (src, dst, 40000, 80)
    assert (result.seq, result.ack, result.flags, result.win, result.plen) == (123, 456, ACK,
                                                                               999, 3)
    assert (result.ipid, result.wscale, result.cut, result.bad_sum) == (ipid, NOT_SYN, False,
                                                                        False)
    assert result.iplen == (43 if len(src) == 4 else 40 + 23)


@pytest.mark.parametrize("tags", [(), (0x8100,), (0x88A8, 0x8100), (0x9100,)])
def test_ethernet_with_vlan_tags(tags):
    expect_tcp(decode(1, ether(ip4(), tags=tags)))


def test_linux_cooked_sll_and_sll2():
    sll = b"\x00\x00\x03\x04\x00\x06" + b"\x02" * 8 + b"\x08\x00" + ip4()
    expect_tcp(decode(113, sll))
    sll2 = b"\x86\xdd\x00\x00" + bytes(16) + ip6()
    expect_tcp(decode(276, sll2), SRC6, DST6, 0)


@pytest.mark.parametrize("linktype", [101, 12, 14, 228])
def test_raw_ip(linktype):
    expect_tcp(decode(linktype, ip4()))


def test_raw_ipv6():
    expect_tcp(decode(229, ip6()), SRC6, DST6, 0)


@pytest.mark.parametrize("linktype,header,v6", [
    (0, struct.pack("<I", 2), False), (0, struct.pack(">I", 2), False),
    (108, struct.pack(">I", 2), False), (0, struct.pack("<I", 30), True),
    (0, struct.pack("<I", 10), True), (108, struct.pack(">I", 24), True),
    (108, struct.pack(">I", 28), True)])
def test_bsd_loopback(linktype, header, v6):
    if v6:
        expect_tcp(decode(linktype, header + ip6()), SRC6, DST6, 0)
    else:
        expect_tcp(decode(linktype, header + ip4()))


def test_ipv6_extension_headers_are_skipped():
    hop = bytes([60, 0]) + bytes(6)  # hop-by-hop, next: destination options
    dst = bytes([51, 1]) + bytes(14)  # destination options (16 bytes), next: AH
    ah = bytes([6, 2]) + bytes(14)  # AH counts 4-byte units, less 2: 16 bytes, next: TCP
    frame = ether(ip6(nxt=0, ext=hop + dst + ah), etype=0x86DD)
    result = decode(1, frame)
    assert isinstance(result, Seg) and result.iplen == 40 + 40 + 23
    expect_tcp(result._replace(iplen=40 + 23), SRC6, DST6, 0)


def test_tso_frames_without_an_ip_length_take_it_from_the_frame():
    """The segment's length from the frame; an IPv4 packet's `iplen` says it had none: 0,
    or -1 when checksums are checked (Batch.iplen: Zeek counts no IP bytes for it, and
    drops it when it checks checksums)."""
    v4 = bytearray(ip4())
    v4[2:4] = b"\0\0"
    for verify, iplen in ((False, 0), (True, -1)):
        result = decode(101, bytes(v4), verify=verify)
        assert isinstance(result, Seg) and result.iplen == iplen
        expect_tcp(result._replace(iplen=43))
        assert by_dpkt(101, bytes(v4), len(v4), verify) == result
    v6 = bytearray(ip6())
    v6[4:6] = b"\0\0"
    expect_tcp(decode(101, bytes(v6)), SRC6, DST6, 0)


def test_ipv4_options_are_skipped():
    frame = ip4(hl=6, opts=b"\x01\x01\x01\x00")
    result = decode(101, frame)
    assert isinstance(result, Seg) and result.iplen == 47
    expect_tcp(result._replace(iplen=43))


def test_fragments_and_other_protocols_are_named():
    assert decode(1, ether(ip4(mf=1))) == "other:ipv4_fragment"
    assert decode(1, ether(ip4(offset=185))) == "other:ipv4_fragment"  # the last fragment
    assert decode(1, ether(ip4(df=1))) != "other:ipv4_fragment"  # don't-fragment is not one
    frag6 = ether(ip6(nxt=44, ext=bytes([6, 0, 0, 1]) + bytes(4)), etype=0x86DD)
    assert decode(1, frag6) == "other:ipv6_fragment"
    assert decode(1, ether(ip4(dpkt.udp.UDP(sport=1, dport=2), p=17))) == "other:udp"
    for port, name in ((4789, "vxlan"), (6081, "geneve"), (2152, "gtp_u"), (3544, "teredo")):
        assert decode(1, ether(ip4(dpkt.udp.UDP(sport=40000, dport=port), p=17))) == \
            f"other:{name}"
        assert decode(101, ip6(bytes(dpkt.udp.UDP(sport=port, dport=40000)), nxt=17)) == \
            f"other:{name}"
    assert decode(101, ip4(b"x" * 20, p=4)) == "other:ipip"
    assert decode(101, ip4(b"x" * 40, p=41)) == "other:ipv6_in_ip"
    assert decode(1, ether(bytes(8), etype=0x8864)) == "other:ppp"  # PPP protocol 0
    assert decode(101, ip6(b"x" * 8, nxt=58)) == "other:icmpv6"
    assert decode(101, ip6(b"x" * 8, nxt=50)) == "other:esp"  # not skipped: encrypted
    assert decode(101, ip4(b"x" * 8, p=99)) == "other:ip_proto_99"
    assert decode(1, ether(bytes(28), etype=0x0806)) == "other:arp"
    assert decode(1, ether(bytes(28), etype=0x9000)) == "other:ethertype_0x9000"
    assert decode(1, ether(bytes(28), etype=0x8863)) == "other:pppoe_discovery"
    assert decode(113, b"\x00" * 14 + b"\x88\xcc" + bytes(20)) == "other:lldp"
    assert decode(101, b"\x50" + ip4()[1:]) == "other:not_ip"  # IP version 5
    assert decode(0, struct.pack("<I", 99) + ip4()) == "other:not_ip"  # address family 99
    assert decode(147, b"abc") == "bad:unsupported_linktype_147"
    assert decode(147, b"") == "bad:unsupported_linktype_147"


def test_cut_by_snaplen_keeps_the_segment_while_the_tcp_header_is_there():
    frame = ether(ip4(tcp(payload=b"x" * 1000)))
    result = decode(1, frame[:54], len(frame))  # headers only, as with -s 54
    assert isinstance(result, Seg) and (result.plen, result.cut, result.iplen) == (1000, True,
                                                                                  1040)
    for cut in (0, 5, 13, 14, 33, 40, 53):
        assert decode(1, frame[:cut], len(frame)) == "bad:cut_by_snaplen", cut
        assert decode(1, frame[:cut], cut) == "bad:truncated", cut
    assert decode(1, ether(ip4(), tags=(0x8100,))[:16], 100) == "bad:cut_by_snaplen"
    six = ether(ip6(nxt=0, ext=bytes([6, 0]) + bytes(6)), etype=0x86DD)
    assert decode(1, six[:14 + 41], len(six)) == "bad:cut_by_snaplen"  # inside hop-by-hop
    assert decode(1, six[:14 + 48 + 19], len(six)) == "bad:cut_by_snaplen"
    for linktype, head in ((113, 16), (276, 20), (0, 4), (101, 1)):
        assert decode(linktype, bytes(head - 1), 100) == "bad:cut_by_snaplen", linktype


def test_a_trailer_after_the_ip_packet_is_not_payload():
    result = decode(1, ether(ip4()) + bytes(8))  # Ethernet's padding to 60 bytes
    expect_tcp(result)


def test_bad_headers():
    frame = bytearray(ether(ip4()))
    frame[14] = 0x43  # IHL of 3 words
    assert decode(1, bytes(frame)) == "bad:ipv4_header"
    frame[14] = 0x65  # IPv6's version under IPv4's ethertype
    assert decode(1, bytes(frame)) == "bad:ipv4_header"
    frame = bytearray(ether(ip4()))
    frame[14 + 20 + 12] = 0xF0  # TCP data offset of 60 bytes, past the segment
    assert decode(1, bytes(frame)) == "bad:tcp_data_offset"
    frame[14 + 20 + 12] = 0x40  # 16 bytes: below the header's own 20
    assert decode(1, bytes(frame)) == "bad:tcp_data_offset"
    frame = bytearray(ether(ip4()))
    frame[16:18] = struct.pack("!H", 39)  # an IP length with no room for a TCP header
    assert decode(1, bytes(frame)) == "bad:ipv4_length"
    frame = bytearray(ip6())
    frame[4:6] = struct.pack("!H", 19)
    assert decode(229, bytes(frame)) == "bad:ipv6_length"
    frame = bytearray(ether(ip6(), etype=0x86DD))
    frame[14] = 0x45
    assert decode(1, bytes(frame)) == "bad:ipv6_header"


@pytest.mark.parametrize("opts,flags,expected", [
    (b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + bytes(8) + b"\x01\x03\x03\x07", SYN, 7),
    (b"\x01\x03\x03\x07", SYN | ACK, 7),
    (b"\x03\x03\x0f\x00", SYN, 14),  # RFC 7323 2.3: a shift above 14 is taken as 14
    (b"\x01\x03\x03\x07", ACK, NOT_SYN),  # only a SYN's scale counts
    (b"", SYN, NO_WSCALE),
    (b"\x01\x01\x00\x00", SYN, NO_WSCALE),
    (b"\x00\x03\x03\x07", SYN, NO_WSCALE),  # after the end of the option list
    (b"\x01\x01\x03\x03", SYN, NO_WSCALE),  # cut short by the data offset
    (b"\x03\x04\x07\x00\x01\x03\x03\x05", SYN, 5),  # a wrong length: skipped, as unknown
    (b"\x08\x01\x03\x03\x05\x00\x00\x00", SYN, NO_WSCALE),  # a length below 2: malformed
])
def test_syn_options_give_the_window_scale(opts, flags, expected):
    result = decode(1, ether(ip4(tcp(flags=flags, payload=b"", opts=opts))))
    assert isinstance(result, Seg) and result.wscale == expected


@pytest.mark.parametrize("opts,flags,expected", [
    (b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + bytes(8) + b"\x01\x03\x03\x07", SYN,
     SYN_SACK | SYN_TS),  # Linux's
    (b"\x02\x04\x05\xb4\x01\x01\x04\x02\x01\x03\x03\x07", SYN, SYN_SACK),  # no timestamps
    (b"\x02\x04\x05\xb4", SYN | ACK, 0),  # a SYN cookie's answer to that one
    (b"\x04\x02\x08\x0a" + bytes(8), ACK, 0),  # only a SYN's
    (b"\x00\x00\x04\x02", SYN, 0),  # after the end of the option list
    (b"\x08\x08" + bytes(6) + b"\x04\x02\x00\x00", SYN, SYN_SACK),  # a wrong length: skipped
    (b"\x01\x01\x08\x0a" + bytes(6), SYN, 0),  # cut short by the data offset
])
def test_syn_options_give_sack_and_timestamps(opts, flags, expected):
    result = decode(1, ether(ip4(tcp(flags=flags, payload=b"", opts=opts))))
    assert isinstance(result, Seg) and result.synopt == expected


def test_a_window_scale_cut_by_the_snaplen_is_not_read():
    frame = ether(ip4(tcp(flags=SYN, payload=b"", opts=b"\x01\x03\x03\x07")))
    assert decode(1, frame[:-1], len(frame)).wscale == NO_WSCALE
    assert decode(1, frame, len(frame)).wscale == 7


def test_checksums_are_verified_on_segments_captured_whole():
    for linktype, good in ((1, ether(ip4())), (1, ether(ip4(tcp(payload=b"wxyz")))),
                           (229, ip6_summed()), (1, ether(ip4(), tags=(0x8100,)))):
        bad = bytearray(good)
        bad[-1] ^= 0x40  # a payload bit
        assert decode(linktype, good, verify=True).bad_sum is False
        assert decode(linktype, bytes(bad), verify=True).bad_sum is True
        assert decode(linktype, bytes(bad), verify=False).bad_sum is False
        cut = decode(linktype, bytes(bad[:-1]), len(bad), verify=True)  # not checked
        assert (cut.cut, cut.bad_sum) == (True, False)
    assert decode(229, ip6(), verify=True).bad_sum is True  # its checksum was left zero


def test_tcp_checksums_as_wireshark_finds_them():
    """Loopback captures (the kernel leaves the checksum to a card that is not there: all
    wrong), a TUN path (all right), IPv6, and a capture whose payloads were cut (not
    checked). The counts are tshark's (-o tcp.check_checksum:TRUE, tcp.checksum.status)."""
    expected = {"client_close.pcap": (30, 0), "ipv6.pcap": (20, 0),
                "vantage_client.pcap": (0, 30), "lossy.pcap": (0, 174)}
    for name, (bad, good) in expected.items():
        segs = [decode(lt, fr, ol, verify=True)
                for _, lt, fr, ol in sample_records(SAMPLES / name)]
        assert all(isinstance(s, Seg) for s in segs), name
        verdicts = [(s.cut, s.bad_sum) for s in segs]
        assert (verdicts.count((False, True)), verdicts.count((False, False))) == (bad, good), \
            name


# --- Shims between the link header and IP: frames built from their specifications ---------

def labels(*values: int) -> bytes:
    """An MPLS label stack (RFC 3032): each label with TC 0, S on the last, TTL 64."""
    return b"".join(struct.pack("!I", (v << 12) | ((i == len(values) - 1) << 8) | 64)
                    for i, v in enumerate(values))


def mpls(payload: bytes, *values: int, etype: int = 0x8847, tags=()) -> bytes:
    return ether(labels(*values) + payload, etype, tags)


# An Ethernet pseudowire's control word (RFC 4448 4.6, RFC 4385 3): four 0 bits, 12 reserved
# bits, a sequence number. Labels 300 and 301 carry pseudowires with and without one
# (tshark is told which: it guesses by the MAC addresses' vendors, packet-pw-eth.c).
CW = struct.pack("!I", 7)
PW_CW, PW_NO_CW = 300, 301
PW_DECODE_AS = ("-d", f"mpls.label=={PW_CW},pwethcw", "-d", f"mpls.label=={PW_NO_CW},pwethnocw")


def pppoe(payload: bytes, proto: bytes = b"\x00\x21") -> bytes:
    """A PPPoE session header (RFC 2516 4: version 1, type 1, code 0, session, length),
    then PPP's protocol field (RFC 1661 2) and the packet."""
    return struct.pack("!BBHH", 0x11, 0, 0x1234, len(proto) + len(payload)) + proto + payload


ITAG = struct.pack("!I", 0x00ABCDEF)  # 802.1ah I-tag: PCP, DEI, UCA, reserved, I-SID
VN_TAG = struct.pack("!HH", 0x8005, 0x0011)  # D, P, destination VIF, L, R, version, source VIF
FTAG_TTL = struct.pack("!H", (1 << 6) | 32)  # FabricPath: FTag 1, TTL 32


def fabricpath(classical_frame: bytes) -> bytes:
    """A FabricPath frame: the outer header (type 0x8903), FTag and TTL, the classical
    Ethernet frame and its FCS (Wireshark's packet-mim.c reads the classical frame as one
    with an FCS: without, it takes the segment's last 4 bytes for one)."""
    fcs = struct.pack("<I", zlib.crc32(classical_frame))
    return ether(FTAG_TTL + classical_frame + fcs, 0x8903)


def llc(payload: bytes, tags=()) -> bytes:
    """An 802.3 frame: its length field, then the LLC PDU (`payload`)."""
    return ether(payload, len(payload), tags)


def snap(packet: bytes, etype: int = 0x0800) -> bytes:
    """LLC (DSAP, SSAP 0xAA, UI) and SNAP (OUI 0, an ethertype) before `packet`."""
    return b"\xaa\xaa\x03\x00\x00\x00" + struct.pack("!H", etype) + packet


def shim_frames() -> dict[str, tuple[bytes, bool]]:
    """Ethernet frames holding the known segment (tcp()) behind shims: (frame, IPv6)."""
    t4, t6 = ip4(), ip6_summed()
    return {
        "mpls": (mpls(t4, 100), False),
        "mpls_3_labels": (mpls(t4, 16, 17, 18), False),
        "mpls_over_vlan": (mpls(t4, 100, tags=(0x8100,)), False),
        "mpls_ipv6": (mpls(t6, 100), True),
        "mpls_multicast": (mpls(t4, 100, etype=0x8848), False),
        "pseudowire_with_cw": (mpls(CW + ether(t4), 100, PW_CW), False),  # MAC 02: nibble 0
        "pseudowire_with_cw_vlan": (mpls(CW + ether(t6, 0x86DD, tags=(0x8100,)), PW_CW),
                                    True),
        "pseudowire_no_cw": (mpls(b"\xa0" + ether(t4)[1:], 100, PW_NO_CW), False),
        "pppoe": (ether(pppoe(t4), 0x8864), False),
        "pppoe_ipv6": (ether(pppoe(t6, b"\x00\x57"), 0x8864), True),
        "pppoe_over_qinq": (ether(pppoe(t4), 0x8864, tags=(0x88A8, 0x8100)), False),
        "pbb": (ether(ITAG + ether(t4), 0x88E7), False),
        "pbb_customer_vlan": (ether(ITAG + ether(t6, 0x86DD, tags=(0x8100,)), 0x88E7), True),
        "vntag": (ether(VN_TAG + b"\x08\x00" + t4, 0x8926), False),
        "fabricpath": (fabricpath(ether(t4)), False),
        "fabricpath_vlan": (fabricpath(ether(t6, 0x86DD, tags=(0x8100,))), True),
        "llc_snap": (llc(snap(t4)), False),
        "llc_snap_ipv6": (llc(snap(t6, 0x86DD)), True),
        "vlan_llc_snap": (llc(snap(t4), tags=(0x8100,)), False),
        "mpls_pppoe_pbb_vntag": (  # shims inside shims
            ether(ITAG + ether(VN_TAG + b"\x88\x64" + pppoe(t4), 0x8926), 0x88E7), False),
    }


def tcp_offset(frame: bytes, v6: bool) -> int:
    """Where the known segment's TCP header begins in a frame."""
    return frame.rfind(ip6_summed() if v6 else ip4()) + (40 if v6 else 20)


@pytest.mark.parametrize("name", list(shim_frames()))
def test_shims_are_followed_to_the_segment(name):
    frame, v6 = shim_frames()[name]
    if v6:
        expect_tcp(decode(1, frame, verify=True), SRC6, DST6, 0)
    else:
        expect_tcp(decode(1, frame, verify=True))
    same_as_dpkt(1, frame)


@pytest.mark.parametrize("name", list(shim_frames()))
def test_a_frame_cut_inside_its_shims_is_cut(name):
    """Cut anywhere before the end of the TCP header: cut by the snaplen when the record's
    original length is longer, truncated when it is not (as without shims)."""
    frame, v6 = shim_frames()[name]
    for cut in range(tcp_offset(frame, v6) + 20):
        assert decode(1, frame[:cut], len(frame)) == "bad:cut_by_snaplen", cut
        assert decode(1, frame[:cut], cut) == "bad:truncated", cut
        same_as_dpkt(1, frame[:cut], len(frame))
        same_as_dpkt(1, frame[:cut])


def test_the_oldest_qinq_tag_0x9200_is_a_vlan_tag():
    expect_tcp(decode(1, ether(ip4(), tags=(0x9200,))))
    expect_tcp(decode(1, ether(ip4(), tags=(0x9200, 0x8100))))


def test_other_payloads_behind_shims_are_named():
    assert decode(1, mpls(b"\x10\x00\x00\x07" + bytes(20), 13)) == "other:mpls_ach"  # GAL
    assert decode(1, mpls(b"\x10\x00\x00\x21" + bytes(20), 100, 200)) == "other:mpls_ach"
    assert decode(1, ether(pppoe(bytes(10), b"\xc0\x21"), 0x8864)) == "other:ppp"  # LCP
    assert decode(1, ether(pppoe(bytes(10), b"\x80\x21"), 0x8864)) == "other:ppp"  # IPCP
    assert decode(1, llc(b"\x42\x42\x03" + bytes(35))) == "other:llc"  # spanning tree
    assert decode(1, llc(b"\xaa\xaa\x03\x00\x00\x0c\x20\x00" + bytes(20))) == "other:llc"  # CDP
    assert decode(1, llc(snap(bytes(28), 0x0806))) == "other:arp"
    assert decode(1, ether(ITAG + ether(bytes(28), 0x0806), 0x88E7)) == "other:arp"
    assert decode(1, ether(VN_TAG + b"\x88\xcc" + bytes(20), 0x8926)) == "other:lldp"
    assert decode(1, mpls(CW + ether(bytes(28), 0x0806), 100)) == "other:arp"
    for frame in (mpls(b"\x10\x00\x00\x07" + bytes(20), 13), llc(b"\x42\x42\x03" + bytes(35)),
                  ether(pppoe(bytes(10), b"\xc0\x21"), 0x8864)):
        same_as_dpkt(1, frame)


def test_sixteen_shims_are_followed_and_seventeen_are_too_many():
    """At most 16 shims between the link header and IP (decode/frames.py _MAX_SHIMS: "How
    many shims ... a frame may have before IP")."""
    for count in (15, 16):
        expect_tcp(decode(1, ether(ip4(), tags=(0x8100,) * count)))
    expect_tcp(decode(1, mpls(ip4(), 100, tags=(0x8100,) * 15)))  # 15 tags, one label stack
    assert decode(1, ether(ip4(), tags=(0x8100,) * 17)) == "bad:too_many_shims"
    assert decode(1, mpls(ip4(), 100, tags=(0x8100,) * 16)) == "bad:too_many_shims"
    for count in (15, 16, 17):
        same_as_dpkt(1, ether(ip4(), tags=(0x8100,) * count))


def test_a_pppoe_session_with_a_compressed_protocol_field(tmp_path):
    """RFC 1661 6.5: PPP's protocol field may be compressed to one byte (its low bit set);
    RFC 2516 7 does not forbid it for PPPoE (NOT RECOMMENDED). Wireshark reads it."""
    frame = ether(pppoe(ip4(), b"\x21"), 0x8864)
    expect_tcp(by_dpkt(1, frame, len(frame)))
    if shutil.which("tshark"):
        write_pcap(tmp_path / "pfc.pcap", 1, [(frame, len(frame))])
        assert by_tshark(tmp_path / "pfc.pcap") == [by_dpkt(1, frame, len(frame))]
    expect_tcp(decode(1, frame, verify=True))


def test_a_pseudowire_without_control_word_and_a_mac_beginning_0(tmp_path):
    """An Ethernet pseudowire without a control word (RFC 4448 4.6: it is optional) whose
    destination MAC begins with a 0 nibble, as most vendors' do (OUIs 00-0F:...): here
    Cisco's 00:00:0c to Intel's 00:1b:21. Read as if it had a control word, its
    'ethertype' would be the IP header's first two bytes (0x4500, here the IP length:
    LLC). Wireshark 4.0's heuristic (packet-pw-eth.c: both MACs of known vendors: no
    control word) reads the segment, and so must the decoder."""
    frame = mpls(bytes.fromhex("00000c07ac01001b213c4d5e") + ether(ip4())[12:], 100)
    if shutil.which("tshark"):
        write_pcap(tmp_path / "pw.pcap", 1, [(frame, len(frame))])
        theirs = by_tshark(tmp_path / "pw.pcap")  # no decode-as: its own guess
        assert len(theirs) == 1
        expect_tcp(theirs[0])
    expect_tcp(decode(1, frame, verify=True))


def test_an_llc_frame_shorter_than_snap_is_llc():
    """A non-SNAP LLC PDU (802.2: DSAP, SSAP, control: 3 bytes) of fewer than 8 bytes is
    whole: it does not end inside a header, so it is neither cut nor truncated."""
    for body in (b"\x42\x42\x03", b"\x42\x42\x03\x00\x00", b"\xe0\xe0\x03\xff\xff"):
        frame = llc(body)
        assert by_dpkt(1, frame, len(frame)) == "other:llc"
        assert decode(1, frame) == "other:llc", body


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_the_shims_as_tshark_decodes_them(tmp_path):
    """Each shim frame's segment as tshark decodes it (pseudowires: with or without a
    control word as the test built them, by label; 0x9200 tags: when told)."""
    frames = [frame for frame, _ in shim_frames().values()]
    write_pcap(tmp_path / "shims.pcap", 1, [(frame, len(frame)) for frame in frames])
    theirs = by_tshark(tmp_path / "shims.pcap", PW_DECODE_AS)
    assert all(isinstance(seg, Seg) for seg in theirs), theirs
    assert [decode(1, frame, verify=True) for frame in frames] == theirs
    qinq = ether(ip4(), tags=(0x9200, 0x8100))
    write_pcap(tmp_path / "qinq.pcap", 1, [(qinq, len(qinq))])
    assert by_tshark(tmp_path / "qinq.pcap", ("-o", "vlan.qinq_ethertype:0x9200")) == \
        [decode(1, qinq, verify=True)]


# --- Random frames that dpkt builds from known values ------------------------------------

_NOP, _EOL = b"\x01", b"\x00"
_OPTION = st.one_of(
    st.just(_NOP), st.just(_EOL),
    st.binary(min_size=2, max_size=2).map(lambda v: b"\x02\x04" + v),  # MSS
    st.just(b"\x04\x02"),  # SACK permitted
    st.binary(min_size=8, max_size=8).map(lambda v: b"\x08\x0a" + v),  # timestamps
    st.integers(0, 255).map(lambda s: b"\x03\x03" + bytes([s])),  # window scale
    st.binary(min_size=2, max_size=2).map(lambda v: b"\x03\x04" + v),  # a wrong length
    st.tuples(st.sampled_from([5, 19, 28, 30, 34, 253]), st.binary(max_size=6))
      .map(lambda kv: bytes([kv[0], 2 + len(kv[1])]) + kv[1]),
)


def _options(chosen: list[bytes]) -> tuple[bytes, int | None, int, list[tuple[int, int]]]:
    """The options (padded to 4-byte words, at most 40 bytes), the first window scale
    before the end of the list (None if none), the offset of its shift byte, and the
    SACK-permitted and timestamps options before the end: (their bit, the offset past
    them)."""
    opts, scale, at, others = b"", None, 0, []
    for opt in chosen:
        if len(opts) + len(opt) > 40:
            break
        if opt == _EOL:
            opts += opt
            break
        if scale is None and opt[:2] == b"\x03\x03":
            scale, at = opt[2], len(opts) + 2
        if opt[:2] in (b"\x04\x02", b"\x08\x0a"):
            others.append((SYN_SACK if opt[0] == 4 else SYN_TS, len(opts) + len(opt)))
        opts += opt
    opts += bytes(-len(opts) % 4)
    return opts, scale, at, others


_HEADS = {
    4: [(1, ether(b"")), (1, ether(b"", tags=(0x8100,))), (1, ether(b"", tags=(0x88A8, 0x8100))),
        (113, b"\x00" * 14 + b"\x08\x00"), (276, b"\x08\x00" + bytes(18)),
        (0, struct.pack("<I", 2)), (108, struct.pack(">I", 2)), (101, b""), (228, b"")],
    6: [(1, ether(b"", 0x86DD)), (1, ether(b"", 0x86DD, tags=(0x9100,))),
        (113, b"\x00" * 14 + b"\x86\xdd"), (276, b"\x86\xdd" + bytes(18)),
        (0, struct.pack("<I", 30)), (108, struct.pack(">I", 28)), (101, b""), (229, b"")],
}


@st.composite
def built_frames(draw):
    """(linktype, frame, origlen, the Seg the decoder must give or the accounting name)."""
    v6 = draw(st.booleans())
    sport, dport = draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFF))
    seq, ack = draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1))
    flags, win = draw(st.integers(0, 255)), draw(st.integers(0, 0xFFFF))
    opts, scale, scale_at, others = _options(draw(st.lists(_OPTION, max_size=12)))
    payload = draw(st.binary(max_size=40))
    seg = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=win,
                       off=5 + len(opts) // 4, opts=opts, data=payload)
    src = draw(st.binary(min_size=16 if v6 else 4, max_size=16 if v6 else 4))
    dst = draw(st.binary(min_size=16 if v6 else 4, max_size=16 if v6 else 4))
    if v6:
        kinds = draw(st.lists(st.sampled_from([0, 43, 60, 51, 135, 139, 140]), max_size=3))
        ext = b""
        for kind, nxt in zip(kinds, [*kinds[1:], 6], strict=False):
            words = draw(st.integers(0, 2))
            size = (words + 2) * 4 if kind == 51 else (words + 1) * 8  # RFC 4302; RFC 8200
            ext += bytes([nxt, words]) + draw(st.binary(min_size=size - 2, max_size=size - 2))
        body = ext + bytes(seg)
        ip = struct.pack("!IHBB", 6 << 28, len(body), kinds[0] if kinds else 6, 64) + src \
            + dst + body
        ipid, iplen, l4_at = 0, len(ip), 40 + len(ext)
    else:
        ipid = draw(st.integers(0, 0xFFFF))
        ip = bytes(dpkt.ip.IP(src=src, dst=dst, p=6, id=ipid, data=seg))
        iplen, l4_at = len(ip), 20
    linktype, head = draw(st.sampled_from(_HEADS[6 if v6 else 4]))
    frame = head + ip + draw(st.binary(max_size=8))  # a trailer: not payload
    t = len(head) + l4_at  # where the TCP header is
    whole = len(frame)
    cut = draw(st.one_of(st.just(whole), st.integers(t, whole), st.integers(0, whole)))
    if cut < t + 20:
        return linktype, frame[:cut], whole, "bad:cut_by_snaplen"
    frame = frame[:cut]
    if not flags & SYN:
        wscale = NOT_SYN
    elif scale is None or cut <= t + 20 + scale_at:
        wscale = NO_WSCALE
    else:
        wscale = min(scale, 14)
    synopt = 0  # the options captured whole
    for bit, past in others if flags & SYN else ():
        synopt |= bit if cut >= t + 20 + past else 0
    return linktype, frame, whole, Seg(src, dst, sport, dport, seq, ack, flags, win,
                                       len(payload), ipid, wscale, synopt, iplen,
                                       cut < t + 20 + len(opts) + len(payload), False)


@settings(max_examples=500, deadline=None)
@given(built_frames())
def test_random_frames_dpkt_builds_give_back_their_fields(case):
    linktype, frame, origlen, expected = case
    assert decode(linktype, frame, origlen) == expected
    assert by_dpkt(linktype, frame, origlen, verify=False) == expected


# --- dpkt reading the same bytes ---------------------------------------------------------

# The accounting names of what is not a TCP segment (docs/json.md: "other:<kind>",
# "bad:<reason>"), for IANA's ethertypes and IP protocol numbers.
ETHERTYPES = {0x0806: "arp", 0x8035: "rarp", 0x88CC: "lldp", 0x888E: "eapol",
              0x8863: "pppoe_discovery"}
IP_PROTOS = {1: "icmp", 2: "igmp", 4: "ipip", 17: "udp", 41: "ipv6_in_ip", 47: "gre",
             50: "esp", 58: "icmpv6", 132: "sctp"}
# UDP tunnels by their IANA port (VXLAN RFC 7348, Geneve RFC 8926, GTP-U 3GPP TS 29.281,
# Teredo RFC 4380), the destination port first
UDP_TUNNELS = {4789: "vxlan", 6081: "geneve", 2152: "gtp_u", 3544: "teredo"}


def _not_tcp(frame: bytes, at: int, proto: int) -> str:
    if proto == 17 and len(frame) >= at + 4:
        udp = _header(dpkt.udp.UDP, frame, at) if len(frame) >= at + 8 else None
        ports = (udp.dport, udp.sport) if udp else struct.unpack_from("!HH", frame, at)[::-1]
        for port in ports:
            if port in UDP_TUNNELS:
                return "other:" + UDP_TUNNELS[port]
    return "other:" + IP_PROTOS.get(proto, f"ip_proto_{proto}")
# VLAN tags: 802.1Q, 802.1ad and the old QinQ 0x9100 and 0x9200 (dpkt takes all four;
# Wireshark takes 0x9200 only when told: -o vlan.qinq_ethertype:0x9200).
VLAN_TPIDS = {0x8100, 0x88A8, 0x9100, 0x9200}
MPLS_TYPES = {0x8847, 0x8848}  # unicast, multicast (RFC 5332)
PPPOE_SESSION, PBB, VNTAG, FABRICPATH = 0x8864, 0x88E7, 0x8926, 0x8903
PPP_PROTOCOLS = {0x0021: 0x0800, 0x0057: 0x86DD}  # PPP's IPv4 and IPv6, as ethertypes
MAX_SHIMS = 16  # shims a frame may have between its link header and IP
RAW_IP = {101, 12, 14, 228, 229}  # the version nibble says which IP (12, 14: BSD DLT_RAW)
# BSD loopback address families, in the writer's byte order for NULL (0), in network order
# for LOOP (108): AF_INET 2; AF_INET6 24, 28, 30 (NetBSD/OpenBSD, FreeBSD, macOS: tcpdump's
# list, dpkt's and tshark's) and 10 (Linux's), which the decoder takes as well.
AF_INET, AF_INET6 = {2}, {10, 24, 28, 30}
# IPv6 extension headers on the way to TCP (RFC 8200 4; AH: RFC 4302; mobility, HIP,
# shim6: 135, 139, 140); a fragment header (44) ends the walk as a fragment, ESP (50) as
# another protocol.
IPV6_EXT = {0, 43, 60, 51, 135, 139, 140}


class _Short(Exception):
    """The frame ends inside a header."""


def _header(cls, frame: bytes, at: int):
    """dpkt's reading of the fixed header `cls` at frame[at:]: its fields only, nothing
    after it decoded."""
    if len(frame) < at + cls.__hdr_len__:
        raise _Short
    hdr = cls()
    dpkt.Packet.unpack(hdr, frame[at:])
    return hdr


def by_dpkt(linktype: int, frame: bytes, origlen: int, verify: bool = True) -> Seg | str:
    """What the decoder must make of a frame, dpkt reading each header."""
    try:
        return _by_dpkt(linktype, frame, verify)
    except _Short:
        return "bad:cut_by_snaplen" if len(frame) < origlen else "bad:truncated"


def _by_dpkt(linktype: int, frame: bytes, verify: bool) -> Seg | str:
    n = len(frame)
    if linktype == 1:
        etype, at = _header(dpkt.ethernet.Ethernet, frame, 0).type, 14
    elif linktype == 113:
        etype, at = _header(dpkt.sll.SLL, frame, 0).ethtype, 16
    elif linktype == 276:
        etype, at = _header(dpkt.sll2.SLL2, frame, 0).ethtype, 20
    elif linktype in RAW_IP:
        if n < 1:
            raise _Short
        etype, at = {4: 0x0800, 6: 0x86DD}.get(frame[0] >> 4), 0
    elif linktype in (0, 108):
        if n < 4:
            raise _Short
        orders = ("little", "big") if linktype == 0 else ("big",)
        families = {int.from_bytes(frame[:4], order) for order in orders}
        etype = 0x0800 if families & AF_INET else 0x86DD if families & AF_INET6 else None
        at = 4
    else:
        return f"bad:unsupported_linktype_{linktype}"
    if etype is None:
        return "other:not_ip"
    shimmed = _shims(frame, etype, at)
    if isinstance(shimmed, str):
        return shimmed
    etype, at = shimmed
    if etype == 0x0800:
        ip = _header(dpkt.ip.IP, frame, at)
        if ip.v != 4 or ip.hl < 5:
            return "bad:ipv4_header"
        if ip.mf or ip.offset:
            return "other:ipv4_fragment"
        if ip.p != 6:
            return _not_tcp(frame, at + ip.hl * 4, ip.p)
        if ip.len and ip.len < ip.hl * 4 + 20:
            return "bad:ipv4_length"
        total = ip.len or n - at  # no length: a TSO frame captured before segmentation
        # (its iplen then says so: 0, or -1 when checksums are checked; Batch.iplen)
        iplen = ip.len or (-1 if verify else 0)
        return _tcp(frame, at + ip.hl * 4, total - ip.hl * 4, ip.src, ip.dst, ip.id, iplen,
                    verify)
    if etype == 0x86DD:
        ip6 = _header(dpkt.ip6.IP6, frame, at)
        if ip6.v != 6:
            return "bad:ipv6_header"
        nxt, p = ip6.nxt, at + 40
        while nxt in IPV6_EXT:
            ext = _header(dpkt.ip6.IP6OptsHeader, frame, p)  # next header, length
            nxt, p = ext.nxt, p + ((ext.len + 2) * 4 if nxt == 51 else (ext.len + 1) * 8)
        if nxt == 44:
            return "other:ipv6_fragment"
        if nxt != 6:
            return _not_tcp(frame, p, nxt)
        end = at + 40 + ip6.plen if ip6.plen else n  # no length: a jumbogram, or TSO
        if end - p < 20:
            return "bad:ipv6_length"
        return _tcp(frame, p, end - p, ip6.src, ip6.dst, 0, end - at, verify)
    return "other:" + ETHERTYPES.get(etype, f"ethertype_0x{etype:04x}")


def _is_shim(etype: int) -> bool:
    return etype in VLAN_TPIDS or etype in MPLS_TYPES or etype <= 1500 or \
        etype in (PPPOE_SESSION, PBB, VNTAG, FABRICPATH)


def _shims(frame: bytes, etype: int, at: int) -> tuple[int, int] | str:
    """What lies between the link header and IP, each read by its own specification: the
    (ethertype, offset) of what is inside, or the accounting name of what else it was."""
    shims = 0
    while _is_shim(etype):
        if shims == MAX_SHIMS:
            return "bad:too_many_shims"
        shims += 1
        if etype in VLAN_TPIDS:
            etype, at = _header(dpkt.ethernet.VLANtag8021Q, frame, at).type, at + 4
        elif etype in MPLS_TYPES:  # RFC 3032: label entries down to the bottom of stack
            while True:
                label = _header(dpkt.ethernet.MPLSlabel, frame, at)
                at += 4
                if label.s:
                    break
            if len(frame) <= at:
                raise _Short
            # No label says what is inside: by the first nibble (RFC 4928 2, RFC 4385 3)
            nibble = frame[at] >> 4
            if nibble in (4, 6):
                etype = {4: 0x0800, 6: 0x86DD}[nibble]
            elif nibble == 1:  # an associated channel header (RFC 4385, RFC 5586)
                return "other:mpls_ach"
            else:  # an Ethernet pseudowire (RFC 4448), the nibble 0 beginning its control
                # word (an Ethernet PW without one whose MAC begins with a 0 nibble is
                # ambiguous: test_a_pseudowire_without_control_word_and_a_mac_beginning_0)
                at += 4 if nibble == 0 else 0
                etype, at = _header(dpkt.ethernet.Ethernet, frame, at).type, at + 14
        elif etype == PPPOE_SESSION:  # RFC 2516 4: the PPPoE header, then a PPP frame
            _header(dpkt.pppoe.PPPoE, frame, at)
            at += 6
            if len(frame) <= at:
                raise _Short
            if frame[at] & 1:  # RFC 1661 6.5: a protocol field compressed to one byte
                proto, at = frame[at], at + 1
            else:
                if len(frame) < at + 2:
                    raise _Short
                proto, at = struct.unpack_from("!H", frame, at)[0], at + 2
            if proto not in PPP_PROTOCOLS:
                return "other:ppp"
            etype = PPP_PROTOCOLS[proto]
        elif etype == PBB:  # 802.1ah: a 4-byte I-tag, then the customer's frame
            etype, at = _header(dpkt.ethernet.Ethernet, frame, at + 4).type, at + 18
        elif etype == VNTAG:  # a 4-byte VN-tag, then the frame's own ethertype
            if len(frame) < at + 6:
                raise _Short
            etype, at = struct.unpack_from("!H", frame, at + 4)[0], at + 6
        elif etype == FABRICPATH:  # FTag and TTL (2 bytes), then the classical frame
            etype, at = _header(dpkt.ethernet.Ethernet, frame, at + 2).type, at + 16
        else:  # 802.3: a length, then LLC (802.2); SNAP (AA AA 03) with OUI 0: an ethertype.
            # (Linux cooked headers' protocols up to 1500 are Linux's own: 4, ETH_P_802_2,
            # is LLC; the others hold no IP and are named LLC too.)
            llc = _header(dpkt.llc.LLC, frame, at)
            if (llc.dsap, llc.ssap, llc.ctl) != (0xAA, 0xAA, 3):
                return "other:llc"
            if len(frame) < at + 8:
                raise _Short
            if frame[at + 3 : at + 6] != bytes(3):
                return "other:llc"
            etype, at = struct.unpack_from("!H", frame, at + 6)[0], at + 8
    return etype, at


def _tcp(frame: bytes, t: int, tcp_len: int, src: bytes, dst: bytes, ipid: int, iplen: int,
         verify: bool) -> Seg | str:
    seg = _header(dpkt.tcp.TCP, frame, t)
    doff = seg.off * 4
    if doff < 20 or doff > tcp_len:
        return "bad:tcp_data_offset"
    flags = seg.flags & 0xFF  # dpkt's 9 bits hold the old NS bit too (RFC 3540, historic)
    whole = len(frame) >= t + tcp_len
    if flags & SYN:
        wscale, synopt = syn_options(frame[t + 20 : t + doff])
    else:
        wscale, synopt = NOT_SYN, 0
    bad = False
    if verify and whole:
        pseudo = src + dst + (struct.pack("!IxxxB", tcp_len, 6) if len(src) == 16
                              else struct.pack("!xBH", 6, tcp_len))
        bad = dpkt.in_cksum(pseudo + frame[t : t + tcp_len]) != 0
    return Seg(src, dst, seg.sport, seg.dport, seg.seq, seg.ack, flags, seg.win,
               tcp_len - doff, ipid, wscale, synopt, iplen, not whole, bad)


def syn_options(opts: bytes) -> tuple[int, int]:
    """The window scale of a SYN's options (RFC 7323, capped at 14) and its SACK-permitted
    and timestamps options (SYN_SACK, SYN_TS), as dpkt parses them; the list ends at End
    of Option List (RFC 9293 3.2) or at a malformed option."""
    at, scale, others = 0, NO_WSCALE, 0
    for opt in dpkt.tcp.parse_opts(opts):
        if opt is None:  # dpkt: an option kind with no length byte after it
            break
        kind, data = opt
        if kind == dpkt.tcp.TCP_OPT_EOL:
            break
        if kind == dpkt.tcp.TCP_OPT_NOP:
            at += 1
            continue
        if opts[at + 1] != 2 + len(data):  # a length below 2, or running past the options
            break
        if kind == dpkt.tcp.TCP_OPT_WSCALE and len(data) == 1 and scale == NO_WSCALE:
            scale = min(data[0], 14)
        elif kind == dpkt.tcp.TCP_OPT_SACKOK and not data:
            others |= SYN_SACK
        elif kind == dpkt.tcp.TCP_OPT_TIMESTAMP and len(data) == 8:
            others |= SYN_TS
        at += 2 + len(data)
    return scale, others


def same_as_dpkt(linktype: int, frame: bytes, origlen: int | None = None) -> None:
    origlen = len(frame) if origlen is None else origlen
    assert decode(linktype, frame, origlen, verify=True) == by_dpkt(linktype, frame, origlen)


def test_the_oracle_reads_the_known_frames():
    """by_dpkt gives the known values too (so a test against it is worth something)."""
    syn = ether(ip4(tcp(flags=SYN, payload=b"", opts=b"\x02\x04\x05\xb4\x01\x03\x03\x07")))
    assert by_dpkt(1, syn, len(syn)) == Seg(SRC4, DST4, 40000, 80, 123, 456, SYN, 999, 0, 77,
                                            7, 0, 48, False, False)
    six = ether(ip6(nxt=0, ext=bytes([6, 0]) + bytes(6)), etype=0x86DD)
    assert by_dpkt(1, six, len(six)) == Seg(SRC6, DST6, 40000, 80, 123, 456, ACK, 999, 3, 0,
                                            NOT_SYN, 0, 71, False, True)
    linux = ether(ip4(tcp(flags=SYN, payload=b"", opts=b"\x02\x04\x05\xb4\x04\x02\x08\x0a"
                          + bytes(8) + b"\x01\x03\x03\x07")))  # Linux's SYN
    assert by_dpkt(1, linux, len(linux))[10:12] == (7, SYN_SACK | SYN_TS)
    assert by_dpkt(1, ether(ip4(mf=1)), 100) == "other:ipv4_fragment"
    assert by_dpkt(1, six[:20], 100) == "bad:cut_by_snaplen"
    assert by_dpkt(1, six[:20], 20) == "bad:truncated"


def test_the_known_frames_and_their_cuts_as_dpkt_reads_them():
    t4, t6 = ip4(), ip6()
    syn = ip4(tcp(flags=SYN, opts=b"\x02\x04\x05\xb4\x01\x03\x03\x07"))
    cases = [
        (1, ether(t4)), (1, ether(t4, tags=(0x8100, 0x88A8))), (1, ether(t6, 0x86DD)),
        (1, ether(b"x" * 28, 0x0806)), (1, ether(b"", 0x1234)), (1, ether(syn)),
        (1, ether(t4) + bytes(6)), (101, t4), (101, t6), (228, t4), (229, t6), (14, t4),
        (12, b"\x50" + t4[1:]), (113, b"\x00" * 14 + b"\x08\x00" + t4),
        (276, b"\x86\xdd" + b"\x00" * 18 + t6), (0, struct.pack("<I", 2) + t4),
        (0, struct.pack(">I", 2) + t4), (108, struct.pack(">I", 24) + t6),
        (108, struct.pack("<I", 2) + t4), (0, struct.pack("<I", 99) + t4), (999, t4),
        (101, ip4(b"x" * 8, p=17)), (101, ip4(mf=1)), (101, ip4(hl=6, opts=bytes(4))),
        (101, ip6(nxt=0, ext=b"\x06\x00" + b"\x00" * 6)),
        (101, ip6(nxt=51, ext=b"\x06\x01" + b"\x00" * 10)),
        (101, ip6(nxt=44, ext=b"\x06\x00" + b"\x00" * 6)), (229, ip6_summed()),
    ]
    for linktype, frame in cases:
        same_as_dpkt(linktype, frame)
        for cut in (0, 1, 3, 13, 16, 20, 33, 40, 54, 60, 70):  # cut by a snaplen
            if cut < len(frame):
                same_as_dpkt(linktype, frame[:cut], len(frame))


ANY_LINKTYPE = sorted(LINKTYPES) + [999]


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(ANY_LINKTYPE), st.binary(max_size=120), st.integers(0, 200))
def test_random_bytes_as_dpkt_reads_them(linktype, frame, extra):
    same_as_dpkt(linktype, frame, len(frame) + extra % 3 * extra)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([0, 1, 101, 113, 276]), st.booleans(), st.binary(min_size=20,
       max_size=80), st.just(0) | st.integers(0, 60))
def test_random_tails_after_valid_headers_as_dpkt_reads_them(linktype, v6, tail, cut):
    head = {0: struct.pack("<I", 30 if v6 else 2), 1: ether(b"", 0x86DD if v6 else 0x0800),
            101: b"", 113: b"\x00" * 14 + (b"\x86\xdd" if v6 else b"\x08\x00"),
            276: (b"\x86\xdd" if v6 else b"\x08\x00") + b"\x00" * 18}[linktype]
    frame = head + (ip6(tail) if v6 else ip4(tail))  # the tail: the TCP header and after
    same_as_dpkt(linktype, frame[: len(frame) - cut % len(frame)], len(frame))


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_every_sample_record_as_dpkt_reads_it(path):
    records = sample_records(path)
    assert records
    for _, linktype, frame, origlen in records:
        same_as_dpkt(linktype, frame, origlen)


# --- tshark's decode of the samples --------------------------------------------------------

TSHARK_FIELDS = ("ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport",
                 "tcp.seq_raw", "tcp.ack_raw", "tcp.flags", "tcp.window_size_value",
                 "tcp.len", "ip.id", "ip.len", "ipv6.plen", "tcp.options.wscale.shift",
                 "tcp.options.sack_perm", "tcp.options.timestamp.tsval", "tcp.checksum.status")


def decoded(records: list[tuple[float, int, bytes, int]]) -> list[Seg | str]:
    """Each record as pcapstate decodes it, checksums checked: the compiled decoder, then
    the slow path (decode/unwrap.py) for what it hands on (a tunnel: the segment inside)."""
    from pcapstate.decode.frames import batches_of
    from pcapstate.decode.unwrap import Unwrapper

    return [row(batch, i) for batch in batches_of(iter(records), Unwrapper(True), verify=True)
            for i in range(len(batch.ts))]


def by_tshark(path: Path, options: tuple[str, ...] = ()) -> list[Seg | str]:
    """Each frame of a capture as tshark decodes it, the innermost of each field (in a
    tunnel, the segment inside), its TCP checksum checked: status 0 wrong, 1 right, 2 not
    checked because the segment was not captured whole; `options`: more of tshark's
    options (decode-as, preferences)."""
    cmd = ["tshark", "-n", "-r", str(path), "-o", "tcp.check_checksum:TRUE", *options,
           "-T", "fields",
           "-E", "occurrence=l", *(arg for f in TSHARK_FIELDS for arg in ("-e", f))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    segs: list[Seg | str] = []
    for line in out.splitlines():
        (src4, dst4, src6, dst6, sport, dport, seq, ack, flags, win, plen, ipid, iplen, plen6,
         shift, sack, tsval, status) = line.split("\t")
        if not sport:
            segs.append("not tcp: " + line)
            continue
        flags_ = int(flags, 16) & 0xFF
        if not flags_ & SYN:
            wscale, synopt = NOT_SYN, 0
        else:
            wscale = min(int(shift), 14) if shift else NO_WSCALE
            synopt = (SYN_SACK if sack else 0) | (SYN_TS if tsval else 0)
        segs.append(Seg(ipaddress.ip_address(src4 or src6).packed,
                        ipaddress.ip_address(dst4 or dst6).packed, int(sport), int(dport),
                        int(seq), int(ack), flags_, int(win), int(plen),
                        int(ipid, 16) if ipid else 0, wscale, synopt,
                        int(iplen) if iplen else int(plen6) + 40, status == "2",
                        status == "0"))
    return segs


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_every_sample_record_as_tshark_decodes_it(path):
    """The segment inside a tunnel too (the slow path unwraps it; tshark's innermost)."""
    ours = decoded(sample_records(path))
    theirs = by_tshark(path)
    assert len(ours) == len(theirs) > 0 and any(isinstance(seg, Seg) for seg in theirs)
    for number, (a, b) in enumerate(zip(ours, theirs, strict=True), 1):
        if isinstance(b, Seg):
            assert a == b, f"frame {number}"
        else:  # no TCP (ARP, ...): none found either
            assert not isinstance(a, Seg), f"frame {number}: {a}"


def write_pcap(path: Path, linktype: int, records: list[tuple[bytes, int]]) -> None:
    """A pcap file of (frame, original length) records."""
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    path.write_bytes(head + b"".join(struct.pack("<IIII", 1, 0, len(frame), origlen) + frame
                                     for frame, origlen in records))


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_the_known_frames_as_tshark_decodes_them(tmp_path):
    """The link types, tags, loopback families and IPv6 extension headers the samples do
    not have, through tshark too (Linux's AF_INET6, 10, left out: tshark takes only the
    BSDs' 24, 28 and 30)."""
    t4, t6, big = ip4(), ip6_summed(), ip4(tcp(payload=b"x" * 1000))
    wrong = bytearray(t4)
    wrong[-1] ^= 1
    cases = {
        1: [ether(t4), ether(t4, tags=(0x8100, 0x88A8)), ether(t4, tags=(0x9100,)),
            ether(t6, 0x86DD), ether(t4) + bytes(6), ether(bytes(wrong)),
            ether(ip4(tcp(flags=SYN, payload=b"", opts=b"\x02\x04\x05\xb4\x01\x03\x03\x07"))),
            ether(ip4(tcp(flags=SYN | ACK, payload=b"", opts=b"\x03\x03\x0f\x00"))),
            ether(ip6(nxt=0, ext=bytes([60, 0]) + bytes(6) + bytes([51, 1]) + bytes(14)
                      + bytes([6, 2]) + bytes(14)), 0x86DD)],
        101: [t4, t6, ip4(hl=6, opts=b"\x01\x01\x01\x00")], 12: [t4], 14: [t6],
        228: [t4], 229: [t6], 113: [b"\x00" * 14 + b"\x08\x00" + t4],
        276: [b"\x86\xdd" + b"\x00" * 18 + t6],
        0: [struct.pack("<I", 2) + t4, struct.pack(">I", 2) + t4, struct.pack("<I", 24) + t6,
            struct.pack(">I", 28) + t6, struct.pack("<I", 30) + t6],
        108: [struct.pack(">I", 2) + t4, struct.pack(">I", 30) + t6],
    }
    for linktype, frames in cases.items():
        records = [(frame, len(frame)) for frame in frames]
        if linktype == 101:
            records.append((big[:40], len(big)))  # headers only, as with -s 40
        write_pcap(tmp_path / "known.pcap", linktype, records)
        theirs = by_tshark(tmp_path / "known.pcap")
        ours = [decode(linktype, frame, origlen, verify=True) for frame, origlen in records]
        assert all(isinstance(seg, Seg) for seg in theirs), theirs
        assert ours == theirs, linktype


# --- scan_pcap: a whole file ---------------------------------------------------------------

def test_scan_pcap_walks_a_whole_file_in_pieces():
    data = (SAMPLES / "close_wait_leak.pcap").read_bytes()
    buf = np.frombuffer(data, dtype=np.uint8)
    out = Batch.empty(7)  # small, so the scan returns FULL and resumes
    slow = slow_rows(7)
    pos, rows, stamps, odd, pieces = 24, [], [], np.zeros(3, np.int64), 0
    while True:
        pos, n, status = scan_pcap(buf, pos, False, 1e-6, 1, 262144, 262144, out, slow, odd,
                                   False)
        rows += [row(out, i) for i in range(n)]
        stamps += [round(float(ts) * 1e6) for ts in out.ts[:n]]
        pieces += 1
        if status != 1:
            break
    assert pos == len(data) and odd.tolist() == [0, 0, 0] and pieces > 10
    records = sample_records(SAMPLES / "close_wait_leak.pcap")
    assert len(rows) == len(records) == 101
    assert stamps == [round(ts * 1e6) for ts, _, _, _ in records]
    assert rows == [by_dpkt(lt, fr, ol, verify=False) for _, lt, fr, ol in records]


def _scan_whole(path: Path, linktype: int) -> tuple[list[Seg | str], list[list[int]], list[int]]:
    """scan_pcap over a whole little-endian pcap in one go: the rows, the rows handed to
    the slow path (frames.SLOW_FIELDS) and `odd`."""
    buf = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    out, slow, odd = Batch.empty(64), slow_rows(64), np.zeros(3, np.int64)
    pos, n, status = scan_pcap(buf, 24, False, 1e-6, linktype, 65535, 262144, out, slow, odd,
                               False)
    assert (pos, status) == (len(buf), 0)
    return [row(out, i) for i in range(n)], slow[: odd[2]].tolist(), odd.tolist()


def test_scan_pcap_hands_on_what_may_carry_tcp_it_does_not_read(tmp_path):
    """IP in IP, GRE, UDP to a tunnel's port and fragments go to the slow path (their kind
    kept in the row), with where the record's frame is in the buffer and the offset of its
    (outer) IP header; everything else does not."""
    udp = dpkt.udp.UDP(sport=40000, dport=4789, data=bytes(8))
    frames = [
        (ether(ip4()), None),
        (ether(ip4(b"x" * 20, p=4)), 14),  # IP in IP
        (ether(ip4(b"x" * 20, p=4), tags=(0x8100,)), 18),
        (mpls(ip4(b"\0" * 8, p=47), 16, 17), 22),  # GRE behind two labels
        (ether(ip4(dpkt.udp.UDP(sport=1, dport=2), p=17)), None),  # plain UDP
        (ether(ip4(udp, p=17)), 14),  # VXLAN's port
        (ether(ip6(bytes(udp), nxt=17), 0x86DD), 14),
        (ether(ip4(mf=1)), 14),  # a fragment
        (ether(ip6(nxt=41), 0x86DD), 14),  # IPv6 in IPv6 (what is inside: not read here)
        (llc(snap(ip4(b"x" * 20, p=4))), 22),  # IP in IP behind LLC/SNAP
        (ether(bytes(28), 0x0806), None),
    ]
    path = tmp_path / "carriers.pcap"
    write_pcap(path, 1, [(frame, len(frame) + 5) for frame, _ in frames])
    rows, slow, odd = _scan_whole(path, 1)
    assert rows == [by_dpkt(1, frame, len(frame) + 5, verify=False) for frame, _ in frames]
    starts = list(itertools.accumulate((16 + len(f) for f, _ in frames), initial=24 + 16))
    assert slow == [[i, starts[i], len(frame), len(frame) + 5, 1, at]
                    for i, (frame, at) in enumerate(frames) if at is not None]
    assert odd == [0, 0, len(slow)]


def test_scan_pcap_hands_on_every_record_of_a_link_type_it_does_not_read(tmp_path):
    frames = [b"\xff\x03\x00\x21" + ip4(), b"", b"\xff"]
    path = tmp_path / "ppp.pcap"
    write_pcap(path, 9, [(frame, len(frame)) for frame in frames])
    rows, slow, odd = _scan_whole(path, 9)
    assert rows == ["bad:unsupported_linktype_9"] * 3
    starts = list(itertools.accumulate((16 + len(f) for f in frames), initial=24 + 16))
    assert slow == [[i, starts[i], len(f), len(f), 9, 0] for i, f in enumerate(frames)]
    assert odd == [0, 0, 3]
