"""What CI jobs and people at a terminal meet: full disks, closed pipes, read-only folders,
signals, mistakes on the command line. Each ends in one line on stderr and an exit code
that means what it says, and never leaves a partial or temporary file behind."""

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
LEAK = str(SAMPLES / "close_wait_leak.pcap")
ROTATED = sorted(str(p) for p in SAMPLES.glob("rotated-*.pcap"))
PCAPSTATE = [sys.executable, "-m", "pcapstate"]


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*PCAPSTATE, *args], capture_output=True, text=True, timeout=300,
                          **kw)


def one_error_line(p: subprocess.CompletedProcess) -> str:
    """The stderr of a failed run: one 'pcapstate: error:' line, no traceback."""
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pcapstate: error: "), p.stderr
    return lines[0]


@contextmanager
def tmpfs(where: Path, *options: str):
    """A small tmpfs mounted at `where` (root only); skips the test where mounting fails."""
    where.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(where)],
                       capture_output=True, text=True)
    if p.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("option", ["--json", "--jsonl", "--zeek-conn", "--html", "--parquet"])
def test_a_full_disk_is_one_line_exit_2_and_no_partial_file(tmp_path, option):
    with tmpfs(tmp_path / "small", "size=64k") as small:
        filler = small / "filler"  # leaves 512 bytes: less than any of these outputs takes
        st = os.statvfs(small)
        filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 512))
        out = small / "out"
        p = run("analyze", *ROTATED, option, str(out), "-q")
        line = one_error_line(p)
        assert line == f"pcapstate: error: cannot write {out}: No space left on device"
        assert leftovers(small) == ["filler"]


def test_a_full_disk_under_two_outputs_leaves_neither(tmp_path, monkeypatch, capsys):
    """--jsonl fills the disk that the Parquet file, a row group already written, is on:
    one error line, and neither file left (the Parquet writer's footer, which fails too,
    does not stop the clean-up)."""
    from pcapstate.cli import main
    from pcapstate.render import parquet

    monkeypatch.setattr(parquet, "ROW_GROUP", 1)  # a row group for each connection
    with tmpfs(tmp_path / "small", "size=64k") as small:
        filler = small / "filler"
        st = os.statvfs(small)
        filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 24 * 1024))
        assert main(["analyze", str(SAMPLES / "keepalive_race.pcap"), "-q", "--jsonl",
                     str(small / "out.jsonl"), "--parquet", str(small / "out.parquet")]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("pcapstate: error: cannot write "), err
        assert leftovers(small) == ["filler"]


def test_standard_output_on_a_full_device(tmp_path):
    for args in (["analyze", LEAK], ["analyze", LEAK, "--json", "-"],
                 ["analyze", LEAK, "--zeek-conn", "-", "-q"],
                 ["check", str(SAMPLES / "ipv6.pcap")]):
        with open("/dev/full", "w") as full:
            p = subprocess.run([*PCAPSTATE, *args], stdout=full, stderr=subprocess.PIPE,
                               text=True, timeout=300)
        line = one_error_line(p)
        assert line == "pcapstate: error: cannot write standard output: No space left on device"


def test_a_closed_pipe_is_one_line_exit_2():
    """`pcapstate analyze x | head -1`: the reader went away. (250 KB of records, more than
    a pipe holds: a smaller output may all be written before the reader leaves, and then
    nothing failed.)"""
    p = subprocess.run(f"{sys.executable} -m pcapstate analyze "
                       f"{SAMPLES / 'time_wait_pressure.pcap'} --jsonl - "
                       "| head -c 10 >/dev/null; echo \"${PIPESTATUS[0]}\" >&2",
                       shell=True, executable="/bin/bash", capture_output=True, text=True,
                       timeout=300)
    lines = p.stderr.strip().splitlines()
    assert lines == ["pcapstate: error: cannot write standard output: Broken pipe", "2"]


@pytest.mark.slow
def test_a_read_only_destination_is_named_and_found_before_reading(tmp_path):
    """The error names the user's path (not a temporary file's), and comes before the
    capture is read: here standard input, which never ends."""
    with tmpfs(tmp_path / "ro", "size=64k", "ro") as ro:
        for option, path in (("--json", ro / "r.json"), ("--jsonl", ro / "r.jsonl"),
                             ("--report", ro / "r.md"), ("--html", ro / "r.html"),
                             ("--plots", ro / "charts"), ("--zeek-conn", ro / "conn.log")):
            reader, writer = os.pipe()  # a capture that never comes: only a check can end
            try:
                p = subprocess.run([*PCAPSTATE, "analyze", "-", option, str(path)],
                                   stdin=reader, capture_output=True, text=True, timeout=60)
            finally:
                os.close(reader)
                os.close(writer)
            line = one_error_line(p)
            assert line.startswith(f"pcapstate: error: cannot write {path}: "), line
            assert "Read-only file system" in line
        assert leftovers(ro) == []


def test_a_report_on_standard_output_makes_no_charts_folder(tmp_path, monkeypatch, capsys):
    """--report - writes the Markdown to standard output with no charts (the folder beside
    it was named '--charts'), unless --plots names one; --plots - is a usage error."""
    from pcapstate.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["analyze", LEAK, "-q", "--report", "-"]) == 0
    out = capsys.readouterr().out
    assert "# " in out and ".png" not in out
    assert leftovers(tmp_path) == []
    assert main(["analyze", LEAK, "-q", "--report", "-", "--plots", "charts"]) == 0
    assert "](charts/durations.png)" in capsys.readouterr().out
    assert leftovers(tmp_path) == ["charts"]
    assert main(["analyze", LEAK, "-q", "--plots", "-"]) == 2
    assert capsys.readouterr().err == ("pcapstate: error: --plots writes PNG files into a "
                                       "folder: give a folder, not '-'\n")
    assert leftovers(tmp_path) == ["charts"]


def test_a_charts_folder_used_again_holds_only_this_captures_charts(tmp_path):
    """--plots into a folder an earlier run filled: a chart this capture has no data for
    (no CLOSE_WAIT: no close_wait.png) is removed, not left beside the new ones; files
    that are not pcapstate's charts stay."""
    from pcapstate.cli import main

    plots = tmp_path / "plots"
    assert main(["analyze", LEAK, "-q", "--plots", str(plots)]) == 0
    assert "close_wait.png" in leftovers(plots)
    (plots / "notes.txt").write_text("mine")
    assert main(["analyze", str(SAMPLES / "refused.pcap"), "-q", "--plots", str(plots)]) == 0
    assert "close_wait.png" not in leftovers(plots) and "notes.txt" in leftovers(plots)
    assert "durations.png" in leftovers(plots)


def test_a_missing_folder_leaves_no_charts_folder(tmp_path):
    report = tmp_path / "r.md"
    p = run("analyze", LEAK, "--report", str(report), "--html", str(tmp_path / "no" / "r.html"))
    assert "cannot write " + str(tmp_path / "no" / "r.html") in one_error_line(p)
    assert leftovers(tmp_path) == []


def test_outputs_get_the_mode_a_plain_open_gives(tmp_path, capsys):
    from pcapstate.cli import main

    for umask, mode in ((0o022, 0o644), (0o027, 0o640)):
        out = tmp_path / f"r-{umask:o}"
        out.mkdir()
        saved = os.umask(umask)
        try:
            assert main(["analyze", LEAK, "-q", "--json", str(out / "r.json"), "--jsonl",
                         str(out / "r.jsonl"), "--report", str(out / "r.md")]) == 0
        finally:
            os.umask(saved)
        for f in ("r.json", "r.jsonl", "r.md", "r-charts"):
            want = mode | (0o111 & ~umask if f == "r-charts" else 0)
            assert os.stat(out / f).st_mode & 0o777 == want, f
        chart = next((out / "r-charts").iterdir())
        assert os.stat(chart).st_mode & 0o777 == mode
    existing = tmp_path / "kept.json"
    existing.write_text("old")
    os.chmod(existing, 0o600)
    assert main(["analyze", LEAK, "-q", "--json", str(existing)]) == 0
    assert os.stat(existing).st_mode & 0o777 == 0o600  # as open() keeps an existing file's


def test_a_file_replaced_is_moved_aside_then_removed(tmp_path, monkeypatch):
    """An output replaces the file already there, none left beside it; the old one is
    moved aside first (render/output.py _put_in_place), and put back should the new one's
    rename fail. A hard link to the old file keeps the old text."""
    from pcapstate.render import output

    target, link = tmp_path / "r.json", tmp_path / "link.json"
    target.write_text("old")
    os.link(target, link)
    done = output.PendingFile(str(target))
    done.file.write("new")
    done.done()
    assert target.read_text() == "new" and link.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "r.json"]

    renames = []
    real = os.rename

    def failing(src, dst):
        renames.append((os.path.basename(src), os.path.basename(dst)))
        if len(renames) == 2:  # the new file's
            raise OSError(5, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(os, "rename", failing)
    pending = output.PendingFile(str(target))
    pending.file.write("newer")
    with pytest.raises(output.WriteError, match="r.json: Input/output error"):
        pending.done()
    monkeypatch.setattr(os, "rename", real)
    pending.discard()
    assert renames[0][0] == "r.json" and renames[1][1] == "r.json"  # moved aside, first
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "r.json"]


@pytest.mark.parametrize("options", [["--json", "X", "--jsonl", "X"],
                                     ["--report", "X", "--html", "X"],
                                     ["--zeek-conn", "X", "--zeek-conn-json", "./X"],
                                     ["--report", "r.md", "--plots", "X", "--json", "X"]])
def test_one_path_for_two_outputs_is_a_usage_error(tmp_path, options):
    p = run("analyze", LEAK, *options, cwd=tmp_path)
    assert "name the same path" in one_error_line(p)
    assert leftovers(tmp_path) == []


def test_the_report_charts_folder_cannot_be_another_output(tmp_path):
    p = run("analyze", LEAK, "--report", "r.md", "--json", "r-charts", cwd=tmp_path)
    assert "--json and --report's charts folder name the same path r-charts" in one_error_line(p)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_removes_the_temporary_files(tmp_path, sig):
    """`timeout 4 pcapstate analyze ... --jsonl t.jsonl --zeek-conn t.log`: the streamed
    outputs are gone with their temporary files, and the exit code names the signal."""
    data = b"".join(Path(f).read_bytes()[24 if i else 0:] for i, f in enumerate(ROTATED))
    p = subprocess.Popen([*PCAPSTATE, "analyze", "-", "--jsonl", "t.jsonl", "--zeek-conn",
                          "t.log", "--json", "t.json"], cwd=tmp_path, stdin=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        assert p.stdin is not None
        p.stdin.write(data)  # records keep coming: the stream stays open
        p.stdin.flush()
        deadline = time.monotonic() + 60
        while not any(n.startswith(".pcapstate-") for n in leftovers(tmp_path)):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 128 + sig, err
    assert err.decode().strip().splitlines()[-1] == f"pcapstate: stopped by {sig.name}"
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_ctrl_c_on_a_live_stream_writes_what_was_read(tmp_path):
    """`tcpdump -w - | pcapstate analyze - --json live.json`, then Ctrl-C (tcpdump ends
    too): the JSON and the summary are written for what was read, marked as interrupted,
    exit 130."""
    p = subprocess.Popen([*PCAPSTATE, "analyze", "-", "--json", "live.json", "--zeek-conn",
                          "conn.log"], cwd=tmp_path, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdin is not None
        p.stdin.write(Path(LEAK).read_bytes())
        p.stdin.flush()
        time.sleep(3)  # bounded: imports done, the records read, waiting for more
        p.send_signal(signal.SIGINT)
        time.sleep(0.5)
        out, err = p.communicate(timeout=60)  # closes the stream: tcpdump got the Ctrl-C too
    finally:
        p.kill()
    assert p.returncode == 130, err
    result = json.loads((tmp_path / "live.json").read_text())
    assert result["interrupted"] is True
    assert result["connections"]["total"] == len(result["connection_records"]) == 5
    assert len([ln for ln in (tmp_path / "conn.log").read_text().splitlines()
                if not ln.startswith("#")]) == 5
    assert b"stopping: writing what was read so far" in err
    assert b"5 connections" in out


def test_usage_errors_are_one_line_with_a_hint(capsys):
    from pcapstate.cli import main

    for args, words in ((["analyze"], "the following arguments are required: CAPTURE"),
                        (["analyze", LEAK, "--fail-on", ""], "no state given"),
                        (["analyze", LEAK, "--fail-on", "close-wiat"],
                         "unknown state close-wiat"),
                        (["analyze", LEAK, "--bogus"], "unrecognized arguments: --bogus"),
                        (["frobnicate"], "invalid choice: 'frobnicate'")):
        with pytest.raises(SystemExit) as stopped:
            main(args)
        assert stopped.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pcapstate: error: "), lines
        assert words in lines[0], lines
        command = "pcapstate analyze" if args[0] == "analyze" else "pcapstate"
        assert lines[0].endswith(f"(try: {command} --help)"), lines


def test_error_paths_and_reports_do_not_load_the_engine(tmp_path):
    """A missing file, a usage error, --help, --version and `report` are answered without
    numba (a second of start-up, and tens of seconds on a first run)."""
    result = tmp_path / "r.json"
    assert run("analyze", LEAK, "-q", "--json", str(result)).returncode == 0
    calls = [["analyze", str(tmp_path / "missing.pcap")], ["analyze", LEAK, "--bogus"],
             ["--help"], ["--version"], ["analyze", "--help"],
             ["report", str(result), "--html", str(tmp_path / "r.html")]]
    code = ("import json, sys, pcapstate.cli as c\n"
            "for args in json.loads(sys.argv[1]):\n"
            "    try:\n        c.main(args)\n    except SystemExit:\n        pass\n"
            "    print(args[0], sorted(m for m in sys.modules if m.startswith('numba')),"
            " file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code, json.dumps(calls)], capture_output=True,
                       text=True, timeout=120)
    said = [line for line in p.stderr.splitlines() if line.endswith("]")]
    assert said == [f"{args[0]} []" for args in calls], p.stderr
    assert (tmp_path / "r.html").exists()


def test_the_progress_line_is_cleared_before_the_summary(monkeypatch, capsys):
    """Ctrl-C with progress shown: the summary starts on a clean line, not after
    'reading: 292 MiB'."""
    from pcapstate.cli import main
    from pcapstate.track.connections import Tracker

    real = Tracker.feed

    def feed_then_ctrl_c(self, batch):
        real(self, batch)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(Tracker, "feed", feed_then_ctrl_c)
    assert main(["analyze", *ROTATED, "--progress", "--jsonl", "-"]) == 130
    err = capsys.readouterr().err  # the summary goes to stderr: stdout has the records
    assert "\rreading: " in err
    summary = err.index("4 files, 316 records")
    assert err.rindex("\r\033[K", 0, summary) > err.rindex("\rreading: ", 0, summary)


def test_progress_in_kib_for_a_small_file_and_notes_on_their_own_line(capsys):
    """A small capture's progress in KiB (it read '0 MiB of 0 MiB'); a note (the compile's,
    say) written while the progress line shows takes it away first; an empty output path
    is a usage error (it was 'cannot write : Is a directory')."""
    from pcapstate.cli import _Progress, _reading, main

    size = os.path.getsize(LEAK)
    assert main(["analyze", LEAK, "--progress", "-q"]) == 0
    assert f"\rreading: {size / 1024:,.0f} KiB of {size / 1024:,.0f} KiB (100%)" in \
        capsys.readouterr().err
    assert _reading(3 << 20, 5 << 20) == "reading: 3 MiB of 5 MiB (60%)"
    progress = _Progress(True, _reading)
    progress(1 << 20, 2 << 20)
    progress.note("compiled in 31 s")
    assert capsys.readouterr().err == ("\rreading: 1 MiB of 2 MiB (50%)\r\033[K"
                                       "pcapstate: compiled in 31 s\n")
    assert main(["analyze", LEAK, "--json", ""]) == 2
    assert capsys.readouterr().err == "pcapstate: error: --json: an empty path: give a file " \
                                      "name\n"


def test_a_stream_with_json_has_no_digest_and_does_not_wait(tmp_path):
    """A stream cannot be read twice: its sha256 is null (a file's is computed again)."""
    p = subprocess.run(["bash", "-c", f"{sys.executable} -m pcapstate analyze <(cat {LEAK}) "
                        f"{ROTATED[0]} --json r.json -q"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    inputs = json.loads((tmp_path / "r.json").read_text())["inputs"]
    digests = {Path(f["path"]).name: f["sha256"] for f in inputs}
    import hashlib

    assert digests[Path(ROTATED[0]).name] == hashlib.sha256(Path(ROTATED[0]).read_bytes()
                                                            ).hexdigest()
    assert [d for name, d in digests.items() if name != Path(ROTATED[0]).name] == [None]


def test_check_finds_every_compression_tcpdump_writes(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for tool, suffix in (("gzip", ".gz"), ("bzip2", ".bz2"), ("xz", ".xz"), ("zstd", ".zst")):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            pytest.skip(f"{tool} is not installed")
        target = corpus / f"leak-{tool}.pcap"
        target.write_bytes(Path(LEAK).read_bytes())
        subprocess.run([tool, "-q", *(["--rm"] if tool == "zstd" else []), str(target)],
                       check=True)
        assert f"leak-{tool}.pcap{suffix}" in leftovers(corpus)
    assert len(leftovers(corpus)) == 4  # the compressed files alone
    p = run("check", str(corpus), "--update")
    assert p.returncode == 0, p.stderr
    assert "\n4 captures: 0 passed, 0 failed, 4 updated" in p.stdout, p.stdout
    p = run("check", str(corpus))
    assert p.returncode == 0 and p.stdout.startswith("4 captures: 4 passed"), p.stdout


def test_report_tells_a_terminal_on_standard_input_what_it_awaits(tmp_path):
    from tests.test_inputs import on_a_terminal

    said, code, err = on_a_terminal("report", "-", "--html", str(tmp_path / "r.html"))
    assert said == (b"pcapstate: reading a result from standard input (pcapstate analyze "
                    b"--json - ...); Ctrl-D ends it\n")
    assert code == 2 and err.startswith(b"pcapstate: error: standard input is not")
    assert leftovers(tmp_path) == []


def test_a_device_a_fifo_and_a_symlink_are_written_through_never_replaced(tmp_path, capsys):
    """--json /dev/null must not replace /dev/null with a file (as root, a rename could)."""
    import threading

    from pcapstate.cli import main

    null = tmp_path / "mynull"
    os.mknod(null, 0o666 | 0o020000, os.makedev(1, 3))  # /dev/null's device
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    real = tmp_path / "real.json"
    real.write_text("{}")
    link = tmp_path / "latest.json"
    link.symlink_to(real.name)
    assert main(["analyze", LEAK, "-q", "--json", str(null), "--jsonl", str(fifo),
                 "--zeek-conn", str(link)]) == 0
    reader.join(timeout=30)
    assert os.path.exists(null) and not os.path.isfile(null)  # still the device
    assert len(got[0].decode().splitlines()) == 5  # the FIFO's reader got the records
    assert link.is_symlink() and real.read_text().startswith("#separator")
    assert main(["analyze", LEAK, "-q", "--json", str(null), "--jsonl", str(null)]) == 0
    p = subprocess.run(["bash", "-c", f"{sys.executable} -m pcapstate analyze {LEAK} -q "
                        f"--json >(cat > {tmp_path / 'via-pipe.json'})"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    deadline = time.monotonic() + 10
    while not (tmp_path / "via-pipe.json").stat().st_size and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    assert json.loads((tmp_path / "via-pipe.json").read_text())["connections"]["total"] == 5
    assert not [n for n in leftovers(tmp_path) if n.startswith(".pcapstate-")]


def test_outputs_never_overwrite_a_corpus_or_a_reports_capture(tmp_path, capsys):
    from pcapstate.cli import main

    corpus = tmp_path / "c"
    corpus.mkdir()
    capture = corpus / "leak.pcap"
    capture.write_bytes(Path(LEAK).read_bytes())
    for option in ("--json", "--junit"):
        assert main(["check", str(corpus), "--update", option, str(capture)]) == 2
        assert capsys.readouterr().err == (f"pcapstate: error: {option}: refusing to "
                                           f"overwrite {capture}, a file of the corpus\n")
    assert capture.read_bytes() == Path(LEAK).read_bytes()
    assert main(["check", str(corpus), "--update"]) == 0
    golden = corpus / "leak.pcap.golden.json"
    kept = golden.read_bytes()
    assert main(["check", str(corpus), "--junit", str(golden)]) == 2
    assert "a file of the corpus" in capsys.readouterr().err and golden.read_bytes() == kept
    result = tmp_path / "r.json"
    assert main(["analyze", str(capture), "-q", "--json", str(result)]) == 0
    capsys.readouterr()
    assert main(["report", str(result), "--report", str(capture)]) == 2
    assert capsys.readouterr().err == (f"pcapstate: error: refusing to overwrite the input "
                                       f"{capture}\n")
    assert capture.read_bytes() == Path(LEAK).read_bytes()
    # a socket list given with --ss is an input too, with its time or without
    ss = tmp_path / "ss.txt"
    listing = (Path(LEAK).parent / "close_wait_leak.ss.txt").read_bytes()
    ss.write_bytes(listing)
    for given in (str(ss), f"{ss}@1796161200"):
        assert main(["analyze", str(capture), "-q", "--ss", given, "--json", str(ss)]) == 2
        assert capsys.readouterr().err == (f"pcapstate: error: refusing to overwrite the "
                                           f"input {ss}\n")
    assert ss.read_bytes() == listing
    # and so is the corpus's configuration: pcapstate.toml, or a pyproject.toml holding it
    for config, text in (("pcapstate.toml", 'fail-on = ["close-wait"]\n'),
                         ("pyproject.toml", '[tool.pcapstate]\nfail-on = ["close-wait"]\n')):
        (corpus / "pcapstate.toml").unlink(missing_ok=True)
        (corpus / config).write_text(text)
        assert main(["check", str(corpus), "--json", str(corpus / config)]) == 2
        assert capsys.readouterr().err == (f"pcapstate: error: --json: refusing to overwrite "
                                           f"{corpus / config}, a file of the corpus\n")
        assert (corpus / config).read_text() == text


@pytest.mark.slow
def test_the_first_ctrl_c_stops_a_quiet_stream_at_once(tmp_path):
    """A FIFO whose writer (tcpdump in another terminal) keeps it open: the first Ctrl-C
    ends the reading there, not when the writer stops."""
    import threading

    fifo = tmp_path / "live"
    os.mkfifo(fifo)

    def tcpdump() -> None:
        with open(fifo, "wb") as out:
            out.write(Path(LEAK).read_bytes())
            out.flush()
            time.sleep(25)

    writer = threading.Thread(target=tcpdump, daemon=True)
    writer.start()
    p = subprocess.Popen([*PCAPSTATE, "analyze", str(fifo), "--json", "live.json"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(3)  # bounded: the records are read, the stream is quiet
        p.send_signal(signal.SIGINT)
        started = time.monotonic()
        out, err = p.communicate(timeout=20)
        took = time.monotonic() - started
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert took < 5, took  # not the writer's 25 s
    result = json.loads((tmp_path / "live.json").read_text())
    assert result["interrupted"] is True


def test_report_of_deeply_nested_json_is_one_line(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    p = run("report", str(deep), "--report", str(tmp_path / "x.md"))
    assert "nested too deeply" in one_error_line(p)


def test_cross_check_refuses_a_stream():
    p = run("analyze", "-q", "--cross-check", "-", input=Path(LEAK).read_text("latin-1"))
    assert "--cross-check reads the capture again" in one_error_line(p)


def test_a_fifo_in_a_corpus_is_not_waited_on(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "leak.pcap").write_bytes(Path(LEAK).read_bytes())
    os.mkfifo(corpus / "stuck.pcap")
    p = run("check", str(corpus), "--update")
    assert p.returncode == 0 and "1 capture" in p.stdout, p.stdout


def test_charts_are_not_left_when_another_output_fails(tmp_path):
    with tmpfs(tmp_path / "small", "size=64k") as small:
        st = os.statvfs(small)
        (small / "filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 512))
        p = run("analyze", LEAK, "-q", "--plots", str(tmp_path / "plots"), "--html",
                str(small / "r.html"))
        assert "No space left on device" in one_error_line(p)
        assert leftovers(small) == ["filler"]
    assert not (tmp_path / "plots").exists()


def _long_capture(path: Path, copies: int) -> None:
    """A sample's records again and again, each copy an hour later: a capture that takes a
    while to analyse, made in a moment."""
    import struct

    data = (SAMPLES / "half_close.pcap").read_bytes()
    header, body = data[:24], data[24:]
    records = []
    pos = 0
    while pos < len(body):
        sec, usec, incl, orig = struct.unpack_from("<IIII", body, pos)
        records.append((sec, body[pos + 4:pos + 16 + incl]))
        pos += 16 + incl
    with open(path, "wb") as out:
        out.write(header)
        for k in range(copies):
            for sec, rest in records:
                out.write(struct.pack("<I", sec + 3600 * k) + rest)


@pytest.mark.slow
def test_sigterm_stops_checks_workers_at_once(tmp_path):
    """`timeout` sends SIGTERM to check, which runs captures in worker processes: they stop
    with it, no golden or temporary file is left, the exit code names the signal."""
    corpus = tmp_path / "c"
    corpus.mkdir()
    # 48 names of one 89 MB capture: about 7 s of work on 2 cores at 2026-12's speed (12
    # took 1.8 s in all), so that the signal comes with work left
    names = [f"{k:02d}.pcap" for k in range(48)]
    _long_capture(corpus / names[0], 400)
    for name in names[1:]:
        os.link(corpus / names[0], corpus / name)
    p = subprocess.Popen([*PCAPSTATE, "check", str(corpus), "--update", "-j", "2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    assert p.poll() is None, p.communicate()  # still at work
    p.send_signal(signal.SIGTERM)
    started = time.monotonic()
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and time.monotonic() - started < 2, err
    assert err == "pcapstate: stopped by SIGTERM\n"
    left = leftovers(corpus)
    assert not [n for n in left if n.startswith(".")], left  # no temporary file
    goldens = [n for n in left if n.endswith(".golden.json")]
    assert len(goldens) < len(names) - 2, left  # stopped with work left, not after it


def test_the_library_api_is_the_command_lines():
    """README's example: pcapstate.analyze(...) from Python gives the result --json writes."""
    import pcapstate

    result = pcapstate.analyze([LEAK])
    assert result["connections"]["total"] == 5
    assert [(f["state"], f["service"], f["count"]) for f in result["findings"]] == [
        ("CLOSE_WAIT", "127.0.0.1:5001", 5)]
