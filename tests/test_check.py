"""`pcapstate check`: goldens, diffs that name the connection, policy, JUnit XML, and the
same answer serially, in processes and on a Dask cluster."""

import json
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pcapstate.check.corpus import entries
from pcapstate.check.goldens import MAX_LISTED
from pcapstate.cli import main

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
LEAK = "close_wait_leak.pcap"
CLEAN = ["client_close.pcap", "server_close.pcap", "ipv6.pcap"]


def test_the_samples_pass_their_own_check(capsys):
    """The project's own corpus: every sample against its committed golden, under
    samples/pcapstate.toml's policy (no stuck endpoint but the two leaks it allows)."""
    assert main(["check", str(SAMPLES)]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    n = len([p for p in SAMPLES.iterdir() if p.name.endswith(".golden.json")])
    assert out.startswith(f"{n} captures: {n} passed, 0 failed")


@pytest.fixture
def corpus(tmp_path):
    """A copy of some samples, with goldens written by --update."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name in [LEAK, *CLEAN]:
        shutil.copy(SAMPLES / name, folder / name)
    for i in range(4):
        shutil.copy(SAMPLES / f"rotated-{i}.pcap", folder / f"rotated-{i}.pcap")
    (folder / "pcapstate.toml").write_text('sets = ["rotated-*.pcap"]\n')
    assert main(["check", str(folder), "--update", "-j", "1"]) == 0
    return folder


def edit_golden(path: Path, change) -> None:
    golden = json.loads(path.read_text())
    change(golden)
    path.write_text(json.dumps(golden))


def test_a_changed_golden_fails_and_names_the_connection(corpus, tmp_path, capsys):
    golden = corpus / f"{LEAK}.golden.json"
    conn = json.loads(golden.read_text())["connection_list"][2]
    assert conn[6] == "CLOSE_WAIT"

    def server_closed(g):
        g["connection_list"][2][6] = "CLOSED"

    edit_golden(golden, server_closed)
    capsys.readouterr()
    junit = tmp_path / "junit.xml"
    assert main(["check", str(corpus), "--junit", str(junit)]) == 1
    out = capsys.readouterr().out
    assert (f"FAILED  {LEAK}: 5 connections\n          {conn[0]} -> {conn[1]}: server final "
            "state CLOSE_WAIT, expected CLOSED\n") in out
    assert "5 captures: 4 passed, 1 failed" in out

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("5", "1", "0")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {LEAK, *CLEAN, "rotated-*.pcap"}
    failure = cases[LEAK].find("failure")
    assert failure is not None and "server final state CLOSE_WAIT, expected CLOSED" in \
        (failure.text or "")
    assert all(cases[n].find("failure") is None for n in CLEAN)

    assert main(["check", str(corpus), "--update"]) == 0
    assert main(["check", str(corpus)]) == 0


def test_differences_in_counts_findings_and_connections(corpus, capsys):
    def changed(g):
        g["connections"] = 6
        g["findings"][0]["count"] = 4
        g["findings"][0]["oldest"] += 1.0
        g["connection_list"].pop(0)
        g["connection_list"][0][2] += 0.5

    edit_golden(corpus / f"{LEAK}.golden.json", changed)
    capsys.readouterr()
    assert main(["check", str(corpus / LEAK)]) == 1
    out = capsys.readouterr().out
    assert "connections: 5, expected 6" in out
    assert "CLOSE_WAIT at 127.0.0.1:5001 (server): count 5, expected 4" in out
    assert "CLOSE_WAIT at 127.0.0.1:5001 (server): oldest" in out
    assert ": not in the golden (ended half_closed, closed first by client)" in out
    assert ": first seen -0.500000s from the golden's time" in out


def test_a_finding_on_the_other_side_of_the_same_service_is_a_difference(corpus, capsys):
    """Findings are grouped by state, service and side: the server's CLOSE_WAIT at a
    service and its clients' are two groups."""
    def clients(g):
        g["findings"][0]["role"] = "client"

    edit_golden(corpus / f"{LEAK}.golden.json", clients)
    capsys.readouterr()
    assert main(["check", str(corpus / LEAK)]) == 1
    out = capsys.readouterr().out
    assert "CLOSE_WAIT at 127.0.0.1:5001 (client): none stuck, expected 5" in out
    assert "CLOSE_WAIT at 127.0.0.1:5001 (server): 5 stuck endpoints, expected none" in out


def test_a_timing_within_the_tolerance_is_no_difference(corpus):
    def nudged(g):
        g["connection_list"][0][2] += 0.0004

    edit_golden(corpus / f"{LEAK}.golden.json", nudged)
    assert main(["check", str(corpus)]) == 0
    assert main(["check", str(corpus), "--time-tolerance", "100us"]) == 1


def test_a_capture_without_golden_fails_with_a_hint(corpus, capsys):
    shutil.copy(SAMPLES / "refused.pcap", corpus / "refused.pcap")
    capsys.readouterr()
    assert main(["check", str(corpus)]) == 1
    assert ("no golden file refused.pcap.golden.json: write it with pcapstate check "
            "--update") in capsys.readouterr().out


def test_a_golden_whose_capture_is_gone_fails(corpus, capsys):
    (corpus / "ipv6.pcap").unlink()
    capsys.readouterr()
    assert main(["check", str(corpus)]) == 1
    assert "FAILED  ipv6.pcap.golden.json: no capture\n          a golden without its " \
        "capture" in capsys.readouterr().out


def test_policy_from_the_command_line_and_from_pyproject(corpus, capsys):
    assert main(["check", str(corpus), "--fail-on", "close-wait"]) == 1
    assert "policy: 5 endpoints stuck in CLOSE_WAIT at 127.0.0.1:5001 (server)" in \
        capsys.readouterr().out
    assert main(["check", str(corpus), "--max-close-wait", "5"]) == 0
    assert main(["check", str(corpus), "--max-close-wait", "4"]) == 1
    assert "5 endpoints stuck in CLOSE_WAIT beyond the allowances, at most 4 allowed" in \
        capsys.readouterr().out
    # pcapstate.toml beside the corpus wins over a pyproject.toml above it
    (corpus / "pcapstate.toml").unlink()
    (corpus.parent / "pyproject.toml").write_text(
        '[tool.pcapstate]\nsets = ["rotated-*.pcap"]\nfail-on = "close-wait,last-ack"\n'
        '[tool.pcapstate.allow."127.0.0.1:5001"]\nclose-wait = 4\n')
    assert main(["check", str(corpus)]) == 1
    assert "5 endpoints stuck in CLOSE_WAIT at 127.0.0.1:5001 (server), 4 allowed" in \
        capsys.readouterr().out
    (corpus.parent / "pyproject.toml").write_text(
        (corpus.parent / "pyproject.toml").read_text().replace("= 4", "= 5"))
    assert main(["check", str(corpus)]) == 0
    (corpus.parent / "pyproject.toml").write_text(
        (corpus.parent / "pyproject.toml").read_text().replace("close-wait = 5", "cw = 5"))
    assert main(["check", str(corpus)]) == 2
    assert '[tool.pcapstate.allow."127.0.0.1:5001"]: unknown state cw' in \
        capsys.readouterr().err


def test_policy_on_a_diagnosis(corpus, capsys):
    """aborts.pcap: the server resets 4 connections with the client's data unanswered."""
    aborts = corpus / "aborts.pcap"
    shutil.copy(SAMPLES / aborts.name, aborts)
    assert main(["check", str(aborts), "--update"]) == 0
    capsys.readouterr()
    assert main(["check", str(aborts), "--fail-on", "reset-with-data-loss"]) == 1
    assert "policy: reset_with_data_loss found in 4 connections at 127.0.0.1:9100" in \
        capsys.readouterr().out
    (corpus / "pcapstate.toml").write_text(
        (corpus / "pcapstate.toml").read_text()
        + '\n[allow."127.0.0.1:9100"]\nreset-with-data-loss = 4\n')
    assert main(["check", str(aborts), "--fail-on", "reset-with-data-loss"]) == 0
    assert main(["check", str(aborts), "--fail-on", "peer-gone"]) == 0


@pytest.mark.parametrize(("config", "says"), [
    ("colour = 1\n", "unknown key colour"),
    ('fail-on = ["close-wiat"]\n', "unknown state close-wiat"),
    ("max-close-wait = -1\n", "max-close-wait must be a whole number"),
    ("time-wait = \"soon\"\n", "invalid duration 'soon'"),
    ("sets = [1\n", "not valid TOML"),
    ('[allow."1.2.3.4:80"]\nclose-wait = 1\nfoo = 2\n',
     '[allow."1.2.3.4:80"]: unknown state foo'),
    ('[allow."1.2.3.4:80"]\nany = 2\n', '[allow."1.2.3.4:80"]: \'any\' names 6 states'),
    ('[allow."1.2.3.4:80"]\nclose-wait = 1\nclose_wait = 2\n',
     '[allow."1.2.3.4:80"]: CLOSE_WAIT is given twice'),
    ('[allow."1.2.3.4:80"]\nsyn-sent = -2\n', '[allow."1.2.3.4:80"] syn-sent must be a whole'),
    ('[allow]\n"1.2.3.4:80" = 3\n', '[allow."1.2.3.4:80"] must be a table of states'),
    ("allow = 3\n", "allow must be a table of services"),
])
def test_a_bad_configuration_is_a_one_line_error(corpus, capsys, config, says):
    (corpus / "pcapstate.toml").write_text(config)
    assert main(["check", str(corpus)]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and str(corpus / "pcapstate.toml") in err


def test_an_unreadable_capture_is_an_error_and_exit_2(corpus, tmp_path, capsys):
    (corpus / "broken.pcap").write_bytes(b"\x89PNG\r\n\x1a\n not a capture")
    junit = tmp_path / "j.xml"
    assert main(["check", str(corpus), "--junit", str(junit)]) == 2
    out = capsys.readouterr().out
    assert "ERROR   broken.pcap: " in out and "1 unreadable" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("errors") == "1"
    error = [c for c in suite.iter("testcase") if c.get("name") == "broken.pcap"][0].find("error")
    assert error is not None and error.get("type") == "unreadable"


def test_usage_errors(tmp_path, capsys):
    assert main(["check", str(tmp_path / "missing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["check", str(tmp_path)]) == 2
    assert "no capture in" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["check", str(tmp_path), "-j", "0"])
    assert e.value.code == 2


def json_of(args, tmp_path, name) -> bytes:
    out = tmp_path / name
    main(["check", *args, "--json", str(out)])
    return out.read_bytes()


def test_serial_parallel_and_dask_give_identical_json(corpus, tmp_path):
    """One changed golden and one unreadable capture, so that the JSON holds each kind of
    outcome; the three runs must agree byte for byte."""
    distributed = pytest.importorskip("distributed")

    def server_closed(g):
        g["connection_list"][1][6] = "CLOSED"

    edit_golden(corpus / f"{LEAK}.golden.json", server_closed)
    (corpus / "broken.pcap").write_bytes(b"\xd4\xc3\xb2\xa1" + b"\x00" * 10)
    (corpus / "ipv6.pcap").unlink()  # its golden stays behind
    cut_tail(SAMPLES / LEAK, corpus / "cut.pcap")  # a reader warning that names the file
    assert main(["check", str(corpus / "cut.pcap"), "--update"]) == 0
    serial = json_of([str(corpus), "-j", "1"], tmp_path, "serial.json")
    parallel = json_of([str(corpus), "-j", "2"], tmp_path, "parallel.json")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        on_dask = json_of([str(corpus), "--dask", cluster.scheduler_address], tmp_path,
                          "dask.json")
    assert serial == parallel == on_dask
    doc = json.loads(serial)
    assert doc["summary"] == {"captures": 7, "passed": 4, "failed": 2, "error": 1,
                              "updated": 0}
    broken = [c for c in doc["captures"] if c["name"] == "broken.pcap"][0]
    assert str(corpus / "broken.pcap") in broken["error"]  # the local path, even from Dask
    cut = [c for c in doc["captures"] if c["name"] == "cut.pcap"][0]
    assert cut["status"] == "passed"  # the warning as in the golden: no worker's folder
    assert [w.split(":")[0] for w in cut["warnings"]] == ["cut.pcap"]


def test_dask_without_a_scheduler_is_a_one_line_error(corpus, capsys):
    pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):  # 30s by default
        assert main(["check", str(corpus), "--dask", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pcapstate: error: Dask cluster tcp://127.0.0.1:9:")
    assert err.count("\n") == 1


def test_every_name_of_the_samples_folder_gives_the_same_check(tmp_path, monkeypatch, capsys):
    """`cd samples && pcapstate check .` once found 40 captures, 20 of them goldens
    "without their capture"; every way of naming the folder gives the same outcomes."""
    link = tmp_path / "link"
    link.symlink_to(SAMPLES)
    ways = [(SAMPLES, "."), (SAMPLES, "./"), (SAMPLES.parent, "samples"),
            (SAMPLES.parent, "samples/"), (SAMPLES.parent, "./samples/../samples"),
            (tmp_path, str(SAMPLES)), (tmp_path, "link"), (tmp_path, "./link/"),
            (tmp_path, os.path.relpath(SAMPLES, tmp_path)), (SAMPLES, "../samples/.")]
    n = len([p for p in SAMPLES.iterdir() if p.name.endswith(".golden.json")])

    def corpus(cwd: Path, given: str) -> list[tuple]:
        monkeypatch.chdir(cwd)
        return [(e.name, [Path(f).resolve() for f in e.files], Path(e.golden).resolve(),
                 e.config) for e in entries([given])]

    # every way finds the same captures, goldens and configuration (which is all a check
    # reads); two of them, the folder itself and a link to it, are checked in full
    found = [corpus(cwd, given) for cwd, given in ways]
    assert len(found[0]) == n
    for (_, given), each in zip(ways, found, strict=True):
        assert each == found[0], given
    seen = []
    for cwd, given in (ways[0], ways[7]):
        monkeypatch.chdir(cwd)
        out = tmp_path / "out.json"
        assert main(["check", given, "--json", str(out)]) == 0, (given, capsys.readouterr())
        doc = json.loads(out.read_text())
        assert doc["summary"]["captures"] == doc["summary"]["passed"] == n, given
        seen.append([(c["name"], c["status"], c["differences"], c["warnings"])
                     for c in doc["captures"]])
        assert seen[-1] == seen[0], given

    # --update from inside the folder (a copy: the goldens are committed) writes the same
    # goldens, and nothing else: a second run finds nothing left to write
    copy = tmp_path / "copy"
    shutil.copytree(SAMPLES, copy,
                    ignore=shutil.ignore_patterns("*.py", "*.txt", "*.expected.json"))
    before = sorted(p.name for p in copy.iterdir())
    monkeypatch.chdir(copy)
    assert main(["check", ".", "--update"]) == 0
    assert sorted(p.name for p in copy.iterdir()) == before
    capsys.readouterr()
    assert main(["check", "./", "--update"]) == 0
    assert capsys.readouterr().out.startswith(f"{n} captures: {n} passed, 0 failed (")


def cut_tail(source: Path, to: Path) -> tuple[int, int]:
    """`source` (a little-endian pcap) with its last record cut in half, as a capture copied
    while tcpdump was still writing it; the byte where that record starts, and the records
    before it."""
    data = source.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1"
    pos, last, records = 24, 24, 0
    while pos < len(data):
        last, records = pos, records + 1
        pos += 16 + int.from_bytes(data[pos + 8:pos + 12], "little")
    assert pos == len(data)
    to.write_bytes(data[:last + (len(data) - last) // 2])
    return last, records - 1


def outputs(tmp_path: Path, *args: str | Path) -> tuple[int, dict, dict]:
    """`pcapstate check ARGS`: its exit code, --json by capture name, JUnit's test cases
    by name."""
    doc, xml = tmp_path / "out.json", tmp_path / "out.xml"
    code = main(["check", *map(str, args), "--json", str(doc), "--junit", str(xml)])
    return (code, {c["name"]: c for c in json.loads(doc.read_text())["captures"]},
            {c.get("name"): c for c in ET.parse(xml).getroot().iter("testcase")})


def test_reader_warnings_are_shown_kept_in_the_golden_and_compared(corpus, tmp_path,
                                                                    capsys):
    byte, records = cut_tail(SAMPLES / LEAK, corpus / "cut.pcap")
    warning = (f"cut.pcap: byte {byte}: capture ends in the middle of a record; "
               f"{records} records read before it")
    capsys.readouterr()
    assert main(["check", str(corpus), "--update"]) == 0
    out = capsys.readouterr().out
    assert (f"updated cut.pcap: {5} connections, golden written\n"
            f"          warning: {warning}\n") in out
    assert "6 captures: 5 passed, 0 failed, 1 updated, 1 with reader warnings (" in out
    golden = corpus / "cut.pcap.golden.json"
    assert json.loads(golden.read_text())["warnings"] == [warning]  # no folder in it
    assert json.loads((corpus / f"{LEAK}.golden.json").read_text())["warnings"] == []

    # a warning the golden expects: passes, and is still said everywhere
    code, doc, cases = outputs(tmp_path, corpus)
    assert code == 0
    assert f"ok      cut.pcap: 5 connections\n          warning: {warning}\n" in \
        capsys.readouterr().out
    assert doc["cut.pcap"]["warnings"] == [warning] and doc[LEAK]["warnings"] == []
    err = cases["cut.pcap"].find("system-err")
    assert err is not None and err.text == f"warning: {warning}"
    assert cases[LEAK].find("system-err") is None

    # the corpus elsewhere: the same goldens pass
    moved = tmp_path / "elsewhere" / "moved"
    shutil.copytree(corpus, moved)
    assert main(["check", str(moved)]) == 0

    # a warning the golden does not have (or an older golden, without the key), or one that
    # changed, is a difference
    for change, lines in [
            (lambda g: g.update(warnings=[]), [f"reader warning not in the golden: {warning}"]),
            (lambda g: g.pop("warnings"), [f"reader warning not in the golden: {warning}"]),
            (lambda g: g.update(warnings=[warning.replace(str(byte), "99")]),
             [f"reader warning not in the golden: {warning}",
              f"reader warning in the golden, not given now: {warning.replace(str(byte), '99')}"]),
    ]:
        edit_golden(golden, change)
        capsys.readouterr()
        code, doc, cases = outputs(tmp_path, corpus)
        assert code == 1
        assert doc["cut.pcap"]["differences"] == lines
        assert "\n".join(f"          {d}" for d in lines) in capsys.readouterr().out
        failure = cases["cut.pcap"].find("failure")
        assert failure is not None and failure.text == "\n".join(lines)


def test_the_terminal_lists_the_first_differences_json_and_junit_all(corpus, tmp_path,
                                                                      capsys):
    def everything_changed(g):
        g["connections"] = 50
        for c in g["connection_list"]:
            c[2] += 1.0
            c[3], c[4], c[5], c[6] = "reset", "server", "CLOSED", "TIME_WAIT"

    edit_golden(corpus / f"{LEAK}.golden.json", everything_changed)
    capsys.readouterr()
    code, doc, cases = outputs(tmp_path, corpus)
    assert code == 1
    lines = doc[LEAK]["differences"]
    assert len(lines) > MAX_LISTED and lines[0] == "connections: 5, expected 50"
    assert sum("-> 127.0.0.1:5001: " in d for d in lines) == 5 * 5  # every field of every one
    out = capsys.readouterr().out.splitlines()
    at = out.index(f"FAILED  {LEAK}: 5 connections")
    assert out[at + 1:at + 1 + MAX_LISTED] == [f"          {d}" for d in lines[:MAX_LISTED]]
    assert out[at + 1 + MAX_LISTED] == (f"          ... and {len(lines) - MAX_LISTED} more "
                                        "differences (--json and --junit list them all)")
    failure = cases[LEAK].find("failure")
    assert failure is not None and (failure.text or "").split("\n") == lines


def test_a_capture_given_twice_is_checked_once(corpus, tmp_path, monkeypatch):
    def names(*args):
        return list(outputs(tmp_path, *args)[1])

    alone = names(corpus)
    assert len(alone) == 5
    assert names(corpus, corpus / LEAK) == alone
    assert names(corpus / LEAK, corpus) == alone  # named as in the folder either way
    assert names(corpus, corpus / "rotated-2.pcap", corpus) == alone  # in the set
    monkeypatch.chdir(corpus)
    assert names(".", corpus, f"./{LEAK}", "../corpus/") == alone
    assert names(LEAK, f"./{LEAK}", corpus / LEAK) == [LEAK]
    # two captures of the same name in two folders: each named by its path
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(SAMPLES / LEAK, other / LEAK)
    monkeypatch.chdir(tmp_path)
    assert main(["check", "corpus", "other", "--update"]) == 0
    both = names("corpus", "other")
    assert both.count(f"corpus/{LEAK}") == both.count(f"other/{LEAK}") == 1
    assert len(both) == 6


def test_a_subfolder_follows_its_own_configuration(corpus, capsys):
    """The nearest pcapstate.toml wins (whole: nothing is taken from the one above), the
    command line goes on top; messages name the capture and its golden below the corpus."""
    (corpus / "pcapstate.toml").write_text(
        'sets = ["rotated-*.pcap"]\nfail-on = ["close-wait"]\n'
        '[allow."127.0.0.1:5001"]\nclose-wait = 5\n')
    sub = corpus / "team" / "incident"
    sub.mkdir(parents=True)
    shutil.copy(SAMPLES / LEAK, sub / LEAK)
    (sub.parent / "pcapstate.toml").write_text('fail-on = ["close-wait"]\n')
    capsys.readouterr()
    assert main(["check", str(corpus)]) == 1
    out = capsys.readouterr().out
    assert (f"FAILED  team/incident/{LEAK}: 5 connections\n"
            f"          no golden file team/incident/{LEAK}.golden.json: write it with "
            "pcapstate check --update\n"
            "          policy: 5 endpoints stuck in CLOSE_WAIT at 127.0.0.1:5001 (server)\n"
            ) in out
    assert f"FAILED  {LEAK}" not in out  # the corpus's own allowance
    assert main(["check", str(corpus), "--update"]) == 1  # the golden written, the policy
    capsys.readouterr()
    assert main(["check", str(corpus)]) == 1
    out = capsys.readouterr().out
    assert "6 captures: 5 passed, 1 failed" in out and f"team/incident/{LEAK}: 5" in out
    assert main(["check", str(corpus), "--fail-on", "last-ack"]) == 0  # the command line
    # the subfolder given alone: the same configuration
    assert main(["check", str(sub)]) == 1
    assert main(["check", str(sub / LEAK), "--fail-on", "syn-sent"]) == 0
    # a bad configuration below is found too
    (sub / "pcapstate.toml").write_text("colour = 1\n")
    assert main(["check", str(corpus)]) == 2
    assert f"{sub / 'pcapstate.toml'}: unknown key colour" in capsys.readouterr().err


def test_connection_differences_in_time_then_address_order(corpus, capsys):
    golden = corpus / f"{LEAK}.golden.json"
    conns = json.loads(golden.read_text())["connection_list"]
    ts = conns[3][2]

    def shuffled(g):
        g["connection_list"] = list(reversed(conns[2:])) + [
            ["127.0.0.10:40000", "127.0.0.1:5001", ts, "closed", "client", "CLOSED", "CLOSED"],
            ["127.0.0.9:40000", "127.0.0.1:5001", ts, "closed", "client", "CLOSED", "CLOSED"]]
        g["connection_list"][1][6] = "CLOSED"  # conns[3]

    edit_golden(golden, shuffled)
    capsys.readouterr()
    assert main(["check", str(corpus / LEAK)]) == 1
    lines = [x.strip() for x in capsys.readouterr().out.splitlines() if "-> 127" in x]
    found = "not in the golden (ended half_closed, closed first by client)"
    assert lines == [
        f"{conns[0][0]} -> 127.0.0.1:5001: {found}",
        f"{conns[1][0]} -> 127.0.0.1:5001: {found}",
        f"{conns[3][0]} -> 127.0.0.1:5001: server final state CLOSE_WAIT, expected CLOSED",
        "127.0.0.9:40000 -> 127.0.0.1:5001: in the golden (ended closed), not found",
        "127.0.0.10:40000 -> 127.0.0.1:5001: in the golden (ended closed), not found"]
