"""`pcapstate check`: analyse every capture of a corpus, compare its stable facts with the
golden file kept beside it, and apply the corpus's policy.

The golden holds what must not change unnoticed: packet and connection counts, connections
by end kind and closer, the findings by service, the reader's warnings (a cut or corrupt
record, dropped packets; files named without their folder), and every connection (its
4-tuple, first timestamp, end kind, closer and both endpoints' final states). Timings are
compared within a tolerance; nothing volatile (paths, versions, run times) is kept.
"""

import ipaddress
import itertools
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pcapstate.check.corpus import Config, Entry
from pcapstate.derive.records import BRIEF_FIELDS
from pcapstate.partitions import same_version
from pcapstate.render.output import PendingFile
from pcapstate.render.text import count, seconds
from pcapstate.settings import Settings
from pcapstate.vocab import State
from pcapstate.words import inconclusive

SCHEMA = "pcapstate-golden/1"
CHECK_SCHEMA = "pcapstate-check/1"
MAX_LISTED = 20  # differences the terminal lists per capture (the rest are counted there;
#                  --json and --junit carry them all)


@dataclass(slots=True)
class Outcome:
    """What the check found for one capture."""

    entry: Entry
    status: str = "passed"  # passed, failed, updated, error
    connections: int | None = None
    packets: int | None = None
    differences: list[str] = field(default_factory=list)
    policy: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # the reader's, as in the golden
    error: str | None = None
    written: bool = False  # --update wrote a new or changed golden
    seconds: float = 0.0  # wall time of the analysis (JUnit only: not in --json)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.entry.name, "files": list(self.entry.files),
                "golden": self.entry.golden, "status": self.status,
                "connections": self.connections, "packets": self.packets,
                "differences": self.differences, "policy": self.policy,
                "warnings": self.warnings, "error": self.error, "golden_written": self.written}


def facts(files: list[str] | tuple[str, ...], settings: Settings) -> dict[str, Any]:
    """Analyse one capture and keep its stable facts: the golden file's content."""
    from pcapstate.pipeline import analyze

    conns: list[list[Any]] = []

    def keep(briefs: list[list[Any]]) -> None:
        for b in briefs:
            b[2] = round(b[2], 6)
        conns.extend(briefs)

    result = analyze(list(files), settings, on_brief=keep)
    conns.sort(key=lambda c: (c[2], c[0], c[1]))
    # the warnings name each file by its path here: keep only its name, so that the golden
    # does not depend on where the corpus is (or on a Dask worker's temporary folder)
    paths = sorted({p for f in files for p in (f, os.path.abspath(f))}, key=len, reverse=True)

    def local(warning: str) -> str:
        for path in paths:
            warning = warning.replace(path, os.path.basename(path))
        return warning

    return {
        "schema": SCHEMA,
        "files": [os.path.basename(f) for f in files],
        "settings": {k: result["settings"][k] for k in ("time_wait", "fin_timeout",
                                                         "stuck_after", "max_connections")},
        "records": result["accounting"]["records"],
        "tcp_segments": result["accounting"]["tcp_segments"],
        "connections": result["connections"]["total"],
        "evicted": result["connections"]["evicted"]["total"],
        "by_end_and_closer": result["connections"]["by_end_and_closer"],
        "anomalies": result["connections"]["anomalies"],
        "warnings": [local(w) for w in result["warnings"]],
        "tcp_unread": result["coverage"]["tcp_unread"],
        "findings": [{"state": f["state"], "service": f["service"], "role": f["role"],
                      **({"inferred": True} if f["inferred"] else {}),
                      "count": f["count"], "still_open": f["still_open"],
                      "oldest": round(f["oldest"], 6), "outcomes": f["outcomes"]}
                     for f in result["findings"]],
        "diagnoses": [{"name": d["name"], "service": d["service"], "side": d["side"],
                       "observed": d["observed"], "count": d["count"]}
                      for d in result["diagnoses"]],
        "connection_fields": list(BRIEF_FIELDS),
        "connection_list": conns,
    }


def golden_text(g: dict[str, Any]) -> str:
    """The golden as JSON, one connection a line (so that a diff of it reads well)."""
    head = {k: v for k, v in g.items() if k != "connection_list"}
    lines = [json.dumps(c, separators=(", ", ": ")) for c in g["connection_list"]]
    text = json.dumps(head, indent=1)[:-2] + ',\n "connection_list": ['
    return text + ("\n  " + ",\n  ".join(lines) + "\n ]" if lines else "]") + "\n}\n"


def compare(golden: dict[str, Any], got: dict[str, Any], tolerance: float) -> list[str]:
    """What changed, in words, each naming what it is about; empty when nothing did."""
    out = []
    if golden.get("schema") != SCHEMA:
        return [f"the golden is {golden.get('schema')!r}, not {SCHEMA}: write it again with "
                "--update"]
    for key, words in (("files", "files"), ("settings", "settings"), ("records", "records"),
                       ("tcp_segments", "TCP segments"), ("connections", "connections"),
                       ("evicted", "connections evicted from a full table")):
        if got[key] != golden[key]:
            out.append(f"{words}: {_show(got[key])}, expected {_show(golden[key])}")
    out += _counts("ended", _flat(got["by_end_and_closer"]), _flat(golden["by_end_and_closer"]))
    out += _counts("anomaly", got["anomalies"], golden["anomalies"])
    out += _warnings(got["warnings"], golden.get("warnings", []))
    out += _findings(got["findings"], golden["findings"], tolerance)
    if "diagnoses" in golden:  # a golden written before diagnoses does not say
        out += _counts("diagnosis", _diagnosed(got["diagnoses"]),
                       _diagnosed(golden["diagnoses"]))
    out += _connections(got["connection_list"], golden["connection_list"], tolerance)
    return out


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _flat(crossed: dict[str, dict[str, int]]) -> dict[str, int]:
    return {f"{kind}, closed first by {who}": n for kind, by in crossed.items()
            for who, n in by.items()}


def _counts(what: str, got: dict[str, int], want: dict[str, int]) -> list[str]:
    return [f"{what} {k}: {got.get(k, 0):,}, expected {want.get(k, 0):,}"
            for k in sorted(set(got) | set(want)) if got.get(k, 0) != want.get(k, 0)]


def _diagnosed(diagnoses: list[dict[str, Any]]) -> dict[str, int]:
    """Connections per diagnosis, service and side, seen or inferred, by name."""
    return {f"{d['name']} at {d['service']} ({d['side']} side"
            f"{'' if d['observed'] else ', inferred'})": d["count"] for d in diagnoses}


def _warnings(got: list[str], want: list[str]) -> list[str]:
    """Reader warnings that appeared or went away (a changed one does both)."""
    out = []
    for these, those, words in ((got, want, "not in the golden"),
                                (want, got, "in the golden, not given now")):
        extra = Counter(these) - Counter(those)
        for w in these:
            if extra[w]:
                extra[w] -= 1
                out.append(f"reader warning {words}: {w}")
    return out


def _findings(got: list[dict[str, Any]], want: list[dict[str, Any]],
              tolerance: float) -> list[str]:
    """A finding is one group: a state at a service, on its server or its clients' side,
    seen or inferred."""
    out = []
    old, new = ({(f["state"], f["service"], f["role"], f.get("inferred", False)): f
                 for f in fs} for fs in (want, got))
    for key in sorted(set(old) | set(new)):
        name = f"{key[0]} at {key[1]} ({key[2]}{', inferred' if key[3] else ''})"
        if key not in new:
            out.append(f"{name}: none stuck, expected {old[key]['count']:,}")
        elif key not in old:
            out.append(f"{name}: {new[key]['count']:,} stuck endpoints, expected none")
        else:
            g, w = new[key], old[key]
            for k in ("count", "still_open"):
                if g[k] != w[k]:
                    out.append(f"{name}: {k.replace('_', ' ')} {g[k]}, expected {w[k]}")
            if abs(g["oldest"] - w["oldest"]) > tolerance:
                out.append(f"{name}: oldest {seconds(g['oldest'])}, expected "
                           f"{seconds(w['oldest'])}")
            if g["outcomes"] != w["outcomes"]:
                out.append(f"{name}: outcomes {_show(g['outcomes'])}, expected "
                           f"{_show(w['outcomes'])}")
    return out


Key = tuple[str, str, int]


def keyed(conns: Iterable[Sequence[Any]]) -> dict[Key, Sequence[Any]]:
    """Connections (client, server, ...) by 4-tuple and instance on it (a port reused makes
    a second instance)."""
    seen: Counter[tuple[str, str]] = Counter()
    out = {}
    for c in conns:
        seen[(c[0], c[1])] += 1
        out[(c[0], c[1], seen[(c[0], c[1])])] = c
    return out


def connection_name(key: Key) -> str:
    return f"{key[0]} -> {key[1]}" + (f" (instance {key[2]})" if key[2] > 1 else "")


def _connections(got: list[list[Any]], want: list[list[Any]], tolerance: float) -> list[str]:
    if got == want:  # the usual case, at list speed
        return []
    new, old = keyed(got), keyed(want)
    out = []
    for key in sorted(set(new) | set(old),
                      key=lambda k: ((new.get(k) or old[k])[2], _endpoint(k[0]),
                                     _endpoint(k[1]), k[2])):
        name = connection_name(key)
        if key not in new:
            out.append(f"{name}: in the golden (ended {old[key][3]}), not found")
        elif key not in old:
            g = new[key]
            out.append(f"{name}: not in the golden (ended {g[3]}, closed first by {g[4]})")
        else:
            g, w = new[key], old[key]
            if abs(g[2] - w[2]) > tolerance:
                out.append(f"{name}: first seen {g[2] - w[2]:+.6f}s from the golden's time")
            for i, what in ((3, "ended"), (4, "closed first by"),
                            (5, "client final state"), (6, "server final state")):
                if g[i] != w[i]:
                    out.append(f"{name}: {what} {g[i]}, expected {w[i]}")
    return out


def _endpoint(name: str) -> tuple[int, int, int | str]:
    """An endpoint ("10.0.0.9:80", "[::1]:80") in address order: 10.0.0.9 before
    10.0.0.10, IPv4 before IPv6."""
    host, _, port = name.rpartition(":")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
        return address.version, int(address), int(port)
    except ValueError:
        return 9, 0, name


def policy(got: dict[str, Any], config: Config) -> list[str]:
    """Policy failures: stuck endpoints beyond what the corpus allows."""
    p = config.policy
    out = []
    close_wait = 0
    stuck: Counter[tuple[str, str, str]] = Counter()  # seen and inferred, together
    for f in got["findings"]:
        stuck[f["state"], f["service"], f["role"]] += f["count"]
    for (name, service, role), n in stuck.items():
        state = State(name)
        allowed = p.allowed(service, state)
        over = n - allowed
        if state is State.CLOSE_WAIT:
            close_wait += max(over, 0)
        if state in p.fail_on and over > 0:
            out.append(f"{n:,} endpoints stuck in {state} at {service} ({role})"
                       + (f", {allowed:,} allowed" if allowed else ""))
    found: Counter[tuple[str, str]] = Counter()
    for d in got.get("diagnoses", []):
        found[d["name"], d["service"]] += d["count"]
    for (name, service), n in found.items():
        allowed = p.allowed(service, name)
        if name in p.fail_on and n > allowed:
            out.append(f"{name} found in {n:,} connections at {service}"
                       + (f", {allowed:,} allowed" if allowed else ""))
    if p.max_close_wait is not None and close_wait > p.max_close_wait:
        out.append(f"{close_wait:,} endpoints stuck in CLOSE_WAIT beyond the allowances, at "
                   f"most {p.max_close_wait:,} allowed")
    unsure = inconclusive(got.get("records", 1), got.get("tcp_unread", False),
                          got.get("evicted", 0))
    if unsure and (p.fail_on or p.max_close_wait is not None):
        out.append(f"inconclusive: {'; '.join(unsure)}, so the policy cannot pass on this "
                   "capture")
    return out


def measure(files: list[str] | tuple[str, ...],
            settings: Settings) -> tuple[dict[str, Any] | str, float]:
    """The capture's facts, or why it could not be read; and the seconds it took."""
    import time

    from pcapstate.read.capture import CaptureError

    started = time.perf_counter()
    try:
        got: dict[str, Any] | str = facts(files, settings)
    except (CaptureError, OSError) as e:
        got = str(e)
    return got, time.perf_counter() - started


def judge(entry: Entry, got: dict[str, Any] | str, elapsed: float, update: bool) -> Outcome:
    """Compare the facts with the golden (or write it, with `update`) and apply the policy."""
    if isinstance(got, str):
        return Outcome(entry, status="error", error=got, seconds=elapsed)
    outcome = Outcome(entry, connections=got["connections"], packets=got["records"],
                      warnings=got["warnings"], policy=policy(got, entry.config), seconds=elapsed)
    if update:
        text = golden_text(got)
        try:
            unchanged = Path(entry.golden).read_text(encoding="utf-8") == text
        except OSError:
            unchanged = False
        if not unchanged:
            golden = PendingFile(entry.golden)  # never seen half written
            try:
                golden.file.write(text)
                golden.done()
            finally:
                golden.discard()
            outcome.status, outcome.written = "updated", True
    else:
        # the golden named as the capture is: relative to the corpus folder given
        shown = os.path.join(os.path.dirname(entry.name), os.path.basename(entry.golden))
        try:
            with open(entry.golden, encoding="utf-8") as f:
                outcome.differences = compare(json.load(f), got, entry.config.tolerance)
        except FileNotFoundError:
            outcome.differences = [f"no golden file {shown}: write it with pcapstate check "
                                   "--update"]
        except (OSError, ValueError, KeyError) as e:
            outcome.differences = [f"golden file {shown} is unreadable ({e}): write it again "
                                   "with --update"]
    if outcome.differences or outcome.policy:
        outcome.status = "failed"
    return outcome


#: Below this much capture, one process checks a corpus sooner than several could start.
PARALLEL_FROM = 64 << 20


def jobs(entries: list[Entry]) -> int:
    """How many processes to check `entries` with, by default: one per core (that this
    process may use), or one for a small corpus."""
    size = sum(os.path.getsize(f) for e in entries for f in e.files if os.path.isfile(f))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 1 if size < PARALLEL_FROM else min(cores or 1, len(entries))


def check_one(entry: Entry, update: bool) -> Outcome:
    if not entry.files:
        return Outcome(entry, status="failed", differences=[
            "a golden without its capture: restore the capture, or delete the golden if the "
            "capture was removed on purpose"])
    return judge(entry, *measure(entry.files, entry.config.settings), update)


def run(entries: list[Entry], update: bool, jobs: int, dask: str | None,
        progress: Callable[[int, int], None]) -> list[Outcome]:
    """Check every entry; the outcomes in the entries' order, whatever ran where. Captures
    are checked in this process (jobs=1) or in `jobs` processes, or analysed on a Dask
    cluster and judged here (where the goldens are)."""
    done: Iterator[tuple[int, Outcome]]
    if dask:
        done = itertools.chain(
            ((i, check_one(e, update)) for i, e in enumerate(entries) if not e.files),
            ((i, judge(entries[i], got, elapsed, update))
             for i, (got, elapsed) in _on_dask(entries, dask)))
    elif jobs > 1 and len(entries) > 1:
        done = _in_processes(entries, update, jobs)
    else:
        done = ((i, check_one(e, update)) for i, e in enumerate(entries))
    outcomes: list[Outcome | None] = [None] * len(entries)
    progress(0, len(entries))
    for n, (i, outcome) in enumerate(done, 1):
        outcomes[i] = outcome
        progress(n, len(entries))
    return [o for o in outcomes if o is not None]


def _in_processes(entries: list[Entry], update: bool,
                  jobs: int) -> Iterator[tuple[int, Outcome]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: a worker starts clean, not as a copy of a process that may hold threads
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(jobs, len(entries)), mp_context=context,
                             initializer=_leave_interrupts) as pool:
        futures = {pool.submit(_in_worker, e, update): i for i, e in enumerate(entries)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:  # Ctrl-C, SIGTERM: stop the workers now, not after the corpus
            pool.shutdown(wait=False, cancel_futures=True)
            children = multiprocessing.active_children()
            for child in children:
                child.terminate()
            for child in children:  # each removes the golden it was writing as it ends: not
                child.join(timeout=1.0)  # left for after this process (CI saw one left)
            raise


class _Stopped(BaseException):
    """In a worker: the parent sent SIGTERM."""


def _leave_interrupts() -> None:
    """In a worker: Ctrl-C is the parent's to handle (it stops the workers); SIGTERM, which
    the parent sends them then, unwinds the worker's capture (a golden being written is
    removed), and the worker ends (_in_worker)."""
    import signal

    def stopped(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the pool may send it again
        raise _Stopped

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stopped)


def _in_worker(entry: Entry, update: bool) -> Outcome:
    """check_one in a worker process, which ends (not only its capture) on SIGTERM: the
    pool would hand it the next capture."""
    try:
        return check_one(entry, update)
    except _Stopped:
        os._exit(143)


def _on_dask(entries: list[Entry],
             address: str) -> Iterator[tuple[int, tuple[dict[str, Any] | str, float]]]:
    """On an existing Dask cluster: each capture's bytes go to a worker, which need not see
    this machine's files, and its facts come back, with the capture's index in `entries`
    (an entry without files is left out)."""
    from distributed import Client, as_completed

    with Client(address) as client:
        same_version(client)
        futures = {client.submit(_remote_measure, [(f, Path(f).read_bytes()) for f in e.files],
                                 e.config.settings, pure=False): i
                   for i, e in enumerate(entries) if e.files}
        for future, got in as_completed(futures, with_results=True):
            yield futures[future], got


def _remote_measure(payload: list[tuple[str, bytes]],
                    settings: Settings) -> tuple[dict[str, Any] | str, float]:
    """On a Dask worker: `measure` of a capture sent as (its path there, its bytes)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pcapstate-") as tmp:
        files = []
        for i, (path, data) in enumerate(payload):
            files.append(os.path.join(tmp, str(i), os.path.basename(path)))
            os.mkdir(os.path.dirname(files[-1]))
            with open(files[-1], "wb") as f:
                f.write(data)
        got, elapsed = measure(files, settings)
        if isinstance(got, str):  # name the files as the caller knows them
            for (path, _), local in zip(payload, files, strict=True):
                got = got.replace(local, path)
        return got, elapsed


def summary(outcomes: list[Outcome]) -> dict[str, int]:
    counts = Counter(o.status for o in outcomes)
    return {"captures": len(outcomes), **{k: counts[k] for k in
                                          ("passed", "failed", "error", "updated")}}


def to_json(outcomes: list[Outcome]) -> dict[str, Any]:
    """The check's result: the same bytes whether it ran serially, in processes or on Dask
    (no run times, no host names)."""
    return {"schema": CHECK_SCHEMA, "captures": [o.to_json() for o in outcomes],
            "summary": summary(outcomes)}


def junit(outcomes: list[Outcome]) -> str:
    """JUnit XML: one test case per capture; a failure carries every difference and
    policy failure, an error the reason the capture could not be read, <system-err> the
    reader's warnings."""
    import xml.etree.ElementTree as ET

    s = summary(outcomes)
    total = f"{sum(o.seconds for o in outcomes):.3f}"
    counts = {"tests": str(s["captures"]), "failures": str(s["failed"]),
              "errors": str(s["error"])}
    suites = ET.Element("testsuites", {"name": "pcapstate check", "time": total, **counts})
    suite = ET.SubElement(suites, "testsuite", {"name": "pcapstate check", "skipped": "0",
                                                "time": total, **counts})
    for o in outcomes:
        case = ET.SubElement(suite, "testcase", classname="pcapstate.check",
                             name=o.entry.name, time=f"{o.seconds:.3f}")
        if o.status == "error":
            ET.SubElement(case, "error", message=o.error or "", type="unreadable").text = o.error
        elif o.status == "failed":
            lines = o.differences + [f"policy: {p}" for p in o.policy]
            ET.SubElement(case, "failure", message=lines[0],
                          type="difference" if o.differences else "policy").text = \
                "\n".join(lines)
        elif o.status == "updated":
            ET.SubElement(case, "system-out").text = f"golden written: {o.entry.golden}"
        if o.warnings:
            ET.SubElement(case, "system-err").text = "\n".join(
                f"warning: {w}" for w in o.warnings)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


def text(outcomes: list[Outcome], elapsed: float, verbose: bool = False) -> str:
    """For people: every capture that failed, could not be read, got a new golden or had
    reader warnings (every capture with `verbose`), what changed under it (the first
    MAX_LISTED differences), then one summary line."""
    out = []
    for o in outcomes:
        if o.status == "passed" and not o.warnings and not verbose:
            continue
        label = {"passed": "ok", "failed": "FAILED", "error": "ERROR",
                 "updated": "updated"}[o.status]
        if o.connections is None:
            what = o.error or "no capture"
        else:
            what = count(o.connections, "connection") + (", golden written" if o.written else "")
        out.append(f"{label:<8}{o.entry.name}: {what}")
        out += [f"          warning: {w}" for w in o.warnings]
        out += [f"          {d}" for d in o.differences[:MAX_LISTED]]
        if len(o.differences) > MAX_LISTED:
            out.append(f"          ... and {len(o.differences) - MAX_LISTED:,} more "
                       "differences (--json and --junit list them all)")
        out += [f"          policy: {p}" for p in o.policy]
    s = summary(outcomes)
    packets = sum(o.packets or 0 for o in outcomes)
    parts = [f"{s['passed']:,} passed", f"{s['failed']:,} failed"]
    parts += [f"{s[k]:,} {k if k == 'updated' else 'unreadable'}" for k in ("updated", "error")
              if s[k]]
    warned = sum(1 for o in outcomes if o.warnings)
    if warned:
        parts.append(f"{warned:,} with reader warnings")
    out.append(f"{count(s['captures'], 'capture')}: {', '.join(parts)} ({packets:,} packets "
               f"in {seconds(elapsed)})")
    return "\n".join(out) + "\n"
