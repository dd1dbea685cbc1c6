"""Fixed-offset decoding of link, IP and TCP headers: only the fields the state machine needs.

`decode` returns either a `Segment` tuple or, for anything that is not a usable TCP
segment, a string naming what it was: ``"other:<kind>"`` for other protocols and
fragments, ``"bad:<reason>"`` for what could not be decoded. Both feed the packet
accounting, so every record read is counted once.
"""

import struct
from array import array
from typing import NamedTuple

from pcapstate.vocab import SYN

# TCP flag bits (RFC 9293, section 3.1).

# Link types (https://www.tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
_RAW_IP = {LINKTYPE_RAW, 12, 14, LINKTYPE_IPV4, LINKTYPE_IPV6}  # 12 and 14: DLT_RAW on BSDs
#: The link types decoded here (and in scan.py); the tshark engine decodes the others.
LINKTYPES = {LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_NULL,
             LINKTYPE_LOOP, *_RAW_IP}

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
_VLAN = {0x8100, 0x88A8, 0x9100}  # 802.1Q, 802.1ad (QinQ), and the old QinQ value
_ETHERTYPES = {0x0806: "arp", 0x8035: "rarp", 0x88CC: "lldp", 0x888E: "eapol", 0x8847: "mpls"}
_IP_PROTOS = {1: "icmp", 2: "igmp", 17: "udp", 47: "gre", 50: "esp", 58: "icmpv6", 132: "sctp"}
# BSD loopback address families for IPv4 and IPv6 (IPv6 differs per OS).
_AF_INET, _AF_INET6 = {2}, {10, 24, 28, 30}
# IPv6 extension headers skipped on the way to TCP; 51 (AH) counts its length in 4-byte units.
_IPV6_EXT = {0, 43, 60, 51, 135, 139, 140}

_TCP = struct.Struct("!HHIIBBH")  # ports, seq, ack, data offset, flags, window
_U16 = struct.Struct("!H").unpack_from


class Segment(NamedTuple):
    """The header fields of one TCP segment that the state machine reads."""

    src: bytes  # 4 or 16 address bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    win: int  # raw advertised window, not scaled
    plen: int  # payload length, from the IP length (right even when the payload was cut)
    ipid: int  # IPv4 identification; 0 for IPv6
    opts: bytes  # TCP options, only for SYN segments (for the window scale); else b""
    iplen: int = 0  # the IP packet's length (IPv4 total length; IPv6 payload length + 40)
    cut: bool = False  # the payload was not captured whole (snaplen)
    bad_sum: bool = False  # its TCP checksum is wrong (checked only when asked)


def decode(linktype: int, frame: bytes, origlen: int, verify: bool = False) -> Segment | str:
    """Decode one captured frame down to its TCP header; with `verify`, check the TCP
    checksum of a segment captured whole."""
    n = len(frame)
    cut = "bad:cut_by_snaplen" if n < origlen else "bad:truncated"
    if linktype == LINKTYPE_ETHERNET:
        if n < 14:
            return cut
        etype = frame[12] << 8 | frame[13]
        off = 14
        while etype in _VLAN:
            if n < off + 4:
                return cut
            etype = frame[off + 2] << 8 | frame[off + 3]
            off += 4
    elif linktype == LINKTYPE_LINUX_SLL:
        if n < 16:
            return cut
        etype, off = frame[14] << 8 | frame[15], 16
    elif linktype == LINKTYPE_LINUX_SLL2:
        if n < 20:
            return cut
        etype, off = frame[0] << 8 | frame[1], 20
    elif linktype in _RAW_IP:
        if n < 1:
            return cut
        version = frame[0] >> 4
        etype, off = ETH_IPV4 if version == 4 else ETH_IPV6 if version == 6 else -1, 0
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if n < 4:
            return cut
        # LOOP stores the family in network order, NULL in the writing host's order.
        family = int.from_bytes(frame[:4], "big" if linktype == LINKTYPE_LOOP else "little")
        if family > 0xFFFF:
            family = int.from_bytes(frame[:4], "big")
        etype = ETH_IPV4 if family in _AF_INET else ETH_IPV6 if family in _AF_INET6 else -1
        off = 4
    else:
        return f"bad:unsupported_linktype_{linktype}"

    if etype == ETH_IPV4:
        return _ipv4(frame, off, n, cut, verify)
    if etype == ETH_IPV6:
        return _ipv6(frame, off, n, cut, verify)
    if etype == -1:
        return "other:not_ip"
    return "other:" + _ETHERTYPES.get(etype, f"ethertype_0x{etype:04x}")


def _ipv4(frame: bytes, off: int, n: int, cut: str, verify: bool) -> Segment | str:
    if n < off + 20:
        return cut
    vihl = frame[off]
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20:
        return "bad:ipv4_header"
    if _U16(frame, off + 6)[0] & 0x3FFF:  # MF flag or a fragment offset
        return "other:ipv4_fragment"
    proto = frame[off + 9]
    if proto != 6:
        return "other:" + _IP_PROTOS.get(proto, f"ip_proto_{proto}")
    total = _U16(frame, off + 2)[0]
    if total == 0:  # TSO frames captured before segmentation carry no length
        total = n - off
    elif total < ihl + 20:
        return "bad:ipv4_length"
    return _tcp(verify, frame, off + ihl, n, total - ihl, frame[off + 12 : off + 16],
                frame[off + 16 : off + 20], _U16(frame, off + 4)[0], cut, total)


def _ipv6(frame: bytes, off: int, n: int, cut: str, verify: bool) -> Segment | str:
    if n < off + 40:
        return cut
    if frame[off] >> 4 != 6:
        return "bad:ipv6_header"
    length = _U16(frame, off + 4)[0]
    nh = frame[off + 6]
    p = off + 40
    end = p + length
    while nh in _IPV6_EXT:
        if n < p + 2:
            return cut
        step = (frame[p + 1] + 2) * 4 if nh == 51 else (frame[p + 1] + 1) * 8
        nh = frame[p]
        p += step
    if nh == 44:
        return "other:ipv6_fragment"
    if nh != 6:
        return "other:" + _IP_PROTOS.get(nh, f"ip_proto_{nh}")
    if length == 0:  # jumbogram or TSO: take the length from the frame
        end = n
    if end - p < 20:
        return "bad:ipv6_length"
    return _tcp(verify, frame, p, n, end - p, frame[off + 8 : off + 24],
                frame[off + 24 : off + 40], 0,
                cut, end - off)


def _tcp(verify: bool, frame: bytes, t: int, n: int, tcp_len: int, src: bytes, dst: bytes,
         ipid: int, cut: str, iplen: int) -> Segment | str:
    if n < t + 20:
        return cut
    sport, dport, seq, ack, doff, flags, win = _TCP.unpack_from(frame, t)
    doff = (doff >> 4) * 4
    if doff < 20 or doff > tcp_len:
        return "bad:tcp_data_offset"
    opts = frame[t + 20 : t + doff] if flags & SYN and doff > 20 else b""
    whole = n >= t + tcp_len
    bad = verify and whole and not checksum_ok(src, dst, frame[t : t + tcp_len])
    return Segment(src, dst, sport, dport, seq, ack, flags, win, tcp_len - doff, ipid, opts,
                   iplen, not whole, bad)


def checksum_ok(src: bytes, dst: bytes, segment: bytes) -> bool:
    """The TCP checksum (RFC 9293 3.1; IPv6: RFC 8200 8.1): the one's complement sum of the
    pseudo-header and the segment, checksum included, is all ones."""
    pseudo = src + dst + (b"\0\0\0\6" if len(src) == 16 else b"\0\6") + \
        len(segment).to_bytes(4 if len(src) == 16 else 2, "big")
    data = pseudo + segment + b"\0" * (len(segment) % 2)
    total = sum(array("H", data))  # byte order does not matter to the check
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def window_scale(opts: bytes) -> int | None:
    """The window scale shift of a SYN's options (RFC 7323), or None if absent."""
    i, n = 0, len(opts)
    while i < n:
        kind = opts[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= n or opts[i + 1] < 2:
            break
        if kind == 3 and opts[i + 1] == 3 and i + 2 < n:
            return min(opts[i + 2], 14)
        i += opts[i + 1]
    return None
