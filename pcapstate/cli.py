"""The command line: `pcapstate analyze CAPTURE...`, `pcapstate report RESULT.json` and
`pcapstate check CORPUS...`.

Exit codes: 0 success; 1 a --fail-on finding exists (or, for check, a difference or a policy
failure; for --cross-check, a disagreement); 2 bad usage, unreadable input or
unwritable output; 130 interrupted. Errors are one line on stderr, never a traceback.
"""

import argparse
import dataclasses
import json
import os
import shlex
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, TextIO

from pcapstate import __version__
from pcapstate.output import read_result, write_atomic, write_json
from pcapstate.settings import MAX_CONNECTIONS, settings_for
from pcapstate.settings import duration as settings_duration
from pcapstate.vocab import STATE_NAMES, State, stuck_states


def duration(text: str) -> float:
    """'10s', '500ms', '2m', '1h' or plain seconds."""
    try:
        return settings_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def fail_on(text: str) -> list[State]:
    try:
        return stuck_states(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


MAX_CONNECTIONS_HELP = ("follow at most N connections at once: beyond it, each new one "
                        "evicts one (finished ones first, then handshake attempts in a "
                        "flood or quiet for 1s, then the least recently active), counted "
                        "and reported")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pcapstate",
        description="What happened to every TCP connection in a tcpdump capture.")
    parser.add_argument("--version", action="version", version=f"pcapstate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    a = sub.add_parser(
        "analyze", help="analyse a capture (one file or a rotated set)",
        description="Reconstruct each TCP connection's state machine, for both endpoints, "
                    "and report how connections ended, who closed first, which endpoints "
                    "are stuck (CLOSE_WAIT and friends) and how long each state lasted.")
    a.add_argument("captures", nargs="+", metavar="CAPTURE",
                   help="pcap or pcapng file, optionally gzip-compressed; several files are "
                        "one capture, ordered by time; '-' reads standard input")
    a.add_argument("--json", metavar="FILE",
                   help="write the full result as JSON ('-' for standard output)")
    a.add_argument("--jsonl", metavar="FILE",
                   help="stream one JSON record per connection to FILE as it is retired, "
                        "instead of putting them in --json ('-' for standard output)")
    a.add_argument("--time-wait", type=duration, default=60.0, metavar="DUR",
                   help="assumed TIME_WAIT length (default: 60s, Linux)")
    a.add_argument("--fin-timeout", type=duration, default=60.0, metavar="DUR",
                   help="assumed expiry of an orphaned FIN_WAIT_2 (default: 60s, Linux "
                        "net.ipv4.tcp_fin_timeout)")
    a.add_argument("--close-wait-after", type=duration, metavar="DUR",
                   help="report CLOSE_WAIT lasting longer than this (default: --stuck-after)")
    a.add_argument("--stuck-after", type=duration, default=10.0, metavar="DUR",
                   help="report an endpoint in CLOSE_WAIT, LAST_ACK, CLOSING, SYN_RCVD or "
                        "SYN_SENT for longer than this (default: 10s); FIN_WAIT_2 is reported "
                        "when it outlives both this and --fin-timeout")
    a.add_argument("--max-connections", type=_count, default=MAX_CONNECTIONS, metavar="N",
                   help=MAX_CONNECTIONS_HELP + f" (default: {MAX_CONNECTIONS:,}, about 1 GB "
                        "in all; 0: no limit)")
    a.add_argument("--fail-on", type=fail_on, metavar="STATES", default=[],
                   help="exit 1 if any endpoint is stuck in one of these (comma-separated: "
                        f"{', '.join(STATE_NAMES)}, or any)")
    a.add_argument("-q", "--quiet", action="store_true", help="no terminal summary")
    a.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show progress on stderr (default: when stderr is a terminal)")
    _report_options(a)
    a.add_argument("--engine", choices=["fast", "tshark", "auto", "plain"], default="fast",
                   help="fast: compiled decoder and state machine (default); tshark: "
                        "Wireshark's dissectors (tunnels, 802.11, any link type Wireshark "
                        "reads) feeding the same state machine, much slower; auto: fast, or "
                        "tshark for a link type the fast decoder does not read; plain: the "
                        "reference engine in plain Python, for cross-checking")
    a.add_argument("--zeek-conn", metavar="FILE",
                   help="write a Zeek conn.log (Zeek's TSV format, header lines included) "
                        "with Zeek's conn_state and history ('-' for standard output)")
    a.add_argument("--zeek-conn-json", metavar="FILE",
                   help="the same conn.log as JSON Lines, as Zeek writes JSON logs")
    a.add_argument("--zeek-checksums", action="store_true",
                   help="check TCP checksums for Zeek's view, as Zeek does unless run with "
                        "-C: a segment with a wrong one only adds C to the history (off by "
                        "default: captures taken on a sending host have wrong checksums "
                        "where the card computes them)")
    a.add_argument("--zeek-local-nets", type=_local_nets, metavar="CIDR,...", default=[],
                   help="the local networks, as Zeek's Site::local_nets: the conn.log's "
                        "local_orig and local_resp say whether each side is in one "
                        "(unset without, as in Zeek by default)")
    a.add_argument("--cross-check", action="store_true",
                   help="also run the fast and the tshark engines and list every connection "
                        "where they, or pcapstate's and Wireshark's retransmission and "
                        "keep-alive counts, disagree (exit 1 if any)")
    r = sub.add_parser(
        "report", help="write the incident report of a saved result (analyze --json)",
        description="Write the Markdown or HTML incident report and the charts from a result "
                    "that `pcapstate analyze --json` saved, without the capture.")
    r.add_argument("result", metavar="RESULT.json",
                   help="a result written by analyze --json ('-' reads standard input)")
    _report_options(r)
    c = sub.add_parser(
        "check", help="check a corpus of captures against their golden files, for CI",
        description="Analyse every capture of a corpus and compare its stable facts with the "
                    "golden file beside it (NAME.golden.json); apply the corpus's policy "
                    "(pcapstate.toml, or [tool.pcapstate] in pyproject.toml). Exit 0 when "
                    "all match, 1 on a difference or a policy failure, 2 on bad usage or an "
                    "unreadable capture.")
    c.add_argument("corpus", nargs="+", metavar="CORPUS",
                   help="a folder (searched recursively for .pcap, .pcapng, .cap, optionally "
                        ".gz) or a capture file")
    c.add_argument("--update", action="store_true",
                   help="write or refresh the golden files instead of comparing")
    c.add_argument("-j", "--jobs", type=_jobs, metavar="N",
                   help="analyse N captures at a time, in N processes (default: one per "
                        "core, or 1 when the corpus is under 64 MiB: a process takes about "
                        "0.4 s to start)")
    c.add_argument("--dask", metavar="ADDRESS",
                   help="analyse on an existing Dask cluster (tcp://scheduler:8786); the "
                        "captures are sent to the workers (needs pcapstate[dask])")
    c.add_argument("--fail-on", type=fail_on, metavar="STATES",
                   help="fail a capture with endpoints stuck in these states beyond its "
                        f"allowances ({', '.join(STATE_NAMES)}, or any)")
    c.add_argument("--max-close-wait", type=_count, metavar="N",
                   help="fail a capture with more than N endpoints stuck in CLOSE_WAIT "
                        "beyond its allowances")
    c.add_argument("--time-tolerance", type=duration, metavar="DUR",
                   help="timings may differ from the golden by this much (default: 1ms)")
    for name, what in (("--time-wait", "assumed TIME_WAIT length"),
                       ("--fin-timeout", "assumed orphaned FIN_WAIT_2 expiry"),
                       ("--stuck-after", "stuck threshold"),
                       ("--close-wait-after", "CLOSE_WAIT stuck threshold")):
        c.add_argument(name, type=duration, metavar="DUR",
                       help=f"{what} (default: as in analyze, or the configuration's)")
    c.add_argument("--max-connections", type=_count, metavar="N",
                   help=MAX_CONNECTIONS_HELP + " (default: as in analyze, or the "
                        "configuration's)")
    c.add_argument("--junit", metavar="FILE", help="write JUnit XML, one test per capture")
    c.add_argument("--json", metavar="FILE", help="write the outcome as JSON ('-': stdout)")
    c.add_argument("-v", "--verbose", action="store_true",
                   help="list every capture, not only those that failed")
    c.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show progress on stderr (default: when stderr is a terminal)")
    return parser


def _local_nets(text: str) -> list[Any]:
    from pcapstate.zeeklog import local_nets

    try:
        return local_nets(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _jobs(text: str) -> int:
    n = _count(text)
    if n < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return n


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    return int(text)


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--report", metavar="FILE.md",
                   help="write an incident report in Markdown, its charts beside it (in "
                        "FILE-charts/, or --plots)")
    p.add_argument("--html", metavar="FILE.html",
                   help="write the report as one self-contained HTML file, charts inlined")
    p.add_argument("--plots", metavar="DIR", help="write the charts as PNG files into DIR")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    _lean_start()
    _INTERRUPTED.clear()
    previous = signal.signal(signal.SIGINT, _on_interrupt)
    try:
        return {"analyze": _analyze, "report": _report, "check": _check}[args.command](args)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: still no traceback
        print("pcapstate: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (| head): nothing left to say
        return 0
    finally:
        signal.signal(signal.SIGINT, previous)


#: Ctrl-C was pressed. Python loses a KeyboardInterrupt raised while a finalizer runs (and
#: numba, compiling on a first run, runs many), so long work also checks this between steps.
_INTERRUPTED = threading.Event()


#: Set while an analysis can stop early and still report: the first Ctrl-C then only asks
#: it to stop (analyze's `stop`); a second one interrupts.
_SOFT = threading.Event()


def _on_interrupt(signum: int, frame: object) -> None:
    if _SOFT.is_set() and not _INTERRUPTED.is_set():
        _INTERRUPTED.set()
        print("\npcapstate: stopping: the summary of what was read follows (Ctrl-C again to "
              "quit at once)", file=sys.stderr)
        return
    _INTERRUPTED.set()
    raise KeyboardInterrupt


def _check_interrupt() -> None:
    if _INTERRUPTED.is_set() and not _SOFT.is_set():
        raise KeyboardInterrupt


def _lean_start() -> None:
    """Spare the command 0.2 s of start-up and two idle thread pools: pcapstate does no
    linear algebra, but numba imports SciPy's BLAS, if it is installed, to find out whether
    it could, and NumPy's BLAS starts a thread per core. Only the command does this; a
    program that imports pcapstate keeps both."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if "scipy" not in sys.modules:
        sys.modules.setdefault("scipy.linalg.cython_blas", None)  # type: ignore[arg-type]


def _announce_compiling() -> None:
    """Say so when numba compiles the engine (the first run after installing, and after an
    upgrade): otherwise the pause looks like a hang."""
    from numba.core import event

    class Once(event.Listener):
        said = False

        def on_start(self, ev: event.Event) -> None:
            if not self.said:
                self.said = True
                print("pcapstate: compiling the analysis engine (once after installing; "
                      "about 15 s)", file=sys.stderr, flush=True)

        def on_end(self, ev: event.Event) -> None:
            pass

    event.register("numba:compile", Once())


def _analyze(args: argparse.Namespace) -> int:
    from pcapstate.analyze import analyze
    from pcapstate.capture import CaptureError
    from pcapstate.report_text import render

    to_stdout = [o for o in ("json", "jsonl", "zeek_conn", "zeek_conn_json")
                 if getattr(args, o) == "-"]
    stdout_taken = bool(to_stdout)
    if len(to_stdout) > 1:
        return _error(" and ".join(f"--{o.replace('_', '-')} -" for o in to_stdout)
                      + " cannot both write to standard output")
    inputs = {os.path.realpath(p) for p in args.captures if p != "-"}
    for out in (args.json, args.jsonl, args.report, args.html, args.zeek_conn,
                args.zeek_conn_json):
        if out not in (None, "-") and os.path.realpath(out) in inputs:
            return _error(f"refusing to overwrite the input {out}")
    settings = dataclasses.replace(
        settings_for(args.time_wait, args.fin_timeout, args.stuck_after,
                     args.close_wait_after, args.max_connections),
        zeek_checksums=args.zeek_checksums)
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    if show_progress and args.engine != "plain":
        _announce_compiling()

    from pcapstate.output import PendingFile

    spool: TextIO | None = None  # --json's records, until the result around them is known
    pending: list[PendingFile] = []  # streamed outputs, renamed into place at the end
    sinks: list[Callable[[dict[str, Any]], object]] = []
    try:
        jsonl: TextIO | None = None
        if args.jsonl == "-":
            jsonl = sys.stdout
        elif args.jsonl:
            pending.append(PendingFile(args.jsonl))
            jsonl = pending[-1].file
        elif args.json:
            folder = None if args.json == "-" else os.path.dirname(os.path.abspath(args.json))
            spool = tempfile.TemporaryFile("w+", encoding="utf-8", dir=folder)  # noqa: SIM115
        lines = jsonl or spool
        if lines is not None:
            sinks.append(lambda rec: lines.write(json.dumps(rec, separators=(",", ":")) + "\n"))
        zeek_logs = _zeek_logs(args)
    except OSError as e:
        for f in pending:
            f.discard()
        return _error(f"cannot write {e.filename or args.jsonl or args.json}: {e.strerror}")
    pending += [f for _, f in zeek_logs if f is not None]

    def on_zeek(recs: list[dict[str, Any]]) -> None:
        for rec in recs:
            for log, _ in zeek_logs:
                log.write(rec)

    def on_record(rec: dict[str, Any]) -> None:
        for sink in sinks:
            sink(rec)

    try:
        _SOFT.set()  # a first Ctrl-C now stops the reading: the summary of what was read
        try:
            result = analyze(args.captures, settings, on_record=on_record if sinks else None,
                             on_zeek=on_zeek if zeek_logs else None,
                             progress=_Progress(show_progress), engine=args.engine,
                             stop=_INTERRUPTED.is_set)
        finally:
            _SOFT.clear()
        if _INTERRUPTED.is_set():
            return _interrupted(result, stdout_taken)
        for log, _ in zeek_logs:
            log.close()
        for f in pending:
            f.done()
        pending = []
        _check_interrupt()
        _capture_facts(result, args.argv, hashes=bool(args.json or args.report or args.html
                                                       or args.plots))
        if args.cross_check:
            from pcapstate.crosscheck import cross_check

            result["cross_check"] = cross_check(args.captures, settings)
        if args.json == "-":
            write_json(sys.stdout, result, spool)
        elif args.json:
            try:
                write_atomic(args.json, lambda f: write_json(f, result, spool))
            except OSError as e:
                return _error(f"cannot write {args.json}: {e.strerror}")
    except CaptureError as e:
        if _INTERRUPTED.is_set():  # tshark, say, got the Ctrl-C too
            print("pcapstate: interrupted", file=sys.stderr)
            return 130
        return _error(str(e))
    finally:
        if show_progress:
            sys.stderr.write("\r\033[K")
        for f in pending:  # not finished: no half-written file left behind
            f.discard()
        if spool is not None:
            spool.close()

    if args.report or args.html or args.plots:
        failed = _reports(args, result)
        if failed:
            return failed
    if not args.quiet:
        (sys.stderr if stdout_taken else sys.stdout).write(render(result))
    if args.cross_check:
        from pcapstate.crosscheck import text

        (sys.stderr if stdout_taken else sys.stdout).write(text(result["cross_check"]))
        if result["cross_check"]["disagreements"]:
            return 1
    for w in result["warnings"]:
        if args.quiet or stdout_taken:
            print(f"pcapstate: warning: {w}", file=sys.stderr)
    failing = [f for f in result["findings"] if f["state"] in {s.value for s in args.fail_on}]
    if failing:
        print(f"pcapstate: failing: {sum(f['count'] for f in failing)} endpoint(s) stuck in "
              f"{', '.join(sorted({f['state'] for f in failing}))}", file=sys.stderr)
        return 1
    return 0


def _interrupted(result: dict[str, Any], stdout_taken: bool) -> int:
    """Ctrl-C during the reading: the summary of what was read, no file written."""
    from pcapstate.report_text import render

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: still no traceback
    (sys.stderr if stdout_taken else sys.stdout).write(render(result))
    print("pcapstate: interrupted: the summary above covers the records read until then; "
          "no file was written", file=sys.stderr)
    return 130


def _zeek_logs(args: argparse.Namespace) -> list[tuple[Any, Any]]:
    """The Zeek conn.log writers asked for, each with its pending file (None: stdout)."""
    from pcapstate.output import PendingFile
    from pcapstate.zeeklog import ConnLog

    logs: list[tuple[ConnLog, PendingFile | None]] = []
    for path, as_json in ((args.zeek_conn, False), (args.zeek_conn_json, True)):
        if path == "-":
            logs.append((ConnLog(sys.stdout, as_json, args.zeek_local_nets), None))
        elif path:
            pending = PendingFile(path)
            logs.append((ConnLog(pending.file, as_json, args.zeek_local_nets), pending))
    return logs


def _capture_facts(result: dict[str, Any], argv: list[str], hashes: bool) -> None:
    """What a report states beyond the analysis: the command line and, if `hashes`, each
    file's sha256 (a saved result names the very files it came from)."""
    import hashlib

    result["command_line"] = shlex.join(["pcapstate", *argv])
    for f in result["inputs"]:
        if not hashes:
            continue
        f["sha256"] = None
        if f["path"] != "-":
            try:
                with open(f["path"], "rb") as stream:
                    f["sha256"] = hashlib.file_digest(stream, "sha256").hexdigest()
            except OSError:
                pass


def _check(args: argparse.Namespace) -> int:
    """`pcapstate check CORPUS...`."""
    import time

    from pcapstate import check
    from pcapstate.corpus import CorpusError, entries

    override: dict[str, Any] = {}
    for key in ("time_wait", "fin_timeout", "stuck_after", "close_wait_after",
                "time_tolerance", "max_close_wait", "max_connections"):
        if getattr(args, key) is not None:
            override[key.replace("_", "-")] = getattr(args, key)
    if args.fail_on is not None:
        override["fail-on"] = [st.value for st in args.fail_on]
    for out in (args.junit, args.json):
        if out not in (None, "-") and os.path.isdir(out):
            return _error(f"{out} is a folder")
    try:
        corpus = entries(args.corpus, override)
    except CorpusError as e:
        return _error(str(e))
    if not corpus:
        return _error(f"no capture in {', '.join(args.corpus)}")
    show = sys.stderr.isatty() if args.progress is None else args.progress
    started = time.perf_counter()
    try:
        outcomes = check.run(corpus, update=args.update, jobs=args.jobs or check.jobs(corpus),
                             dask=args.dask,
                             progress=_CheckProgress(show))
        _check_interrupt()
    except ImportError as e:
        return _error(f"--dask needs dask.distributed ({e.name} is missing): "
                      "pip install 'pcapstate[dask]'")
    except (check.DaskError, OSError, TimeoutError) as e:
        return _error(f"Dask cluster {args.dask}: {e}" if args.dask else str(e))
    finally:
        if show:
            sys.stderr.write("\r\033[K")
    elapsed = time.perf_counter() - started
    try:
        if args.junit:
            xml = check.junit(outcomes)
            write_atomic(args.junit, lambda f: f.write(xml))
        if args.json and args.json != "-":
            doc = json.dumps(check.to_json(outcomes), indent=1) + "\n"
            write_atomic(args.json, lambda f: f.write(doc))
    except OSError as e:
        return _error(f"cannot write {e.filename}: {e.strerror}")
    if args.json == "-":
        sys.stdout.write(json.dumps(check.to_json(outcomes), indent=1) + "\n")
    (sys.stderr if args.json == "-" else sys.stdout).write(
        check.text(outcomes, elapsed, args.verbose))
    statuses = {o.status for o in outcomes}
    return 2 if "error" in statuses else 1 if "failed" in statuses else 0


class _CheckProgress:
    def __init__(self, show: bool) -> None:
        self.show = show

    def __call__(self, done: int, total: int) -> None:
        _check_interrupt()
        if not self.show:
            return
        width = 30
        bar = "#" * (width * done // total)
        sys.stderr.write(f"\rchecking [{bar:<{width}}] {done}/{total} captures")
        sys.stderr.flush()


def _report(args: argparse.Namespace) -> int:
    """`pcapstate report RESULT.json`."""
    from pcapstate.analyze import SCHEMA

    if not (args.report or args.html or args.plots):
        return _error("nothing to write: give --report FILE.md, --html FILE.html or "
                      "--plots DIR")
    name = "standard input" if args.result == "-" else args.result
    if os.path.realpath(args.result) in {os.path.realpath(p) for p in (args.report, args.html)
                                         if p}:
        return _error(f"refusing to overwrite the input {args.result}")
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
    except ValueError as e:
        return _error(f"{name} is not valid JSON ({e})")
    schema = result.get("schema") if isinstance(result, dict) else None
    if schema != SCHEMA:
        return _error(f"{name} is not a pcapstate result" if schema is None else
                      f"{name} is a {schema} result; this pcapstate reads {SCHEMA}")
    try:
        return _reports(args, result)
    except (KeyError, TypeError) as e:
        return _error(f"{name} lacks what a report needs ({e}): written by pcapstate "
                      f"{result.get('pcapstate_version')}; analyse the capture again")


def _reports(args: argparse.Namespace, result: dict[str, Any]) -> int:
    """Write the Markdown and HTML reports and the charts; 0, or 2 when one cannot be
    written."""
    from pcapstate import charts, report

    plots = args.plots
    if plots is None and args.report:
        plots = os.path.splitext(args.report)[0] + "-charts"
    listed = charts.charts(result)
    images = {name: charts.png(draw()) for name, _, draw in listed}
    drawn = [(name, title) for name, title, _ in listed]
    target = ""
    try:
        if plots:
            if not os.path.isdir(plots):
                os.mkdir(plots)  # its parent must exist, as a report's folder must
            for name, data in images.items():
                write_atomic(os.path.join(plots, name), partial(_write, data=data), binary=True)
            target = plots
        if args.report:
            rel = os.path.relpath(plots, os.path.dirname(os.path.abspath(args.report)) or ".")
            target = args.report
            text = report.markdown(report.blocks(result, drawn), rel.replace(os.sep, "/"))
            write_atomic(args.report, lambda f: f.write(text))
        if args.html:
            target = args.html
            page = report.html(report.blocks(result, drawn), images)
            write_atomic(args.html, lambda f: f.write(page))
    except OSError as e:
        return _error(f"cannot write {target or plots}: {e.strerror}")
    return 0


def _write(f: Any, data: bytes) -> None:
    f.write(data)


class _Progress:
    """A one-line progress display on stderr, if `show`; a check for Ctrl-C either way."""

    def __init__(self, show: bool) -> None:
        self.show = show
        self.last = ""

    def __call__(self, done: int, total: int | None) -> None:
        _check_interrupt()
        if not self.show:
            return
        mib = done / 1048576
        line = (f"reading: {mib:,.0f} MiB of {total / 1048576:,.0f} MiB "
                f"({100 * done / total:.0f}%)" if total else f"reading: {mib:,.0f} MiB")
        if line != self.last:
            sys.stderr.write("\r" + line)
            sys.stderr.flush()
            self.last = line


def _error(message: str) -> int:
    print(f"pcapstate: error: {message}", file=sys.stderr)
    return 2
