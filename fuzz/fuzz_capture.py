"""Coverage-guided fuzzing (atheris) of everything a capture file goes through: the pcap,
pcapng and gzip readers, the link/IP/TCP decoder, the connection table and state machine,
Zeek's view, the summary and the records. The engine runs with numba's JIT disabled, as the
plain Python it is written in, so that atheris sees its branches (numba cannot compile
instrumented bytecode; tests/test_uncompiled.py checks that both forms give the same
results). Any input must end in a result or a CaptureError; anything else is a crash that
atheris reports, with the input that caused it.

    python3 fuzz/fuzz_capture.py -runs=2000 -seed=1 CORPUS   # the short pass CI runs
    python3 fuzz/fuzz_capture.py -max_total_time=3600 fuzz/corpus   # a longer one

The seeds are the shipped samples and broken captures, copied into the corpus folder given
(which grows as it runs), or into a new temporary folder when none is.
"""

import os
import sys
import tempfile
from pathlib import Path

import atheris

os.environ["NUMBA_DISABLE_JIT"] = "1"  # before numba is imported
with atheris.instrument_imports():
    from pcapstate.pipeline import analyze
    from pcapstate.read.capture import CaptureError
    from pcapstate.settings import Settings

HERE = Path(__file__).resolve().parent
SETTINGS = Settings(zeek_checksums=True, max_connections=4)
INPUT = Path(tempfile.mkdtemp(prefix="pcapstate-fuzz-", dir="/dev/shm"
                              if os.path.isdir("/dev/shm") else None)) / "input.pcap"


def one_input(data: bytes) -> None:
    INPUT.write_bytes(data)
    try:  # the whole pipeline: checksums checked, a table of 4, every record built
        analyze([str(INPUT)], SETTINGS, on_record=lambda r: None, on_zeek=lambda z: None)
    except CaptureError:
        pass


def seed(corpus: Path) -> None:
    """Put the samples and broken captures in `corpus`, where not there already."""
    corpus.mkdir(parents=True, exist_ok=True)
    for folder in (HERE.parent / "samples", HERE.parent / "tests" / "broken"):
        for path in sorted(folder.iterdir()):
            if path.suffix in (".pcap", ".pcapng", ".gz") and path.stat().st_size < 64_000:
                target = corpus / path.name
                if not target.exists():
                    target.write_bytes(path.read_bytes())


if __name__ == "__main__":
    args = sys.argv[:1] + [a for a in sys.argv[1:]]
    folders = [a for a in args[1:] if not a.startswith("-")]
    if not folders:  # a corpus of its own, not in the repository
        folders = [tempfile.mkdtemp(prefix="pcapstate-fuzz-corpus-")]
        args += folders
    seed(Path(folders[0]))
    atheris.Setup(args, one_input)
    atheris.Fuzz()
