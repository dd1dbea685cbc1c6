"""The command line: output, JSON, exit codes, errors without tracebacks."""

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pcapstate.cli import duration, main

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
WRAP = str(SAMPLES / "crafted_wraparound.pcap")
RESET = str(SAMPLES / "crafted_rst_out_of_window.pcap")
LEAK = str(SAMPLES / "close_wait_leak.pcap")


def pcapstate(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pcapstate", *args], input=stdin,
                          capture_output=True, timeout=120)


def test_summary_on_the_terminal(capsys):
    assert main(["analyze", WRAP]) == 0
    out = capsys.readouterr().out
    assert "Connections: 1" in out
    assert "how they ended: closed 1" in out
    assert "who closed first: server 1" in out
    assert "Stuck endpoints: none." in out
    assert "Assumed timers: TIME_WAIT 60s, orphaned FIN_WAIT_2 60s" in out


def test_json_result_with_connection_records(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["analyze", RESET, "--json", str(out), "-q"]) == 0
    assert capsys.readouterr().out == ""
    result = json.loads(out.read_text())
    assert result["schema"] == "pcapstate-result/3"
    [rec] = result["connection_records"]
    assert rec["end"] == "reset_by_server" and rec["reset_by"] == "server"
    assert rec["client"] == "192.0.2.10:41000" and rec["server"] == "192.0.2.20:8080"
    assert [t["state"] for t in rec["endpoints"]["server"]["transitions"]] == [
        "SYN_RCVD", "ESTABLISHED", "CLOSED"]


def test_jsonl_streams_records_and_json_goes_to_stdout(tmp_path):
    lines = tmp_path / "c.jsonl"
    p = pcapstate("analyze", str(SAMPLES / "crafted_syn_on_time_wait.pcap"), "--jsonl",
                  str(lines), "--json", "-")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert "connection_records" not in result
    records = [json.loads(x) for x in lines.read_text().splitlines()]
    assert [r["id"] for r in records] == [1, 2]
    assert b"Connections: 2" in p.stderr  # the summary moves to stderr


def test_the_command_ends_at_once_with_every_output_written(tmp_path):
    # cli.run ends the process without Python's teardown: what it wrote to a pipe, to a
    # file given as standard output and to stderr must all be there, and its code
    capture = str(SAMPLES / "time_wait_pressure.pcap")
    expected = tmp_path / "expected.jsonl"
    assert main(["analyze", capture, "-q", "--jsonl", str(expected)]) == 0
    want = expected.read_bytes()
    scenario = json.loads((SAMPLES / "time_wait_pressure.expected.json").read_text())
    assert want.count(b"\n") == scenario["connections"] > 200
    piped = pcapstate("analyze", capture, "--jsonl", "-", "--fail-on", "time_wait_pressure")
    assert piped.stdout == want
    assert piped.returncode == 1
    assert f"Connections: {scenario['connections']}".encode() in piped.stderr
    with open(tmp_path / "out.jsonl", "wb") as stdout:
        to_file = subprocess.run([sys.executable, "-m", "pcapstate", "analyze", capture,
                                  "--jsonl", "-"], stdout=stdout, timeout=120)
    assert to_file.returncode == 0
    assert (tmp_path / "out.jsonl").read_bytes() == want


@pytest.mark.skipif(not Path(LEAK).exists(), reason="kernel samples not made")
def test_fail_on_close_wait_exits_1():
    p = pcapstate("analyze", LEAK, "--fail-on", "close-wait")
    assert p.returncode == 1
    assert b"failing: 5 endpoint(s) stuck in CLOSE_WAIT" in p.stderr
    assert b"CLOSE_WAIT" in p.stdout and b"127.0.0.1:5001 (server)" in p.stdout
    assert pcapstate("analyze", LEAK, "--fail-on", "last-ack", "-q").returncode == 0
    # a threshold above the leak's age: nothing is stuck
    assert pcapstate("analyze", LEAK, "--fail-on", "any", "--stuck-after", "1h",
                     "-q").returncode == 0


def test_fail_on_a_diagnosis_exits_1():
    aborts = str(Path(LEAK).with_name("aborts.pcap"))
    p = pcapstate("analyze", aborts, "--fail-on", "reset-with-data-loss,peer-gone", "-q")
    assert p.returncode == 1
    assert b"failing: reset_with_data_loss at 127.0.0.1:9100 (4)" in p.stderr
    assert pcapstate("analyze", aborts, "--fail-on", "peer-gone,close-wait", "-q").returncode \
        == 0
    p = pcapstate("analyze", aborts, "--fail-on", "peer-went")
    assert p.returncode == 2 and b"unknown state peer-went (nor a diagnosis)" in p.stderr


def test_stdin_and_gzip(tmp_path):
    data = Path(WRAP).read_bytes()
    p = pcapstate("analyze", "-", stdin=gzip.compress(data))
    assert p.returncode == 0, p.stderr
    assert b"Connections: 1" in p.stdout


@pytest.mark.parametrize("content,message", [
    (b"", b"empty"),
    (b"\x89PNG\r\n\x1a\n" + bytes(40), b"not a pcap"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, content, message):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(content)
    p = pcapstate("analyze", str(bad))
    assert p.returncode == 2
    assert message in p.stderr.lower()
    assert b"Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_missing_file_and_bad_usage():
    p = pcapstate("analyze", "/nonexistent/x.pcap")
    assert p.returncode == 2 and b"/nonexistent/x.pcap" in p.stderr
    assert b"Traceback" not in p.stderr
    assert pcapstate("analyze").returncode == 2
    assert pcapstate("analyze", WRAP, "--fail-on", "bogus").returncode == 2
    assert pcapstate("analyze", WRAP, "--time-wait", "soon").returncode == 2


def test_refuses_to_overwrite_its_input(tmp_path):
    copy = tmp_path / "in.pcap"
    copy.write_bytes(Path(WRAP).read_bytes())
    p = pcapstate("analyze", str(copy), "--json", str(copy))
    assert p.returncode == 2 and b"refusing to overwrite" in p.stderr
    assert copy.read_bytes() == Path(WRAP).read_bytes()


def test_durations():
    assert duration("10s") == 10 and duration("500ms") == 0.5 and duration("2m") == 120
    assert duration("1.5") == 1.5 and duration("1h") == 3600


def test_version():
    p = pcapstate("--version")
    assert p.returncode == 0 and p.stdout.startswith(b"pcapstate ")


def test_summary_names_the_outcome_and_the_oldest_stuck_connection():
    p = pcapstate("analyze", str(SAMPLES / "close_wait_reset.pcap"))
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert "CLOSE_WAIT   127.0.0.1:6000 (server): 2 connections" in out
    assert "2 reset by the peer" in out
    assert "oldest: 127.0.0.1:6000 with peer 127.0.0.1:44218 (connection 1)" in out


def test_interrupt_exits_130_without_a_traceback():
    import signal
    import time

    p = subprocess.Popen([sys.executable, "-m", "pcapstate", "analyze", "-"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        header = Path(WRAP).read_bytes()[:24]
        p.stdin.write(header)  # a valid header, then nothing: pcapstate waits for records
        p.stdin.flush()
        time.sleep(2)  # bounded: imports done, blocked reading standard input
        p.send_signal(signal.SIGINT)  # asks the reading to stop: it waits for input
        time.sleep(1)
        p.send_signal(signal.SIGINT)  # the second quits at once
        _, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 130
    assert b"stopping: writing what was read so far" in err
    assert b"interrupted" in err and b"Traceback" not in err


def test_interrupt_reports_what_was_read(tmp_path, monkeypatch, capsys):
    """A first Ctrl-C stops the reading after the current batch: the summary and every file
    asked for cover what was read (the records analysed, not those read ahead), marked as
    interrupted; exit 130."""
    import signal

    from pcapstate.track.connections import Tracker

    real = Tracker.feed

    def feed_then_ctrl_c(self, batch):
        real(self, batch)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(Tracker, "feed", feed_then_ctrl_c)
    out = tmp_path / "r.json"
    rotated = sorted(str(p) for p in SAMPLES.glob("rotated-*.pcap"))  # 316 records first
    assert len(rotated) == 4
    assert main(["analyze", *rotated, "--json", str(out)]) == 130
    got = capsys.readouterr()
    assert got.out.startswith("4 files, 316 records, ")  # of 1,571: the first file's
    assert "warning: interrupted: only the first 316 records were analysed" in got.out
    assert got.err.endswith("covers the 316 records read until then\n")
    result = json.loads(out.read_text())
    assert result["interrupted"] is True and result["accounting"]["records"] == 316
    assert [f["records"] for f in result["inputs"]] == [316, 0, 0, 0]
    assert len(result["connection_records"]) == result["connections"]["total"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_progress_on_request():
    p = pcapstate("analyze", WRAP, "--progress", "-q")
    assert p.returncode == 0 and b"reading: " in p.stderr
    assert b"reading" not in pcapstate("analyze", WRAP, "-q").stderr  # not a terminal
    assert b"compiling" not in p.stderr  # the engine is in numba's cache by now


def test_unwritable_output_is_exit_2(tmp_path):
    p = pcapstate("analyze", WRAP, "--json", str(tmp_path / "missing" / "r.json"))
    assert p.returncode == 2 and b"cannot write" in p.stderr and b"Traceback" not in p.stderr
    p = pcapstate("analyze", WRAP, "--jsonl", str(tmp_path / "missing" / "r.jsonl"))
    assert p.returncode == 2 and b"cannot write" in p.stderr


def test_readme_documents_every_option():
    from pcapstate.cli import build_parser

    readme = (SAMPLES.parent / "README.md").read_text()
    commands = build_parser()._subparsers._group_actions[0].choices
    analyze = commands["analyze"]
    options = [o for a in analyze._actions for o in a.option_strings
               if o.startswith("--") and o not in ("--help", "--no-progress")]
    missing = [o for o in options if o not in readme]
    assert not missing, f"README.md does not mention {missing}"
    # report and check: each option under one of its names
    missing = [f"{name} {a.option_strings[-1]}" for name in ("report", "check")
               for a in commands[name]._actions
               if a.option_strings and "--help" not in a.option_strings
               and not any(f"{o} " in readme or f"{o}`" in readme for o in a.option_strings)]
    assert not missing, f"README.md does not mention {missing}"


def test_json_records_are_streamed_and_match_jsonl(tmp_path):
    """--json holds every record (spooled, not kept in memory) and they are the ones
    --jsonl streams, in the same order."""
    files = [str(SAMPLES / f"rotated-{i}.pcap") for i in range(4)]
    if not Path(files[0]).exists():
        pytest.skip("kernel samples not made")
    out, lines = tmp_path / "r.json", tmp_path / "r.jsonl"
    assert main(["analyze", *files, "--json", str(out), "-q"]) == 0
    assert main(["analyze", *files, "--jsonl", str(lines), "-q"]) == 0
    result = json.loads(out.read_text())
    streamed = [json.loads(x) for x in lines.read_text().splitlines()]
    assert len(streamed) == result["connections"]["total"] > 1
    assert result["connection_records"] == streamed
    assert not list(tmp_path.glob(".pcapstate-*"))  # no temporary file left behind


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_engine_option_selects_an_engine_with_the_same_answer(capsys):
    outputs = []
    for engine in ("tshark", "fast"):
        assert main(["analyze", RESET, "--engine", engine, "--json", "-", "-q"]) == 0
        result = json.loads(capsys.readouterr().out)
        result.pop("elapsed_seconds")
        assert result.pop("command_line").endswith(f"--engine {engine} --json - -q")
        assert result.pop("decoder") == {"engine": engine, "reason": None}
        result["connections"].pop("wireshark_analysis", None)  # what only tshark tells
        for r in result["connection_records"]:
            r.pop("wireshark_analysis", None)
        outputs.append(result)
    assert outputs[0] == outputs[1]
    with pytest.raises(SystemExit) as e:
        main(["analyze", RESET, "--engine", "nonsense"])
    assert e.value.code == 2


def test_an_interrupt_lost_in_a_finalizer_still_stops_the_run(monkeypatch, capsys):
    """Python drops a KeyboardInterrupt raised while a finalizer runs (numba runs many while
    it compiles); the run notices the Ctrl-C at its next step all the same (here, while
    reading, by the flag that asks the reading to stop)."""
    import signal

    import pcapstate.pipeline as pipeline

    real = pipeline.open_captures

    def open_then_ctrl_c(paths):
        try:
            signal.raise_signal(signal.SIGINT)  # handled by pcapstate's handler, raising...
        except KeyboardInterrupt:
            pass  # ... and lost, as in a finalizer
        return real(paths)

    monkeypatch.setattr(pipeline, "open_captures", open_then_ctrl_c)
    assert main(["analyze", WRAP, "-q"]) == 130
    assert capsys.readouterr().err.endswith("covers the 15 records read until then\n")
    monkeypatch.setattr(pipeline, "open_captures", real)
    assert main(["analyze", WRAP, "-q"]) == 0  # the next run starts afresh


def test_streamed_outputs_are_not_left_half_written(tmp_path, capsys):
    """--jsonl and --zeek-conn stream into a temporary file renamed at the end: a run that
    fails leaves neither the file nor the temporary one."""
    bad = tmp_path / "bad.pcap"
    bad.write_bytes((SAMPLES / "client_close.pcap").read_bytes()[:24] + b"\xff" * 40)
    outs = [tmp_path / "r.jsonl", tmp_path / "conn.log"]
    assert main(["analyze", str(bad), "--jsonl", str(outs[0]), "--zeek-conn", str(outs[1]),
                 "-q"]) == 2
    assert "pcapstate: error:" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pcap"]
    good = SAMPLES / "client_close.pcap"
    assert main(["analyze", str(good), "--jsonl", str(outs[0]), "--zeek-conn", str(outs[1]),
                 "-q"]) == 0
    assert len(outs[0].read_text().splitlines()) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pcap", "conn.log", "r.jsonl"]


def test_the_command_leaves_the_users_own_memory_settings_alone(monkeypatch):
    """The command has glibc's malloc keep freed memory and NumPy use pages of the usual
    size (cli._lean_start), unless the user set either: then theirs stand."""
    import ctypes

    from pcapstate import cli

    calls: list[tuple[int, int]] = []

    class Libc:
        def mallopt(self, option: int, value: int) -> int:
            calls.append((option, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name, **kw: Libc())
    for name in ("NUMPY_MADVISE_HUGEPAGE", "GLIBC_TUNABLES",
                 *(k for k in os.environ if k.startswith("MALLOC_"))):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX2")  # not malloc's
    cli._lean_start()
    assert os.environ["NUMPY_MADVISE_HUGEPAGE"] == "0"
    assert calls == [(-3, 32 << 20), (-1, 1 << 30)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    for name, value in (("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0"),
                        ("MALLOC_TRIM_THRESHOLD_", "0")):
        calls.clear()
        monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
        monkeypatch.delenv("GLIBC_TUNABLES")
        monkeypatch.setenv(name, value)
        cli._lean_start()
        assert os.environ["NUMPY_MADVISE_HUGEPAGE"] == "1"
        assert calls == [], name
