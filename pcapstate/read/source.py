"""The bytes of a capture, chunk by chunk, from a file, a pipe or standard input, plain or
compressed (gzip inflated here member after member; bzip2, xz and zstd through readers that
go on across streams), kept in one sliding buffer that records are parsed out of (a pcap's
by decode/frames.py scan_pcap, a pcapng's by read/capture.py). What stops the reading (a
read error, corrupt or cut compressed data) is a Stop naming the byte offset."""

import bz2
import lzma
import select
import zlib
from collections.abc import Callable, Generator
from typing import Any, BinaryIO

#: What is read at a time. A pcap's batch of records (decode/frames.py) is what a chunk
#: holds: about 21,000 of the benchmark capture's (96 bytes each), half as many batches as
#: with 1 MiB, so half the Python between compiled calls. On that capture --json,
#: --zeek-conn and --parquet took 2-7% less time (7 interleaved runs each), the analysis
#: alone as long, with 2-6 MiB more at the peak
CHUNK = 2 << 20
#: bzip2, xz and zstd are read this much at a time: a decompressor that meets corrupt data
#: drops what it decompressed in that call
_PIECE = 1 << 16


class Stop(Exception):
    """The capture cannot be read further at `offset`."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message, self.offset = message, offset


class _ReadError(Exception):
    """The underlying file could not be read (an OSError there, passed through a
    decompressor without being taken for corrupt data)."""


class _Prefixed:
    """A stream with the bytes already read from it put back in front."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self.head, self.at, self.stream = head, 0, stream
        self.watch: Callable[[bytes], None] | None = None  # shown every byte read

    def read(self, n: int = -1) -> bytes:
        if self.at < len(self.head):
            stop = len(self.head) if n < 0 else self.at + n
            out = self.head[self.at : stop]
            self.at += len(out)
        else:
            try:
                out = self.stream.read(n)
            except OSError as e:
                raise _ReadError(e.strerror or str(e)) from e
        if self.watch is not None:
            self.watch(out)
        return out


class _ZstdFrames:
    """Follows the frames of a zstd stream over its compressed bytes (RFC 8878, section 3.1),
    to tell whether it stopped at the end of one: zstandard's reader ends a stream cut short
    without a word."""

    def __init__(self) -> None:
        self.state, self.want, self.got, self.skip, self.checksum = "magic", 4, b"", 0, 0

    @property
    def at_edge(self) -> bool:
        return self.state == "magic" and not self.got and not self.skip

    def feed(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n and self.state != "lost":
            if self.skip:
                step = min(self.skip, n - i)
                self.skip -= step
                i += step
                continue
            take = data[i : i + self.want - len(self.got)]
            self.got += take
            i += len(take)
            if len(self.got) == self.want:
                self._parsed(self.got)
                self.got = b""

    def _parsed(self, got: bytes) -> None:
        value = int.from_bytes(got, "little")
        if self.state == "magic":
            if value == 0xFD2FB528:  # a frame
                self.state, self.want = "descriptor", 1
            elif value >> 4 == 0x184D2A5:  # a skippable frame
                self.state, self.want = "skippable", 4
            else:  # not zstd: the decompressor says so
                self.state = "lost"
        elif self.state == "skippable":
            self.state, self.want, self.skip = "magic", 4, value
        elif self.state == "descriptor":  # the rest of the frame header, then blocks
            single = value & 0x20
            content_size = (0, 2, 4, 8)[value >> 6] or (1 if single else 0)
            self.skip = (0 if single else 1) + (0, 1, 2, 4)[value & 3] + content_size
            self.checksum = 4 if value & 0x04 else 0
            self.state, self.want = "block", 3
        elif self.state == "block":
            kind, size = (value >> 1) & 3, value >> 3
            self.skip = 1 if kind == 1 else size  # an RLE block holds one byte
            if value & 1:  # the last block of its frame
                self.skip += self.checksum
                self.state, self.want = "magic", 4


class _Zstd:
    """A zstd stream (several frames, as cat makes them) decompressed in bounded pieces."""

    def __init__(self, raw: _Prefixed) -> None:
        import zstandard

        self.frames = _ZstdFrames()
        raw.watch = self.frames.feed
        source: Any = raw  # reads like a binary file
        self.reader = zstandard.ZstdDecompressor().stream_reader(
            source, read_across_frames=True, closefd=False)

    def read1(self, n: int) -> bytes:
        out = self.reader.read1(n)
        if not out and not self.frames.at_edge:
            raise EOFError("compressed stream ends early")
        return out


def _compression(first: bytes) -> str:
    """The compression a stream that begins with `first` is in ("" for none)."""
    if first[:2] == b"\x1f\x8b":
        return "gzip"
    if first[:3] == b"BZh" and first[3:4] in b"123456789":
        return "bzip2"
    if first[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if first[:4] == b"\x28\xb5\x2f\xfd" or first[1:4] == b"\x2a\x4d\x18" \
            and first[0] & 0xF0 == 0x50:  # a zstd frame, or a skippable frame (pzstd)
        return "zstd"
    return ""


class Source:
    """Chunks of a (possibly compressed) stream, kept in one sliding buffer. gzip is inflated
    here, member after member; bzip2, xz and zstd by readers that go on across streams."""

    def __init__(self, cap: Any, stream: BinaryIO) -> None:
        """`cap`: the read/capture.py Capture the bytes are counted into."""
        self.cap = cap
        self.stream: Any = stream
        self.base = 0  # stream offset of buf[0]
        self.buf = b""
        self.kind = ""
        self.failed: Stop | None = None  # raised at the next read
        self.wrapped = False  # read through a decompressor's reader
        #: what the decompressor's reader raises on corrupt data (gzip is inflated by _next)
        self.corrupt: tuple[type[Exception], ...] = ()
        first = self._raw(CHUNK)
        self.ended = not first  # the stream said it ended
        self.kind = _compression(first)
        cap.compressed, cap.compression = bool(self.kind), self.kind
        self.inflate = zlib.decompressobj(31) if self.kind == "gzip" else None
        if self.kind in ("bzip2", "xz", "zstd"):
            raw: Any = _Prefixed(first, stream)  # reads like a binary file
            if self.kind == "bzip2":
                self.stream, self.corrupt = bz2.BZ2File(raw), (OSError,)
            elif self.kind == "xz":
                self.stream, self.corrupt = lzma.LZMAFile(raw), (lzma.LZMAError,)
            else:
                try:
                    import zstandard
                except ImportError:
                    raise Stop("zstd-compressed: reading it needs the zstandard module "
                                "(pip install zstandard)", 0) from None
                self.stream, self.corrupt = _Zstd(raw), (zstandard.ZstdError,)
            self.wrapped, first = True, b""
        self.pending: bytes | memoryview = first
        self.buf = self._next() or b""

    def _raw(self, n: int) -> bytes:
        """Up to n bytes of the stream (decompressed, for bzip2, xz and zstd: piece by
        piece, so that what decompressed before an error is read, the error after it)."""
        if self.failed is not None:
            failed, self.failed = self.failed, None
            raise failed
        where = self.base + len(self.buf)
        if not self.wrapped:  # a stream: what has come so far, not n bytes or the end
            read = self.stream.read1 if self.cap.size is None and hasattr(
                self.stream, "read1") else self.stream.read
            return self._read(read, n, where)
        parts: list[bytes] = []
        got = 0
        while got < n:
            try:
                piece = self._read(self.stream.read1, min(n - got, _PIECE), where + got)
            except Stop as e:
                if not parts:
                    raise
                self.failed = e
                break
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
        return b"".join(parts)

    def _read(self, read: Callable[[int], bytes], n: int, where: int) -> bytes:
        try:
            return read(n)
        except _ReadError as e:
            raise Stop(f"read error: {e}", where) from e
        except EOFError:
            raise Stop(f"{self.kind} stream ends early", where) from None
        except self.corrupt as e:  # the decompressor's: OSError (bzip2), LZMAError, ZstdError
            raise Stop(f"corrupt {self.kind} data ({e})", where) from None
        except OSError as e:
            raise Stop(f"read error: {e.strerror or e}", where) from e

    def _next(self) -> bytes | None:
        """The next chunk of capture bytes, or None at the end."""
        while True:
            if self.pending or self.ended:
                data, self.pending = self.pending, b""
            else:  # a terminal's Ctrl-D is an end once: not asked for again
                data = self._raw(CHUNK)
                self.ended = not data
            if self.inflate is None:
                self.cap.bytes_read += len(data)
                return bytes(data) or None  # bytes already: not copied
            d = self.inflate
            if not data and not d.unconsumed_tail:
                if not d.eof:
                    raise Stop("gzip stream ends early", self.base + len(self.buf))
                return None
            if len(data) > _PIECE:  # what corrupt data stops is only what this piece gave
                whole = memoryview(data)
                data, self.pending = whole[:_PIECE], whole[_PIECE:]
            try:
                out = d.decompress(d.unconsumed_tail + data if d.unconsumed_tail else data,
                                   4 * CHUNK)
            except zlib.error as e:
                raise Stop(f"corrupt gzip data ({e})", self.base + len(self.buf)) from None
            if d.eof and d.unused_data:  # another gzip member follows
                self.pending = d.unused_data + self.pending
                self.inflate = zlib.decompressobj(31)
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

    def advance(self, pos: int, what: str) -> Generator[None, None, bytes | None]:
        """`more`, for a stream that asked for ticks (Capture.ticks): yields None while it
        is quiet (nothing came in 0.2 s)."""
        while self.cap.ticks and not (self.pending or self.ended or self.wrapped
                                      or self.inflate is not None):
            try:
                ready, _, _ = select.select([self.stream], [], [], 0.2)
            except (OSError, ValueError):
                break
            if ready:  # (read1 takes all the stream's buffer holds: none is left there)
                break
            yield None
        return self.more(pos, what)

    def more(self, pos: int, what: str) -> bytes | None:
        """Drop what was parsed up to `pos` and return the buffer with the next chunk; None
        at the end of the stream, a Stop if it ends inside `what`."""
        chunk = self._next()
        if chunk is None:
            if pos < len(self.buf):
                raise Stop(f"capture ends in the middle of {what}", self.base + pos)
            return None
        self.base += pos
        self.buf = self.buf[pos:] + chunk
        return self.buf


