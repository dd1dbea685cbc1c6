"""The command line: `pcapstate analyze CAPTURE...`, `pcapstate report RESULT.json` and
`pcapstate check CORPUS...`.

Exit codes: 0 success; 1 a --fail-on finding exists (or, for check, a difference or a policy
failure; for --cross-check, a disagreement); 2 bad usage, unreadable input or
unwritable output; 3 --fail-on found nothing but cannot pass: records that may hold TCP
were not decoded (result["coverage"]); 130 interrupted. Errors are one line on stderr,
never a traceback.
"""

import argparse
import io
import json
import os
import shlex
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, BinaryIO, NoReturn, TextIO, cast

from pcapstate import collector
from pcapstate.cli.parser import build_parser, duration, fail_on
from pcapstate.render.output import (
    SEPARATOR,
    Behind,
    PendingFile,
    WriteError,
    guarded,
    is_stream,
    read_result,
    write_all,
    write_json,
)
from pcapstate.settings import settings_for
from pcapstate.words import inconclusive

__all__ = ["build_parser", "duration", "fail_on", "main", "run"]


def run() -> NoReturn:
    """The command (`pcapstate`, `python -m pcapstate`): main(), then the process ends at
    once with main's code. Python's own ending took a quarter of a second more after a large
    capture (collecting the 100,000 objects numba loads, running LLVM's finalizers), when
    every output is written and closed already. Not after worker processes (check -j, a
    Dask client): Python's ending gives back what they shared (semaphores)."""
    code = main()
    if "multiprocessing" in sys.modules:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    _lean_start()
    parser = build_parser()
    with collector.paused():  # it imports NumPy and the engine's modules: 22 passes, 10 ms
        args, extra = parser.parse_known_args(argv)
    if extra:  # named by the command's own usage: "try: pcapstate analyze --help"
        parser.commands[args.command].error(  # type: ignore[attr-defined]
            f"unrecognized arguments: {' '.join(extra)}")
    args.argv = sys.argv[1:] if argv is None else argv
    _INTERRUPTED.clear()
    _SIGNAL[0] = 0
    previous = {sig: signal.signal(sig, handler) for sig, handler in _HANDLERS.items()}
    stdout = sys.stdout
    sys.stdout = guarded(stdout, "-")  # a full disk or a closed pipe: one line, exit 2
    try:
        code = {"analyze": _analyze, "report": _report, "check": _check}[args.command](args)
        sys.stdout.flush()
        return code
    except WriteError as e:
        if e.path == "-":
            _drop_stdout(stdout)
        return _error(str(e))
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: still no traceback
        _note("interrupted")
        return 130
    except _Terminated as e:
        _note(f"stopped by {signal.Signals(e.signum).name}")
        return 128 + e.signum
    finally:
        sys.stdout = stdout
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _drop_stdout(stdout: TextIO) -> None:
    """Standard output failed: what is still in its buffer goes nowhere, so that Python's
    own flush at exit does not fail again with a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


#: Ctrl-C was pressed. Python loses an exception raised while a finalizer runs (and numba,
#: compiling on a first run, runs many), so long work also checks this between steps.
_INTERRUPTED = threading.Event()

#: The SIGTERM or SIGHUP that arrived (0: none): stop at once, leave no partial file.
_SIGNAL = [0]


#: Set while an analysis can stop early and still report: the first Ctrl-C then only asks
#: it to stop (analyze's `stop`); a second one interrupts.
_SOFT = threading.Event()


class _Terminated(BaseException):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so that every partial output is removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_interrupt(signum: int, frame: object) -> None:
    first = _SOFT.is_set() and not _INTERRUPTED.is_set()  # a first Ctrl-C only asks to stop
    _INTERRUPTED.set()
    if not first:
        raise KeyboardInterrupt
    print("\npcapstate: stopping: writing what was read so far (Ctrl-C again to quit at "
          "once)", file=sys.stderr)


def _on_terminate(signum: int, frame: object) -> None:
    _SIGNAL[0] = signum
    raise _Terminated(signum)


_HANDLERS = {signal.SIGINT: _on_interrupt, signal.SIGTERM: _on_terminate,
             signal.SIGHUP: _on_terminate}


def _check_interrupt() -> None:
    if _SIGNAL[0]:
        raise _Terminated(_SIGNAL[0])
    if _INTERRUPTED.is_set() and not _SOFT.is_set():
        raise KeyboardInterrupt


def _lean_start() -> None:
    """Spare the command 0.2 s of start-up and two idle thread pools: pcapstate does no
    linear algebra, but numba imports SciPy's BLAS, if it is installed, to find out whether
    it could, and NumPy's BLAS starts a thread per core. And have pyarrow (--parquet) take
    its memory from the C library's malloc: its own allocator (mimalloc) asks for huge
    pages, hands freed ones back to the kernel within milliseconds and takes new ones,
    each zeroed, 2 MiB at a time (a fifth of the CPU time --parquet took on the benchmark
    capture, by perf; with malloc, 45 MiB less memory and a third of the kernel's time).
    And NumPy's arrays in pages of the usual size: NumPy asks for huge pages (madvise) for
    every array from 4 MiB, the connection table's among them, and on this project's
    virtual machine a 2 MiB page cost more than the 512 small ones it stands for (each
    zeroed whole when first touched, from memory the host had not given the machine yet,
    it seems; the small ones mostly come from pages freed lately): --json on the benchmark
    capture, 12 paired runs, 0.26 s less wall (11 of 12) and 0.35 s less CPU, 68 huge
    pages fewer; -q within the noise (+0.02 s, 4 of 12 faster). Only the command does
    this; a program that imports pcapstate keeps all four, and an
    ARROW_DEFAULT_MEMORY_POOL or NUMPY_MADVISE_HUGEPAGE of the user's is left alone."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")  # read when NumPy is imported
    if "scipy" not in sys.modules:
        sys.modules.setdefault("scipy.linalg.cython_blas", None)  # type: ignore[arg-type]
    _keep_freed_memory()


def _keep_freed_memory() -> None:
    """Have the C library's malloc keep the memory freed in the process for the next
    allocation, not give it back to the kernel at once: the records' batches (derive/
    records.py) free and take a megabyte or more at a time, and by default each such block
    is a new mapping (glibc: from 128 KiB, a threshold that rises only with what was freed)
    and the free space at the heap's top is handed back from 128 KiB on; every page taken
    again was a fault and a page the kernel zeroed. With --json on the benchmark capture,
    73,000 more page faults than the analysis alone, a third of the run's CPU time in the
    kernel zeroing pages in one run (perf); with this, as many faults as the analysis
    alone. The peak grew 1-2 MiB (what is kept was mostly in use at the peak). The command's
    alone (a program that imports pcapstate keeps its own), not where malloc is not glibc's
    (no mallopt), nor where the user tuned it (glibc.malloc in GLIBC_TUNABLES, MALLOC_*_
    variables)."""
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "") or any(
            k.startswith("MALLOC_") and k.endswith("_") for k in os.environ):
        return
    import ctypes  # (imported already: numba's and llvmlite's)

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's highest (its heaps are 64 MiB)
    mallopt(_M_TRIM_THRESHOLD, 1 << 30)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def _spool(path: str) -> BinaryIO:
    """A temporary file for --json's records (`path`'s, whose failures it names)."""
    try:
        return cast(BinaryIO, guarded(tempfile.TemporaryFile(), path))
    except OSError as e:
        raise WriteError(path, e) from e


def _note(text: str) -> None:
    """A line for the person at the terminal, on stderr: "pcapstate: ..."."""
    print(f"pcapstate: {text}", file=sys.stderr, flush=True)


#: The options that write a file (or standard output, given "-").
_FILE_OUTPUTS = ("json", "jsonl", "zeek_conn", "zeek_conn_json", "parquet", "report", "html")
_BINARY = ("json", "jsonl", "zeek_conn", "parquet")  # outputs written as bytes


def _option(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _outputs_usage(args: argparse.Namespace, inputs: list[str]) -> str | None:
    """What is wrong with the outputs asked for, before any work: two to standard output,
    one path for two outputs, an output over an input."""
    given = [(o, getattr(args, o)) for o in (*_FILE_OUTPUTS, "plots")
             if getattr(args, o, None) is not None]
    charts = _charts_folder(args)
    if charts is not None and args.plots is None:
        given.append(("charts", charts))
    if args.plots == "-":
        return "--plots writes PNG files into a folder: give a folder, not '-'"
    to_stdout = [o for o, path in given if path == "-"]
    if len(to_stdout) > 1:
        return " and ".join(f"{_option(o)} -" for o in to_stdout) + \
            " cannot both write to standard output"
    seen: dict[str, str] = {}
    read = {os.path.realpath(p) for p in inputs if p != "-"}
    for o, path in given:
        if not path:
            return f"{_option(o)}: an empty path: give a file name"
        if is_stream(path):  # /dev/null, a FIFO: written into, never replaced
            continue
        real = os.path.realpath(path)
        if real in read:
            return f"refusing to overwrite the input {path}"
        if real in seen and seen[real] != o:
            what = "--report's charts folder" if o == "charts" else _option(o)
            return f"{_option(seen[real])} and {what} name the same path {path}"
        seen.setdefault(real, o)
    return None


def _charts_folder(args: argparse.Namespace) -> str | None:
    """Where the charts go: --plots, else FILE-charts beside --report's FILE.md (none for a
    report on standard output)."""
    if args.plots is None and args.report and args.report != "-":
        return os.path.splitext(args.report)[0] + "-charts"
    return args.plots


class _Outputs:
    """Every output asked for (the options `names`, and the charts folder `plots`), opened
    before the work (so that an unwritable destination is found at once), written into
    place by `done`, removed by `discard` if the run fails."""

    def __init__(self, args: argparse.Namespace, names: tuple[str, ...] = _FILE_OUTPUTS,
                 plots: str | None = None) -> None:
        self.files: dict[str, PendingFile] = {}
        self.made: str | None = None  # the charts folder, when this run made it
        self.plots = plots
        self.stale: list[str] = []  # files `done` removes
        try:
            for o in names:
                path = getattr(args, o, None)
                if path is not None:
                    self.files[o] = PendingFile(path, binary=o in _BINARY)
            if self.plots is not None:
                _check_folder(self.plots)
        except WriteError:
            self.discard()
            raise

    def file(self, option: str) -> Any:
        """The file an option's output is written into (binary for _BINARY's), or None."""
        return self.files[option].file if option in self.files else None

    def chart(self, name: str, data: bytes) -> None:
        """A chart into the charts folder (made now if need be), put in place by `done`."""
        assert self.plots is not None
        if not os.path.isdir(self.plots):
            try:
                os.mkdir(self.plots)  # its parent must exist, as a report's folder must
            except OSError as e:
                raise WriteError(self.plots, e) from e
            self.made = self.plots
        pending = self.files[f"chart {name}"] = PendingFile(os.path.join(self.plots, name),
                                                            binary=True)
        pending.file.write(data)  # type: ignore[arg-type]  # a binary file

    def done(self) -> None:
        for path in self.stale:  # first: a failure then leaves the outputs as they were
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise WriteError(path, e) from e
        for pending in self.files.values():
            pending.done()
        self.made = None

    def discard(self) -> None:
        for pending in self.files.values():
            pending.discard()
        if self.made is not None and not os.listdir(self.made):
            os.rmdir(self.made)  # a charts folder this run made, left empty
        self.made = None


def _check_folder(folder: str) -> None:
    """WriteError unless `folder` is a folder that can be written to, or can be made (tried
    with a temporary folder inside it, or beside it)."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise WriteError(folder, "not a folder")
    where = folder if os.path.isdir(folder) else os.path.dirname(os.path.abspath(folder))
    try:
        os.rmdir(tempfile.mkdtemp(dir=where, prefix=".pcapstate-"))
    except OSError as e:
        raise WriteError(folder, e) from e


def _analyze(args: argparse.Namespace) -> int:
    from pcapstate import jit
    from pcapstate.derive.host import read_ss, ss_file
    from pcapstate.partitions import DaskError
    from pcapstate.pipeline import analyze
    from pcapstate.read.capture import CaptureError, plain_size
    from pcapstate.render.text import render
    from pcapstate.render.zeeklog import ConnLog

    problem = _outputs_usage(args, [*args.captures, *map(ss_file, args.ss)])
    if problem:
        return _error(problem)
    if args.cross_check and any(is_stream(p) for p in args.captures):
        return _error("--cross-check reads the capture again with each engine: give files, "
                      "not standard input or a stream")
    if args.partitions and not args.dask:
        return _error("--partitions splits the table across a Dask cluster: give --dask too")
    if args.dask and any(is_stream(p) for p in args.captures):
        return _error("--dask: every worker reads the capture files: give files, not "
                      "standard input or a stream")
    try:
        hosts = [read_ss(path) for path in args.ss]
    except ValueError as e:
        return _error(str(e))
    digests = _Digests(args.captures) if args.json or args.report or args.html or args.plots \
        else None
    stdout_taken = any(getattr(args, o) == "-" for o in _FILE_OUTPUTS)
    settings = settings_for(args.time_wait, args.fin_timeout, args.stuck_after,
                            args.close_wait_after, args.max_connections, zeek=args.zeek,
                            zeek_checksums=args.zeek_checksums, zeek_bare=args.zeek_bare)
    outputs = _Outputs(args, plots=_charts_folder(args))
    spool: BinaryIO | None = None  # --json's records, until the result around them is known
    behind = Behind()  # makes and writes the records' outputs meanwhile
    progress = _Progress(args.progress, _reading)
    parquet: Any = None  # render/parquet.py's ParquetSink, for --parquet
    try:
        records_out = None  # where the records' JSON Lines go
        lines = outputs.file("jsonl")
        if lines is None and args.json:  # the records straight into the result's new
            # file, the rest put around them; for a stream, in a file of their own meanwhile
            spool = outputs.file("json") if outputs.files["json"].fresh else _spool(args.json)
            records_out = partial(write_all, spool)
        elif lines is not None:
            records_out = partial(write_all, lines)
        tsv, zeek_lines = outputs.file("zeek_conn"), outputs.file("zeek_conn_json")
        zeek_log = None if tsv is None and zeek_lines is None else \
            ConnLog(tsv, zeek_lines, args.zeek_local_nets)

        # small: not compiled (before render/parquet.py imports the records' compiled code)
        jit.plain_for([plain_size(p) for p in args.captures])
        table = outputs.file("parquet")
        if table is not None:
            try:
                from pcapstate.render.parquet import ParquetSink
            except ImportError:
                return _error("--parquet needs pyarrow: pip install 'pcapstate[parquet]'")
            parquet = ParquetSink(table)  # type: ignore[arg-type]  # a binary file

        _SOFT.set()  # a first Ctrl-C now stops the reading; what was read is reported
        try:
            result = analyze(args.captures, settings,
                             on_lines=records_out,
                             line_end="\n" if spool is None else SEPARATOR,
                             on_zeek=None if zeek_log is None else zeek_log.take,
                             on_columns=None if parquet is None else parquet.take,
                             behind=behind.later,
                             progress=progress,
                             engine=args.engine, stop=_INTERRUPTED.is_set,
                             note=progress.note,
                             hosts=hosts, dask=args.dask, partitions=args.partitions or 0)
        finally:
            _SOFT.clear()
            progress.clear()
        if _SIGNAL[0]:  # a signal lost in a finalizer
            raise _Terminated(_SIGNAL[0])
        behind.close()
        if zeek_log is not None:
            zeek_log.close()
        if parquet is not None:
            parquet.close()
        result["command_line"] = shlex.join(["pcapstate", *args.argv])
        if digests is not None:
            digests.put_in(result["inputs"])
        if args.cross_check and not _INTERRUPTED.is_set():
            from pcapstate.check.crosscheck import cross_check

            result["cross_check"] = cross_check(args.captures, settings)
        out = outputs.file("json")
        if out is not None:
            write_json(out, result, spool)
        if args.report or args.html or args.plots:
            _reports(args, result, outputs)
        outputs.done()
    except CaptureError as e:
        if _INTERRUPTED.is_set():  # tshark, say, got the Ctrl-C too
            raise KeyboardInterrupt from None
        return _error(str(e))
    except DaskError as e:
        return _error(f"Dask cluster {args.dask}: {e}")
    finally:
        behind.stop()
        if parquet is not None:
            parquet.discard()
        outputs.discard()  # not finished: no half-written file left behind
        if spool is not None and spool is not outputs.file("json"):
            spool.close()

    text = sys.stderr if stdout_taken else sys.stdout
    if not args.quiet:
        text.write(render(result))
    if "cross_check" in result:
        from pcapstate.check.crosscheck import text as cross_text

        text.write(cross_text(result["cross_check"]))
    if args.quiet or stdout_taken:
        for w in result["warnings"]:
            _note(f"warning: {w}")
    if result["interrupted"]:
        records = result["accounting"]["records"]
        _note(f"interrupted: everything above and every file written covers the {records:,} "
              "records read until then")
        return 130
    if _INTERRUPTED.is_set():  # Ctrl-C once the reading was over: nothing is missing
        _note("interrupted once the whole capture was read: everything above and every file "
              "written is complete")
        return 130
    if "cross_check" in result and result["cross_check"]["disagreements"]:
        return 1
    names = set(args.fail_on)  # states and diagnoses (vocab.stuck_states)
    failing = [f for f in result["findings"] if f["state"] in names]
    diagnosed = [d for d in result["diagnoses"] if d["name"] in names]
    if failing or diagnosed:
        _note("failing: " + "; ".join(
            ([f"{sum(f['count'] for f in failing)} endpoint(s) stuck in "
              f"{', '.join(sorted({f['state'] for f in failing}))}"] if failing else [])
            + [f"{d['name']} at {d['service']} ({d['count']})" for d in diagnosed]))
        return 1
    unsure = inconclusive(result["accounting"]["records"], result["coverage"]["tcp_unread"],
                          result["connections"]["evicted"]["total"])
    if args.fail_on and unsure:
        _note(f"inconclusive: {'; '.join(unsure)}, so --fail-on cannot pass")
        return 3
    return 0


class _Digests:
    """Each input file's sha256, for a saved result or a report to name the very files it
    came from: worked out in a thread of its own from the start of the run, while a core is
    idle (start-up is one thread; hashlib lets go of Python's lock), not after it (0.15 s
    for the benchmark capture)."""

    def __init__(self, paths: list[str]) -> None:
        self.found: dict[str, str | None] = {}
        self.thread = threading.Thread(target=self._work, args=(paths,), daemon=True,
                                       name="pcapstate-sha256")
        self.thread.start()

    def _work(self, paths: list[str]) -> None:
        import hashlib

        for path in paths:
            self.found[path] = None
            try:  # a stream is read once, by the analysis (and opening a FIFO would wait)
                if path != "-" and stat.S_ISREG(os.stat(path).st_mode):
                    with open(path, "rb") as f:
                        self.found[path] = hashlib.file_digest(f, "sha256").hexdigest()
            except OSError:
                pass

    def put_in(self, inputs: list[dict[str, Any]]) -> None:
        """Each input's "sha256" (None for a stream or a file that could not be read)."""
        self.thread.join()
        for f in inputs:
            f["sha256"] = self.found.get(f["path"]) if f["size"] is not None else None


def _check(args: argparse.Namespace) -> int:
    """`pcapstate check CORPUS...`."""
    from pathlib import Path

    from pcapstate.check.corpus import CorpusError, entries, find_config

    override: dict[str, Any] = {
        key.replace("_", "-"): getattr(args, key)
        for key in ("time_wait", "fin_timeout", "stuck_after", "close_wait_after",
                    "time_tolerance", "max_close_wait", "max_connections", "fail_on")
        if getattr(args, key) is not None}
    if args.junit is not None and args.junit == args.json:
        return _error(f"--junit and --json name the same path {args.junit}")
    try:
        corpus = entries(args.corpus, override)
    except CorpusError as e:
        return _error(str(e))
    if not corpus:
        return _error(f"no capture in {', '.join(args.corpus)}")
    ours = {os.path.realpath(f) for e in corpus for f in (*e.files, e.golden)}
    ours |= {os.path.realpath(c) for c in map(find_config, {Path(f).parent for f in ours})
             if c is not None}  # pcapstate.toml, or the pyproject.toml that holds it
    for option, path in (("--junit", args.junit), ("--json", args.json)):
        if path is not None and not is_stream(path) and os.path.realpath(path) in ours:
            return _error(f"{option}: refusing to overwrite {path}, a file of the corpus")
    outputs = _Outputs(args, ("junit", "json"))
    try:
        return _check_corpus(args, corpus, outputs)
    finally:
        outputs.discard()


def _check_corpus(args: argparse.Namespace, corpus: list[Any], outputs: _Outputs) -> int:
    import time

    from pcapstate import jit
    from pcapstate.check import goldens as check
    from pcapstate.partitions import DaskError

    if not args.dask and not jit.is_cached():
        _note("compiling the analysis engine first (once after installing or upgrading "
              f"pcapstate: {jit.COMPILE_SECONDS})")
    started = time.perf_counter()
    progress = _Progress(args.progress, _checking)
    try:
        outcomes = check.run(corpus, update=args.update, jobs=args.jobs or check.jobs(corpus),
                             dask=args.dask, progress=progress)
        _check_interrupt()
    except ImportError as e:
        return _error(f"--dask needs dask.distributed ({e.name} is missing): "
                      "pip install 'pcapstate[dask]'")
    except (DaskError, OSError, TimeoutError) as e:
        return _error(f"Dask cluster {args.dask}: {e}" if args.dask else str(e))
    finally:
        progress.clear()
    elapsed = time.perf_counter() - started
    junit, as_json = outputs.file("junit"), outputs.file("json")
    if junit is not None:
        junit.write(check.junit(outcomes))
    if as_json is not None:
        as_json.write((json.dumps(check.to_json(outcomes), indent=1) + "\n").encode())
    outputs.done()
    (sys.stderr if args.json == "-" else sys.stdout).write(
        check.text(outcomes, elapsed, args.verbose))
    statuses = {o.status for o in outcomes}
    return 2 if "error" in statuses else 1 if "failed" in statuses else 0


def _report(args: argparse.Namespace) -> int:
    """`pcapstate report RESULT.json`."""
    if not (args.report or args.html or args.plots):
        return _error("nothing to write: give --report FILE.md, --html FILE.html or "
                      "--plots DIR")
    name = "standard input" if args.result == "-" else args.result
    problem = _outputs_usage(args, [args.result])
    if problem:
        return _error(problem)
    if args.result == "-" and sys.stdin.isatty():
        _note("reading a result from standard input (pcapstate analyze --json - ...); "
              "Ctrl-D ends it")
    outputs = _Outputs(args, plots=_charts_folder(args))
    try:
        return _report_of(args, name, outputs)
    finally:
        outputs.discard()


def _report_of(args: argparse.Namespace, name: str, outputs: _Outputs) -> int:
    from pcapstate.schema import READS, problem

    try:
        if args.result == "-":
            result = read_result(sys.stdin)
        else:
            with open(args.result, encoding="utf-8") as f:
                result = read_result(f)
    except OSError as e:
        return _error(f"cannot read {name}: {e.strerror}")
    except UnicodeDecodeError:
        return _error(f"{name} is not a JSON file (a capture? analyse it with pcapstate "
                      "analyze)")
    except RecursionError:
        return _error(f"{name} is not a pcapstate result (JSON nested too deeply to read)")
    except ValueError as e:
        return _error(f"{name} is not valid JSON ({e})")
    schema = result.get("schema") if isinstance(result, dict) else None
    if schema not in READS:
        return _error(f"{name} is not a pcapstate result" if schema is None else
                      f"{name} is a {schema} result; this pcapstate reads "
                      f"{', '.join(READS[:-1])} and {READS[-1]}")
    bad = problem(result)  # the first field a report could not use, by its JSON path
    if bad is not None:
        return _error(f"{name}: {bad}")
    bad = _outputs_usage(args, [f["path"] for f in result["inputs"]])
    if bad is not None:  # the captures the result was made from
        return _error(bad)
    try:
        _reports(args, result, outputs)
        outputs.done()
        return 0
    except (KeyError, TypeError) as e:
        return _error(f"{name} lacks what a report needs ({e}): written by pcapstate "
                      f"{result.get('pcapstate_version')}; analyse the capture again")


def _reports(args: argparse.Namespace, result: dict[str, Any], outputs: "_Outputs") -> None:
    """Write the Markdown and HTML reports and the charts into their pending files (put in
    place, or removed, with the other outputs). Raises WriteError."""
    from pcapstate.render import charts, report

    listed = charts.charts(result)
    images = {name: charts.png(draw()) for name, _, draw in listed}
    blocks = report.blocks(result, [(name, title) for name, title, _ in listed])
    if outputs.plots:
        for name, data in images.items():
            outputs.chart(name, data)
        # an earlier run's charts that this one has no data for go (with the others' being
        # put in place): the folder holds one capture's charts
        outputs.stale = [os.path.join(outputs.plots, n) for n in charts.NAMES
                         if n not in images and os.path.isfile(os.path.join(outputs.plots, n))]
    md = outputs.file("report")
    if md is not None:
        where = os.path.dirname(os.path.abspath(args.report)) or "."
        md.write(report.markdown(blocks, None if outputs.plots is None else
                                 os.path.relpath(outputs.plots, where).replace(os.sep, "/")))
    page = outputs.file("html")
    if page is not None:
        page.write(report.html(blocks, images))


def _reading(done: int, total: int | None) -> str:
    unit, size = ("MiB", 1048576) if (total or done) >= 1048576 else ("KiB", 1024)
    return (f"reading: {done / size:,.0f} {unit} of {total / size:,.0f} {unit} "
            f"({100 * done / total:.0f}%)" if total else f"reading: {done / size:,.0f} {unit}")


def _checking(done: int, total: int | None) -> str:
    bar = "#" * (30 * done // (total or 1))
    return f"checking [{bar:<30}] {done}/{total} captures"


class _Progress:
    """A one-line progress display on stderr, if `show` (None: if stderr is a terminal), each
    line `line(done, total)`; a check for Ctrl-C either way."""

    def __init__(self, show: bool | None, line: Callable[[int, int | None], str]) -> None:
        self.show = sys.stderr.isatty() if show is None else show
        self.line, self.last = line, ""

    def __call__(self, done: int, total: int | None) -> None:
        _check_interrupt()
        if not self.show:
            return
        line = self.line(done, total)
        if line != self.last:
            sys.stderr.write("\r" + line)
            sys.stderr.flush()
            self.last = line

    def note(self, text: str) -> None:
        """_note, on a line of its own (the progress line taken away first)."""
        self.clear()
        _note(text)

    def clear(self) -> None:
        """Take the progress line away, before anything else is written."""
        if self.show and self.last:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self.last = ""


def _error(message: str) -> int:
    _note(f"error: {message}")
    return 2
