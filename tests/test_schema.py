"""The result's schema (pcapstate/schema.py): `pcapstate report` on a damaged result names
the first bad field by its JSON path, in one line, exit 2; every result analyze writes
fits the schema; whatever fits it, the report can render."""

import copy
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from pcapstate.cli import main
from pcapstate.pipeline import analyze
from pcapstate.schema import MAX_BIN, RECORD, TIMELINE_BINS, check, problem
from tests.test_samples import EXPECTED, captures

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
LEAK = SAMPLES / "close_wait_leak.pcap"
pytestmark = pytest.mark.skipif(not LEAK.exists(), reason="kernel samples not made")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Any]:
    """The result `pcapstate analyze samples/close_wait_leak.pcap --json` writes, records
    and all."""
    path = tmp_path_factory.mktemp("saved") / "result.json"
    assert main(["analyze", str(LEAK), "--json", str(path), "-q"]) == 0
    return json.loads(path.read_text())


def test_the_saved_result_fits(saved):
    assert problem(saved) is None
    assert len(saved["connection_records"]) == 5 and saved["command_line"]
    assert saved["inputs"][0]["sha256"]


def _set(result: dict[str, Any], path: tuple, value: Any) -> None:
    *parents, last = path
    node = result
    for p in parents:
        node = node[p]
    if value is _GONE:
        del node[last]
    else:
        node[last] = value


_GONE = object()

# (what is damaged, the value put there, the line the report prints after "result.json: ")
DAMAGE = [
    (("findings", 0, "count"), "many",
     'findings[0].count: expected a whole number (0 or more), got "many"'),
    (("durations",), None, "durations: expected an object, got null"),
    (("capture", "first_ts"), 1e300,
     "capture.first_ts: expected a timestamp (seconds since 1970, before the year 10000), "
     "got 1e+300"),
    (("findings", 0, "examples", 1, "peer"), "127.0.0.1",
     'findings[0].examples[1].peer: expected an address (ip:port, or [ip]:port for IPv6), '
     'got "127.0.0.1"'),
    (("vantage",), _GONE, "vantage: missing"),
    (("findings", 0, "examples", 0, "since"), _GONE, "findings[0].examples[0].since: missing"),
    (("settings",), [60, 60], "settings: expected an object, got a list"),
    (("findings",), {"state": "CLOSE_WAIT"}, "findings: expected a list, got an object"),
    (("findings", 0, "oldest"), math.nan,
     "findings[0].oldest: expected a number of seconds (0 to 253402300800), got NaN"),
    (("timeline", "start"), math.inf,
     "timeline.start: expected a timestamp (seconds since 1970, before the year 10000), "
     "got Infinity"),
    (("capture", "end_ts"), -5.0,
     "capture.end_ts: expected a timestamp (seconds since 1970, before the year 10000), "
     "got -5.0"),
    (("accounting", "records"), True,
     "accounting.records: expected a whole number (0 or more), got true"),
    (("connections", "total"), 5.5,
     "connections.total: expected a whole number (0 or more), got 5.5"),
    (("connections", "total"), 10**30,
     "connections.total: expected a whole number (0 or more), got "
     "1000000000000000000000000000000"),
    (("vantage", "estimate"), "nearby",
     'vantage.estimate: expected a vantage estimate (client, server, between, mixed, '
     'unknown), got "nearby"'),
    (("findings", 0, "state"), "ESTABLISHED",
     'findings[0].state: expected a stuck state (CLOSE_WAIT, FIN_WAIT_2, LAST_ACK, CLOSING, '
     'SYN_RCVD, SYN_SENT), got "ESTABLISHED"'),
    (("durations", "LISTENING"), {},
     'durations.LISTENING: expected a key that is a TCP state (CLOSED, SYN_SENT, SYN_RCVD, '
     'ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT), got '
     '"LISTENING"'),
    (("durations", "CLOSE_WAIT", "histogram", "right", "100000000"), 1,
     f'durations.CLOSE_WAIT.histogram.right["100000000"]: expected a key that is a '
     f'histogram bin (-1 to {MAX_BIN}), got "100000000"'),
    (("timeline", "states", "CLOSE_WAIT"), [1] * (TIMELINE_BINS + 1),
     "timeline.states.CLOSE_WAIT: expected at most 2,048 items, got 2,049"),
    (("timeline", "states", "CLOSE_WAIT"), [],
     "timeline.states.CLOSE_WAIT: expected at least 1 item, got 0"),
    (("findings", 0, "examples"), [],
     "findings[0].examples: expected at least 1 item, got 0"),
    (("inputs", 0, "path"), 7, "inputs[0].path: expected a string, got 7"),
    (("connection_records", 2, "endpoints", "server", "transitions", 1, "state"), "OPEN",
     'connection_records[2].endpoints.server.transitions[1].state: expected a TCP state '
     '(CLOSED, SYN_SENT, SYN_RCVD, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, '
     'CLOSING, LAST_ACK, TIME_WAIT), got "OPEN"'),
    (("connections", "by_end_and_closer"), {},
     'connections.by_end_and_closer: missing "half_closed", which connections.by_end '
     'counts'),
    (("warnings",), ["x" * 100, 3], "warnings[1]: expected a string, got 3"),
]


@pytest.mark.parametrize(("where", "value", "says"), DAMAGE,
                         ids=[f"{'.'.join(map(str, d[0]))}={d[1]!r}"[:60] for d in DAMAGE])
def test_a_damaged_result_names_its_first_bad_field(tmp_path, capsys, saved, where, value,
                                                    says):
    damaged = copy.deepcopy(saved)
    _set(damaged, where, value)
    path = tmp_path / "result.json"
    path.write_text(json.dumps(damaged))  # NaN and Infinity as Python writes them
    out = tmp_path / "r.md"
    assert main(["report", str(path), "--report", str(out), "--html",
                 str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err == f"pcapstate: error: {path}: {says}\n"
    assert not out.exists() and not (tmp_path / "r.html").exists()
    assert not (tmp_path / "r-charts").exists() or not any((tmp_path / "r-charts").iterdir())


def test_the_first_bad_field_is_named_when_there_are_several(saved):
    damaged = copy.deepcopy(saved)
    damaged["findings"][0]["examples"][3]["duration"] = "long"
    damaged["findings"][0]["count"] = "many"
    damaged["timeline"] = None
    assert problem(damaged) == 'findings[0].count: expected a whole number (0 or more), ' \
                               'got "many"'


def test_an_unknown_key_is_allowed_and_optional_keys_may_go(saved):
    """New fields may be added within a version; what only some runs write may be absent."""
    result = copy.deepcopy(saved)
    result["added_later"] = {"anything": [1, "x"]}
    result["findings"][0]["examples"][0]["note"] = None
    for key in ("command_line", "connection_records"):
        del result[key]
    del result["inputs"][0]["sha256"]
    assert problem(result) is None


def sample_results() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for expected in EXPECTED:
        records: list[dict[str, Any]] = []
        result = analyze(captures(expected), on_record=records.append)
        result["connection_records"] = records
        out.append((expected.name.removesuffix(".expected.json"), result))
    return out


def test_every_sample_result_fits_the_schema():
    """What analyze writes for every sample, records included, fits the schema: the schema
    cannot drift from the output (a field renamed or retyped fails here)."""
    results = sample_results()
    assert len(results) >= 17
    for name, result in results:
        assert problem(json.loads(json.dumps(result))) is None, name
        for record in result["connection_records"]:
            check(json.loads(json.dumps(record)), RECORD)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_the_tshark_engine_and_cross_check_fit_the_schema(tmp_path):
    path = tmp_path / "r.json"
    assert main(["analyze", str(SAMPLES / "close_wait_reset.pcap"), "--engine", "tshark",
                 "--cross-check", "--json", str(path), "-q"]) == 0
    result = json.loads(path.read_text())
    assert "wireshark_analysis" in result["connections"] and "cross_check" in result
    assert "wireshark_analysis" in result["connection_records"][0]
    assert problem(result) is None


def _leaves(node: Any, path: tuple = ()) -> list[tuple]:
    """Every value's path in a result: objects whole, lists by their first item only."""
    if isinstance(node, dict):
        return [path] + [p for k, v in node.items() for p in _leaves(v, (*path, k))]
    if isinstance(node, list):
        return [path] + (_leaves(node[0], (*path, 0)) if node else [])
    return [path]


#: What each chart draws from (charts.py).
CHART_INPUTS = {"durations.png": ("durations",), "states_over_time.png": ("timeline",),
                "close_wait.png": ("findings", "capture"), "endings.png": ("connections",)}


def test_whatever_fits_the_schema_renders(saved):
    """Each field of a real result replaced in turn by a value of another kind: either the
    schema refuses it, or the report (Markdown, HTML and every chart) renders it."""
    from matplotlib import pyplot as plt

    from pcapstate import charts, report

    base = copy.deepcopy(saved)  # kept small, so that it takes seconds: one state's
    del base["connection_records"]  # durations (a chart panel takes 0.1 s), 3 time bins
    base["durations"] = {"CLOSE_WAIT": base["durations"]["CLOSE_WAIT"]}
    base["timeline"]["states"] = {k: v[:3] for k, v in base["timeline"]["states"].items()}
    assert problem(base) is None
    rendered = refused = 0
    for where in _leaves(base):
        if not where:
            continue
        for value in ("x", None, [], {}, -1, 0, 10**25, 1e300, math.nan, True):
            damaged = copy.deepcopy(base)
            _set(damaged, where, value)
            damaged = json.loads(json.dumps(damaged))
            if problem(damaged) is not None:
                refused += 1
                continue
            rendered += 1
            listed = charts.charts(damaged)
            blocks = report.blocks(damaged, [(n, t) for n, t, _ in listed])
            report.markdown(blocks, "r-charts")
            report.html(blocks, {})
            for name, _, draw in listed:  # the charts drawn from what was damaged
                if where[0] in CHART_INPUTS[name]:
                    plt.close(draw())
    assert refused > 1000 and rendered > 100, (refused, rendered)
