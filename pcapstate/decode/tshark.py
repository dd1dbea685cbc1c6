"""The second decoder: Wireshark's dissectors (tshark, found through pyshark) decode the
capture, and the one tracker (track/) runs on what they say.

tshark dissects every frame and prints only the fields the state machine needs, one line a
frame (`-T fields`), which this module turns into the same column batches (frames.Batch)
the fast decoder makes. No per-packet object is built: pyshark's own packet loop builds
one per packet, 125 times slower than reading tshark's `-T fields` output (measured for
issue 16); so pyshark only finds tshark (its `get_process_path` knows where each platform
installs it). tshark runs in its own process, so its dissection and this module's
parsing use two cores.

Wireshark decodes more than the fast decoder: tunnels (GRE, VXLAN, ...), 802.11 with
radiotap, and every link type Wireshark knows. The innermost IP and TCP headers are the
ones analysed (every occurrence is asked for, `-E occurrence=a`, and the last one read,
the outer ones naming the tunnels a connection came in, as decode/unwrap.py names them);
TCP inside an ICMP error is not a segment.
"""

import ipaddress
import subprocess
from collections.abc import Iterator
from typing import Any

import numpy as np

from pcapstate.decode.frames import (
    _ETHERTYPES,
    _IP_PROTOS,
    _IPV4_FRAGMENT,
    _IPV4_HEADER,
    _IPV6_FRAGMENT,
    _IPV6_HEADER,
    _NOT_IP,
    _OTHER_ETHERTYPE,
    _OTHER_PROTO,
    _TCP_OFFSET,
    _TRUNCATED,
    NO_WSCALE,
    NOT_SYN,
    TCP,
    Batch,
)
from pcapstate.read.capture import Capture, CaptureError
from pcapstate.vocab import SYN_SACK, SYN_TS, WIRESHARK_ANALYSIS

#: The fields asked of tshark, in the order of the columns it prints.
FIELDS = ("frame.time_epoch", "frame.protocols", "ip.src", "ip.dst", "ip.proto", "ip.id",
          "ip.flags.mf", "ip.frag_offset", "ipv6.src", "ipv6.dst", "ipv6.nxt",
          "ipv6.fraghdr.offset", "ipv6.fraghdr.more", "eth.type", "tcp.srcport",
          "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags", "tcp.window_size_value",
          "tcp.len", "tcp.options.wscale.shift", "tcp.options.sack_perm",
          "tcp.options.timestamp.tsval",
          *[f for f in WIRESHARK_ANALYSIS.values() if f.startswith("tcp.")],
          "frame.cap_len", "ip.len", "ipv6.plen", "frame.len", "tcp.checksum.status",
          *(_TUNNEL_IDS := ("vxlan.vni", "geneve.vni", "gre.key", "erspan.spanid")))
_ANALYSIS = FIELDS.index("tcp.analysis.retransmission")  # the first of 7 analysis columns
_CAP_LEN, _IP_LEN, _IP6_PLEN, _LEN, _CHECKSUM = (FIELDS.index(f) for f in (
    "frame.cap_len", "ip.len", "ipv6.plen", "frame.len", "tcp.checksum.status"))
_IDS = FIELDS.index(_TUNNEL_IDS[0])
#: Wireshark's name of a tunnel's protocol, in frame.protocols, and pcapstate's
#: (decode/unwrap.py); IP right inside IP is "ip_in_ip"; ERSPAN rides on GRE; with the field
#: that identifies the tunnel, if it has one.
_TUNNELS = {b"vxlan": ("vxlan", "vxlan.vni"), b"geneve": ("geneve", "geneve.vni"),
            b"erspan": ("erspan", "erspan.spanid"), b"gre": ("gre", "gre.key"),
            b"gtp": ("gtp_u", None), b"teredo": ("teredo", None)}
_BAD = b"0"  # Wireshark's PROTO_CHECKSUM_E_BAD (with tcp.check_checksum on)
_RESENT = 1 << list(WIRESHARK_ANALYSIS).index("resent")
#: Preferences: no IP reassembly (a fragment is counted as one, as the fast decoder does)
#: and no TCP reassembly (nothing above TCP is needed).
PREFERENCES = ("ip.defragment:FALSE", "ipv6.defragment:FALSE",
               "tcp.desegment_tcp_streams:FALSE")

_SYN = 0x02
_ZEROS = (0,) * 19  # the columns after `kind` of a frame that is not a TCP segment
_PROTO_NUMBERS = {name: number for number, name in _IP_PROTOS.items()}
_MASK64 = (1 << 64) - 1


def tshark_path() -> str:
    """Where tshark is, as pyshark finds it (its config.ini, then the PATH); a CaptureError
    if it is not installed (or not where pyshark's configuration says)."""
    from pyshark.tshark.tshark import TSharkNotFoundException, get_process_path

    try:
        return str(get_process_path())
    except TSharkNotFoundException as e:
        raise CaptureError("tshark", "not found: the tshark engine needs Wireshark's tshark "
                           f"(Debian package tshark) ({str(e).splitlines()[0]})") from None


def available() -> bool:
    try:
        tshark_path()
    except CaptureError:
        return False
    return True


def command(path: str, verify: bool = False) -> list[str]:
    """tshark's command line; `verify`: with TCP checksums checked."""
    cmd = [tshark_path(), "-r", path, "-n", "-T", "fields", "-E", "separator=/t",
           "-E", "occurrence=a", "-E", "header=n"]
    for pref in (*PREFERENCES, *(["tcp.check_checksum:TRUE"] if verify else [])):
        cmd += ["-o", pref]
    for name in FIELDS:
        cmd += ["-e", name]
    return cmd


def batches(cap: Capture, rows: int = 1 << 16, verify: bool = False,
            tunnels: Any = None) -> Iterator[Batch]:
    """The capture's frames as tshark decodes them, `rows` at a time. Sets cap.records.
    `verify`: check TCP checksums; `tunnels`: what numbers them (decode/unwrap.py's
    Unwrapper, shared with the records)."""
    if cap.size is None:
        raise CaptureError(cap.path, "the tshark engine reads files, not streams (standard "
                           "input, a pipe, a FIFO): save the capture first, or use --engine "
                           "fast")
    if cap.compression in ("bzip2", "xz"):
        raise CaptureError(cap.path, f"tshark does not read {cap.compression}-compressed "
                           "captures: decompress it first, or use --engine fast")
    proc = subprocess.Popen(command(cap.path, verify), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=1 << 20)
    assert proc.stdout is not None and proc.stderr is not None
    cap.records = 0
    try:
        parser = _Parser(cap.format, tunnels)
        while True:
            lines = proc.stdout.readlines(rows * 140)  # about `rows` lines
            if not lines:
                break
            cap.records += len(lines)
            batch = parser.batch(lines)
            cap.bytes_read = parser.offset  # for the progress display
            yield batch
        err = proc.stderr.read()
        if proc.wait() != 0:
            if not cap.records:
                raise CaptureError(cap.path, "tshark failed: " + _tshark_error(err))
            # a file cut short, say: what was read stands, as with the fast engine
            cap.warnings.append(f"{cap.path}: {_tshark_error(err)} ({cap.records:,} records "
                                "read)")
        if cap.format == "pcapng":  # what only the blocks say: the end, drops, interfaces
            for _ in cap:
                pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def read_frames(frames: list[tuple[int, bytes, int, float]], verify: bool = False) -> Batch:
    """Frames neither of pcapstate's own decoders reads, (link type, frame, original
    length, time) each, decoded by tshark: a row each, in order (`--engine auto`'s
    fallback, frame by frame). Wireshark's analysis flags are left out: tshark sees these
    frames without the rest of their connections."""
    import struct
    import tempfile

    rows: list[bytes] = [b""] * len(frames)
    by_link: dict[int, list[int]] = {}
    for i, (linktype, *_) in enumerate(frames):
        by_link.setdefault(linktype, []).append(i)
    with tempfile.TemporaryDirectory(prefix="pcapstate-") as tmp:
        for linktype, indices in by_link.items():
            path = f"{tmp}/{linktype}.pcap"
            with open(path, "wb") as f:  # a nanosecond pcap (magic a1b23c4d)
                f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, linktype))
                for i in indices:
                    _, frame, origlen, ts = frames[i]
                    ns = round(ts * 1e9)
                    f.write(struct.pack("<IIII", ns // 10**9, ns % 10**9, len(frame), origlen)
                            + frame)
            out = subprocess.run(command(path, verify), capture_output=True, check=False)
            lines = out.stdout.splitlines(keepends=True)
            if len(lines) != len(indices):
                raise CaptureError(path, "tshark failed: " + _tshark_error(out.stderr))
            for i, line in zip(indices, lines, strict=True):
                rows[i] = line
    batch = _Parser("pcap-ns").batch(rows)
    batch.analysis[:] = 0
    return batch


def _tshark_error(err: bytes) -> str:
    """The last line of what tshark said on stderr that is not a warning about running it."""
    lines = [ln for ln in err.decode("utf-8", "replace").splitlines()
             if ln.strip() and "could be dangerous" not in ln and not ln.startswith("Running")]
    return lines[-1].strip() if lines else "no message"


class _Parser:
    """tshark's field lines into Batch columns."""

    def __init__(self, fmt: str, tunnels: Any = None) -> None:
        self.tunnels = tunnels
        self.hosts: dict[bytes, tuple[bool, int, int]] = {}
        self.fmt = fmt
        #: where in the file the frames parsed so far end: exact for pcap (a 24-byte file
        #: header, a 16-byte record header each), near for pcapng (28 to 32 bytes a block)
        self.offset = 24
        self.overhead = 32 if fmt == "pcapng" else 16

    def time(self, text: bytes) -> float:
        """tshark's "seconds.nanoseconds" as read/capture.py computes it from the file, to the
        last bit (pcapng: at nanosecond resolution, dumpcap's)."""
        sec, _, frac = text.partition(b".")
        ns = int(frac.ljust(9, b"0")[:9]) if frac else 0
        if self.fmt == "pcap":
            return float(int(sec)) + float(ns // 1000) * 1e-6
        if self.fmt == "pcap-ns":
            return float(int(sec)) + float(ns) * 1e-9
        return (int(sec) * 1_000_000_000 + ns) * 1e-9

    def host(self, text: bytes) -> tuple[bool, int, int]:
        """(v6, high 64 bits, low 64 bits) of an address, cached."""
        got = self.hosts.get(text)
        if got is None:
            if len(self.hosts) > 1 << 16:  # a flood of sources: keep memory bounded
                self.hosts.clear()
            n = int(ipaddress.ip_address(text.decode()))
            got = self.hosts[text] = (b":" in text, n >> 64, n & _MASK64)
        return got

    def tunnel(self, every: list[bytes]) -> int:
        """The number of the innermost tunnel a frame came in (0: none), from all the
        occurrences of its fields: each IP layer but the last is a tunnel's outside, named
        by the protocols between it and the next."""
        # the IP layers' (source, destination), and the tunnel protocol that follows each
        layers: list[tuple[bytes, bytes]] = []
        kinds: list[tuple[str, str | None] | None] = []
        queues = {b"ip": (every[2].split(b","), every[3].split(b",")),
                  b"ipv6": (every[8].split(b","), every[9].split(b","))}
        ids = {name: every[_IDS + k].split(b",") for k, name in enumerate(_TUNNEL_IDS)}
        for proto in every[1].split(b":"):
            if proto in queues:
                sources, destinations = queues[proto]
                if not sources:
                    return 0
                layers.append((sources.pop(0), destinations.pop(0)))
                kinds.append(None)
            elif layers and proto in _TUNNELS and (kinds[-1] is None or proto == b"erspan"):
                kinds[-1] = _TUNNELS[proto]  # ERSPAN, on GRE, names the tunnel
        number = 0
        for (src, dst), kind in zip(layers[:-1], kinds, strict=False):
            name, field = kind or ("ip_in_ip", None)
            ident = int(ids[field].pop(0), 0) if field and ids[field] and ids[field][0] else None
            number = self.tunnels.tunnel_number(
                name, ipaddress.ip_address(src.decode()).packed,
                ipaddress.ip_address(dst.decode()).packed, ident, number)
        return number

    def tcp_row(self, f: list[bytes]) -> tuple[Any, ...]:
        """A TCP frame's columns after `kind`; ValueError when a field is missing."""
        inner_v6 = _innermost_is_v6(f)
        s6, shi, slo = self.host(f[8] if inner_v6 else f[2])
        _, dhi, dlo = self.host(f[9] if inner_v6 else f[3])
        fl = int(f[18], 16)
        said = sum(1 << bit for bit, value in enumerate(f[_ANALYSIS:_ANALYSIS + 7]) if value)
        return (s6, shi, slo, dhi, dlo, int(f[14]), int(f[15]), int(f[16]), int(f[17]), fl,
                int(f[19]), int(f[20]), 0 if s6 or not f[5] else int(f[5], 16),
                # a scale over 14 is taken as 14 (RFC 7323 2.3), as frames._syn_options does
                (min(int(f[21]), 14) if f[21] else NO_WSCALE) if fl & _SYN else NOT_SYN,
                (SYN_SACK if f[22] else 0) | (SYN_TS if f[23] else 0) if fl & _SYN else 0,
                said | _RESENT if said & 0b1111 else said,
                int(f[_IP6_PLEN]) + 40 if inner_v6 else int(f[_IP_LEN] or 0),
                # the payload was cut if the frame was (Ethernet padding aside)
                int(f[20]) > 0 and int(f[_LEN]) > int(f[_CAP_LEN]), f[_CHECKSUM] == _BAD)

    def batch(self, lines: list[bytes]) -> Batch:
        n = len(lines)
        ts = np.zeros(n)
        cols: list[list[Any]] = [[] for _ in range(20)]  # Batch's, from kind to bad_sum
        time = self.time
        offset = self.offset + self.overhead * len(lines)
        tunnel = np.zeros(n, np.int32)
        for i, line in enumerate(lines):
            every = line.rstrip(b"\r\n").split(b"\t")
            f = [v.rpartition(b",")[2] for v in every]  # the innermost occurrence
            ts[i] = time(f[0])
            if self.tunnels is not None and (b"," in every[2] or b"," in every[8]
                                             or every[2] and every[8]):
                tunnel[i] = self.tunnel(every)
            offset += int(f[_CAP_LEN] or 0)
            k = _kind(f)
            row = None
            if k == TCP:
                try:
                    row = self.tcp_row(f)
                except (ValueError, IndexError):  # tshark found the TCP header malformed
                    k = _TRUNCATED if f[20] else _TCP_OFFSET
            cols[0].append(k)
            for c, v in zip(cols[1:], row or _ZEROS, strict=True):
                c.append(v)
        self.offset = offset
        like = Batch.empty(0)[1:-1]  # each column's type
        return Batch._make([ts, *(np.array(c, x.dtype) for c, x in zip(cols, like, strict=True)),
                            tunnel])


def _innermost_is_v6(f: list[bytes]) -> bool:
    if not f[8]:
        return False
    if not f[2]:
        return True
    protos = b":" + f[1] + b":"
    return protos.rfind(b":ipv6:") > protos.rfind(b":ip:")


def _kind(f: list[bytes]) -> int:
    """TCP, or the accounting code the fast decoder would give the frame."""
    protos = b":" + f[1] + b":"
    has_ip, has_v6 = b":ip:" in protos, b":ipv6:" in protos
    if not (has_ip or has_v6):
        ethertype = int(f[13], 16) if f[13] else None
        if ethertype == 0x0800:
            return _IPV4_HEADER
        if ethertype == 0x86DD:
            return _IPV6_HEADER
        if ethertype in _ETHERTYPES:
            return _OTHER_ETHERTYPE + ethertype
        return _NOT_IP
    if not (f[2] or f[8]):  # an IP header tshark could not read
        return _IPV6_HEADER if has_v6 and not has_ip else _IPV4_HEADER
    if f[6] in (b"1", b"True") or f[7] not in (b"", b"0"):
        return _IPV4_FRAGMENT
    if f[11] not in (b"", b"0") or f[12] in (b"1", b"True"):
        return _IPV6_FRAGMENT
    first = min(i for i in (protos.find(b":ip:"), protos.find(b":ipv6:")) if i >= 0)
    after = protos[first + 1:].split(b":")[1].decode()
    if after == "tcp" or (b":tcp:" in protos and after not in ("icmp", "icmpv6")):
        return TCP if f[14] and f[18] else _TRUNCATED
    number = _PROTO_NUMBERS.get(after)
    if number is None:
        proto = f[10] if has_v6 and not has_ip else f[4]
        number = int(proto) if proto else 0
    return _OTHER_PROTO + number
