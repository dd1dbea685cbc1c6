"""Captures from broken machines (tests/broken/, made by make_broken.py): each has its
expected outcome in expected.json. A result or a one-line error, never a traceback; what was
read before a break is kept, with a warning that says where. Each is read as a file and as
a stream (here a FIFO, read once as it comes), for the same outcome: a pcap by the compiled
walk both ways (over a file's chunks, over what the stream gave so far), a pcapng record by
record."""

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcapstate.cli import main

BROKEN = Path(__file__).resolve().parent / "broken"
EXPECTED = json.loads((BROKEN / "expected.json").read_text())


def test_every_broken_capture_has_an_expected_outcome():
    files = {p.name for p in BROKEN.iterdir() if p.suffix not in (".json", ".py")}
    assert files == set(EXPECTED) and len(files) >= 14


def fed_through_a_fifo(tmp_path: Path, name: str) -> Path:
    """A FIFO that a thread fills with the broken capture `name`."""
    fifo = tmp_path / name
    os.mkfifo(fifo)
    threading.Thread(target=_fill, args=(fifo, (BROKEN / name).read_bytes()),
                     daemon=True).start()
    return fifo


@pytest.mark.parametrize("reader", ["file", "stream"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_outcome(tmp_path, capsys, name, reader):
    want = EXPECTED[name]
    out = tmp_path / "result.json"
    path = BROKEN / name if reader == "file" else fed_through_a_fifo(tmp_path, name)
    code = main(["analyze", str(path), "--json", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == want["exit"], err
    assert "Traceback" not in err
    if "error" in want:
        assert err.startswith("pcapstate: error: ") and want["error"] in err
        assert err.count("\n") == 1 and not out.exists()
        return
    result = json.loads(out.read_text())
    if "warning" in want:
        assert any(want["warning"] in w for w in result["warnings"])
        # a reader's warning names the file; the coverage warning is about the capture
        assert f"pcapstate: warning: {path}: " in err or \
            f"pcapstate: warning: {want['warning']}" in err
    else:
        assert result["warnings"] == [] and err == ""
    acc, conns = result["accounting"], result["connections"]
    for key, value in want.items():
        if key == "records":
            assert acc["records"] == value
        elif key == "connections":
            assert conns["total"] == value
        elif key == "anomalies":
            assert {k: conns["anomalies"].get(k) for k in value} == value
        elif key == "undecodable":
            assert acc["undecodable"] == value


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_outcome_with_the_tshark_engine(tmp_path, capsys, name):
    """The tshark engine: the same exit code, records and connections (its warnings are in
    tshark's words)."""
    want = EXPECTED[name]
    out = tmp_path / "result.json"
    code = main(["analyze", str(BROKEN / name), "--json", str(out), "-q", "--engine",
                 "tshark"])
    err = capsys.readouterr().err
    assert code == want["exit"] and "Traceback" not in err, err
    if code:
        assert err.startswith("pcapstate: error: ") and err.count("\n") == 1
        return
    result = json.loads(out.read_text())
    for key, value in want.items():
        if key == "records":
            assert result["accounting"]["records"] == value
        elif key == "connections":
            assert result["connections"]["total"] == value
        elif key == "undecodable":
            assert result["accounting"]["undecodable"] == value


def test_names_with_spaces_and_non_ascii_work_everywhere(tmp_path, capsys):
    """A capture and every output named with spaces and accents, through analyze, report,
    the Zeek log and the corpus check."""
    import shutil as sh

    folder = tmp_path / "incident été 42"
    folder.mkdir()
    capture = folder / "leak capture é.pcap"
    sh.copy(BROKEN.parent.parent / "samples" / "close_wait_leak.pcap", capture)
    outs = {"--json": folder / "résultat 1.json", "--jsonl": folder / "records ü.jsonl",
            "--zeek-conn": folder / "conn é.log", "--report": folder / "rapport é.md",
            "--html": folder / "rapport é.html"}
    args = [x for flag, path in outs.items() for x in (flag, str(path))]
    assert main(["analyze", str(capture), "-q", *args]) == 0
    assert all(path.stat().st_size > 0 for path in outs.values())
    assert (folder / "rapport é-charts" / "durations.png").is_file()
    assert main(["report", str(outs["--json"]), "--html", str(folder / "again ö.html")]) == 0
    assert main(["check", str(folder), "--update"]) == 0
    assert (folder / "leak capture é.pcap.golden.json").is_file()
    assert main(["check", str(folder)]) == 0
    assert "Traceback" not in capsys.readouterr().err


SAMPLES = BROKEN.parent.parent / "samples"
SEEDS = {name: (SAMPLES / name).read_bytes()[:3000] for name in (
    "client_close.pcap", "pcapng.pcapng", "ipv6.pcap")}


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(SEEDS)), st.lists(st.tuples(st.integers(0, 2999),
                                                          st.integers(0, 255)), max_size=8),
       st.integers(0, 3000))
def test_damaged_captures_give_a_result_or_an_error(tmp_path_factory, name, flips, cut):
    """A sample with bytes overwritten and cut short, read as a file and as a stream (a FIFO,
    read once as it comes): the same outcome, a result or a CaptureError, nothing else
    raised."""
    from pcapstate.pipeline import analyze
    from pcapstate.read.capture import CaptureError

    data = bytearray(SEEDS[name][:cut])
    for at, value in flips:
        if at < len(data):
            data[at] = value
    folder = tmp_path_factory.mktemp("damaged")
    path = folder / name
    path.write_bytes(bytes(data))
    fifo = folder / "stream"
    os.mkfifo(fifo)
    outcomes = []
    for source in (path, fifo):
        if source == fifo:
            threading.Thread(target=_fill, args=(fifo, bytes(data)), daemon=True).start()
        try:
            result = analyze([str(source)])
            outcomes.append((result["accounting"], result["connections"]["total"]))
        except CaptureError as e:
            outcomes.append(("error", e.message))
    assert outcomes[0] == outcomes[1]


def _fill(fifo: Path, data: bytes) -> None:
    with open(fifo, "wb") as f:
        try:
            f.write(data)
        except BrokenPipeError:
            pass
