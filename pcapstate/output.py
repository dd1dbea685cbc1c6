"""The files pcapstate writes and reads back: a result as JSON (its connection records
streamed in last), and any output written atomically."""

import json
import os
import tempfile
from collections.abc import Callable
from typing import Any, TextIO


def write_json(out: TextIO, result: dict[str, Any], records: TextIO | None) -> None:
    """The result as one JSON document; `records`, one JSON record a line, become its
    `connection_records` array, copied line by line, never all in memory."""
    head = json.dumps(result, indent=1)
    if records is None:
        out.write(head + "\n")
        return
    out.write(head[:-2] + ',\n "connection_records": [')  # head ends with "\n}"
    records.seek(0)
    sep = "\n"
    for line in records:
        out.write(sep + line[:-1])
        sep = ",\n"
    out.write("\n ]\n}\n")


def write_atomic(path: str, write: Callable[[Any], object], binary: bool = False) -> None:
    """Write a file so that a reader never sees it half written: `write` gets a text (or
    binary) file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".pcapstate-", suffix=".tmp")
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_result(f: TextIO) -> Any:
    """A saved result, without its connection records: write_json puts them last, one a
    line, so reading stops where they begin and a 200 MB result costs no more memory than
    one without records. Any other layout of the same JSON is read whole."""
    head: list[str] = []
    for line in f:
        if line == ' "connection_records": [\n':
            text = "".join(head).rstrip()
            return json.loads(text.removesuffix(",") + "\n}")
        head.append(line)
    return json.loads("".join(head))


class PendingFile:
    """A text file written under a temporary name beside `path`, renamed into place by
    `done` (so that an interrupted run leaves no half-written file); `discard` drops it."""

    def __init__(self, path: str) -> None:
        self.path = path
        fd, self.tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                                        prefix=".pcapstate-", suffix=".tmp")
        self.file = os.fdopen(fd, "w", encoding="utf-8")

    def done(self) -> None:
        self.file.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.file.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)
