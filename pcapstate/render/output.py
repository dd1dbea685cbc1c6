"""The files pcapstate writes and reads back: a result as JSON (its connection records
streamed in last), and every output written so that it is whole or absent.

Every write failure (a full disk, a closed pipe, a read-only folder) becomes a WriteError
that names the path the user gave, never a temporary file's name.
"""

import contextlib
import json
import os
import stat
import sys
import tempfile
from typing import IO, Any, BinaryIO, TextIO, cast


class WriteError(Exception):
    """An output cannot be written. str(e) is one line naming the user's path."""

    def __init__(self, path: str, error: OSError | str) -> None:
        why = error if isinstance(error, str) else (error.strerror or str(error))
        super().__init__(f"cannot write {'standard output' if path == '-' else path}: {why}")
        self.path = path


class Guarded:
    """A stream whose failures (on any call: write, flush, seek, close) are WriteErrors
    naming `path`."""

    def __init__(self, stream: IO[Any], path: str) -> None:
        self.stream, self.path = stream, path

    def write(self, data: Any) -> int:  # the call made once a record: not through __getattr__
        try:
            return self.stream.write(data)
        except OSError as e:
            raise WriteError(self.path, e) from e

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.stream, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kw: Any) -> Any:
            try:
                return attr(*args, **kw)
            except OSError as e:
                raise WriteError(self.path, e) from e
        return call

    def __iter__(self) -> Any:
        return iter(self.stream)


def guarded(stream: IO[Any], path: str) -> TextIO:
    """`stream`, its write failures named as `path`'s."""
    return cast(TextIO, Guarded(stream, path))


def write_json(out: BinaryIO, result: dict[str, Any], records: BinaryIO | None) -> None:
    """The result as one JSON document (UTF-8); `records`, one JSON record a line, become
    its `connection_records` array, copied a piece at a time, never all in memory."""
    head = json.dumps(result, indent=1)
    if records is None:
        out.write((head + "\n").encode())
        return
    out.write((head[:-2] + ',\n "connection_records": [').encode())  # head ends with "\n}"
    records.seek(0)
    # copied a megabyte at a time; `held`, the last byte read, is written with what follows
    # it: the records' last newline ends the array, the others separate them (a record
    # holds no raw newline)
    sep, held = b"\n", b""
    for chunk in iter(lambda: records.read(1 << 20), b""):
        text = held + chunk
        out.write(sep + text[:-1].replace(b"\n", b",\n"))
        sep, held = b"", text[-1:]
    out.write(b"\n ]\n}\n")


def read_result(f: TextIO) -> Any:
    """A saved result, without its connection records: write_json puts them last, one a
    line, so reading stops where they begin and a 200 MB result costs no more memory than
    one without records. Any other layout of the same JSON is read whole."""
    head: list[str] = []
    for line in f:
        if line == ' "connection_records": [\n':
            return json.loads("".join(head).rstrip().removesuffix(",") + "\n}")
        head.append(line)
    return json.loads("".join(head))


def is_stream(path: str) -> bool:
    """Whether `path` names something to write into as it is, not a file to replace:
    standard output, a device (/dev/null), a FIFO, a pipe (/dev/fd/N of `>(...)`)."""
    if path == "-":
        return True
    try:
        return not stat.S_ISREG(os.stat(path).st_mode) and not os.path.isdir(path)
    except OSError:
        return False


class PendingFile:
    """A file written under a temporary name beside `path` and renamed into place by `done`,
    so that an interrupted or failed run leaves no half-written file (`discard` drops it).
    Made at once: a destination that cannot be written is found before any work. A symlink
    is written through (its target replaced, the link kept); standard output ("-"), a
    device, a FIFO or a pipe is written into as it goes, never replaced. Failures raise
    WriteError naming `path`."""

    def __init__(self, path: str, binary: bool = False) -> None:
        self.path = path
        self.tmp: str | None = None  # the temporary file, until renamed or removed
        self.target = os.path.realpath(path)
        self.ours = path != "-"  # a stream this opened, to close (standard output is not)
        if not self.ours:
            self.file = guarded(sys.stdout.buffer if binary else sys.stdout, path)
            return
        if os.path.isdir(path):
            raise WriteError(path, "is a folder")
        try:
            into: str | int = path
            if not is_stream(path):
                if os.path.exists(self.target) and not os.access(self.target, os.W_OK):
                    raise WriteError(path, "permission denied (the file is read-only)")
                into, self.tmp = tempfile.mkstemp(dir=os.path.dirname(self.target),
                                                  prefix=".pcapstate-", suffix=".tmp")
            stream: IO[Any] = open(into, "wb" if binary else "w",  # noqa: SIM115
                                   encoding=None if binary else "utf-8")
        except OSError as e:
            raise WriteError(path, e) from e
        self.file = guarded(stream, path)

    def done(self) -> None:
        """Put the file in place, with the mode a plain open() would have given it."""
        if not self.ours:
            self.file.flush()
            return
        self.file.close()
        if self.tmp is not None:
            try:
                os.chmod(self.tmp, _mode_for(self.target))
                os.replace(self.tmp, self.target)
            except OSError as e:
                raise WriteError(self.path, e) from e
            self.tmp = None

    def discard(self) -> None:
        if self.ours and not self.file.closed:
            with contextlib.suppress(WriteError):
                self.file.close()
        if self.tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)
            self.tmp = None


def _mode_for(path: str) -> int:
    """An existing file's mode (open() keeps it), else 0666 less the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        mask = os.umask(0o022)
        os.umask(mask)
        return 0o666 & ~mask
