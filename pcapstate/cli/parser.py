"""The command line's grammar: the commands, their options and the types of their values;
a usage error is one line with a hint."""

import argparse
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, NoReturn, TypeVar

from pcapstate import __version__
from pcapstate.settings import MAX_CONNECTIONS
from pcapstate.settings import duration as _duration
from pcapstate.vocab import DIAGNOSIS_NAMES, STATE_NAMES, stuck_states

if TYPE_CHECKING:
    from pcapstate.render.zeeklog import Network

T = TypeVar("T")


def _value(parse: Callable[[str], T]) -> Callable[[str], T]:
    """`parse` as an option's type: the ValueError it raises is the usage error's words."""
    def value(text: str) -> T:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return value


def _whole(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"not a whole number: {text!r}")
    return int(text)


def _positive(text: str) -> int:
    n = _whole(text)
    if n < 1:
        raise ValueError("must be 1 or more")
    return n


def _nets(text: str) -> "list[Network]":
    # imported here: the conn.log's module imports NumPy, which the command must not import
    # before cli._lean_start
    from pcapstate.render.zeeklog import local_nets

    return local_nets(text)


duration = _value(_duration)  # '10s', '500ms', '2m', '1h' or plain seconds
fail_on = _value(partial(stuck_states, diagnoses=True))
_count, _jobs, _local_nets = _value(_whole), _value(_positive), _value(_nets)


MAX_CONNECTIONS_HELP = ("follow at most N connections at once: beyond it, each new one "
                        "evicts one (finished ones first, then handshake attempts in a "
                        "flood or quiet for 1s, then the least recently active), counted "
                        "and reported")


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, with a hint, not the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"pcapstate: error: {message} (try: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
                   help="pcap or pcapng file, optionally compressed (gzip, bzip2, xz, zstd); "
                        "several files are one capture, ordered by time; '-' reads standard "
                        "input")
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
                   help=MAX_CONNECTIONS_HELP + f" (default: {MAX_CONNECTIONS:,}, about 0.75 GB "
                        "in all, 1.3 GB with Zeek's view; 0: no limit)")
    a.add_argument("--fail-on", type=fail_on, metavar="NAMES", default=[],
                   help="exit 1 if any endpoint is stuck in one of these states, or one of "
                        "these diagnoses is found (comma-separated: "
                        f"{', '.join(STATE_NAMES)}, or any (every state); "
                        f"{', '.join(DIAGNOSIS_NAMES)}); exit 3 if none is but records "
                        "that may hold TCP were not decoded, connections were evicted from "
                        "the full table (--max-connections), or there were no packets")
    a.add_argument("--ss", action="append", metavar="FILE[@TIME]", default=[],
                   help="the sockets a host listed during the incident (ss -tanp, or "
                        "netstat -tanp), taken at TIME (seconds since 1970 or ISO 8601; or "
                        "a line '# taken at TIME' in the file): joined to the connections by "
                        "4-tuple, compared with their states then; repeatable")
    a.add_argument("-q", "--quiet", action="store_true", help="no terminal summary")
    a.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show progress on stderr (default: when stderr is a terminal)")
    _report_options(a)
    a.add_argument("--engine", choices=["fast", "tshark", "auto"], default="fast",
                   help="the decoder: fast, compiled (default; with a slow path for tunnels, "
                        "fragments and rarer link types); tshark: Wireshark's dissectors "
                        "(802.11, any link type Wireshark reads), much slower; auto: fast, "
                        "with tshark decoding only the frames neither path reads. Either "
                        "feeds the same state machine")
    a.add_argument("--zeek", action="store_true",
                   help="follow each connection as Zeek sees it too, and count Zeek's "
                        "conn_states in the summary (implied by --zeek-conn, "
                        "--zeek-conn-json, --json, --jsonl, --parquet and --ss, whose "
                        "records hold Zeek's view, and by --zeek-bare and --zeek-checksums; "
                        "off otherwise: about 550 bytes less per live connection, and "
                        "faster)")
    a.add_argument("--zeek-conn", metavar="FILE",
                   help="write a Zeek conn.log (Zeek's TSV format, header lines included) "
                        "with Zeek's conn_state and history ('-' for standard output)")
    a.add_argument("--zeek-conn-json", metavar="FILE",
                   help="the same conn.log as JSON Lines, as Zeek writes JSON logs ('-' for "
                        "standard output)")
    a.add_argument("--parquet", metavar="FILE",
                   help="write one row per connection to a Parquet file, in row groups as "
                        "connections retire: the records' fields as columns, for DuckDB, "
                        "pandas or Polars (needs pyarrow: pip install 'pcapstate[parquet]')")
    a.add_argument("--zeek-checksums", action="store_true",
                   help="check TCP checksums for Zeek's view, as Zeek does unless run with "
                        "-C: a segment with a wrong one only adds C to the history (off by "
                        "default: captures taken on a sending host have wrong checksums "
                        "where the card computes them)")
    a.add_argument("--zeek-local-nets", type=_local_nets, metavar="CIDR,...",
                   default="private",
                   help="the local networks, as Zeek's Site::local_nets, for the conn.log's "
                        "local_orig and local_resp: 'private' (the default) is Zeek's "
                        "private address space, local in Zeek 6.0 and later; give networks "
                        "(with 'private' to keep it, as Zeek does); 'none' leaves both unset, "
                        "as Zeek before 6.0")
    a.add_argument("--zeek-bare", action="store_true",
                   help="Zeek's view as `zeek -b` loading base/protocols/conn alone: no "
                        "likely server ports, so the first packet's sender is the originator")
    a.add_argument("--cross-check", action="store_true",
                   help="also run the fast and the tshark engines and list every connection "
                        "where they, or pcapstate's and Wireshark's retransmission and "
                        "keep-alive counts, disagree (exit 1 if any)")
    a.add_argument("--dask", metavar="ADDRESS",
                   help="split the connection table across an existing Dask cluster "
                        "(tcp://scheduler:8786) by a hash of the 4-tuple, for a capture "
                        "with more live connections than one machine holds: every worker "
                        "reads the capture (by the same paths: a shared file system) and "
                        "follows its share of the connections; the result is the same "
                        "unless a part's table fills (needs pcapstate[dask])")
    a.add_argument("--partitions", type=_jobs, metavar="N",
                   help="with --dask: the table's parts (default: one per worker); "
                        "--max-connections holds in each")
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
                        ".gz, .bz2, .xz or .zst) or a capture file")
    c.add_argument("--update", action="store_true",
                   help="write or refresh the golden files instead of comparing")
    c.add_argument("-j", "--jobs", type=_jobs, metavar="N",
                   help="analyse N captures at a time, in N processes (default: one per "
                        "core, or 1 when the corpus is under 64 MiB: a process takes about "
                        "0.4 s to start)")
    c.add_argument("--dask", metavar="ADDRESS",
                   help="analyse on an existing Dask cluster (tcp://scheduler:8786); the "
                        "captures are sent to the workers (needs pcapstate[dask])")
    c.add_argument("--fail-on", type=fail_on, metavar="NAMES",
                   help="fail a capture with endpoints stuck in these states, or these "
                        "diagnoses, beyond its allowances "
                        f"({', '.join(STATE_NAMES)}, or any; {', '.join(DIAGNOSIS_NAMES)})")
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
    parser.commands = {"analyze": a, "report": r, "check": c}  # type: ignore[attr-defined]
    return parser



def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--report", metavar="FILE.md",
                   help="write an incident report in Markdown, its charts beside it (in "
                        "FILE-charts/, or --plots); '-' for standard output, with no charts "
                        "unless --plots")
    p.add_argument("--html", metavar="FILE.html",
                   help="write the report as one self-contained HTML file, charts inlined")
    p.add_argument("--plots", metavar="DIR", help="write the charts as PNG files into DIR")
