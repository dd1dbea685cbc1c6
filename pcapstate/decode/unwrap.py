"""The slow path: a record at a time, in Python with dpkt, what the compiled decoder hands
on (decode/frames.py `CARRIERS` and link types it does not read): tunnels (IP in IP, GRE
with ERSPAN types I-III, VXLAN, Geneve, GTP-U, Teredo) and the rarer link types (PPP,
Cisco HDLC, FDDI, raw MPLS, NFLOG, IPoIB, pflog, PPPoE without Ethernet). Each step
takes one wrapper off and gives back a frame of a link type the compiled decoder reads
(Ethernet or raw IP), which it decodes into the record's own row: the TCP segment inside
joins the connection table in capture order, its fields read by the one decoder. What
cannot be unwrapped keeps its kind, and the coverage says it was not read.

A connection inside a tunnel keeps its inner 4-tuple and records the tunnel (`tunnels`:
its kind, its two outer endpoints and its identifier: VNI, GRE key, ERSPAN session); the
same inner 4-tuple in two tunnels is two connections (the tunnel's number is in the
table's key). A tunnel is the same in both directions: its endpoints are unordered, and
GTP-U's TEID, which differs per direction, is not part of it.

dpkt is imported by the functions that use it, when a record needs them: most captures
have none, and its import took 27 ms of each run's start."""

import ipaddress
import struct
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from pcapstate.decode import frames

ETHERNET, RAW_IP = 1, 101
#: The link types unwrapped here (https://www.tcpdump.org/linktypes.html).
LINKTYPES = {9: "ppp", 50: "ppp_hdlc", 51: "pppoe", 104: "cisco_hdlc", 10: "fddi",
             219: "mpls", 239: "nflog", 242: "ipoib", 117: "pflog"}
_DEPTH = 8  # wrappers inside wrappers, at most
_PPP_ETHERTYPES = {0x0021: 0x0800, 0x0057: 0x86DD, 0x0281: 0x8847, 0x0283: 0x8848}
_GRE_INNER = {0x0800: RAW_IP, 0x86DD: RAW_IP, 0x6558: ETHERNET}
_ERSPAN_II, _ERSPAN_III, _PPP_IN_GRE = 0x88BE, 0x22EB, 0x880B
_CARRIER_NAMES = {kind: frames.kind_name(kind)[6:] for kind in frames.CARRIERS}


def _unread(kind: int) -> bool:
    """A kind that may hold TCP neither decoder read (frames.not_read's carriers)."""
    return kind != frames.TCP and frames.not_read(frames.kind_name(kind)) == "carrier"


def _ether(etype: int, payload: bytes) -> tuple[int, bytes]:
    """A payload that an ethertype names, as an Ethernet frame the decoder reads."""
    return ETHERNET, bytes(12) + etype.to_bytes(2, "big") + payload


class Unwrapper:
    """Unwraps the rows a scan hands on (`rows`), and keeps the tunnels met so far.
    `fallback` (decode/tshark.py `read_frames`, with `--engine auto`) decodes the frames
    it still cannot read, a batch's at a time."""

    def __init__(self, verify: bool, fallback: Callable[..., frames.Batch] | None = None
                 ) -> None:
        self.verify = verify
        self.fallback = fallback
        self.tunnels: list[dict[str, Any]] = []  # tunnel number - 1 -> what it is
        self._numbers: dict[tuple[Any, ...], int] = {}
        self.unwrapped: Counter[str] = Counter()  # records read inside each kind
        self.fragments = Fragments()

    def rows(self, out: frames.Batch, slow: np.ndarray, count: int, buf: Any) -> None:
        """Unwrap the `count` rows of `slow` (frames.SLOW_FIELDS) whose frames are in `buf`:
        a wrapper off each (in capture order), then the compiled decoder over all their
        insides at once, again while one is a carrier still."""
        import dpkt
        # (row, frame, original length, link type, where its IP header is, tunnel)
        todo = [(row, bytes(buf[start:start + length]), origlen, linktype, at, 0)
                for row, start, length, origlen, linktype, at in slow[:count].tolist()]
        records = todo  # the frames as captured (todo: their insides, a wrapper off each time)
        kinds = out.kind
        for _ in range(_DEPTH):
            insides = []  # (row, frame, original length, link type, tunnel, name)
            for row, frame, origlen, linktype, at, tunnel in todo:
                try:
                    step = self._step(int(kinds[row]), linktype, frame, at, tunnel, out, row,
                                      len(frame) < origlen)
                except (dpkt.UnpackError, struct.error, IndexError, ValueError):
                    step = None
                if isinstance(step, int):  # not what it seemed: a record of this kind, read
                    kinds[row] = step
                elif step is not None:
                    linktype, inner, tunnel, name = step
                    # what was not captured of the frame is not captured of its inside (a
                    # datagram from fragments is whole)
                    insides.append((row, inner, max(len(inner), origlen - len(frame)
                                                    + len(inner)), linktype, tunnel, name))
            if not insides:
                break
            ats = frames.decode_rows(insides, out, self.verify)
            todo = []
            for (row, inner, origlen, linktype, tunnel, name), at in zip(insides, ats,
                                                                           strict=True):
                out.tunnel[row] = tunnel
                kind = int(kinds[row])
                if kind == frames.TCP or not frames.kind_name(kind).startswith("bad:"):
                    self.unwrapped[name] += 1
                if at >= 0:
                    todo.append((row, inner, origlen, linktype, at, tunnel))
        if self.fallback is not None:
            self._fall_back(out, [(row, linktype, frame, origlen, float(out.ts[row]))
                                  for row, frame, origlen, linktype, *_ in records
                                  if _unread(int(kinds[row]))])

    def _fall_back(self, out: frames.Batch, unread: list[tuple[int, int, bytes, int, float]]
                   ) -> None:
        """The rows still unread, as tshark decodes their frames (`--engine auto`)."""
        if not unread:
            return
        got = self.fallback([u[1:] for u in unread], self.verify)  # type: ignore[misc]
        for i, (row, *_) in enumerate(unread):
            for column, values in zip(out[1:-1], got[1:-1], strict=True):
                column[row] = values[i]
            out.tunnel[row] = 0
        self.unwrapped["tshark"] += len(unread)

    def _step(self, kind: int, linktype: int, frame: bytes, at: int, tunnel: int,
              out: frames.Batch, row: int, cut: bool) -> tuple[int, bytes, int, str] | int | None:
        """One wrapper off: (link type, frame, tunnel number, what was unwrapped). A
        fragment (`cut`: not captured whole) is kept until its datagram is whole: then the
        datagram, in the row of its last fragment."""
        import dpkt
        if kind >> 16 == frames._BAD_LINKTYPE >> 16:
            linked = _link(linktype, frame)
            return None if linked is None else (*linked, tunnel, LINKTYPES[linktype])
        name = _CARRIER_NAMES[kind]
        if name.endswith("fragment"):
            if cut:
                return None
            ip = dpkt.ip.IP(frame[at:]) if frame[at] >> 4 == 4 else dpkt.ip6.IP6(frame[at:])
            start = at + len(ip) - len(ip.data)  # the IP payload's offset
            whole = self.fragments.add(ip, frame[at:start], frame[start:_outer(frame, at)[3]],
                                       float(out.ts[row]), (tunnel,))
            return None if whole is None else (RAW_IP, whole, tunnel, name)
        src, dst, start, end = _outer(frame, at)
        payload = frame[start:end]
        if name in ("ipip", "ipv6_in_ip"):
            return RAW_IP, payload, self.tunnel_number("ip_in_ip", src, dst, None, tunnel), name
        if name == "gre":
            return self._gre(src, dst, payload, tunnel)
        tunnelled = _udp_tunnel(name, payload[8:])
        if tunnelled is None:  # a UDP datagram to the tunnel's port, no more
            return frames._OTHER_PROTO + 17
        inner_type, data, ident = tunnelled
        if inner_type < 0:
            return None
        return inner_type, data, self.tunnel_number(name, src, dst, ident, tunnel), name

    def _gre(self, src: bytes, dst: bytes, payload: bytes, tunnel: int
             ) -> tuple[int, bytes, int, str] | None:
        import dpkt
        # the header alone (at most 16 bytes without routing), so that dpkt does not go on
        # to decode what it carries
        gre = dpkt.gre.GRE(payload if payload[0] & 0x40 else payload[:16])
        data = payload[len(gre) - len(gre.data):]
        kind, ident = "gre", getattr(gre, "key", None)
        if gre.p in _GRE_INNER:
            inner: tuple[int, bytes] | None = _GRE_INNER[gre.p], data
        elif gre.p in (0x8847, 0x8848):
            inner = _ether(gre.p, data)
        elif gre.p == _ERSPAN_II:  # type I has no header (no sequence number in GRE)
            kind, ident = "erspan", None
            inner = ETHERNET, data
            if gre.flags & dpkt.gre.GRE_SP:
                ident, inner = struct.unpack_from("!H", data, 2)[0] & 0x3FF, (ETHERNET, data[8:])
        elif gre.p == _ERSPAN_III:  # 12 bytes, and 8 more when its O flag says so
            kind, ident = "erspan", struct.unpack_from("!H", data, 2)[0] & 0x3FF
            inner = ETHERNET, data[20 if data[11] & 1 else 12:]
        elif gre.p == _PPP_IN_GRE:  # PPTP's enhanced GRE
            inner = _ppp(data)
        else:
            return None
        return None if inner is None else (
            *inner, self.tunnel_number(kind, src, dst, ident, tunnel), kind)

    def tunnel_number(self, kind: str, src: bytes, dst: bytes, ident: int | None,
                      parent: int) -> int:
        """The number of the tunnel between two addresses (unordered)."""
        a, b = sorted((src, dst))
        key = (kind, a, b, ident, parent)
        number = self._numbers.get(key)
        if number is None:
            number = self._numbers[key] = len(self.tunnels) + 1
            self.tunnels.append({"kind": kind,
                                 "endpoints": [str(ipaddress.ip_address(a)),
                                               str(ipaddress.ip_address(b))],
                                 "id": ident,
                                 "parent": self.tunnels[parent - 1] if parent else None})
        return number


def _outer(frame: bytes, at: int) -> tuple[bytes, bytes, int, int]:
    """The IP packet at `at`: (source, destination, its payload's start and end in the
    frame); dpkt reads IPv6's extension headers."""
    import dpkt
    size = int.from_bytes(frame[at + 2:at + 4] if frame[at] >> 4 == 4 else frame[at + 4:at + 6],
                          "big")
    if frame[at] >> 4 == 4:  # a total length of 0: not said (offload)
        end = min(len(frame), at + size) if size else len(frame)
        return frame[at + 12:at + 16], frame[at + 16:at + 20], at + (frame[at] & 15) * 4, end
    end = min(len(frame), at + 40 + size) if size else len(frame)
    start = at + 40
    if frame[at + 6] in frames.V6_EXTENSIONS:
        ip6 = dpkt.ip6.IP6(frame[at:end])
        start = at + len(ip6) - len(ip6.data)
    return frame[at + 8:at + 24], frame[at + 24:at + 40], start, end


def _udp_tunnel(name: str, data: bytes) -> tuple[int, bytes, int | None] | None:
    """A UDP tunnel's payload (`data`, past the UDP header): (link type, frame, the
    tunnel's identifier; link type -1 when what it carries is not read here), or None if
    it is not that tunnel."""
    if name == "vxlan":  # RFC 7348: flags with I set, VNI
        if len(data) < 8 or not data[0] & 0x08:
            return None
        return ETHERNET, data[8:], int.from_bytes(data[4:7], "big")
    if name == "geneve":  # RFC 8926: version 0, options, protocol type, VNI
        if len(data) < 8 or data[0] >> 6:
            return None
        ptype, start = struct.unpack_from("!H", data, 2)[0], 8 + (data[0] & 0x3F) * 4
        # a protocol not read here (NSH ...): a Geneve tunnel still, its inside not read
        return _GRE_INNER.get(ptype, -1), data[start:], int.from_bytes(data[4:7], "big")
    if name == "gtp_u":  # 3GPP TS 29.281: version 1, G-PDU, optional fields, extensions
        if len(data) < 8 or data[0] >> 5 != 1 or not data[0] & 0x10 or data[1] != 0xFF:
            return None
        start = 8
        if data[0] & 0x07:
            start, ext = 12, data[11]
            while ext:
                size = data[start] * 4
                ext, start = data[start + size - 1], start + size
        return RAW_IP, data[start:], None
    # Teredo (RFC 4380): an authentication header, an origin indication, then IPv6
    start = 0
    if data[:2] == b"\x00\x01":
        start = 4 + data[2] + data[3] + 9
    if data[start:start + 2] == b"\x00\x00":
        start += 8
    return (RAW_IP, data[start:], None) if data[start] >> 4 == 6 else None


def _ppp(data: bytes) -> tuple[int, bytes] | None:
    """A PPP frame (RFC 1661; HDLC-like framing, RFC 1662, when it begins ff 03)."""
    import dpkt
    if data[:2] == b"\xff\x03":
        data = data[2:]
    ppp = dpkt.pppoe.PPP(data)  # the protocol field, compressed to a byte (odd) or not
    etype = _PPP_ETHERTYPES.get(ppp.p)
    return None if etype is None else _ether(etype, data[1 if data[0] & 1 else 2:])


def _link(linktype: int, frame: bytes) -> tuple[int, bytes] | None:
    """A frame of a link type the compiled decoder does not read, as one it reads."""
    if linktype in (9, 50):  # PPP
        return _ppp(frame)
    if linktype == 51:  # PPPoE, no Ethernet header
        return _ether(0x8864, frame)
    if linktype == 104:  # Cisco HDLC: address, control, an ethertype
        return _ether(struct.unpack_from("!H", frame, 2)[0], frame[4:])
    if linktype == 10:  # FDDI: frame control, addresses, then LLC (an 802.3 frame's)
        return _ether(0, frame[13:])
    if linktype == 219:  # an MPLS label stack
        return _ether(0x8847, frame)
    if linktype == 242:  # IPoIB: a 40-byte pseudo-header (libpcap's, Wireshark's), then
        # RFC 4391's: an ethertype, two reserved bytes
        return _ether(struct.unpack_from("!H", frame, 40)[0], frame[44:])
    if linktype == 117:  # pflog: its header's length (padded to 4), then IP
        return RAW_IP, frame[(frame[0] + 3) & ~3:]
    if linktype == 239:  # NFLOG: a header, then TLVs in the capturing host's byte order
        for order in "<>":  # the one whose lengths walk the frame
            packet = _nflog_packet(frame, order)
            if packet is not None:
                return RAW_IP, packet
    return None


def _nflog_packet(frame: bytes, order: str) -> bytes | None:
    """The packet (TLV type 9) of an NFLOG record, its TLVs read in this byte order."""
    p = 4
    while p + 4 <= len(frame):
        size, kind = struct.unpack_from(order + "HH", frame, p)
        if size < 4 or p + size > len(frame):
            return None
        if kind == 9:
            return frame[p + 4:p + size]
        p += (size + 3) & ~3
    return None


class Fragments:
    """IPv4 and IPv6 fragments (RFC 791, RFC 8200 4.5) kept until their datagram is whole,
    in bounded memory: at most MAX_DATAGRAMS datagrams and MAX_BYTES bytes pending, none
    for longer than TIMEOUT seconds of capture time (Linux's ipfrag_time); the oldest go
    first. Where fragments overlap, the first to arrive wins."""

    MAX_DATAGRAMS, MAX_BYTES, TIMEOUT = 4096, 64 << 20, 30.0

    def __init__(self) -> None:
        # key -> [first seen, header bytes or None, total length or None, {offset: data}]
        self.pending: dict[tuple[Any, ...], list[Any]] = {}
        self.bytes = 0
        # fragments that went into a whole datagram before its last one (whose row holds
        # the datagram), by their kind's accounting name: read, though their rows say
        # fragment
        self.used = Counter[str]()

    def add(self, ip: Any, header: bytes, data: bytes, ts: float,
            scope: tuple[Any, ...]) -> bytes | None:
        """Keep a fragment (`header`: its IP header, `data`: its payload); the datagram,
        with an IP header without fragmentation, once the fragments cover it."""
        if ip.v == 4:
            offset, more, ident, proto = ip.offset * 8, ip.mf, ip.id, ip.p  # dpkt: 8-byte units
            kind = "other:ipv4_fragment"
        else:
            frag = ip.extension_hdrs[44]
            offset, more, ident, proto = frag.frag_off * 8, frag.m_flag, frag.id, ip.p
            kind = "other:ipv6_fragment"
        self._expire(ts)
        key = (*scope, ip.src, ip.dst, ident, proto)
        entry = self.pending.setdefault(key, [ts, None, None, {}])
        if offset == 0:
            entry[1] = header
        if not more:
            entry[2] = offset + len(data)
        if offset not in entry[3]:
            entry[3][offset] = data
            self.bytes += len(data)
        whole = _joined(entry)
        if whole is None:
            return None
        del self.pending[key]
        self.bytes -= sum(map(len, entry[3].values()))
        self.used[kind] += len(entry[3]) - 1
        first = entry[1]
        if ip.v == 4:  # the total length and no fragment flags or offset
            return first[:2] + (len(first) + len(whole)).to_bytes(2, "big") + first[4:6] \
                + b"\0\0" + first[8:] + whole
        # IPv6: the fixed header, its payload length and next header the fragment's
        return first[:4] + len(whole).to_bytes(2, "big") + bytes([proto]) + first[7:40] + whole

    def _expire(self, now: float) -> None:
        while self.pending and (len(self.pending) > self.MAX_DATAGRAMS
                                or self.bytes > self.MAX_BYTES
                                or next(iter(self.pending.values()))[0] < now - self.TIMEOUT):
            entry = self.pending.pop(next(iter(self.pending)))
            self.bytes -= sum(map(len, entry[3].values()))


def _joined(entry: list[Any]) -> bytes | None:
    """The payload the fragments cover, if they cover it all and the first and last came."""
    _, header, total, pieces = entry
    if header is None or total is None:
        return None
    out, end = bytearray(), 0
    for offset in sorted(pieces):
        if offset > end:
            return None
        out += pieces[offset][end - offset:]
        end = max(end, offset + len(pieces[offset]))
    return bytes(out[:total]) if end >= total else None
