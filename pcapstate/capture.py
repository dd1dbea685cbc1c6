"""Streaming capture reader: pcap (micro- and nanosecond, either byte order), pcapng, both
optionally gzip-compressed, from a file or standard input.

Records are parsed out of large chunks with precompiled structs; the file is never held
whole. A capture that goes bad after some records were read (cut short, a corrupt block, a
record of absurd length) ends there with a warning naming the byte offset; one that is bad
before its first record raises CaptureError.
"""

import os
import struct
import sys
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

_CHUNK = 1 << 20
_MAX_RECORD = 262144  # what libpcap accepts as a record length when snaplen is smaller
_MAX_BLOCK = 32 << 20  # a pcapng block larger than this is taken as corrupt
_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6, "pcap"),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6, "pcap"),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9, "pcap-ns"),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9, "pcap-ns"),
}
_SHB = 0x0A0D0D0A
_GZIP = b"\x1f\x8b"

Record = tuple[float, int, bytes, int]


class CaptureError(Exception):
    """Unreadable input. str(e) is one line: '<path>: byte <offset>: <message>'."""

    def __init__(self, path: str, message: str, offset: int | None = None) -> None:
        self.path, self.message, self.offset = path, message, offset
        where = f"{path}: byte {offset}" if offset is not None else path
        super().__init__(f"{where}: {message}")


class _Stop(Exception):
    """The capture cannot be read further at `offset`."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message, self.offset = message, offset


@dataclass(slots=True)
class Capture:
    """One capture file. Iterate it for (timestamp, linktype, frame, original length)."""

    path: str
    format: str = ""
    compressed: bool = False
    snaplen: int = 0
    linktypes: set[int] = field(default_factory=set)
    first_ts: float | None = None
    bytes_read: int = 0  # bytes of (decompressed) capture consumed so far
    size: int | None = None  # size on disk, for a regular file
    records: int = 0
    end_ts: float | None = None  # when the capture stopped, if the file says (pcapng ISB)
    dropped: int = 0  # packets the capturing interface reports it dropped (pcapng ISB)
    warnings: list[str] = field(default_factory=list)
    #: pcap records longer than the snaplen, and records whose original length is below
    #: their captured length: accepted (as Wireshark does), then reported as a warning
    odd: list[int] = field(default_factory=lambda: [0, 0])
    _stream: BinaryIO | None = None
    _peeked: Iterator[Record] | None = None

    def __iter__(self) -> Iterator[Record]:
        if self._peeked is not None:  # standard input: carry on from the peek
            it, self._peeked = self._peeked, None
            yield from it
            return
        self.records = self.bytes_read = self.dropped = 0
        self.warnings.clear()
        self.odd = [0, 0]
        yield from self._read(self._open())

    def batches(self, rows: int = 1 << 16, verify: bool = False) -> Iterator[Any]:
        """The records decoded into pcapstate.scan.Batch columns, at most `rows` a batch.
        A pcap file is walked and decoded by compiled code; other inputs record by record.
        A batch's arrays are reused BATCH_BUFFERS batches later. `verify`: check TCP
        checksums."""
        from pcapstate.scan import batches_of

        if self._peeked is None and self.format in ("pcap", "pcap-ns"):
            self.records = self.bytes_read = self.dropped = 0
            self.warnings.clear()
            self.odd = [0, 0]
            yield from self._guarded(self._pcap_batches(self._open(), rows, verify))
        else:
            yield from batches_of(self, rows, verify)

    def _pcap_batches(self, stream: BinaryIO, rows: int, verify: bool) -> Iterator[Any]:
        import numpy as np

        from pcapstate.scan import BATCH_BUFFERS, FULL, TOO_LONG, Batch, scan_pcap

        source = _Source(self, stream)  # reads the first chunk: inside the guard
        header = source.need(0, 24)
        if len(header) < 24:
            raise _Stop("capture ends inside the pcap file header", len(header))
        order, unit, _ = _PCAP_MAGIC[bytes(header[:4])]
        snaplen, network = struct.unpack_from(order + "II", header, 16)
        limit = max(snaplen, _MAX_RECORD)
        outs = [Batch.empty(rows) for _ in range(BATCH_BUFFERS)]
        odd = np.zeros(2, np.int64)  # scan_pcap counts into it; copied to self.odd
        pos, k = 24, 0
        while True:
            buf = source.buf
            out = outs[k % BATCH_BUFFERS]
            pos, n, status = scan_pcap(np.frombuffer(buf, np.uint8), pos, order == ">", unit,
                                       network & 0xFFFF, snaplen, limit, out, odd, verify)
            self.odd[:] = odd.tolist()
            if n:
                self.records += n
                k += 1
                yield out.head(n)
            if status == TOO_LONG:
                incl = struct.unpack_from(order + "I", buf, pos + 8)[0]
                raise _Stop(f"record claims {incl:,} bytes (snaplen {snaplen:,}): corrupt",
                            source.base + pos)
            if status == FULL:
                continue
            more = source.more(pos)
            if more is None:
                if pos < len(buf):
                    raise _Stop("capture ends in the middle of a record", source.base + pos)
                return
            pos = 0

    def _guarded(self, it: Iterator[Any]) -> Generator[Any, None, None]:
        """Run a reader; what stops it after some records becomes a warning."""
        try:
            yield from it
        except _Stop as e:
            if not self.records:
                raise CaptureError(self.path, e.message, e.offset) from None
            n = self.records
            self.warnings.append(f"{self.path}: byte {e.offset}: {e.message}; "
                                 f"{n:,} record{'s' if n != 1 else ''} read before it")
        finally:
            self.close()
        longer, shorter = self.odd
        if longer:
            self.warnings.append(f"{self.path}: {longer:,} record{'s' if longer != 1 else ''} "
                                 f"longer than the file's snaplen ({self.snaplen:,} bytes)")
        if shorter:
            self.warnings.append(f"{self.path}: {shorter:,} record"
                                 f"{'s' if shorter != 1 else ''} whose original length is "
                                 "below its captured length")

    def close(self) -> None:
        if self._stream is not None and self._stream is not sys.stdin.buffer:
            self._stream.close()
        self._stream = None

    def _open(self) -> BinaryIO:
        self.close()
        try:
            self._stream = sys.stdin.buffer if self.path == "-" else open(self.path, "rb")  # noqa: SIM115
        except OSError as e:
            raise CaptureError(self.path, e.strerror or str(e)) from e
        return self._stream

    def _read(self, stream: BinaryIO) -> Generator[Record, None, None]:
        """Parse the whole stream; warnings for what ends it early."""
        return self._guarded(self._records(stream))

    def _records(self, stream: BinaryIO) -> Iterator[Record]:
        source = _Source(self, stream)  # reads the first chunk: inside the guard
        head = source.need(0, 4)
        if len(head) < 4:
            raise _Stop("empty file" if not head else "too short for a capture header", 0)
        magic = bytes(head[:4])
        if magic in _PCAP_MAGIC:
            yield from self._pcap(source, *_PCAP_MAGIC[magic])
        elif struct.unpack("<I", magic)[0] == _SHB:
            self.format = "pcapng"
            yield from self._pcapng(source)
        else:
            raise _Stop(f"not a pcap or pcapng file (magic {magic.hex()})", 0)

    def _pcap(self, source: "_Source", order: str, unit: float, fmt: str) -> Iterator[Record]:
        self.format = fmt
        header = source.need(0, 24)
        if len(header) < 24:
            raise _Stop("capture ends inside the pcap file header", len(header))
        _, _, _, _, snaplen, network = struct.unpack_from(order + "HHiIII", header, 4)
        linktype = network & 0xFFFF
        self.snaplen, self.linktypes = snaplen, {linktype}
        limit = max(snaplen, _MAX_RECORD)
        unpack = struct.Struct(order + "IIII").unpack_from
        buf, pos = source.buf, 24
        while True:
            end = len(buf)
            while pos + 16 <= end:
                sec, frac, incl, orig = unpack(buf, pos)
                if incl > limit:
                    raise _Stop(f"record claims {incl:,} bytes (snaplen {snaplen:,}): "
                                "corrupt", source.base + pos)
                nxt = pos + 16 + incl
                if nxt > end:
                    break
                self.odd[0] += 0 < snaplen < incl
                self.odd[1] += orig < incl
                self.records += 1
                yield sec + frac * unit, linktype, buf[pos + 16 : nxt], orig
                pos = nxt
            more = source.more(pos)
            if more is None:
                if pos < end:
                    raise _Stop("capture ends in the middle of a record", source.base + pos)
                return
            buf, pos = more, 0

    def _pcapng(self, source: "_Source") -> Iterator[Record]:
        order = "<"
        interfaces: list[tuple[int, float, float, int]] = []  # linktype, unit, offset, snaplen
        last_ts = 0.0
        buf, pos = source.buf, 0
        while True:
            end = len(buf)
            while pos + 12 <= end:
                btype = struct.unpack_from(order + "I", buf, pos)[0]
                if btype == _SHB:
                    bom = bytes(buf[pos + 8 : pos + 12])
                    order = {b"\x1a\x2b\x3c\x4d": ">", b"\x4d\x3c\x2b\x1a": "<"}.get(bom, "")
                    if not order:
                        raise _Stop("pcapng section header with a bad byte-order magic",
                                    source.base + pos)
                    interfaces = []
                length = struct.unpack_from(order + "I", buf, pos + 4)[0]
                if length < 12 or length % 4 or length > _MAX_BLOCK:
                    raise _Stop(f"corrupt pcapng block (type {btype:#x}, length {length})",
                                source.base + pos)
                if pos + length > end:
                    break
                if struct.unpack_from(order + "I", buf, pos + length - 4)[0] != length:
                    raise _Stop(f"corrupt pcapng block (type {btype:#x}): trailing length "
                                "differs", source.base + pos)
                body = pos + 8
                if btype == 6 or btype == 2:  # enhanced / obsolete packet block
                    if btype == 6:
                        iface, hi, lo, caplen, orig = struct.unpack_from(order + "5I", buf, body)
                    else:
                        iface, _, hi, lo, caplen, orig = struct.unpack_from(order + "HH4I", buf,
                                                                            body)
                    if iface >= len(interfaces) or caplen > length - 32:
                        raise _Stop("pcapng packet block with an undeclared interface or a "
                                    "bad length", source.base + pos)
                    linktype, unit, offset, _ = interfaces[iface]
                    last_ts = ((hi << 32) | lo) * unit + offset
                    self.records += 1
                    yield last_ts, linktype, buf[body + 20 : body + 20 + caplen], orig
                elif btype == 3:  # simple packet block: interface 0, no timestamp
                    if not interfaces:
                        raise _Stop("pcapng simple packet block before any interface",
                                    source.base + pos)
                    linktype, _, _, snap = interfaces[0]
                    orig = struct.unpack_from(order + "I", buf, body)[0]
                    caplen = min(orig, length - 16, snap or orig)
                    self.records += 1
                    yield last_ts, linktype, buf[body + 4 : body + 4 + caplen], orig
                elif btype == 5 and iface_ok(buf, body, order, len(interfaces)):
                    # interface statistics: written when the capture stops
                    iface, hi, lo = struct.unpack_from(order + "3I", buf, body)
                    _, unit, offset, _ = interfaces[iface]
                    # dumpcap writes this one in microseconds whatever the resolution: take
                    # whichever reading falls after the last packet, within a day
                    for u in (unit, 1e-6):
                        ts = ((hi << 32) | lo) * u + offset
                        if self.records and last_ts <= ts < last_ts + 86400:
                            self.end_ts = max(self.end_ts or ts, ts)
                            break
                    self.dropped += _isb_drops(buf, body + 12, pos + length - 4, order)
                elif btype == 1:  # interface description block
                    interfaces.append(_interface(buf, body, pos + length - 4, order))
                    self.linktypes.add(interfaces[-1][0])
                    self.snaplen = max(self.snaplen, interfaces[-1][3])
                pos += length
            more = source.more(pos)
            if more is None:
                if pos < end:
                    raise _Stop("capture ends in the middle of a pcapng block",
                                source.base + pos)
                return
            buf, pos = more, 0


def iface_ok(buf: bytes, body: int, order: str, declared: int) -> bool:
    return struct.unpack_from(order + "I", buf, body)[0] < declared


def _isb_drops(buf: bytes, p: int, stop: int, order: str) -> int:
    """isb_ifdrop (option 5) of an interface statistics block, 0 if absent."""
    while p + 4 <= stop:
        code, n = struct.unpack_from(order + "HH", buf, p)
        if code == 0:
            break
        if code == 5 and n == 8:
            return struct.unpack_from(order + "Q", buf, p + 4)[0]
        p += 4 + (n + 3) // 4 * 4
    return 0


def _interface(buf: bytes, body: int, stop: int, order: str) -> tuple[int, float, float, int]:
    linktype, _, snaplen = struct.unpack_from(order + "HHI", buf, body)
    unit, offset = 1e-6, 0.0
    p = body + 8
    while p + 4 <= stop:
        code, n = struct.unpack_from(order + "HH", buf, p)
        if code == 0:
            break
        if code == 9 and n >= 1:  # if_tsresol
            r = buf[p + 4]
            unit = 2.0 ** -(r & 0x7F) if r & 0x80 else 10.0 ** -r
        elif code == 14 and n >= 8:  # if_tsoffset
            offset = float(struct.unpack_from(order + "q", buf, p + 4)[0])
        p += 4 + (n + 3) // 4 * 4
    return linktype, unit, offset, snaplen


class _Source:
    """Chunks of a (possibly gzip-compressed) stream, kept in one sliding buffer."""

    def __init__(self, cap: Capture, stream: BinaryIO) -> None:
        self.cap = cap
        self.stream = stream
        self.base = 0  # stream offset of buf[0]
        self.buf = b""
        first = self._raw(_CHUNK)
        self.gzip = first[:2] == _GZIP
        cap.compressed = self.gzip
        self.inflate = zlib.decompressobj(31) if self.gzip else None
        self.pending = first
        self.buf = self._next() or b""

    def _raw(self, n: int) -> bytes:
        try:
            return self.stream.read(n)
        except OSError as e:
            raise _Stop(f"read error: {e.strerror or e}", self.base + len(self.buf)) from e

    def _next(self) -> bytes | None:
        """The next chunk of capture bytes, or None at the end."""
        while True:
            data = self.pending if self.pending else self._raw(_CHUNK)
            self.pending = b""
            if self.inflate is None:
                if data:
                    self.cap.bytes_read += len(data)
                return data or None
            d = self.inflate
            if not data and not d.unconsumed_tail:
                if not d.eof:
                    raise _Stop("gzip stream ends early", self.base + len(self.buf))
                return None
            try:
                out = d.decompress(d.unconsumed_tail + data if d.unconsumed_tail else data,
                                   4 * _CHUNK)
            except zlib.error as e:
                raise _Stop(f"corrupt gzip data ({e})", self.base + len(self.buf)) from None
            if d.eof and d.unused_data:  # another gzip member follows
                rest = d.unused_data
                self.inflate = zlib.decompressobj(31)
                self.pending = rest
            if out:
                self.cap.bytes_read += len(out)
                return out

    def need(self, pos: int, n: int) -> bytes:
        """At least n bytes from pos (fewer only at the end of the stream)."""
        while len(self.buf) - pos < n:
            chunk = self._next()
            if chunk is None:
                break
            self.buf += chunk
        return self.buf[pos : pos + n]

    def more(self, pos: int) -> bytes | None:
        """Drop what was parsed, append the next chunk. None at the end of the stream."""
        chunk = self._next()
        if chunk is None:
            return None
        self.base += pos
        self.buf = self.buf[pos:] + chunk
        return self.buf


def open_capture(path: str) -> Capture:
    """Open a capture, read its header and first timestamp. Raises CaptureError."""
    cap = Capture(path)
    if path != "-":
        try:
            st = os.stat(path)
        except OSError as e:
            raise CaptureError(path, e.strerror or str(e)) from e
        if not os.path.isfile(path):
            raise CaptureError(path, "not a regular file")
        cap.size = st.st_size
    it = cap._read(cap._open())
    first = next(it, None)  # None: a header and no records, a valid empty capture
    cap.first_ts = first[0] if first else None
    if path == "-":
        cap._peeked = _chain(first, it)
    else:
        it.close()
        cap.records = cap.bytes_read = 0  # read again from the start when analysed
    return cap


def _chain(first: Record | None, rest: Iterator[Record]) -> Iterator[Record]:
    if first is not None:
        yield first
    yield from rest


def open_captures(paths: list[str]) -> list[Capture]:
    """Open every file of one capture and order them by their first timestamp."""
    if "-" in paths and len(paths) > 1:
        raise CaptureError("-", "standard input cannot be combined with other files")
    caps = [open_capture(p) for p in paths]
    caps.sort(key=lambda c: (c.first_ts is None, c.first_ts or 0.0))
    return caps
