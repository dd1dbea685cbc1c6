"""Streaming capture reader: pcap (micro- and nanosecond, either byte order) and pcapng, plain
or compressed with gzip, bzip2, xz or zstd (what `tcpdump -z` writes), from a file, a pipe
(`<(...)`, a FIFO, /dev/stdin) or standard input.

Records are parsed out of large chunks, a pcap's by compiled code (decode/frames.py
scan_pcap, which decodes them too), a pcapng's with precompiled structs; the file is never
held whole. A path that is not a regular file is read once, as it arrives. Files joined with
`cat` are read on: a pcap file header where a record was due starts a new section (its own
byte order, resolution, link type and snaplen), with a warning; several compressed members
are one stream. A capture that goes bad after some records were read (cut short, a corrupt
block, a record of absurd length) ends there with a warning naming the byte offset; one that
is bad before its first record raises CaptureError (when opened; for a pcap's first record
itself, when read), naming what the file is when it is something else (an archive, a text or
HTML file).
"""

import hashlib
import os
import stat
import struct
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, BinaryIO

from pcapstate.read.source import CHUNK, Source, Stop

_MAX_RECORD = 262144  # what libpcap accepts as a record length when snaplen is smaller
_MAX_BLOCK = 32 << 20  # a pcapng block larger than this is taken as corrupt
_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6, "pcap"),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6, "pcap"),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9, "pcap-ns"),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9, "pcap-ns"),
}
_SHB = 0x0A0D0D0A
#: inputs that overlap in time by more than this are warned about; less is what one
#: capture's timestamps do across CPUs (a rotated set's files may overlap by microseconds)
_OVERLAP_SLACK = 0.001
_INF = float("inf")

Record = tuple[float, int, bytes, int]


class CaptureError(Exception):
    """Unreadable input. str(e) is one line: '<path>: byte <offset>: <message>'."""

    def __init__(self, path: str, message: str, offset: int | None = None) -> None:
        self.path, self.message, self.offset = path, message, offset
        where = f"{path}: byte {offset}" if offset is not None else path
        super().__init__(f"{where}: {message}")


@dataclass(slots=True)
class Capture:
    """One capture file, opened by open_capture and read by `batches()`. A pcapng capture
    can also be iterated for its records (timestamp, linktype, frame, original length); a
    pcap's are walked by compiled code only, in batches."""

    path: str
    format: str = ""
    compressed: bool = False
    compression: str = ""  # gzip, bzip2, xz or zstd; "" for none
    snaplen: int = 0
    linktypes: set[int] = field(default_factory=set)
    first_ts: float | None = None
    bytes_read: int = 0  # bytes of (decompressed) capture consumed so far
    #: size on disk, for a regular file; None for a stream, read once as it arrives (a pipe,
    #: a FIFO, a terminal, standard input)
    size: int | None = None
    records: int = 0
    end_ts: float | None = None  # when the capture stopped, if the file says (pcapng ISB)
    dropped: int = 0  # packets the capturing interface reports it dropped (pcapng ISB)
    warnings: list[str] = field(default_factory=list)
    #: pcap records longer than the snaplen, and records whose original length is below
    #: their captured length: accepted (as Wireshark does), then reported as a warning
    odd: list[int] = field(default_factory=lambda: [0, 0])
    #: the byte offsets of the pcap file headers after the first (files joined with cat)
    headers: list[int] = field(default_factory=list)
    #: [offset, earliest, latest timestamp] of each section read (a pcap file header or a
    #: pcapng section header and the records after it)
    spans: list[list[float]] = field(default_factory=list)
    _stream: BinaryIO | None = None
    #: a stream's bytes as open_capture read them (read once): a pcap carries on from them
    _source: Source | None = None
    #: a pcapng stream's records, carried on from the first one open_capture read
    _peeked: Iterator[Record] | None = None
    #: A pcapng stream that goes quiet yields None between records every 0.2 s, so that a
    #: batch of what came is analysed now, not when more comes (set by `batches`; a pcap
    #: stream needs none: each chunk read is decoded at once)
    ticks: bool = False

    def __iter__(self) -> Iterator[Record]:
        """The records of a pcapng capture. A pcap's are read by `batches()` only: iterating
        one raises TypeError."""
        if self.format != "pcapng":
            raise TypeError(f"{self.path}: a pcap capture is read by Capture.batches(), not "
                            "record by record (only a pcapng capture is iterated)")
        if self._peeked is not None:  # a stream: carry on from the peek
            it, self._peeked = self._peeked, None
            return it
        return self._guarded(self._pcapng())

    def span(self) -> tuple[float, float] | None:
        """The earliest and the latest timestamp read so far; None before any record."""
        read = [s for s in self.spans if s[1] <= s[2]]
        if not read:
            return None
        return min(s[1] for s in read), max(s[2] for s in read)

    @staticmethod
    def overlaps(captures: "list[Capture]") -> list[str]:
        """Warnings for inputs that overlap in time: the same traffic given twice (a capture
        and a slice of it, two captures of one link), whose common segments are counted
        twice. Known once the captures were read."""
        spans = [(*span, c.path) for c in captures if (span := c.span()) is not None]
        return [f"{earlier} and {later} overlap in time ({later} starts {gap:,.3f} s before "
                f"{earlier} ends): segments seen in both are counted twice"
                for earlier, later, gap in _overlapping(spans)]

    def batches(self, rows: int = 1 << 16, verify: bool = False,
                unwrapper: Any = None) -> Iterator[Any]:
        """The records decoded into pcapstate.decode.frames.Batch columns, at most `rows` a batch.
        A pcap (a file or a stream) is walked and decoded by compiled code, a chunk at a
        time: a stream's chunk is what has come so far, and goes out at once. A pcapng is
        read record by record; a stream's batches then go out when it goes quiet, and at
        least every 0.2 s.
        What the compiled decoder hands on, `unwrapper` (decode/unwrap.py: one for all the
        files of an analysis, which share its tunnels) reads before the batch goes out.
        A batch's arrays are reused BATCH_BUFFERS batches later. `verify`: check TCP
        checksums."""
        from pcapstate.decode.frames import batches_of
        from pcapstate.decode.unwrap import Unwrapper

        unwrapper = unwrapper or Unwrapper(verify)
        if self.format == "pcapng":
            self.ticks = self.size is None
            yield from batches_of(self, unwrapper, rows, verify,
                                  0.2 if self.size is None else None)
        else:
            yield from self._guarded(self._pcap_batches(rows, verify, unwrapper))

    def _take_source(self) -> Source:
        """The Source open_capture kept (a stream, read once), else the file opened again;
        what was counted of an earlier reading is reset. Creating one reads the first chunk:
        called inside the guard."""
        self.records = self.dropped = 0
        self.warnings.clear()
        self.odd = [0, 0]
        self.headers.clear()
        self.spans.clear()
        source, self._source = self._source, None
        if source is None:
            self.bytes_read = 0
            source = Source(self, self._open())
        return source

    def _pcap_batches(self, rows: int, verify: bool, unwrapper: Any) -> Iterator[Any]:
        import numpy as np

        from pcapstate.decode.frames import (
            BATCH_BUFFERS,
            FULL,
            HEADER,
            TOO_LONG,
            Batch,
            scan_pcap,
            slow_rows,
        )

        source = self._take_source()
        order, unit, snaplen, linktype = self._section(source, 0)
        outs = [Batch.empty(rows) for _ in range(BATCH_BUFFERS)]
        odd = np.zeros(3, np.int64)  # scan_pcap counts into it; copied to self.odd
        slow = slow_rows(rows)
        pos, k = 24, 0
        while True:
            buf = source.buf
            out = outs[k % BATCH_BUFFERS]
            array = np.frombuffer(buf, np.uint8)
            pos, n, status = scan_pcap(array, pos, order == ">", unit, linktype, snaplen,
                                       max(snaplen, _MAX_RECORD), out, slow, odd, verify)
            self.odd[:] = odd[:2].tolist()
            if odd[2]:
                unwrapper.rows(out, slow, int(odd[2]), array)
            if n:
                self.records += n
                span, ts = self.spans[-1], out.ts[:n]
                span[1], span[2] = min(span[1], float(ts.min())), max(span[2], float(ts.max()))
                k += 1
                yield out.head(n)
            if status == HEADER:  # files joined with cat: a new section
                order, unit, snaplen, linktype = self._section(source, pos)
                pos += 24
                continue
            if status == TOO_LONG:
                incl = struct.unpack_from(order + "I", buf, pos + 8)[0]
                raise Stop(_too_long(buf, pos, incl, snaplen), source.base + pos)
            if status == FULL:
                continue
            if source.more(pos, "a record") is None:  # never None to the consumer: no ticks
                return
            pos = 0

    def _guarded(self, it: Iterator[Any]) -> Generator[Any, None, None]:
        """Run a reader; what stops it after some records becomes a warning."""
        try:
            yield from it
        except Stop as e:
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
        if self.headers:
            more = len(self.headers) - 1
            self.warnings.append(
                f"{self.path}: a second pcap file header at byte {self.headers[0]}: read as "
                "a new section (files joined with cat?)"
                + (f"; {more:,} more after it, each read as a new section" if more else ""))
        sections = [(lo, hi, f"byte {at}") for at, lo, hi in self.spans if lo <= hi]
        for earlier, later, gap in _overlapping(sections)[:1]:
            self.warnings.append(
                f"{self.path}: its section at {later} overlaps the one at {earlier} in time "
                f"(it starts {gap:,.3f} s before that one ends): segments seen in both are "
                "counted twice")

    def close(self) -> None:
        if self._stream is not None and self._stream is not sys.stdin.buffer:
            self._stream.close()
        self._stream = self._source = None

    def _open(self) -> BinaryIO:
        self.close()
        try:
            self._stream = sys.stdin.buffer if self.path == "-" else open(self.path, "rb")  # noqa: SIM115
        except OSError as e:
            raise CaptureError(self.path, e.strerror or str(e)) from e
        return self._stream

    def _section(self, source: "Source", pos: int) -> tuple[str, float, int, int]:
        """Read the pcap file header at pos, the file's own or one inside the stream (files
        joined with cat), and start its section: (byte order, timestamp unit, snaplen, link
        type)."""
        header = source.need(pos, 24)
        at = source.base + pos
        if len(header) < 24:
            raise Stop("capture ends inside the pcap file header", at + len(header))
        order, unit, fmt = _PCAP_MAGIC[bytes(header[:4])]
        snaplen, network = struct.unpack_from(order + "II", header, 16)
        linktype = network & 0xFFFF
        if at == 0:
            self.format, self.snaplen, self.linktypes = fmt, snaplen, {linktype}
        else:
            self.headers.append(at)
            self.snaplen = max(self.snaplen, snaplen)
            self.linktypes.add(linktype)
        self.spans.append([at, _INF, -_INF])
        return order, unit, snaplen, linktype

    def _first_ts(self, source: Source) -> float | None:
        """Read a pcap's file header, then the first record's timestamp from its header (None
        when none follows: an empty capture). What is wrong with that record is found when
        the capture is read."""
        order, unit, _, _ = self._section(source, 0)
        pos = 24
        while len(head := source.need(pos, 16)) == 16:
            kind = file_header(head, 0)
            if kind is None:
                sec, frac = struct.unpack_from(order + "II", head)
                return sec + frac * unit
            order, unit, _ = kind  # an empty file joined with cat to another: its header
            pos += 24
        return None

    def _pcapng(self) -> Iterator[Record]:
        source = self._take_source()
        order = "<"
        interfaces: list[tuple[int, float, float, int]] = []  # linktype, unit, offset, snaplen
        last_ts = 0.0
        buf, pos = source.buf, 0
        span: list[float] = []  # this section's [offset, earliest, latest]
        while True:
            end = len(buf)
            while pos + 12 <= end:
                btype = struct.unpack_from(order + "I", buf, pos)[0]
                if btype == _SHB:
                    bom = bytes(buf[pos + 8 : pos + 12])
                    order = {b"\x1a\x2b\x3c\x4d": ">", b"\x4d\x3c\x2b\x1a": "<"}.get(bom, "")
                    if not order:
                        raise Stop("pcapng section header with a bad byte-order magic",
                                    source.base + pos)
                    interfaces = []
                    span = [source.base + pos, _INF, -_INF]
                    self.spans.append(span)
                length = struct.unpack_from(order + "I", buf, pos + 4)[0]
                if length < 12 or length % 4 or length > _MAX_BLOCK:
                    what = (f"corrupt pcapng block (type {btype:#x}, length {length})"
                            if not file_header(buf, pos) else "a pcap file header where "
                            "a pcapng block was due: a pcap file joined to a pcapng one "
                            "with cat? Give them as two files")
                    raise Stop(what, source.base + pos)
                if pos + length > end:
                    break
                if struct.unpack_from(order + "I", buf, pos + length - 4)[0] != length:
                    raise Stop(f"corrupt pcapng block (type {btype:#x}): trailing length "
                                "differs", source.base + pos)
                body = pos + 8
                if btype == 6 or btype == 2:  # enhanced / obsolete packet block
                    if btype == 6:
                        iface, hi, lo, caplen, orig = struct.unpack_from(
                            order + "5I", buf, body)
                    else:
                        iface, _, hi, lo, caplen, orig = struct.unpack_from(
                            order + "HH4I", buf, body)
                    if iface >= len(interfaces) or caplen > length - 32:
                        raise Stop("pcapng packet block with an undeclared interface or "
                                    "a bad length", source.base + pos)
                    linktype, unit, offset, _ = interfaces[iface]
                    last_ts = ((hi << 32) | lo) * unit + offset
                    if last_ts < span[1]:
                        span[1] = last_ts
                    if last_ts > span[2]:
                        span[2] = last_ts
                    self.records += 1
                    yield last_ts, linktype, buf[body + 20 : body + 20 + caplen], orig
                elif btype == 3:  # simple packet block: interface 0, no timestamp
                    if not interfaces:
                        raise Stop("pcapng simple packet block before any interface",
                                    source.base + pos)
                    linktype, _, _, snap = interfaces[0]
                    orig = struct.unpack_from(order + "I", buf, body)[0]
                    caplen = min(orig, length - 16, snap or orig)
                    self.records += 1
                    yield last_ts, linktype, buf[body + 4 : body + 4 + caplen], orig
                elif btype == 5:  # interface statistics: written when the capture stops
                    iface, hi, lo = struct.unpack_from(order + "3I", buf, body)
                    if iface < len(interfaces):
                        _, unit, offset, _ = interfaces[iface]
                        # dumpcap writes this one in microseconds whatever the resolution:
                        # take whichever reading falls after the last packet, within a day
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
            more = yield from source.advance(pos, "a pcapng block")  # type: ignore[misc]
            if more is None:
                return
            buf, pos = more, 0


def _options(buf: bytes, p: int, stop: int, order: str) -> Iterator[tuple[int, int, int]]:
    """(code, length, offset of the value) of each option of a pcapng block, from p to
    stop, up to the end-of-options option."""
    while p + 4 <= stop:
        code, n = struct.unpack_from(order + "HH", buf, p)
        if code == 0:
            return
        yield code, n, p + 4
        p += 4 + (n + 3) // 4 * 4


def _isb_drops(buf: bytes, p: int, stop: int, order: str) -> int:
    """isb_ifdrop (option 5) of an interface statistics block, 0 if absent."""
    for code, n, value in _options(buf, p, stop, order):
        if code == 5 and n == 8:
            return struct.unpack_from(order + "Q", buf, value)[0]
    return 0


def _interface(buf: bytes, body: int, stop: int, order: str) -> tuple[int, float, float, int]:
    linktype, _, snaplen = struct.unpack_from(order + "HHI", buf, body)
    unit, offset = 1e-6, 0.0
    for code, n, value in _options(buf, body + 8, stop, order):
        if code == 9 and n >= 1:  # if_tsresol
            r = buf[value]
            unit = 2.0 ** -(r & 0x7F) if r & 0x80 else 10.0 ** -r
        elif code == 14 and n >= 8:  # if_tsoffset
            offset = float(struct.unpack_from(order + "q", buf, value)[0])
    return linktype, unit, offset, snaplen


def file_header(buf: bytes, pos: int) -> tuple[str, float, str] | None:
    """The (byte order, timestamp unit, format) of the pcap file header that begins at pos
    (8 bytes there), else None: one of the four magic numbers, then version 2.4 in that
    magic's byte order. decode/frames.py _file_header is the same rule, compiled."""
    kind = _PCAP_MAGIC.get(bytes(buf[pos : pos + 4]))
    if kind is None or struct.unpack_from(kind[0] + "HH", buf, pos + 4) != (2, 4):
        return None
    return kind


def _too_long(buf: bytes, pos: int, incl: int, snaplen: int) -> str:
    """Why the pcap record header at pos, which claims `incl` bytes, cannot be one."""
    if struct.unpack_from("<I", buf, pos)[0] == _SHB:
        return ("a pcapng section header where a pcap record was due: a pcapng file joined "
                "to a pcap one with cat? Give them as two files")
    return f"record claims {incl:,} bytes (snaplen {snaplen:,}): corrupt"


#: what else a file handed to pcapstate often is: (magic at its start, name)
_NOT_CAPTURES = (
    (b"PK\x03\x04", "a zip archive"), (b"PK\x05\x06", "a zip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive"), (b"Rar!\x1a\x07", "a RAR archive"),
)


def _not_a_capture(head: bytes, compression: str) -> str:
    """Why a stream that begins with `head` (after any decompression) is not a capture,
    naming what it is when that is known."""
    inside = f" ({compression}-compressed)" if compression else ""
    archive = next((name for magic, name in _NOT_CAPTURES if head.startswith(magic)), None)
    if archive is None and head[257:262] == b"ustar":
        archive = "a tar archive"
    if archive:
        return f"{archive}{inside}, not a capture file: extract the capture from it first"
    if head.startswith(b"\x04\x22\x4d\x18"):
        return "lz4-compressed, which pcapstate does not read: decompress it first (lz4 -d)"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:14].lower() == b"<!doctype html" or text[:5].lower() == b"<html":
        return f"an HTML page{inside}, not a capture file (a download that failed?)"
    if text.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the capture itself (git lfs pull fetches it)"
    if head and not any(b < 0x20 and b not in b"\t\n\r\f\x1b" or b == 0x7F for b in head) \
            and head.decode("utf-8", "replace").count("\ufffd") <= 1:  # a cut character
        return f"a text file{inside}, not a capture file"
    return f"not a pcap or pcapng file{inside} (magic {head[:4].hex()})"


def _overlapping(spans: list[tuple[float, float, str]]) -> list[tuple[str, str, float]]:
    """(earlier, later, seconds) for each span that starts more than _OVERLAP_SLACK before
    the latest end among the spans that start before it (spans: earliest, latest, name)."""
    found = []
    latest: tuple[float, str] | None = None
    for lo, hi, name in sorted(spans, key=lambda s: s[0]):
        if latest is not None and lo < latest[0] - _OVERLAP_SLACK:
            found.append((latest[1], name, latest[0] - lo))
        if latest is None or hi > latest[0]:
            latest = (hi, name)
    return found


def plain_size(path: str) -> int | None:
    """The size of a capture that is a regular file, neither compressed nor empty; None for
    anything else (a stream, compressed bytes whose size says little, an error)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return None
    if head in _PCAP_MAGIC or (len(head) == 4 and struct.unpack("<I", head)[0] == _SHB):
        return st.st_size
    return None


def _stat(path: str) -> os.stat_result:
    try:
        st = os.stat(path)
    except OSError as e:
        raise CaptureError(path, e.strerror or str(e)) from e
    if stat.S_ISDIR(st.st_mode):
        raise CaptureError(path, "is a folder, not a capture file")
    return st


def open_capture(path: str) -> Capture:
    """Open a capture, read its header and first timestamp (a pcap's from its first record
    header: what is wrong with that record is raised when the capture is read). Raises
    CaptureError. A path that is not a regular file (a pipe, a FIFO, /dev/stdin) and `-`
    are streams: opened once, the peek carried on when the capture is read."""
    cap = Capture(path)
    if path != "-":
        st = _stat(path)
        if stat.S_ISREG(st.st_mode):
            cap.size = st.st_size
    stream = cap._open()
    if cap.size is None and stream.isatty():
        where = "standard input (tcpdump -w - | pcapstate analyze -)" if path == "-" else path
        print(f"pcapstate: reading a capture from {where}; Ctrl-D ends it", file=sys.stderr,
              flush=True)
    try:
        cap._source = source = Source(cap, stream)
        head = source.need(0, 4)
        if len(head) < 4:
            raise Stop("empty file" if not head else "too short for a capture header", 0)
        if bytes(head) in _PCAP_MAGIC:
            cap.first_ts = cap._first_ts(source)  # None: a header and no records, valid
        elif struct.unpack("<I", head)[0] == _SHB:
            cap.format = "pcapng"
        else:
            raise Stop(_not_a_capture(source.need(0, 512), source.kind), 0)
    except Stop as e:
        cap.close()
        raise CaptureError(path, e.message, e.offset) from None
    if cap.format == "pcapng":  # its first timestamp comes with its first record
        it = cap._guarded(cap._pcapng())
        first = next(it, None)
        cap.first_ts = first[0] if first else None
        if cap.size is None:
            cap._peeked = chain([first] if first else [], it)
        else:
            it.close()
    if cap.size is not None:
        cap.close()
        cap.records = cap.bytes_read = 0  # read again from the start when analysed
    return cap


def open_captures(paths: list[str]) -> list[Capture]:
    """Open every file of one capture and order them by their first timestamp. A file given
    twice (by any path, or a copy of it) is refused."""
    if "-" in paths and len(paths) > 1:
        raise CaptureError("-", "standard input cannot be combined with other files")
    seen: dict[tuple[int, int], str] = {}
    for path in paths:
        if path == "-":
            continue
        st = _stat(path)
        other = seen.get((st.st_dev, st.st_ino))
        if other is not None:
            raise CaptureError(path, "given twice" if other == path else
                               f"the same file as {other}: give each file once")
        seen[(st.st_dev, st.st_ino)] = path
    caps = [open_capture(p) for p in paths]
    _refuse_copies([c for c in caps if c.size is not None and c.first_ts is not None])
    caps.sort(key=lambda c: (c.first_ts is None, c.first_ts or 0.0))
    return caps


def _refuse_copies(caps: list[Capture]) -> None:
    """CaptureError if two of these regular files have the same content: the same size and
    sha256 of their first MiB, then the same bytes throughout (read only when the rest
    agrees). Files without records are not compared: a rotated set may hold several alike."""
    by_size: dict[int | None, list[Capture]] = {}
    for cap in caps:
        by_size.setdefault(cap.size, []).append(cap)
    for alike in by_size.values():
        heads: dict[str, list[Capture]] = {}
        for cap in alike if len(alike) > 1 else ():
            try:
                with open(cap.path, "rb") as f:
                    head = heads.setdefault(hashlib.sha256(f.read(1 << 20)).hexdigest(), [])
                copy = next((other for other in head if _same_bytes(other.path, cap.path)), None)
            except OSError as e:
                raise CaptureError(cap.path, e.strerror or str(e)) from e
            if copy is not None:
                raise CaptureError(cap.path, f"the same content as {copy.path} (a copy): give "
                                   "each file once")
            head.append(cap)


def _same_bytes(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(CHUNK), fb.read(CHUNK)
            if x != y:
                return False
            if not x:
                return True
