"""The fast decoder: walks the records of a pcap buffer and decodes each one's link, IP and
TCP headers into columns, in compiled code (numba): only the fields the state machine and
Zeek's view need.

Records come out as columns of a `Batch`: one row per record, `kind` saying what it was:
TCP, or for anything that is not a usable TCP segment an accounting code that `kind_name`
spells (``"other:<kind>"`` for other protocols and fragments, ``"bad:<reason>"`` for what
could not be decoded), so that every record read is counted once. tests/test_frames.py
checks it against dpkt-built frames and tshark's decode of every sample.
"""

from typing import Any, NamedTuple

import numpy as np

from pcapstate.jit import borrowing, njit
from pcapstate.vocab import SYN_SACK, SYN_TS

#: The link types decoded here (https://www.tcpdump.org/linktypes.html): Ethernet, Linux
#: cooked (SLL, SLL2), BSD loopback (NULL, LOOP) and raw IP (101, and 12 and 14: DLT_RAW on
#: BSDs, 228 IPv4, 229 IPv6); the tshark engine decodes the others.
LINKTYPES = {1, 113, 276, 0, 108, 101, 12, 14, 228, 229}
_ETHERTYPES = {0x0806: "arp", 0x8035: "rarp", 0x88CC: "lldp", 0x888E: "eapol",
               0x8863: "pppoe_discovery"}
_IP_PROTOS = {1: "icmp", 2: "igmp", 4: "ipip", 17: "udp", 41: "ipv6_in_ip", 47: "gre",
              50: "esp", 58: "icmpv6", 132: "sctp"}
#: Tunnels over UDP, by their IANA port: a UDP datagram to or from one of these ports
#: carries frames or packets that may hold TCP this decoder does not read.
_UDP_TUNNELS = {4789: "vxlan", 6081: "geneve", 2152: "gtp_u", 3544: "teredo"}
def not_read(name: str) -> str | None:
    """Of a record's accounting name: "carrier" for a kind that may carry TCP that was not
    read (a tunnel not unwrapped, a fragment of a datagram never whole, a frame of a link
    type not decoded), "undecodable" for one that could not be decoded at all, None for one
    read (TCP, or a protocol that is not TCP: UDP, ARP ...)."""
    if name in _CARRIER_NAMES or name.startswith("bad:unsupported_linktype"):
        return "carrier"
    return "undecodable" if name.startswith("bad:") else None

# kind: TCP, or what else the record was. Codes >= _OTHER_ETHERTYPE carry a number.
TCP = 0
_CUT, _TRUNCATED, _IPV4_HEADER, _IPV4_LENGTH, _IPV6_HEADER, _IPV6_LENGTH, _TCP_OFFSET = range(
    1, 8)
_NOT_IP, _IPV4_FRAGMENT, _IPV6_FRAGMENT, _LLC, _MPLS_ACH, _PPP, _SHIMS = range(8, 15)
_OTHER_ETHERTYPE = 1 << 16  # + the ethertype
_OTHER_PROTO = 2 << 16  # + the IP protocol number
_BAD_LINKTYPE = 3 << 16  # + the link type
_UDP_TUNNEL = 4 << 16  # + the UDP port of a tunnel (_UDP_TUNNELS)
_NAMES = {
    _CUT: "bad:cut_by_snaplen", _TRUNCATED: "bad:truncated", _IPV4_HEADER: "bad:ipv4_header",
    _IPV4_LENGTH: "bad:ipv4_length", _IPV6_HEADER: "bad:ipv6_header",
    _IPV6_LENGTH: "bad:ipv6_length", _TCP_OFFSET: "bad:tcp_data_offset",
    _NOT_IP: "other:not_ip", _IPV4_FRAGMENT: "other:ipv4_fragment",
    _IPV6_FRAGMENT: "other:ipv6_fragment", _LLC: "other:llc", _MPLS_ACH: "other:mpls_ach",
    _PPP: "other:ppp", _SHIMS: "bad:too_many_shims",
}
#: Kinds of IP packets that may carry TCP the compiled decoder does not read: tunnels (IP in
#: IP, GRE, UDP to a tunnel's port) and fragments. `_decode` hands them on, by the offset
#: of their IP header, to the slow path (decode/unwrap.py); what it cannot read keeps its
#: kind and is not covered by the verdict (`not_read`).
CARRIERS = (_OTHER_PROTO + 4, _OTHER_PROTO + 41, _OTHER_PROTO + 47, _IPV4_FRAGMENT,
            _IPV6_FRAGMENT, *(_UDP_TUNNEL + port for port in _UDP_TUNNELS))
#: IPv6's extension headers (RFC 8200 4: hop-by-hop, routing, destination options, AH,
#: mobility, HIP, shim6), which the decoder steps over; 44, fragment, ends the walk.
V6_EXTENSIONS = (0, 43, 60, 51, 135, 139, 140)
#: How many shims (VLAN tags, MPLS label stacks, ...) a frame may have before IP.
_MAX_SHIMS = 16

NO_WSCALE, NOT_SYN = -1, -2  # wscale column: no window scale option; not a SYN
borrowed = borrowing()


def kind_name(kind: int) -> str:
    """The accounting name of a non-TCP kind."""
    group, value = kind >> 16, kind & 0xFFFF
    if group == _OTHER_ETHERTYPE >> 16:
        return "other:" + _ETHERTYPES.get(value, f"ethertype_0x{value:04x}")
    if group == _OTHER_PROTO >> 16:
        return "other:" + _IP_PROTOS.get(value, f"ip_proto_{value}")
    if group == _BAD_LINKTYPE >> 16:
        return f"bad:unsupported_linktype_{value}"
    if group == _UDP_TUNNEL >> 16:
        return "other:" + _UDP_TUNNELS[value]
    return _NAMES[kind]


_CARRIER_NAMES = {kind_name(k) for k in CARRIERS}


class Batch(NamedTuple):
    """Decoded records, one row each. Addresses are two big-endian 64-bit halves (IPv4 in
    the low half of `*_lo`, with `v6` false)."""

    ts: np.ndarray  # float64
    kind: np.ndarray  # int32: TCP or an accounting code
    v6: np.ndarray  # bool
    src_hi: np.ndarray  # uint64
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    sport: np.ndarray  # int32
    dport: np.ndarray
    seq: np.ndarray  # int64 (0 .. 2**32-1)
    ack: np.ndarray
    flags: np.ndarray  # int32
    win: np.ndarray  # the raw advertised window, not scaled
    plen: np.ndarray  # payload length, from the IP length (right even when the payload was cut)
    ipid: np.ndarray  # IPv4 identification; 0 for IPv6
    wscale: np.ndarray  # int8: a SYN's window scale, NO_WSCALE, or NOT_SYN
    synopt: np.ndarray  # int8: a SYN's SYN_SACK and SYN_TS options (vocab.py); 0 for others
    analysis: np.ndarray  # int32: Wireshark's TCP analysis flags (tshark engine), else 0
    iplen: np.ndarray  # int32: the IP packet's length (IPv4 total; IPv6 payload + 40); for an
    # IPv4 total length of 0 (offload), 0, or -1 when checksums are checked (track/zeek_view)
    cut: np.ndarray  # bool: the payload was not captured whole (snaplen)
    bad_sum: np.ndarray  # bool: a wrong TCP checksum, when asked to check
    tunnel: np.ndarray  # int32: the tunnel it came in (decode/unwrap.py's number), or 0

    @classmethod
    def empty(cls, n: int) -> "Batch":
        f8, i4, i8, u8 = np.float64, np.int32, np.int64, np.uint64
        return cls(np.empty(n, f8), np.empty(n, i4), np.empty(n, np.bool_), np.empty(n, u8),
                   np.empty(n, u8), np.empty(n, u8), np.empty(n, u8), np.empty(n, i4),
                   np.empty(n, i4), np.empty(n, i8), np.empty(n, i8), np.empty(n, i4),
                   np.empty(n, i4), np.empty(n, i4), np.empty(n, i4), np.empty(n, np.int8),
                   np.zeros(n, np.int8), np.zeros(n, i4), np.zeros(n, i4), np.zeros(n, np.bool_),
                   np.zeros(n, np.bool_), np.zeros(n, i4))

    def head(self, n: int) -> "Batch":
        return Batch(*(col[:n] for col in self))


# Batches are written into this many rotating buffers, so that a reader thread can decode
# one while the caller analyses another and a third waits in pipeline.read_ahead's queue
# (a batch's arrays are written again three batches later: none is in use then).
BATCH_BUFFERS = 3

# Status of a scan: where it stopped and why. HEADER: a pcap file header where a record
# header was due (files joined with cat); read/capture.py reads it and starts a new section.
MORE, FULL, TOO_LONG, HEADER = 0, 1, 2, 3


@njit(cache=True, nogil=True)
def _u16(b, i):
    return (np.int64(b[i]) << 8) | np.int64(b[i + 1])


@njit(cache=True, nogil=True)
def _u32(b, i, big):
    if big:
        return (np.int64(b[i]) << 24) | (np.int64(b[i + 1]) << 16) | (np.int64(b[i + 2]) << 8) \
            | np.int64(b[i + 3])
    return (np.int64(b[i + 3]) << 24) | (np.int64(b[i + 2]) << 16) | (np.int64(b[i + 1]) << 8) \
        | np.int64(b[i])


@njit(cache=True, nogil=True)
def _u64(b, i, n):
    """n big-endian bytes at i as an unsigned 64-bit number."""
    v = np.uint64(0)
    for k in range(n):
        v = (v << np.uint64(8)) | np.uint64(b[i + k])
    return v


@njit(cache=True, nogil=True)
def _syn_options(b, i, end):
    """What a SYN's options (b[i:end]) offer: the window scale (RFC 7323, capped at 14; -1
    none), and SYN_SACK and SYN_TS. The list ends at End of Option List (RFC 9293 3.2) or
    at a malformed option; an option cut short by `end` is not counted."""
    ws, opts = -1, 0
    while i < end:
        kind = b[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= end or b[i + 1] < 2:
            break
        size = np.int64(b[i + 1])
        if i + size > end:
            break
        if kind == 3 and size == 3 and ws == -1:
            ws = min(np.int64(b[i + 2]), 14)
        elif kind == 4 and size == 2:
            opts |= SYN_SACK
        elif kind == 8 and size == 10:
            opts |= SYN_TS
        i += size
    return ws, opts


@njit(cache=True, nogil=True, inline="always")
def _sum16(b, start, length):
    """The sum of the big-endian 16-bit words of b[start:start+length] (the last byte of an
    odd length padded with a zero)."""
    total = np.int64(0)
    end = start + length - 1
    i = start
    while i < end:
        total += (np.int64(b[i]) << 8) | np.int64(b[i + 1])
        i += 2
    if i == end:
        total += np.int64(b[i]) << 8
    return total


@njit(cache=True, nogil=True)
def _checksum_ok(b, addresses, size, t, tcp_len):
    """Whether a TCP checksum is right (RFC 9293, 3.1), over the addresses (source and
    destination, `size` bytes in all) and the TCP segment at t, `tcp_len` bytes long."""
    total = _sum16(b, addresses, size) + 6 + (tcp_len >> 16) + (tcp_len & 0xFFFF) \
        + _sum16(b, t, tcp_len)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


@njit(cache=True, nogil=True)
def _is_v6_ext(nh):
    return nh in V6_EXTENSIONS


@njit(cache=True, nogil=True)
def _not_tcp(b, s, n, at, proto):
    """The kind of an IP packet of protocol `proto` other than TCP, its header at `at`: a
    UDP tunnel (_UDP_TUNNELS: by the destination port, else the source port), or the
    protocol."""
    if proto == 17 and n >= at + 4:
        for port in (_u16(b, s + at + 2), _u16(b, s + at)):
            if port == 4789 or port == 6081 or port == 2152 or port == 3544:
                return _UDP_TUNNEL + port
    return _OTHER_PROTO + proto


@njit(cache=True, nogil=True, inline="always")
def _carries(kind):
    return kind in CARRIERS


@njit(cache=True, nogil=True, inline="always")
def _known(etype):
    """An ethertype a pseudowire's Ethernet frame is likely to carry."""
    return etype == 0x0800 or etype == 0x86DD or etype == 0x8100 or etype == 0x88A8 \
        or etype == 0x8847 or etype == 0x8848 or etype == 0x0806 or etype == 0x8864


@njit(cache=True, nogil=True)
def _shims(b, s, n, etype, off, cut):
    """Follow what lies between a link header and IP: 802.1Q and QinQ tags, MPLS label
    stacks (RFC 3032; IP, or Ethernet with or without a control word (RFC 4448), by the
    first nibble after the stack as Wireshark guesses it), PPPoE sessions (RFC 2516),
    802.1ah I-tags, VN-tags, FabricPath headers and LLC/SNAP (802.3 frames). Returns (the
    ethertype, its payload's offset, 0), or (-1, 0, the record's kind) when the frame ends
    early or holds something else."""
    for _ in range(_MAX_SHIMS + 1):
        need = off + (4 if etype == 0x8100 or etype == 0x88A8 or etype == 0x9100
                      or etype == 0x9200 or etype == 0x8847 or etype == 0x8848 else
                      7 if etype == 0x8864 else 3 if etype <= 1500 else
                      6 if etype == 0x8926 else 18 if etype == 0x88E7 else
                      16 if etype == 0x8903 else 0)
        if n < need:
            return -1, 0, cut
        if etype == 0x8100 or etype == 0x88A8 or etype == 0x9100 or etype == 0x9200:
            etype, off = _u16(b, s + off + 2), off + 4
        elif etype == 0x8847 or etype == 0x8848:  # MPLS: to the bottom of the stack
            while not b[s + off + 2] & 1:
                off += 4
                if n < off + 4:
                    return -1, 0, cut
            off += 4
            if n < off + 1:
                return -1, 0, cut
            nibble = b[s + off] >> 4
            if nibble == 4 or nibble == 6:
                etype = 0x0800 if nibble == 4 else 0x86DD
            elif nibble == 1:  # an associated channel (RFC 5586: OAM, BFD)
                return -1, 0, _MPLS_ACH
            else:  # an Ethernet pseudowire (RFC 4448): a control word begins with the
                # nibble 0, but so may a MAC address; the control word unless only the
                # reading without it finds a likely ethertype
                if nibble == 0 and not (n >= off + 18 and not _known(_u16(b, s + off + 16))
                                        and n >= off + 14 and _known(_u16(b, s + off + 12))):
                    off += 4
                if n < off + 14:
                    return -1, 0, cut
                etype, off = _u16(b, s + off + 12), off + 14
        elif etype == 0x8864:  # PPPoE session: 6 bytes, then PPP's protocol (RFC 1661:
            # one byte when compressed, odd)
            first = np.int64(b[s + off + 6])
            if first & 1:
                proto, off = first, off + 7
            elif n < off + 8:
                return -1, 0, cut
            else:
                proto, off = _u16(b, s + off + 6), off + 8
            if proto != 0x0021 and proto != 0x0057:
                return -1, 0, _PPP
            etype = 0x0800 if proto == 0x0021 else 0x86DD
        elif etype == 0x88E7:  # 802.1ah: the I-tag, then the customer's frame
            etype, off = _u16(b, s + off + 16), off + 18
        elif etype == 0x8926:  # VN-tag: the tag, then an ethertype
            etype, off = _u16(b, s + off + 4), off + 6
        elif etype == 0x8903:  # FabricPath: FTag and TTL, then the classical frame
            etype, off = _u16(b, s + off + 14), off + 16
        elif etype <= 1500:  # 802.3's length: LLC; SNAP with OUI 0 carries an ethertype
            if b[s + off] != 0xAA or b[s + off + 1] != 0xAA or b[s + off + 2] != 3:
                return -1, 0, _LLC
            if n < off + 8:
                return -1, 0, cut
            if b[s + off + 3] or b[s + off + 4] or b[s + off + 5]:
                return -1, 0, _LLC
            etype, off = _u16(b, s + off + 6), off + 8
        else:
            return etype, off, 0
    return -1, 0, _SHIMS


@njit(cache=True, nogil=True)
def _decode(b, s, n, origlen, linktype, verify):
    """Decode the frame b[s:s+n]; with `verify`, check the TCP checksum of a segment
    captured whole. Returns (kind, at, then a segment's fields as a Batch row has them from
    `v6` to `bad_sum`, `analysis` left out). `at`: -1, or for a record that may carry TCP
    not read here (CARRIERS, an unsupported link type) the offset the slow path starts
    from: its IP header's, or 0. The fields are zeros for a record that is not a segment."""
    cut = _CUT if n < origlen else _TRUNCATED
    etype = -1
    off = 0
    if linktype == 1:  # Ethernet
        if n < 14:
            return _other(cut, -1)
        etype, off = _u16(b, s + 12), 14
    elif linktype == 113:  # Linux SLL
        if n < 16:
            return _other(cut, -1)
        etype, off = _u16(b, s + 14), 16
    elif linktype == 276:  # Linux SLL2
        if n < 20:
            return _other(cut, -1)
        etype, off = _u16(b, s), 20
    elif linktype == 101 or linktype == 12 or linktype == 14 or linktype == 228 \
            or linktype == 229:
        if n < 1:
            return _other(cut, -1)
        version = b[s] >> 4
        etype = 0x0800 if version == 4 else 0x86DD if version == 6 else -1
    elif linktype == 0 or linktype == 108:  # BSD NULL, LOOP
        if n < 4:
            return _other(cut, -1)
        family = _u32(b, s, linktype == 108)
        if family > 0xFFFF:
            family = _u32(b, s, True)
        if family == 2:
            etype = 0x0800
        elif family == 10 or family == 24 or family == 28 or family == 30:
            etype = 0x86DD
        off = 4
    else:
        return _other(_BAD_LINKTYPE + linktype, 0)
    if etype >= 0:
        etype, off, other = _shims(b, s, n, etype, off, cut)
        if other:
            return _other(other, -1)

    if etype == 0x0800:
        if n < off + 20:
            return _other(cut, -1)
        vihl = b[s + off]
        ihl = np.int64(vihl & 0x0F) * 4
        if vihl >> 4 != 4 or ihl < 20:
            return _other(_IPV4_HEADER, -1)
        if _u16(b, s + off + 6) & 0x3FFF:
            return _other(_IPV4_FRAGMENT, off)
        proto = np.int64(b[s + off + 9])
        if proto != 6:
            other = _not_tcp(b, s, n, off + ihl, proto)
            return _other(other, off if _carries(other) else -1)
        total = _u16(b, s + off + 2)
        # a total length of 0: a segmentation-offload frame captured on its sender, as long
        # as was captured; Zeek counts no IP bytes for it, and drops it when it checks
        # checksums (its TCP checksum is not computed yet)
        iplen = total if total else -1 if verify else 0
        if total == 0:
            total = n - off
        elif total < ihl + 20:
            return _other(_IPV4_LENGTH, -1)
        t = off + ihl
        tcp_len = total - ihl
        v6 = False
        src_hi = np.uint64(0)
        src_lo = _u64(b, s + off + 12, 4)
        dst_hi = np.uint64(0)
        dst_lo = _u64(b, s + off + 16, 4)
        ipid = _u16(b, s + off + 4)
    elif etype == 0x86DD:
        if n < off + 40:
            return _other(cut, -1)
        if b[s + off] >> 4 != 6:
            return _other(_IPV6_HEADER, -1)
        length = _u16(b, s + off + 4)
        nh = np.int64(b[s + off + 6])
        p = off + 40
        end = p + length
        while _is_v6_ext(nh):
            if n < p + 2:
                return _other(cut, -1)
            hlen = np.int64(b[s + p + 1])
            step = (hlen + 2) * 4 if nh == 51 else (hlen + 1) * 8
            nh = np.int64(b[s + p])
            p += step
        if nh == 44:
            return _other(_IPV6_FRAGMENT, off)
        if nh != 6:
            other = _not_tcp(b, s, n, p, nh)
            return _other(other, off if _carries(other) else -1)
        if length == 0:
            end = n
        if end - p < 20:
            return _other(_IPV6_LENGTH, -1)
        t = p
        tcp_len = end - p
        iplen = end - off
        v6 = True
        src_hi = _u64(b, s + off + 8, 8)
        src_lo = _u64(b, s + off + 16, 8)
        dst_hi = _u64(b, s + off + 24, 8)
        dst_lo = _u64(b, s + off + 32, 8)
        ipid = 0
    elif etype == -1:
        return _other(_NOT_IP, -1)
    else:
        return _other(_OTHER_ETHERTYPE + etype, -1)

    if n < t + 20:
        return _other(cut, -1)
    doff = np.int64(b[s + t + 12] >> 4) * 4
    if doff < 20 or doff > tcp_len:
        return _other(_TCP_OFFSET, -1)
    f = np.int64(b[s + t + 13])
    bad_sum = verify and n >= t + tcp_len and not _checksum_ok(
        b, s + off + (8 if v6 else 12), 32 if v6 else 8, s + t, tcp_len)
    wscale, synopt = _syn_options(b, s + t + 20, s + min(t + doff, n)) if f & 0x02 \
        else (NOT_SYN, 0)
    return (TCP, -1, v6, src_hi, src_lo, dst_hi, dst_lo, _u16(b, s + t), _u16(b, s + t + 2),
            _u32(b, s + t + 4, True), _u32(b, s + t + 8, True), f, _u16(b, s + t + 14),
            tcp_len - doff, ipid, wscale, synopt, iplen, n < t + tcp_len, bad_sum)


@njit(cache=True, nogil=True, inline="always")
def _other(kind, at):
    """What `_decode` returns for a record that is not a TCP segment: its kind, and `at`."""
    z, u = np.int64(0), np.uint64(0)
    return np.int64(kind), np.int64(at), False, u, u, u, u, z, z, z, z, z, z, z, z, z, z, z, \
        False, False


@njit(cache=True, nogil=True)
def _file_header(buf, pos):
    """Whether the 8 bytes at pos begin a pcap file header: one of the four magic numbers,
    then version 2.4 in that magic's byte order (capture.file_header, the same rule)."""
    magic = _u32(buf, pos, True)
    if magic == 0xA1B2C3D4 or magic == 0xA1B23C4D:
        return _u32(buf, pos + 4, True) == 0x00020004
    if magic == 0xD4C3B2A1 or magic == 0x4D3CB2A1:
        return _u32(buf, pos + 4, False) == 0x00040002
    return False


@njit(cache=True, nogil=True)
def scan_pcap(buf, pos, big, unit, linktype, snaplen, limit, out, slow, odd, verify):
    """Decode the whole records of a pcap buffer from `pos` into `out`, at most its length;
    the rows the slow path is to read go into `slow` (SLOW_FIELDS, a row each; its
    `odd[2]` rows filled). Returns (position after the last record decoded, rows filled,
    status): MORE when the
    buffer ends (inside a record or at its end), FULL when `out` is, TOO_LONG at a record
    whose length exceeds `limit` (position is that record's), HEADER at a pcap file header
    (its position). Counts into `odd` the records longer than `snaplen` and those whose
    original length is below their captured one."""
    ts = out[0]
    cap = len(ts)
    starts, lengths, origlens = np.empty(cap, np.int64), np.empty(cap, np.int64), \
        np.empty(cap, np.int64)
    end = len(buf)
    row = 0
    status = MORE
    while pos + 16 <= end:
        if row == cap:
            status = FULL
            break
        first = buf[pos]
        if (first == 0xA1 or first == 0xD4 or first == 0x4D) and _file_header(buf, pos):
            status = HEADER
            break
        incl = _u32(buf, pos + 8, big)
        if incl > limit:
            status = TOO_LONG
            break
        nxt = pos + 16 + incl
        if nxt > end:
            break
        orig = _u32(buf, pos + 12, big)
        if 0 < snaplen < incl:
            odd[0] += 1
        if orig < incl:
            odd[1] += 1
        ts[row] = np.float64(_u32(buf, pos, big)) + np.float64(_u32(buf, pos + 4, big)) * unit
        starts[row], lengths[row], origlens[row] = pos + 16, incl, orig
        row += 1
        pos = nxt
    _decode_batch(buf, starts[:row], lengths[:row], origlens[:row],
                  np.full(row, linktype, np.int64), out, slow, odd, verify)
    return pos, row, status


#: What `slow` holds of a record for the slow path, a row each.
SLOW_FIELDS = ("row", "start", "length", "origlen", "linktype", "at")


def slow_rows(rows: int) -> np.ndarray:
    return np.empty((rows, len(SLOW_FIELDS)), np.int64)


@njit(cache=True, nogil=True)
def _decode_batch(buf, starts, lengths, origlens, linktypes, out, slow, odd, verify):
    """Decode frame k, buf[starts[k]:][:lengths[k]], into row k of `out`; the rows the slow
    path is to read go into `slow`, `odd[2]` of them."""
    ats = _decode_into(buf, np.arange(len(starts)), starts, lengths, origlens, linktypes, out,
                       verify)
    k = 0
    for row in range(len(ats)):
        if ats[row] >= 0:
            slow[k, 0], slow[k, 1], slow[k, 2] = row, starts[row], lengths[row]
            slow[k, 3], slow[k, 4], slow[k, 5] = origlens[row], linktypes[row], ats[row]
            k += 1
    odd[2] = k


@njit(cache=True, nogil=True)
def _decode_into(buf, rows, starts, lengths, origlens, linktypes, out, verify):
    """Decode frame k, buf[starts[k]:][:lengths[k]], into row rows[k] of `out`. Returns
    what `_decode` says of each: where the slow path starts (-1: nowhere).

    The columns are taken out of `out` once, here, not for each frame: compiled code counts
    references to an array each time a function takes it, and twenty columns counted for
    each frame took 80% of the decoder's time."""
    (_, kind, v6, src_hi, src_lo, dst_hi, dst_lo, sport, dport, seq, ack, flags, win, plen,
     ipid, wscale, synopt, _, iplen, cut, bad_sum, tunnel) = out
    buf = borrowed(buf)  # taken by _decode for each frame (jit.borrowing)
    ats = np.empty(len(rows), np.int64)
    for k in range(len(rows)):
        d = _decode(buf, starts[k], lengths[k], origlens[k], linktypes[k], verify)
        row = rows[k]
        kind[row], ats[k], tunnel[row] = d[0], d[1], 0
        if d[0] == TCP:
            v6[row], src_hi[row], src_lo[row], dst_hi[row] = d[2], d[3], d[4], d[5]
            dst_lo[row], sport[row], dport[row], seq[row] = d[6], d[7], d[8], d[9]
            ack[row], flags[row], win[row], plen[row] = d[10], d[11], d[12], d[13]
            ipid[row], wscale[row], synopt[row], iplen[row] = d[14], d[15], d[16], d[17]
            cut[row], bad_sum[row] = d[18], d[19]
    return ats


def decode_rows(frames: list[tuple[Any, ...]], out: Batch, verify: bool) -> list[int]:
    """Decode (row, frame, original length, link type, ...) each into its row of `out`, in
    one compiled call: the slow path's way back to this decoder for what it unwrapped.
    What `_decode` returned for each."""
    starts = np.cumsum([0] + [len(f[1]) for f in frames])
    buf = np.frombuffer(b"".join(f[1] for f in frames), np.uint8)
    ats = _decode_into(buf, np.array([f[0] for f in frames], np.int64), starts[:-1],
                       np.diff(starts), np.array([f[2] for f in frames], np.int64),
                       np.array([f[3] for f in frames], np.int64), out, verify)
    return ats.tolist()


def decode_one(linktype: int, frame: bytes, origlen: int, verify: bool = False) -> Batch:
    """Decode one frame with the compiled decoder (for tests): a one-row Batch."""
    out = Batch.empty(1)
    decode_rows([(0, frame, origlen, linktype)], out, verify)
    return out


def batches_of(records, unwrapper, rows: int = 1 << 16, verify: bool = False,
               every: float | None = None):
    """Decode (timestamp, linktype, frame, original length) records into Batches: for
    formats that are not walked by compiled code (pcapng); `unwrapper` reads what the
    compiled decoder hands on (decode/unwrap.py). `every`: a
    batch goes out once its first record is this many seconds old (a live stream's records
    are analysed as they come, not once 65,536 have)."""
    import time
    outs = [Batch.empty(rows) for _ in range(BATCH_BUFFERS)]
    out, k = outs[0], 0
    frames = bytearray()
    starts: list[int] = []
    lengths: list[int] = []
    origlens: list[int] = []
    linktypes: list[int] = []
    slow, odd = slow_rows(rows), np.zeros(3, np.int64)

    def flush() -> Batch:
        nonlocal out, k
        n = len(starts)
        buf = np.frombuffer(bytes(frames), np.uint8)
        _decode_batch(buf, np.array(starts, np.int64), np.array(lengths, np.int64),
                      np.array(origlens, np.int64), np.array(linktypes, np.int64), out, slow,
                      odd, verify)
        if odd[2]:
            unwrapper.rows(out, slow, int(odd[2]), buf)
        for column in (frames, starts, lengths, origlens, linktypes):
            column.clear()
        done = out.head(n)
        k += 1
        out = outs[k % BATCH_BUFFERS]
        return done

    for record in records:
        if record is None:  # a quiet stream: what came so far goes out now
            if starts:
                yield flush()
            continue
        ts, linktype, frame, origlen = record
        out.ts[len(starts)] = ts
        starts.append(len(frames))
        lengths.append(len(frame))
        origlens.append(origlen)
        linktypes.append(linktype)
        frames += frame
        if len(starts) == 1 and every is not None:
            due = time.monotonic() + every
        if len(starts) == rows or (every is not None and time.monotonic() >= due):
            yield flush()
    if starts:
        yield flush()
