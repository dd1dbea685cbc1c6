"""The files pcapstate writes and reads back: a result as JSON (its connection records
streamed in last), and every output written so that it is whole or absent.

Every write failure (a full disk, a closed pipe, a read-only folder) becomes a WriteError
that names the path the user gave, never a temporary file's name.
"""

import contextlib
import errno
import json
import operator
import os
import queue
import secrets
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
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


#: The size of a write (strace -c, the benchmark capture's 185 MB of records: 8 kB writes
#: took 0.34 s in the kernel, 64 kB 0.03 s, 1 MB 1.07 s)
PIECE = 1 << 16


def write_all(out: BinaryIO, data: bytes | memoryview) -> None:
    """`data` written PIECE at a time, what a write left out written again: Python's
    buffered writer returns a short count where a pipe took part of a write (250 kB into
    `| head -c 10`), and the write after it raises."""
    view = memoryview(data)
    while view:
        done = out.write(view[:PIECE])
        if not done:
            raise WriteError(cast(Guarded, out).path, "nothing could be written")
        view = view[done:]


class Behind:
    """Work done in threads of its own, in order, a few jobs behind the caller at most: the
    outputs made from the records are made and written there while the analysis goes on
    (numba's compiled code and the system calls let go of Python's lock). A job may leave
    work to be done after it: the functions it returns (a generator's, as it yields them),
    run in order by a second thread while the first goes on to the next job. Work that lets
    go of Python's lock goes there (writing the JSON text, pyarrow's writing, the system
    calls): after the last packet, when every open connection's record is made at once,
    the two threads share the work on two cores (the benchmark capture, 12 paired runs:
    --json 0.06 s less, --parquet 0.17 s less). Python's own work stays in the first: two
    threads taking turns with Python's lock were slower than one (the conn.log's text there:
    0.06 s more). A job's failure, or a function's it left, is raised by the next call, or
    by `close`."""

    def __init__(self, behind: int = 2) -> None:
        self.jobs: queue.Queue[Callable[[], Iterable[Callable[[], object]] | None] | None] \
            = queue.Queue(behind)
        self.after: queue.Queue[Callable[[], object] | None] = queue.Queue(behind)
        self.error: BaseException | None = None
        self.stopped = False
        self.threads = [threading.Thread(target=self._work, args=(self.jobs, self._run),
                                         name="pcapstate-writer", daemon=True),
                        threading.Thread(target=self._work, args=(self.after, operator.call),
                                         name="pcapstate-writer-after", daemon=True)]
        for thread in self.threads:
            thread.start()

    def later(self, job: Callable[[], Iterable[Callable[[], object]] | None]) -> None:
        if self.error is not None:
            raise self.error
        self.jobs.put(job)

    def _run(self, job: Callable[[], Iterable[Callable[[], object]] | None]) -> None:
        for then in job() or ():
            if self.stopped or self.error is not None:  # the rest of the job is not needed
                break
            self.after.put(then)

    def _work(self, jobs: "queue.Queue[Any]", run: Callable[[Any], object]) -> None:
        while (job := jobs.get()) is not None:
            if self.error is None and not self.stopped:
                try:
                    run(job)
                except BaseException as e:  # noqa: BLE001  # raised in the caller's thread
                    self.error = e
        if jobs is self.jobs:
            self.after.put(None)

    def close(self) -> None:
        """Wait for every job (and what each left) to be done; raise the first failure."""
        self.jobs.put(None)
        for thread in self.threads:
            thread.join()
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        """Do nothing more (the outputs are dropped); wait for the threads."""
        if self.threads[0].is_alive():
            self.stopped = True
            with contextlib.suppress(queue.Empty):
                while True:
                    self.jobs.get_nowait()
            self.jobs.put(None)
        for thread in self.threads:
            thread.join()


def write_json(out: BinaryIO, result: dict[str, Any], records: BinaryIO | None) -> None:
    """The result as one JSON document (UTF-8); `records`, the records' lines, each ending
    with SEPARATOR (derive/records.py lines), become its `connection_records` array, never
    all in memory: from a spool of their own, copied by the kernel where it can, or, when
    `records` is `out` itself (a new file they were written into from its start: the
    command's: PendingFile.fresh), where they are, the rest put around them (_around)."""
    head = json.dumps(result, indent=1)
    if records is None:
        out.write((head + "\n").encode())
        return
    opening = (head[:-2] + ",\n" + _ARRAY).encode()  # head ends with "\n}"
    if records is out:
        _around(out, opening)
        return
    out.write(opening)
    size = records.seek(0, os.SEEK_END) - len(SEPARATOR)  # the last record's left out
    if size > 0:
        out.write(b"\n")
        _copy(records, out, size)
    out.write(_CLOSING)


#: What follows each record in the result's array as spooled (the last one's is left out)
SEPARATOR = ",\n"
_ARRAY = ' "connection_records": ['  # the line that opens the records' array
_CLOSING = b"\n ]\n}\n"  # the array's end and the result's


def _around(out: BinaryIO, opening: bytes) -> None:
    """The records written into `out` from its start made the result's array: moved up in
    place (from the end, a MOVE at a time), `opening` (the result up to the array's "[")
    put before them, the last one's SEPARATOR made the end. One file, not a spool and a
    copy of it: half the disk space and page cache (182 MB less for the benchmark
    capture), and 57-60 ms against 75-91 ms for the copy (three runs each). The file
    system could insert the space before them instead (fallocate's INSERT_RANGE), but ext4
    writes the file's data out to the disk first, and waits: 0.12 s more (14 paired runs)."""
    out.flush()
    try:
        fd = out.fileno()
        size = max(os.fstat(fd).st_size - len(SEPARATOR), 0)  # the last record's left out
        os.ftruncate(fd, size)
        front = opening + b"\n" if size else opening
        _move_up(fd, size, len(front))
        _put(fd, front, 0)
        _put(fd, _CLOSING, len(front) + size)
    except OSError as e:
        raise WriteError(cast(Guarded, out).path, e) from e
    out.seek(0, os.SEEK_END)


MOVE = 1 << 20  # what _move_up moves at a time


def _move_up(fd: int, size: int, by: int) -> None:
    """File `fd`'s first `size` bytes moved `by` bytes further, in place."""
    end = size
    while end > 0:
        start = max(0, end - MOVE)
        data = os.pread(fd, end - start, start)
        if len(data) != end - start:
            raise OSError(errno.EIO, "the file shrank while it was written")
        _put(fd, data, start + by)
        end = start


def _put(fd: int, data: bytes, at: int) -> None:
    """`data` written at offset `at` of file `fd`, whole."""
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, at)
        view, at = view[done:], at + done


def _copy(src: BinaryIO, out: BinaryIO, size: int) -> None:
    """`src`'s first `size` bytes written into `out`: by the kernel (sendfile), with no
    copy in this process, where the two are files that allow it; else PIECE at a time."""
    out.flush()
    done = 0
    try:
        fds = src.fileno(), out.fileno()
    except (OSError, ValueError, WriteError):  # io.UnsupportedOperation (Guarded's
        # WriteError of it): a stream in memory
        fds = None
    while fds is not None and done < size:
        try:
            sent = os.sendfile(fds[1], fds[0], done, size - done)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise WriteError(cast(Guarded, out).path, e) from e
            break  # say, an output opened to append
        if not sent:
            break
        done += sent
    src.seek(done)
    while done < size and (piece := src.read(min(PIECE, size - done))):
        write_all(out, piece)
        done += len(piece)


def read_result(f: TextIO) -> Any:
    """A saved result, without its connection records: write_json puts them last, one a
    line, so reading stops where they begin and a 200 MB result costs no more memory than
    one without records. Any other layout of the same JSON is read whole."""
    head: list[str] = []
    for line in f:
        if line == _ARRAY + "\n":
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

    @property
    def fresh(self) -> bool:
        """Whether the file is a new one, empty but for what this run wrote into it, to be
        renamed into place (not standard output, a device, a FIFO or a pipe)."""
        return self.tmp is not None

    def done(self) -> None:
        """Put the file in place, with the mode a plain open() would have given it."""
        if not self.ours:
            self.file.flush()
            return
        self.file.close()
        if self.tmp is not None:
            try:
                os.chmod(self.tmp, _mode_for(self.target))
                _put_in_place(self.tmp, self.target)
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


def _put_in_place(tmp: str, target: str) -> None:
    """`tmp` renamed `target`. A file already there is renamed aside first, and removed
    after: ext4 writes a file's data out before a rename that replaces another file
    (auto_da_alloc), on the process's time (80-150 ms for the benchmark capture's 182 MB
    --json here), not before one that replaces none. So `target` is absent for the time
    between two renames; should the second fail, or a signal stop it, the old file is put
    back."""
    aside = os.path.join(os.path.dirname(target), f".pcapstate-{secrets.token_hex(8)}.old")
    placed = False
    try:  # also on a signal's exception: one file at `target`, none aside
        try:
            os.rename(target, aside)
        except FileNotFoundError:
            aside = ""
        except OSError:  # it cannot be moved aside: replaced in one step
            aside = ""
            os.replace(tmp, target)
            return
        os.rename(tmp, target)
        placed = True
    finally:
        if aside and placed:
            os.unlink(aside)
        elif aside:
            with contextlib.suppress(FileNotFoundError):  # (not moved aside yet)
                os.rename(aside, target)


def _mode_for(path: str) -> int:
    """An existing file's mode (open() keeps it), else 0666 less the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        mask = os.umask(0o022)
        os.umask(mask)
        return 0o666 & ~mask
