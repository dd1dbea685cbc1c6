"""The result's schema (pcapstate/result.schema.json, checked by pcapstate/schema.py):
`pcapstate report` on a damaged result names the first bad field by its JSON path, in one
line, exit 2; every result analyze writes fits the schema; the schema file is valid JSON
Schema and keeps step with the vocabulary and the engine's limits; whatever fits it, the
report can render."""

import copy
import json
import math
import re
import shutil
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from pcapstate.cli import main
from pcapstate.derive.diagnoses import CATALOGUE
from pcapstate.derive.fold import BINS_PER_DECADE, FLOOR
from pcapstate.derive.records import ROLES
from pcapstate.derive.timeline import BINS as TIMELINE_BINS
from pcapstate.pipeline import analyze
from pcapstate.schema import READS, problem
from pcapstate.track.zeek_view import CONN_STATES
from pcapstate.vocab import (
    DIAGNOSES,
    STUCK_STATES,
    Censor,
    Closer,
    CloserEvidence,
    EndKind,
    Roles,
    State,
)
from tests.test_samples import EXPECTED, captures

#: The schema file, as users read it.
DOC = json.loads(files("pcapstate").joinpath("result.schema.json").read_text("utf-8"))
#: Timestamps a report can draw: to the end of the year 9999 (the last a date can be
#: written in); durations up to that span; counts 64-bit, as in the engine.
TS_MAX = datetime(9999, 12, 31, tzinfo=UTC).timestamp() + 86400
MAX_COUNT = 2**64 - 1
#: The histograms' last bin (derive/fold.py; a result's bin is fold's minus 1): the longest
#: duration's.
MAX_BIN = int(math.log10(TS_MAX / FLOOR) * BINS_PER_DECADE)

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


class _Gone:
    """A field taken away (rather than given a value)."""

    def __repr__(self) -> str:
        return "gone"


_GONE = _Gone()

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
    (("timeline", "start"), None,
     "timeline.start: expected a number where states are given, got null"),
    (("timeline", "bin_seconds"), None,
     "timeline.bin_seconds: expected a number where states are given, got null"),
    (("capture", "first_ts"), None,
     "capture.first_ts: expected a timestamp where there are findings, got null"),
    (("connections", "mid_stream"), 2.0,
     "connections.mid_stream: expected a whole number (0 or more), got 2.0"),
    (("connections", "total"), 2**64,
     "connections.total: expected a whole number (0 or more), got 18446744073709551616"),
    (("findings", 0, "service"), "127.0.0.1:65536",
     'findings[0].service: expected a service (ip:port, or [ip]:port for IPv6, then \' in \' '
     'and its tunnel if in one), got '
     '"127.0.0.1:65536"'),
    (("findings", 0, "service"), "127.0.0.1:80\n",
     'findings[0].service: expected a service (ip:port, or [ip]:port for IPv6, then \' in \' '
     'and its tunnel if in one), got '
     '"127.0.0.1:80\\n"'),
    (("inputs", 0, "compression"), "lz4",
     'inputs[0].compression: expected a compression (gzip, bzip2, xz, zstd), got "lz4"'),
    (("schema_of_something_else",), None, None),
    (("inputs", 0, "sha256"), _GONE, None),
]


@pytest.mark.parametrize(("where", "value", "says"), DAMAGE,
                         ids=[f"{'.'.join(map(str, d[0]))}={d[1]!r}"[:60] for d in DAMAGE])
def test_a_damaged_result_names_its_first_bad_field(tmp_path, capsys, saved, where, value,
                                                    says):
    damaged = copy.deepcopy(saved)
    _set(damaged, where, value)
    if says is None:  # allowed: a key the schema does not name, an optional key gone
        assert problem(damaged) is None
        return
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
    del damaged["vantage"]  # a key missing comes where analyze writes it
    assert problem(damaged) == 'findings[0].count: expected a whole number (0 or more), ' \
                               'got "many"'
    damaged["findings"][0]["count"] = 3
    assert problem(damaged) == "findings[0].examples[3].duration: expected a number of " \
                               'seconds (0 to 253402300800), got "long"'
    del damaged["findings"][0]["examples"][3]["since"]  # before duration
    assert problem(damaged) == "findings[0].examples[3].since: missing"
    example = saved["findings"][0]["examples"][3]  # its keys in another order
    damaged["findings"][0]["examples"][3] = {
        "duration": "long", **{k: v for k, v in example.items() if k != "duration"}, "peer": "x"}
    assert problem(damaged) == "findings[0].examples[3].duration: expected a number of " \
                               'seconds (0 to 253402300800), got "long"'  # as written
    damaged["findings"] = []
    assert problem(damaged) == "vantage: missing"
    damaged["durations"]["LISTEN"] = None  # a bad key put last, a bad bin before it
    damaged["durations"]["CLOSE_WAIT"]["histogram"]["right"]["2000"] = 1
    assert problem(damaged) == "vantage: missing"
    damaged["vantage"] = saved["vantage"]
    assert problem(damaged) == 'durations.CLOSE_WAIT.histogram.right["2000"]: expected a ' \
                               f'key that is a histogram bin (-1 to {MAX_BIN}), got "2000"'


def test_an_unknown_key_is_allowed_and_optional_keys_may_go(saved):
    """New fields may be added within a version; what only some runs write may be absent."""
    result = copy.deepcopy(saved)
    result["added_later"] = {"anything": [1, "x"]}
    result["findings"][0]["examples"][0]["note"] = None
    for key in ("command_line", "connection_records"):
        del result[key]
    del result["inputs"][0]["sha256"]
    assert problem(result) is None


def test_the_schema_file_is_json_schema():
    Draft202012Validator.check_schema(DOC)
    assert DOC["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert DOC["properties"]["schema"]["enum"] == list(READS)

    def refs(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        if not isinstance(node, dict):
            return []
        return ([node] if "$ref" in node else []) + [r for v in node.values() for r in refs(v)]

    found = refs(DOC)  # schema.py inlines them: each alone, to a definition
    assert found and all(len(r) == 1 and r["$ref"].removeprefix("#/$defs/") in DOC["$defs"]
                         for r in found)


def test_the_schema_file_keeps_step_with_the_vocabulary_and_the_engine():
    """The schema is a file, written once: its enumerations are pcapstate/vocab.py's (and
    Zeek's conn_states, the roles), its numbers the limits a report can draw."""
    defs = DOC["$defs"]
    assert defs["state"]["enum"] == list(State)
    assert defs["stuck_state"]["enum"] == list(STUCK_STATES)
    assert defs["end_kind"]["enum"] == list(EndKind)
    assert defs["closer"]["enum"] == list(Closer)
    assert defs["closer_evidence"]["enum"] == list(CloserEvidence)
    assert defs["diagnosis"]["properties"]["name"]["enum"] == list(DIAGNOSES) \
        == list(CATALOGUE)
    assert defs["roles_from"]["enum"] == list(Roles)
    assert defs["censor"]["enum"] == list(Censor)
    assert defs["role"]["enum"] == list(ROLES)
    assert defs["outcome"]["enum"] == ["open", "reset_by_peer", "reset_by_self",
                                       *(st.lower() for st in State)]
    assert defs["conn_state"]["enum"] == list(CONN_STATES)

    assert (defs["count"]["minimum"], defs["count"]["maximum"]) == (0, MAX_COUNT)
    assert (defs["ts"]["minimum"], defs["ts"]["exclusiveMaximum"]) == (0, TS_MAX)
    assert (defs["seconds"]["minimum"], defs["seconds"]["maximum"]) == (0, TS_MAX)
    assert (defs["positive"]["exclusiveMinimum"], defs["positive"]["maximum"]) == (0, TS_MAX)
    for name in ("seconds", "positive"):
        assert f"{TS_MAX:.0f})" in defs[name]["title"]
    timeline = DOC["properties"]["timeline"]["properties"]["states"]["additionalProperties"]
    assert timeline["maxItems"] == TIMELINE_BINS

    assert defs["bin"]["title"] == f"a histogram bin (-1 to {MAX_BIN})"
    pattern = defs["bin"]["pattern"]  # as jsonschema matches it: re.search
    assert all(re.search(pattern, str(b)) for b in range(-1, MAX_BIN + 1))
    assert not any(re.search(pattern, b) for b in (
        "-2", str(MAX_BIN + 1), "10000", "01", "-0", "+1", "1.0", " 1", "1\n", "\u0661", ""))


@pytest.mark.parametrize(("address", "fits"), [
    ("10.0.0.1:80", True), ("[2001:db8::1]:443", True), ("[::ffff:10.0.0.1]:0", True),
    ("10.0.0.1:65535", True), ("10.0.0.1:00080", True),
    ("10.0.0.1:65536", False), ("10.0.0.1:999999", False), ("10.0.0.1", False),
    ("10.0.0.1:", False), ("2001:db8::1:443", False), ("10.0.0.1:80\n", False),
    (" 10.0.0.1:80", False), ("10.0.0.1:\u0668\u0660", False), ("host:80", False),
])
def test_an_address_is_ip_and_port(address, fits):
    assert bool(re.search(DOC["$defs"]["address"]["pattern"], address)) is fits


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
    cannot drift from the output (a field renamed or retyped fails here). A standard
    validator of the schema file, as users run it, agrees."""
    results = sample_results()
    assert len(results) >= 17
    standard = Draft202012Validator(DOC)
    for name, result in results:
        saved = json.loads(json.dumps(result))
        assert problem(saved) is None, name
        assert standard.is_valid(saved), name


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

    from pcapstate.render import charts, report

    base = copy.deepcopy(saved)  # kept small, so that it takes seconds: one state's
    del base["connection_records"]  # durations (a chart panel takes 0.1 s), 3 time bins
    base["durations"] = {"CLOSE_WAIT": base["durations"]["CLOSE_WAIT"]}
    base["timeline"]["states"] = {k: v[:3] for k, v in base["timeline"]["states"].items()}
    assert problem(base) is None
    rendered = refused = 0
    values = ("x", None, [], {}, -1, 0, 10**25, 1e300, math.nan, True)
    for i, where in enumerate(_leaves(base)):
        if not where:
            continue
        # four kinds of value a field, in turn, so that each kind meets every sort of field
        for value in (values[(i + k) % len(values)] for k in range(0, len(values), 3)):
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
    assert refused > 400 and rendered > 40, (refused, rendered)
