"""TCP inside encapsulations: every frame of a real kernel capture wrapped, with dpkt and
struct, in a layer-2 shim the compiled decoder follows (MPLS, PPPoE, PBB, VN-tag,
FabricPath, LLC/SNAP), a tunnel the slow path unwraps (decode/unwrap.py: GRE, ERSPAN, IP in
IP, VXLAN, Geneve, GTP-U, Teredo) or a rarer link type (PPP, Cisco HDLC, raw MPLS, NFLOG,
pflog, FDDI, IPoIB, PPPoE).

The oracles share no code with pcapstate:
- tshark's decode of each wrapped file finds the same TCP segments (the innermost 4-tuple
  and raw sequence number of every frame) as its decode of the plain sample;
- the analysis of the wrapped file equals the analysis of the plain sample (itself checked
  against the kernel's `ss` view in tests/test_samples.py): the same ends, closers and
  findings, the whole capture covered;
- the tunnel each connection came in is the one the test built (kind, outer endpoints,
  VNI / GRE key / ERSPAN session).
"""

import ipaddress
import json
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import dpkt
import pytest

from pcapstate.pipeline import analyze

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
LEAK = SAMPLES / "close_wait_leak.pcap"  # Ethernet, IPv4, 101 records, 5 stuck in CLOSE_WAIT
SIX = SAMPLES / "ipv6.pcap"  # Ethernet, IPv6, 20 records, 2 connections closed
TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed")

# The outer (tunnel) endpoints, documentation addresses (RFC 5737)
A, B = "192.0.2.1", "198.51.100.7"
C, D = "203.0.113.5", "203.0.113.9"  # the endpoints of a tunnel inside the A-B one
A6, B6 = "2001:db8::1", "2001:db8::2"  # RFC 3849
MAC1, MAC2 = bytes.fromhex("02aabbccdd01"), bytes.fromhex("02aabbccdd02")


def sample(path: Path) -> list[tuple[float, bytes]]:
    """(timestamp, Ethernet frame) of each record of a sample."""
    with path.open("rb") as f:
        records = [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(f)]
    # Untagged Ethernet, IP right after: frame[14:] is the IP packet, frame[12:14] its type
    assert all(frame[12:14] in (b"\x08\x00", b"\x86\xdd") for _, frame in records)
    return records


def write(path: Path, linktype: int, records: list[tuple[float, bytes]]) -> Path:
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f, snaplen=65535, linktype=linktype)
        for ts, frame in records:
            w.writepkt(frame, ts)
    return path


def write_big_endian(path: Path, linktype: int, records: list[tuple[float, bytes]]) -> Path:
    """A pcap written by a big-endian host (dpkt's FileHdr and PktHdr are big-endian)."""
    out = bytes(dpkt.pcap.FileHdr(snaplen=65535, linktype=linktype))
    for ts, frame in records:
        sec, usec = int(ts), round((ts - int(ts)) * 1e6)
        out += bytes(dpkt.pcap.PktHdr(tv_sec=sec, tv_usec=usec, caplen=len(frame),
                                      len=len(frame))) + frame
    path.write_bytes(out)
    return path


# --- Builders: headers from their specifications, field by field --------------------------

def eth(etype: int, payload: bytes, dst: bytes = MAC2, src: bytes = MAC1) -> bytes:
    return dst + src + struct.pack("!H", etype) + payload


def vlan(vid: int, etype: int) -> bytes:
    """An 802.1Q / 802.1ad tag's TCI (its TPID is the type before it), then the type of what
    follows."""
    return struct.pack("!HH", vid, etype)


def labels(*values: int) -> bytes:
    """An MPLS label stack (RFC 3032): label, TC 0, S on the last, TTL 64."""
    return b"".join(struct.pack("!I", (v << 12) | ((i == len(values) - 1) << 8) | 64)
                    for i, v in enumerate(values))


def ip4(payload: bytes, proto: int, src: str = A, dst: str = B) -> bytes:
    """An IPv4 packet between the tunnel endpoints; dpkt sums the header (and UDP)."""
    pkt = dpkt.ip.IP(src=_a(src), dst=_a(dst), p=proto, ttl=64, id=1, data=payload)
    pkt.len = len(pkt)
    return bytes(pkt)


def _a(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def udp_packet(payload: bytes, dport: int, sport: int = 49152, src: str = A,
               dst: str = B) -> bytes:
    """An IPv4 UDP datagram; dpkt sums it."""
    datagram = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    datagram.ulen = len(datagram)
    pkt = dpkt.ip.IP(src=_a(src), dst=_a(dst), p=17, ttl=64, id=1, data=datagram)
    pkt.len = len(pkt)
    return bytes(pkt)


def udp(payload: bytes, dport: int, sport: int = 49152, src: str = A, dst: str = B) -> bytes:
    """An Ethernet frame holding an IPv4 UDP datagram."""
    return eth(0x0800, udp_packet(payload, dport, sport, src, dst))


def udp6(payload: bytes, dport: int, sport: int = 49152) -> bytes:
    """An Ethernet frame holding an IPv6 UDP datagram between A6 and B6."""
    datagram = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    datagram.ulen = len(datagram)
    pkt = dpkt.ip6.IP6(src=ipaddress.ip_address(A6).packed, dst=ipaddress.ip_address(B6).packed,
                       nxt=17, hlim=64, plen=len(datagram), data=datagram)
    return eth(0x86DD, bytes(pkt))


def gre(proto: int, payload: bytes, key: int | None = None, seq: int | None = None,
        csum: bool = False) -> bytes:
    """A GRE header (RFC 2784, keys and sequence numbers RFC 2890) and its payload."""
    flags = (0x8000 if csum else 0) | (0x2000 if key is not None else 0) | \
        (0x1000 if seq is not None else 0)
    head = struct.pack("!HH", flags, proto)
    tail = (struct.pack("!I", key) if key is not None else b"") + \
        (struct.pack("!I", seq) if seq is not None else b"")
    if csum:  # over the GRE header and payload, the checksum field zero
        total = dpkt.in_cksum(head + bytes(4) + tail + payload)
        head += struct.pack("!HH", total, 0)
    return head + tail + payload


def erspan2(session: int, frame: bytes) -> bytes:
    """ERSPAN type II (draft-foschiano-erspan 4.1): version 1, VLAN, COS, En, T, session
    ID (10 bits), reserved, index."""
    return struct.pack("!HHI", (1 << 12) | 10, (3 << 13) | session, 7) + frame


def erspan3(session: int, frame: bytes, subheader: bool = False) -> bytes:
    """ERSPAN type III (draft-foschiano-erspan 4.2): version 2, VLAN, COS, BSO, T, session
    ID, timestamp, SGT, P, FT, hardware ID, D, Gra, O; with O, a platform subheader."""
    head = struct.pack("!HHIHH", (2 << 12) | 10, session, 123456, 0, (5 << 4) | subheader)
    return head + (struct.pack("!II", 3 << 26, 99) if subheader else b"") + frame


def vxlan(vni: int, frame: bytes) -> bytes:
    return struct.pack("!II", 0x08000000, vni << 8) + frame  # RFC 7348: flags I, VNI


def geneve(vni: int, frame: bytes) -> bytes:
    """Geneve (RFC 8926) with one option (class 0x0102, type 0x80, 4 bytes of data):
    version 0, options length 2 words, protocol 0x6558 (Ethernet), VNI."""
    option = struct.pack("!HBB", 0x0102, 0x80, 1) + b"\x01\x02\x03\x04"
    return struct.pack("!BBHI", len(option) // 4, 0, 0x6558, vni << 8) + option + frame


def gtp_u(packet: bytes, teid: int, extended: bool = False) -> bytes:
    """GTP-U (3GPP TS 29.281 5.1): version 1, PT 1, a G-PDU (255), its length, the TEID;
    `extended`: the E and S flags, a sequence number, an N-PDU number and one extension
    header (a PDU session container, 0x85: 4 bytes, UL, QFI 9)."""
    if not extended:
        return struct.pack("!BBHI", 0x30, 0xFF, len(packet), teid) + packet
    optional = struct.pack("!HBB", 4242, 0, 0x85) + bytes([1, 0x10, 0x09, 0])
    return struct.pack("!BBHI", 0x36, 0xFF, len(optional) + len(packet), teid) + optional \
        + packet


def teredo(packet: bytes) -> bytes:
    """Teredo (RFC 4380 5.1.1): an origin indication (port and IPv4 address, each
    obfuscated by XOR with ones), then the IPv6 packet."""
    return struct.pack("!HH", 0, 40000 ^ 0xFFFF) + bytes(b ^ 0xFF for b in _a(A)) + packet


def pptp_gre(ppp_frame: bytes, call_id: int, seq: int) -> bytes:
    """PPTP's enhanced GRE (RFC 2637 4.1): flags K and S, version 1, protocol 0x880B; the
    key's high half the payload length, its low half the peer's call ID; a sequence
    number; then a PPP frame."""
    return struct.pack("!HHHHI", 0x3001, 0x880B, len(ppp_frame), call_id, seq) + ppp_frame


def pppoe_session(packet: bytes, proto: int = 0x0021) -> bytes:
    """A PPPoE session header (RFC 2516: version 1, type 1, code 0, session, length) and
    PPP's protocol field (RFC 1661)."""
    return struct.pack("!BBHHH", 0x11, 0, 0x1234, len(packet) + 2, proto) + packet


def pbb(customer_frame: bytes) -> bytes:
    """An 802.1ah I-tag (PCP, DEI, UCA, reserved, I-SID 24 bits), then the customer frame."""
    return struct.pack("!I", 0x00ABCDEF) + customer_frame


def vntag(etype: int, payload: bytes) -> bytes:
    """A VN-tag (Cisco, 802.1Qbh): D, P, destination VIF, L, R, version, source VIF; then the
    frame's ethertype."""
    return struct.pack("!HHH", 0x8005, 0x0011, etype) + payload


def fabricpath(classical_frame: bytes) -> bytes:
    """After the outer header's 0x8903: FTag (10 bits) and TTL (6 bits), then the classical
    Ethernet frame and its FCS (Wireshark's packet-mim.c reads the classical frame as one
    with an FCS)."""
    fcs = struct.pack("<I", zlib.crc32(classical_frame))
    return struct.pack("!H", (1 << 6) | 32) + classical_frame + fcs


def llc_snap(etype: int, payload: bytes) -> bytes:
    """An 802.3 frame: the length, then LLC (SAPs 0xAA, UI) and SNAP (OUI 0, ethertype)."""
    llc = b"\xaa\xaa\x03\x00\x00\x00" + struct.pack("!H", etype) + payload
    return MAC2 + MAC1 + struct.pack("!H", len(llc)) + llc


def nflog(packet: bytes, family: int, order: str) -> bytes:
    """A Linux NFLOG record (linktype 239): family, version 0, resource ID (big-endian);
    then TLVs, their length and type in the capturing host's byte order (`order`): the
    packet header (1: hardware protocol, hook), a prefix (10) and the payload (9), each
    padded to 4 bytes."""
    def tlv(kind: int, value: bytes) -> bytes:
        body = struct.pack(order + "HH", 4 + len(value), kind) + value
        return body + bytes(-len(body) % 4)
    return struct.pack("!BBH", family, 0, 7) + tlv(1, struct.pack("!HBB", 0x0800, 1, 0)) \
        + tlv(10, b"pcapstate\0") + tlv(9, packet)


def pflog(packet: bytes) -> bytes:
    """An OpenBSD pflog header (if_pflog.h: length 61, AF_INET, action, reason, interface,
    ruleset, rule numbers, uids, pids, direction), padded to 64 bytes, then the packet."""
    head = struct.pack("!BBBB16s16sIIIIIIB", 61, 2, 0, 0, b"em0", b"", 1, 0xFFFFFFFF, 0, 0,
                       0, 0, 1)
    return head + bytes(3) + packet


def ipoib(packet: bytes, etype: int) -> bytes:
    """A LINKTYPE_IPOIB record as Linux's libpcap writes it and as tcpdump (print-ipoib.c:
    IPOIB_HDRLEN 44, the type at 40) and Wireshark (packet-ipoib.c: a 40-byte pseudo-header
    for WTAP_ENCAP_IP_OVER_IB_PCAP) read it: a 40-byte pseudo-header (here the unicast
    form, first two bytes zero: the destination QPN and GID), then RFC 4391's 4-byte
    header (type, reserved)."""
    pseudo = bytes(20) + b"\x00\x00\x00\x48" + bytes.fromhex("fe800000000000000002c90300aabbcc")
    return pseudo + struct.pack("!HH", etype, 0) + packet


def fddi(etype: int, packet: bytes) -> bytes:
    """An FDDI frame (linktype 10): frame control (LLC, asynchronous), addresses, then
    LLC/SNAP: FDDI carries up to 4478 bytes, with no length field."""
    return b"\x50" + MAC2 + MAC1 + b"\xaa\xaa\x03\x00\x00\x00" + struct.pack("!H", etype) \
        + packet


def fragments(packet: bytes, ident: int, cut: int = 16) -> list[bytes]:
    """An IP packet as two fragments, the first `cut` bytes of its payload in the first
    (IPv4: RFC 791, flags and offset in 8-byte units; IPv6: RFC 8200 4.5, a fragment
    header after the fixed one, which the packets of the IPv6 sample end with)."""
    if packet[0] >> 4 == 4:
        hl = (packet[0] & 15) * 4
        head, body = packet[:hl], packet[hl:]

        def piece4(offset: int, data: bytes, more: bool) -> bytes:
            h = bytearray(head)
            h[2:4] = struct.pack("!H", hl + len(data))
            h[6:8] = struct.pack("!H", (0x2000 if more else 0) | offset // 8)
            h[10:12] = b"\0\0"
            h[10:12] = struct.pack("!H", dpkt.in_cksum(bytes(h)))
            return bytes(h) + data
        return [piece4(0, body[:cut], True), piece4(cut, body[cut:], False)]
    head, body, nxt = packet[:40], packet[40:], packet[6]

    def piece6(offset: int, data: bytes, more: bool) -> bytes:
        frag = struct.pack("!BBHI", nxt, 0, offset | more, ident)
        return head[:4] + struct.pack("!HB", 8 + len(data), 44) + head[7:] + frag + data
    return [piece6(0, body[:cut], True), piece6(cut, body[cut:], False)]


# --- The cases ------------------------------------------------------------------------------

Wrap = Callable[[int, bytes], bytes]  # (record index, the sample's Ethernet frame) -> record


class Case(NamedTuple):
    sample: Path
    linktype: int
    wrap: Wrap
    unwrapped: str | tuple[str, ...] | None  # the slow path's kinds (coverage["unwrapped"])
    tunnel: dict[str, Any] | None  # what each record's tunnel is
    big_endian: bool = False  # written by a big-endian host
    user_dlt: bool = False  # a link type tshark 4.0 does not read: tshark reads the same
    # records as DLT_USER0 (TSHARK_OPTIONS)


USER0 = 147
PW_CW, PW_NO_CW = 300, 301  # the labels of pseudowires with and without a control word


def ip_of(frame: bytes) -> bytes:
    return frame[14:]


def etype_of(frame: bytes) -> int:
    return struct.unpack_from("!H", frame, 12)[0]


def tunnel(kind: str, ident: int | None = None, endpoints: tuple[str, str] = (A, B),
           parent: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"kind": kind, "endpoints": sorted(endpoints), "id": ident, "parent": parent}


def unordered(t: dict[str, Any] | None) -> dict[str, Any] | None:
    """A record's tunnel, its endpoints (unordered) sorted, its parent's too."""
    if t is None:
        return None
    return dict(t, endpoints=sorted(t["endpoints"]), parent=unordered(t["parent"]))


CASES: dict[str, Case] = {
    # Shims, read by the compiled decoder
    "mpls": Case(LEAK, 1, lambda i, f: eth(0x8847, labels(100) + ip_of(f)), None, None),
    "mpls_3_labels": Case(LEAK, 1, lambda i, f: eth(0x8847, labels(16, 17, 18) + ip_of(f)),
                          None, None),
    "mpls_over_vlan": Case(LEAK, 1, lambda i, f: eth(0x8100, vlan(10, 0x8847) + labels(100)
                                                     + ip_of(f)), None, None),
    "mpls_multicast": Case(LEAK, 1, lambda i, f: eth(0x8848, labels(100) + ip_of(f)), None,
                           None),
    "mpls_ethernet_pseudowire_cw": Case(
        LEAK, 1, lambda i, f: eth(0x8847, labels(100, PW_CW) + struct.pack("!I", i) + f), None,
        None),
    "mpls_ethernet_pseudowire_no_cw": Case(  # the sample's MACs are 0: first nibble 0
        LEAK, 1, lambda i, f: eth(0x8847, labels(100, PW_NO_CW) + f), None, None),
    "pppoe_over_qinq": Case(LEAK, 1, lambda i, f: eth(0x88A8, vlan(100, 0x8100) + vlan(200, 0x8864)
                                                      + pppoe_session(ip_of(f))), None, None),
    "pbb": Case(LEAK, 1, lambda i, f: eth(0x88E7, pbb(f)), None, None),
    "vntag": Case(LEAK, 1, lambda i, f: eth(0x8926, vntag(etype_of(f), ip_of(f))), None, None),
    "fabricpath": Case(LEAK, 1, lambda i, f: eth(0x8903, fabricpath(f)), None, None),
    # 802.3's length field stops at 1500: LLC/SNAP carries the IPv6 sample (frames < 400)
    "llc_snap": Case(SIX, 1, lambda i, f: llc_snap(etype_of(f), ip_of(f)), None, None),
    # Tunnels, unwrapped by the slow path
    "gre": Case(LEAK, 1, lambda i, f: eth(0x0800, ip4(gre(0x0800, ip_of(f)), 47)), "gre",
                tunnel("gre")),
    "gre_key": Case(LEAK, 1, lambda i, f: eth(0x0800, ip4(gre(0x0800, ip_of(f), key=0x1234),
                                                         47)), "gre", tunnel("gre", 0x1234)),
    "gre_checksum_sequence": Case(
        LEAK, 1, lambda i, f: eth(0x0800, ip4(gre(0x0800, ip_of(f), seq=i, csum=True), 47)),
        "gre", tunnel("gre")),
    "gre_mpls": Case(LEAK, 1, lambda i, f: eth(0x0800, ip4(gre(0x8847, labels(100) + ip_of(f)),
                                                          47)), "gre", tunnel("gre")),
    "pptp": Case(LEAK, 1, lambda i, f: eth(0x0800, ip4(pptp_gre(b"\xff\x03\x00\x21" + ip_of(f),
                                                                0x4D2, i), 47)),
                 # no id: each side sends its peer's call ID (RFC 2637, 4.1), so it differs by
                 # direction, and a tunnel is the same both ways
                 "gre", tunnel("gre")),
    "vxlan_in_gre": Case(
        LEAK, 1, lambda i, f: eth(0x0800, ip4(gre(0x0800, udp_packet(vxlan(9, f), 4789, src=C,
                                                                     dst=D), key=5), 47)),
        ("gre", "vxlan"), tunnel("vxlan", 9, (C, D), tunnel("gre", 5))),
    "gre_ethernet": Case(LEAK, 1, lambda i, f: eth(0x0800, ip4(gre(0x6558, f, key=7), 47)),
                         "gre", tunnel("gre", 7)),
    "erspan_ii": Case(LEAK, 1, lambda i, f: eth(0x0800, ip4(gre(0x88BE, erspan2(0x155, f),
                                                                seq=i), 47)),
                      "erspan", tunnel("erspan", 0x155)),
    "erspan_iii": Case(LEAK, 1, lambda i, f: eth(0x0800, ip4(gre(0x22EB, erspan3(0x2AA, f),
                                                                 seq=i), 47)),
                       "erspan", tunnel("erspan", 0x2AA)),
    "erspan_iii_subheader": Case(
        LEAK, 1, lambda i, f: eth(0x0800, ip4(gre(0x22EB, erspan3(0x2AB, f, True), seq=i),
                                              47)), "erspan", tunnel("erspan", 0x2AB)),
    "ipip": Case(LEAK, 1, lambda i, f: eth(0x0800, ip4(ip_of(f), 4)), "ipip",
                 tunnel("ip_in_ip")),
    "ipv6_in_ip": Case(SIX, 1, lambda i, f: eth(0x0800, ip4(ip_of(f), 41)), "ipv6_in_ip",
                       tunnel("ip_in_ip")),
    "vxlan": Case(LEAK, 1, lambda i, f: udp(vxlan(42, f), 4789), "vxlan", tunnel("vxlan", 42)),
    "vxlan_over_ipv6": Case(LEAK, 1, lambda i, f: udp6(vxlan(42, f), 4789), "vxlan",
                            tunnel("vxlan", 42, (A6, B6))),
    "geneve": Case(LEAK, 1, lambda i, f: udp(geneve(0xABCDE, f), 6081), "geneve",
                   tunnel("geneve", 0xABCDE)),
    "gtp_u": Case(LEAK, 1, lambda i, f: udp(gtp_u(ip_of(f), 0x1000 + i % 2), 2152), "gtp_u",
                  tunnel("gtp_u")),
    "gtp_u_extension": Case(LEAK, 1, lambda i, f: udp(gtp_u(ip_of(f), 77, True), 2152),
                            "gtp_u", tunnel("gtp_u")),
    "teredo": Case(SIX, 1, lambda i, f: udp(teredo(ip_of(f)), 40000, sport=3544), "teredo",
                   tunnel("teredo")),
    # Link types the compiled decoder does not read
    "ppp": Case(LEAK, 9, lambda i, f: b"\xff\x03\x00\x21" + ip_of(f), "ppp", None),
    # address and control fields left out, the protocol field compressed (RFC 1661 6.5, 6.6)
    "ppp_compressed": Case(LEAK, 9, lambda i, f: b"\x21" + ip_of(f), "ppp", None),
    "ppp_hdlc": Case(LEAK, 50, lambda i, f: b"\xff\x03\x00\x21" + ip_of(f), "ppp_hdlc", None),
    "pppoe_link": Case(LEAK, 51, lambda i, f: pppoe_session(ip_of(f)), "pppoe", None),
    "cisco_hdlc": Case(LEAK, 104, lambda i, f: struct.pack("!BBH", 0x0F, 0, etype_of(f))
                       + ip_of(f), "cisco_hdlc", None),
    "raw_mpls": Case(LEAK, 219, lambda i, f: labels(100) + ip_of(f), "mpls", None,
                     user_dlt=True),
    "nflog": Case(LEAK, 239, lambda i, f: nflog(ip_of(f), 2, "<"), "nflog", None),
    "nflog_big_endian": Case(LEAK, 239, lambda i, f: nflog(ip_of(f), 2, ">"), "nflog", None,
                             big_endian=True),
    "pflog": Case(LEAK, 117, lambda i, f: pflog(ip_of(f)), "pflog", None),
    "fddi": Case(LEAK, 10, lambda i, f: fddi(etype_of(f), ip_of(f)), "fddi", None),
    "ipoib": Case(LEAK, 242, lambda i, f: ipoib(ip_of(f), etype_of(f)), "ipoib", None),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """Every case's capture, written once."""
    folder = tmp_path_factory.mktemp("encapsulations")
    paths = {}
    for name, case in CASES.items():
        records = [(ts, case.wrap(i, f)) for i, (ts, f) in enumerate(sample(case.sample))]
        writer = write_big_endian if case.big_endian else write
        paths[name] = writer(folder / f"{name}.pcap", case.linktype, records)
    return paths


# --- tshark: the TCP inside ---------------------------------------------------------------

FIELDS = ("ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport",
          "tcp.seq_raw")
# What tshark is told rather than left to guess: the pseudowires' control words, by label;
# raw MPLS (linktype 219, which tshark 4.0 does not read) as DLT_USER0's protocol.
TSHARK_OPTIONS = ("-d", f"mpls.label=={PW_CW},pwethcw", "-d", f"mpls.label=={PW_NO_CW},pwethnocw",
                  "-o", f'uat:user_dlts:"User 0 (DLT={USER0})","mpls","0","","0",""')


def tshark_fields(path: Path) -> list[list[str]]:
    """FIELDS of every frame, the innermost occurrence of each."""
    cmd = [TSHARK, "-n", "-r", str(path), *TSHARK_OPTIONS, "-T", "fields", "-E",
           "occurrence=l", *(a for f in FIELDS for a in ("-e", f))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    return [line.split("\t") for line in out.splitlines()]


def segments(rows: list[list[str]], v6: bool) -> list[tuple[str, ...] | None]:
    """Each frame's innermost TCP segment: (source, destination, ports, raw sequence
    number) of the family the sample holds, or None for a frame without TCP."""
    at = 2 if v6 else 0
    return [(r[at], r[at + 1], *r[4:]) if r[4] else None for r in rows]


@pytest.fixture(scope="module")
def tshark_views(built, tmp_path_factory) -> dict[str, list[tuple[str, ...] | None]]:
    """tshark's decode of every wrapped capture and of the plain samples. Their records,
    read back from the files, go in one pcapng (an interface per link type), read once:
    tshark takes about half a second to start. A big-endian writer's capture, whose byte
    order is the point, is read as it is."""
    alone = [name for name, case in CASES.items() if case.big_endian]
    together = [(name, CASES[name].sample, built[name], CASES[name].user_dlt)
                for name in CASES if name not in alone]
    together += [(path.name, path, path, None) for path in (LEAK, SIX)]
    interfaces: dict[int, int] = {}
    packets = []
    for _, _, path, user_dlt in together:
        with path.open("rb") as f:
            reader = dpkt.pcap.Reader(f)
            linktype = USER0 if user_dlt else reader.datalink()
            iface = interfaces.setdefault(linktype, len(interfaces))
            packets += [(iface, ts, bytes(buf)) for ts, buf in reader]
    combined = tmp_path_factory.mktemp("tshark") / "all.pcapng"
    with combined.open("wb") as f:
        w = dpkt.pcapng.Writer(f, idb=[dpkt.pcapng.InterfaceDescriptionBlockLE(
            snaplen=65535, linktype=linktype) for linktype in interfaces])
        for iface, ts, frame in packets:
            us = round(ts * 1e6)
            w.writepkt(dpkt.pcapng.EnhancedPacketBlockLE(
                iface_id=iface, ts_high=us >> 32, ts_low=us & 0xFFFFFFFF, caplen=len(frame),
                pkt_len=len(frame), pkt_data=frame))
    with ThreadPoolExecutor(2) as pool:
        runs = {name: pool.submit(tshark_fields, built[name]) for name in alone}
        rows = tshark_fields(combined)
        views = {name: segments(run.result(), CASES[name].sample == SIX)
                 for name, run in runs.items()}
    for name, sample_path, _, _ in together:
        count = len(sample(sample_path))
        views[name], rows = segments(rows[:count], sample_path == SIX), rows[count:]
    assert rows == []
    return views


@needs_tshark
@pytest.mark.parametrize("name", CASES)
def test_tshark_finds_the_same_tcp_inside(name, tshark_views):
    plain = tshark_views[CASES[name].sample.name]
    assert len(plain) == len(sample(CASES[name].sample)) and None not in plain
    assert tshark_views[name] == plain


# --- pcapstate's analysis -------------------------------------------------------------------

@cache
def analysis(path: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    records: list[dict[str, Any]] = []
    return analyze([path], on_record=records.append), records


def verdict(result: dict[str, Any]) -> tuple:
    conns = result["connections"]
    return (conns["total"], conns["by_end"], conns["by_closer"],
            [(f["state"], f["count"]) for f in result["findings"]])


def test_the_plain_samples_have_connections_to_compare():
    """What the cases are compared with (tests/test_samples.py checks it against ss)."""
    for path in (LEAK, SIX):
        result, records = analysis(str(path))
        assert result["coverage"]["share"] == 1.0 and result["connections"]["total"] > 0
        assert len(records) == result["connections"]["total"]
    assert verdict(analysis(str(LEAK))[0])[3] == [("CLOSE_WAIT", 5)]


@pytest.mark.parametrize("name", CASES)
def test_the_analysis_is_the_plain_samples(name, built):
    case = CASES[name]
    result, _ = analysis(str(built[name]))
    plain, _ = analysis(str(case.sample))
    count = len(sample(case.sample))
    coverage = result["coverage"]
    assert (coverage["records"], coverage["share"], coverage["not_decoded"],
            coverage["tcp_unread"]) == (count, 1.0, {}, False)
    kinds = (case.unwrapped,) if isinstance(case.unwrapped, str) else case.unwrapped or ()
    assert coverage["unwrapped"] == {kind: count for kind in kinds}
    assert result["accounting"]["tcp_segments"] == count
    assert verdict(result) == verdict(plain)
    assert result["warnings"] == plain["warnings"]


@pytest.mark.parametrize("name", CASES)
def test_each_connection_names_its_tunnel(name, built):
    case = CASES[name]
    _, records = analysis(str(built[name]))
    _, plain = analysis(str(case.sample))
    assert [(r["client"], r["server"]) for r in records] == \
        [(r["client"], r["server"]) for r in plain]
    for rec in records:
        assert unordered(rec.get("tunnel")) == case.tunnel


@needs_tshark
@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, c in CASES.items()
                                  if not c.user_dlt and not c.big_endian
                                  and "pseudowire" not in n])
def test_the_tshark_engine_agrees(name, built):
    """The third path: Wireshark's dissectors (--engine tshark, the innermost IP and TCP)
    give the plain sample's connections, ends, closers and findings, and name the same
    tunnels, on every case that
    tshark reads by itself (not raw MPLS nor an Ethernet pseudowire, which tshark 4.0
    reads only when told (TSHARK_OPTIONS), nor a big-endian NFLOG file)."""
    case = CASES[name]
    records: list[dict[str, Any]] = []
    got = analyze([str(built[name])], engine="tshark", on_record=records.append)
    assert verdict(got) == verdict(analysis(str(case.sample))[0])
    assert got["accounting"]["tcp_segments"] == len(sample(case.sample))
    assert {json.dumps(unordered(r.get("tunnel")), sort_keys=True) for r in records} == \
        {json.dumps(case.tunnel, sort_keys=True)}


# --- Fragments ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [LEAK, SIX], ids=lambda p: p.name)
def test_fragmented_packets_are_reassembled(path, tmp_path, request):
    """Every IP packet of the sample as two fragments, every third pair last first: the
    datagrams reassembled, the analysis the plain sample's; tshark reassembles the same
    segments."""
    records = []
    for i, (ts, f) in enumerate(sample(path)):
        pieces = fragments(ip_of(f), ident=i)
        records += [(ts, eth(etype_of(f), p)) for p in (pieces[::-1] if i % 3 == 0 else pieces)]
    wrapped = write(tmp_path / "fragments.pcap", 1, records)
    count = len(records) // 2
    kind = "ipv6_fragment" if path == SIX else "ipv4_fragment"
    result, _ = analysis(str(wrapped))
    assert verdict(result) == verdict(analysis(str(path))[0])
    assert result["coverage"] == {"records": 2 * count, "decoded": 2 * count, "share": 1.0,
                                  "not_decoded": {}, "unwrapped": {kind: count},
                                  "tcp_unread": False}
    assert result["accounting"]["tcp_segments"] == count
    if TSHARK:
        theirs = segments(tshark_fields(wrapped), path == SIX)
        assert theirs.count(None) == count
        assert [seg for seg in theirs if seg] == request.getfixturevalue("tshark_views")[
            path.name]


def test_a_tunnel_in_fragments_is_reassembled_then_unwrapped(tmp_path):
    """GTP-U whose outer IPv4 packets were fragmented on the way (as Zeek reassembles the
    outer fragments of GTP before decoding the tunnel): each datagram whole again, then its
    tunnel unwrapped; the analysis the plain sample's, each connection in its GTP tunnel."""
    records = []
    for i, (ts, f) in enumerate(sample(LEAK)):
        outer = bytearray(udp_packet(gtp_u(ip_of(f), 7), 2152))
        outer[4:6] = struct.pack("!H", i + 1)  # each datagram its own identification
        records += [(ts, eth(0x0800, piece)) for piece in fragments(bytes(outer), ident=i)]
    result, recs = analysis(str(write(tmp_path / "gtp_fragments.pcap", 1, records)))
    assert verdict(result) == verdict(analysis(str(LEAK))[0])
    count = len(records) // 2
    assert result["coverage"]["unwrapped"] == {"ipv4_fragment": count, "gtp_u": count}
    assert result["coverage"]["share"] == 1.0 and not result["coverage"]["tcp_unread"]
    assert {r["tunnel"]["kind"] for r in recs} == {"gtp_u"}


def test_a_datagram_missing_a_fragment_is_not_read(tmp_path):
    """The last fragment of one datagram never captured: that datagram's first fragment is
    not read, and the verdict says TCP was left unread."""
    records = []
    for i, (ts, f) in enumerate(sample(LEAK)):
        pieces = fragments(ip_of(f), ident=i)
        records += [(ts, eth(0x0800, p)) for p in (pieces[:1] if i == 50 else pieces)]
    result, _ = analysis(str(write(tmp_path / "missing.pcap", 1, records)))
    coverage = result["coverage"]
    assert coverage["not_decoded"] == {"ipv4_fragment": 1} and coverage["tcp_unread"]
    assert coverage["unwrapped"] == {"ipv4_fragment": 100}


# --- Tunnels: which connection a segment belongs to ----------------------------------------

def test_the_same_connection_in_two_vnis_is_two_connections(tmp_path):
    """Every frame of the sample twice, in VNI 1 and in VNI 2: twice the connections, and
    the stuck service twice, once in each tunnel (two tenants may use the same address)."""
    records = [(ts, udp(vxlan(vni, f), 4789)) for ts, f in sample(LEAK) for vni in (1, 2)]
    result, recs = analysis(str(write(tmp_path / "two.pcap", 1, records)))
    plain = analysis(str(LEAK))[0]
    total, by_end, by_closer, findings = verdict(plain)
    assert verdict(result) == (2 * total, {k: 2 * v for k, v in by_end.items()},
                               {k: 2 * v for k, v in by_closer.items()}, 2 * findings)
    service = plain["findings"][0]["service"]
    assert [f["service"] for f in result["findings"]] == [
        f"{service} in vxlan {vni} {A}-{B}" for vni in (1, 2)]
    assert Counter(r["tunnel"]["id"] for r in recs) == {1: total, 2: total}
    assert result["coverage"]["unwrapped"] == {"vxlan": len(records)}


def test_both_directions_of_a_tunnel_are_one_connection(tmp_path):
    """A tunnel endpoint sends one direction, the other endpoint the other, from another
    UDP source port (VXLAN's is a hash of the inner flow): one connection still."""
    records = []
    for ts, f in sample(LEAK):
        seg = dpkt.ethernet.Ethernet(f).data
        forward = (seg.src, seg.data.sport) < (seg.dst, seg.data.dport)
        src, dst, sport = (A, B, 49152) if forward else (B, A, 61000)
        records.append((ts, udp(vxlan(42, f), 4789, sport=sport, src=src, dst=dst)))
    assert len({r[1][26:30] for r in records}) == 2  # both endpoints send
    result, recs = analysis(str(write(tmp_path / "both.pcap", 1, records)))
    assert verdict(result) == verdict(analysis(str(LEAK))[0])
    assert [unordered(r["tunnel"]) for r in recs] == [tunnel("vxlan", 42)] * len(recs)


def test_udp_to_vxlans_port_that_is_not_vxlan_is_udp(tmp_path):
    """Datagrams to port 4789 without VXLAN's I flag (RFC 7348: it must be set): UDP,
    read, not TCP left unread."""
    junk = [(1795548290.0 + k, udp(bytes(8) + b"not vxlan", 4789)) for k in range(3)]
    records = sorted(sample(LEAK) + junk)
    result, _ = analysis(str(write(tmp_path / "udp.pcap", 1, records)))
    assert result["accounting"]["other"] == {"udp": 3}
    assert (result["coverage"]["share"], result["coverage"]["not_decoded"],
            result["coverage"]["tcp_unread"]) == (1.0, {}, False)
    assert verdict(result) == verdict(analysis(str(LEAK))[0])


def test_a_truncated_gre_header_is_not_read(tmp_path):
    """GRE headers whose IP packet ends inside them (a key flag and no key; 2 bytes; an
    ERSPAN II header cut short): no exception, GRE not read, the verdict says so."""
    bad = [struct.pack("!HH", 0x2000, 0x0800), b"\x00\x00", gre(0x88BE, b"\x10\x00", seq=1)]
    records = [(1795548290.0 + k, eth(0x0800, ip4(payload, 47))) for k, payload in
               enumerate(bad)]
    result, recs = analysis(str(write(tmp_path / "gre.pcap", 1, records)))
    assert result["coverage"]["not_decoded"] == {"gre": 3}
    assert result["coverage"]["tcp_unread"] and result["coverage"]["share"] == 0.0
    assert result["coverage"]["unwrapped"] == {} and recs == []


def test_a_pcapng_wrapped_in_vxlan(tmp_path):
    """The pcapng path (records batched in Python, frames.batches_of) unwraps the same."""
    path = tmp_path / "vxlan.pcapng"
    with path.open("wb") as f:
        w = dpkt.pcapng.Writer(f, snaplen=65535, linktype=1)
        for ts, frame in sample(LEAK):
            w.writepkt(udp(vxlan(42, frame), 4789), ts)
    result, recs = analysis(str(path))
    assert verdict(result) == verdict(analysis(str(LEAK))[0])
    assert result["coverage"]["unwrapped"] == {"vxlan": 101}
    assert result["coverage"]["share"] == 1.0 and not result["coverage"]["tcp_unread"]
    assert len(recs) == len(analysis(str(LEAK))[1])
    assert all(unordered(r["tunnel"]) == tunnel("vxlan", 42) for r in recs)


def test_two_files_of_one_tunnel_share_it(tmp_path):
    """A capture in two files (a rotated set): the tunnel met in the first is the same one
    in the second, so a connection that spans them is one."""
    records = [(ts, udp(vxlan(42, f), 4789)) for ts, f in sample(LEAK)]
    half = len(records) // 2
    first = write(tmp_path / "a.pcap", 1, records[:half])
    second = write(tmp_path / "b.pcap", 1, records[half:])
    result = analyze([str(first), str(second)])
    assert verdict(result) == verdict(analysis(str(LEAK))[0])

