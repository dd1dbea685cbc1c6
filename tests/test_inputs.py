"""Inputs people really have (issue 15), on real files: captures joined with cat (plain and
compressed), the same traffic given twice, pipes, FIFOs and /dev/stdin, what tcpdump -z
writes (gzip, bzip2, xz, zstd), archives and pages that are not captures, and a terminal
on standard input. Expected counts come from each sample's own expected.json, or from the
sample analysed alone, never from pcapstate's output on the joined input."""

import gzip
import io
import json
import os
import pty
import select
import shlex
import shutil
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pcapstate.cli import main
from pcapstate.decode.frames import _file_header
from pcapstate.pipeline import analyze
from pcapstate.read.capture import CaptureError, file_header, open_captures

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
PCAPSTATE = [sys.executable, "-m", "pcapstate"]


def sample(name: str) -> Path:
    return SAMPLES / name


def expected(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.expected.json").read_text())


def facts(result: dict) -> dict:
    """What two reads of the same traffic must agree on: all but the files and the time."""
    return {k: v for k, v in result.items() if k not in ("inputs", "elapsed_seconds")}


def both_readers(path: Path) -> list[dict]:
    """The result of `path` read as a file and as a stream (a FIFO, read once as it comes),
    the stream's path written as the file's. A pcap is walked by compiled code both ways (a
    file's chunks, or what the stream gave so far); a pcapng record by record."""
    fifo = path.parent / f"{path.name}.fifo"
    os.mkfifo(fifo)

    def fill() -> None:
        with open(fifo, "wb") as f:
            try:
                f.write(path.read_bytes())
            except BrokenPipeError:
                pass

    threading.Thread(target=fill, daemon=True).start()
    try:
        streamed = analyze([str(fifo)])
    finally:
        fifo.unlink()
    streamed = json.loads(json.dumps(streamed).replace(str(fifo), str(path)))
    return [analyze([str(path)]), streamed]


def pcap_records(data: bytes) -> tuple[int, int, list[tuple[int, int, bytes, int]]]:
    """(snaplen, link type, records) of a little-endian microsecond pcap."""
    assert data[:4] == b"\xd4\xc3\xb2\xa1"
    snaplen, linktype = struct.unpack_from("<II", data, 16)
    records, pos = [], 24
    while pos < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, pos)
        records.append((sec, usec, data[pos + 16 : pos + 16 + incl], orig))
        pos += 16 + incl
    return snaplen, linktype, records


def rewrite(data: bytes, order: str = "<", ns: bool = False, strip: int = 0,
            linktype: int | None = None, shift: int = 0) -> bytes:
    """The same records written as another pcap file would hold them: in `order`, at
    nanosecond resolution, with `strip` bytes of link header removed (a new link type),
    `shift` seconds later."""
    snaplen, old_linktype, records = pcap_records(data)
    out = bytearray(struct.pack(order + "IHHiIII", 0xA1B23C4D if ns else 0xA1B2C3D4, 2, 4, 0,
                                0, snaplen, old_linktype if linktype is None else linktype))
    for sec, usec, frame, orig in records:
        out += struct.pack(order + "IIII", sec + shift, usec * 1000 if ns else usec,
                           len(frame) - strip, orig - strip) + frame[strip:]
    return bytes(out)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["analyze", *args])
    out, err = capsys.readouterr()
    return code, out, err


# --- files joined with cat -------------------------------------------------------------

JOINED = ["client_close", "half_close", "lossy"]  # in time order, no overlap


def joined_expectation(names: list[str]) -> tuple[int, Counter, Counter, int]:
    conns, ends, closers, records = 0, Counter(), Counter(), 0
    for name in names:
        exp = expected(name)
        conns += exp["connections"]
        ends.update(exp["end_kinds"])
        closers.update(exp["closers"])
        records += analyze([str(sample(f"{name}.pcap"))])["accounting"]["records"]
    return conns, ends, closers, records


@pytest.mark.parametrize("reader", [0, 1])
def test_pcap_files_joined_with_cat_are_read_as_sections(tmp_path, reader):
    """Three real captures joined with cat, each section in its own byte order, resolution,
    link type and snaplen: half_close rewritten big-endian at nanosecond resolution, lossy
    is raw IP with snaplen 96 where the others are Ethernet with 262144."""
    parts = [sample("client_close.pcap").read_bytes(),
             rewrite(sample("half_close.pcap").read_bytes(), order=">", ns=True),
             sample("lossy.pcap").read_bytes()]
    both = tmp_path / "both.pcap"
    both.write_bytes(b"".join(parts))
    result = both_readers(both)[reader]
    conns, ends, closers, records = joined_expectation(JOINED)
    assert result["accounting"]["records"] == records
    assert result["connections"]["total"] == conns
    assert result["connections"]["by_end"] == dict(ends)
    assert result["connections"]["by_closer"] == dict(closers)
    assert result["inputs"][0]["linktypes"] == [1, 101]
    first = len(parts[0])
    assert result["warnings"] == [
        f"{both}: a second pcap file header at byte {first}: read as a new section (files "
        f"joined with cat?); 1 more after it, each read as a new section"]
    span = analyze([str(sample("client_close.pcap"))])["capture"]["first_ts"], \
        analyze([str(sample("lossy.pcap"))])["capture"]["last_ts"]
    assert (result["capture"]["first_ts"], result["capture"]["last_ts"]) == span


@pytest.mark.parametrize("reader", [0, 1])
def test_a_rotated_set_joined_is_one_capture(tmp_path, reader):
    """tcpdump -G's four files joined with cat: the upload that spans them is one connection,
    as when the files are given apart."""
    files = sorted(SAMPLES.glob("rotated-*.pcap"))
    joined = tmp_path / "rotated.pcap"
    joined.write_bytes(b"".join(f.read_bytes() for f in files))
    result = both_readers(joined)[reader]
    apart = analyze([str(f) for f in files])
    assert result["connections"] == apart["connections"]
    assert result["connections"]["total"] == expected("rotated")["connections"]
    assert "; 2 more after it" in result["warnings"][0] and len(result["warnings"]) == 1


def test_gzip_members_joined_with_cat(tmp_path):
    """`cat a.pcap.gz b.pcap.gz`: several gzip members, each a whole pcap."""
    names = ["client_close.pcap", "half_close.pcap", "lossy.pcap"]
    gz = tmp_path / "joined.pcap.gz"
    gz.write_bytes(b"".join(gzip.compress(sample(n).read_bytes()) for n in names))
    plain = tmp_path / "joined.pcap"
    plain.write_bytes(b"".join(sample(n).read_bytes() for n in names))
    unpacked = analyze([str(plain)])
    for result in both_readers(gz):
        assert result["connections"]["total"] == joined_expectation(JOINED)[0]
        assert facts(result) == facts(unpacked) | {"warnings": [
            w.replace(f"{plain}: ", f"{gz}: ") for w in unpacked["warnings"]]}
        assert result["inputs"][0]["compressed"]


def test_a_capture_joined_to_itself_is_counted_twice_and_said(tmp_path):
    data = sample("close_wait_leak.pcap").read_bytes()
    twice = tmp_path / "twice.pcap"
    twice.write_bytes(data + data)
    result = analyze([str(twice)])
    assert result["accounting"]["records"] == 2 * 101
    assert result["warnings"][1] == (
        f"{twice}: its section at byte {len(data)} overlaps the one at byte 0 in time (it "
        "starts 16.301 s before that one ends): segments seen in both are counted twice")


def test_the_compiled_walk_meets_a_header_after_a_full_batch(tmp_path):
    """Small batches, so that the compiled scan stops FULL before, at and after a header.
    The timestamps are those the records' own headers hold, the second section's read big-
    endian at nanosecond resolution."""
    first = sample("client_close.pcap").read_bytes()
    joined = tmp_path / "j.pcap"
    joined.write_bytes(first + rewrite(sample("refused.pcap").read_bytes(), order=">", ns=True))
    want = [sec + usec * 1e-6 for sec, usec, _, _ in pcap_records(first)[2]]
    want += [sec + usec * 1000 * 1e-9 for sec, usec, _, _ in
             pcap_records(sample("refused.pcap").read_bytes())[2]]
    assert len(want) == 30 + 14
    for rows in (1, 7, 30, 31):
        [cap] = open_captures([str(joined)])
        got = np.concatenate([b.ts.copy() for b in cap.batches(rows=rows)])
        assert got.tolist() == want and cap.records == len(want)
        assert cap.warnings == [f"{joined}: a second pcap file header at byte {len(first)}: "
                                "read as a new section (files joined with cat?)"]


def test_the_header_rule_is_the_same_in_both_readers():
    magics = [b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"]
    versions = [(2, 4), (2, 3), (4, 2), (0, 0), (1, 0)]
    candidates = [m + struct.pack(o + "HH", *v) for m in magics for v in versions
                  for o in "<>"]
    rng = np.random.default_rng(15)
    candidates += [m + bytes(rng.integers(0, 256, 4, dtype=np.uint8)) for m in magics
                   for _ in range(50)]
    candidates += [bytes(rng.integers(0, 256, 8, dtype=np.uint8)) for _ in range(500)]
    found = 0
    for c in candidates:
        compiled = bool(_file_header(np.frombuffer(c, np.uint8), 0))
        assert compiled == (file_header(c, 0) is not None), c.hex()
        found += compiled
    assert found == 4  # each magic with version 2.4 in its own byte order, not the other


@pytest.mark.parametrize("first,second,message", [
    ("client_close.pcap", "pcapng.pcapng",
     "a pcapng section header where a pcap record was due: a pcapng file joined to a pcap "
     "one with cat? Give them as two files; 30 records read before it"),
    ("pcapng.pcapng", "client_close.pcap",
     "a pcap file header where a pcapng block was due: a pcap file joined to a pcapng one "
     "with cat? Give them as two files; 22 records read before it"),
])
def test_pcap_and_pcapng_joined_are_named(tmp_path, capsys, first, second, message):
    joined = tmp_path / "mixed"
    joined.write_bytes(sample(first).read_bytes() + sample(second).read_bytes())
    for result in both_readers(joined):
        size = sample(first).stat().st_size
        assert result["warnings"] == [f"{joined}: byte {size}: {message}"]


# --- the same traffic twice ------------------------------------------------------------

def test_the_same_file_twice_is_refused(tmp_path, capsys):
    path = str(sample("client_close.pcap"))
    copy = tmp_path / "copy.pcap"
    shutil.copyfile(path, copy)
    link = tmp_path / "link.pcap"
    link.symlink_to(path)
    for args, message in [
        ((path, path), f"{path}: given twice"),
        ((path, str(link)), f"{link}: the same file as {path}: give each file once"),
        ((path, str(copy)), f"{copy}: the same content as {path} (a copy): give each file "
                            "once"),
    ]:
        code, out, err = run_cli(capsys, *args, "-q")
        assert (code, out, err) == (2, "", f"pcapstate: error: {message}\n")


def test_copies_of_a_large_file_are_compared_whole(tmp_path):
    """Same size, same first MiB, a difference past it: not a copy."""
    data = rewrite(sample("lossy.pcap").read_bytes())
    while len(data) < 3 << 20:
        data += rewrite(sample("lossy.pcap").read_bytes(), shift=len(data))[24:]
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    a.write_bytes(data)
    b.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert len(open_captures([str(a), str(b)])) == 2
    b.write_bytes(data)
    with pytest.raises(CaptureError, match="the same content as"):
        open_captures([str(a), str(b)])


def test_files_without_records_may_be_alike(tmp_path):
    """A rotated set's idle files hold the same header and nothing else."""
    header = sample("client_close.pcap").read_bytes()[:24]
    idle = [tmp_path / f"idle{i}.pcap" for i in range(2)]
    for path in idle:
        path.write_bytes(header)
    result = analyze([str(sample("client_close.pcap")), *map(str, idle)])
    assert result["connections"]["total"] == expected("client_close")["connections"]


def test_a_capture_and_a_slice_of_it_overlap(tmp_path, capsys):
    full = sample("close_wait_leak.pcap")
    _, _, records = pcap_records(full.read_bytes())
    piece = tmp_path / "slice.pcap"
    piece.write_bytes(full.read_bytes()[:24] + b"".join(
        struct.pack("<IIII", s, u, len(f), o) + f for s, u, f, o in records[20:60]))
    result = analyze([str(full), str(piece)])
    gap = records[-1][0] + records[-1][1] / 1e6 - (records[20][0] + records[20][1] / 1e6)
    assert result["warnings"] == [
        f"{full} and {piece} overlap in time ({piece} starts {gap:,.3f} s before {full} "
        "ends): segments seen in both are counted twice"]
    code, out, err = run_cli(capsys, str(piece), str(full), "-q")
    assert code == 0 and f"warning: {full} and {piece} overlap in time" in err


@pytest.mark.parametrize("names,conns", [
    (["vantage_client.pcap", "vantage_server.pcap"], 3),  # one link seen from both ends
    (["idle_leak.pcap", "syn_timeout.pcap"], 2),  # different traffic at the same time
])
def test_captures_whose_times_overlap(names, conns):
    result = analyze([str(sample(n)) for n in names])
    [warning] = result["warnings"]
    assert warning.startswith(f"{sample(names[0])} and {sample(names[1])} overlap in time")
    assert conns == sum(expected(n.removesuffix(".pcap"))["connections"] for n in names) // (
        2 if "vantage" in names[0] else 1)


def test_a_rotated_set_does_not_overlap():
    assert analyze([str(f) for f in sorted(SAMPLES.glob("rotated-*.pcap"))])["warnings"] == []


# --- pipes, FIFOs, /dev/stdin --------------------------------------------------------

def test_a_fifo_is_read_as_a_stream(tmp_path):
    fifo = tmp_path / "live.pcap"
    os.mkfifo(fifo)
    data = sample("close_wait_leak.pcap").read_bytes()
    writer = threading.Thread(target=fifo.write_bytes, args=(data,), daemon=True)
    writer.start()  # blocks in open() until pcapstate opens the FIFO to read
    try:
        result = analyze([str(fifo)])
    finally:
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # frees a writer left waiting
        writer.join(10)
    assert facts(result) == facts(analyze([str(sample("close_wait_leak.pcap"))]))
    assert result["inputs"][0]["size"] is None and result["inputs"][0]["records"] == 101


def test_a_fifo_from_the_command_line(tmp_path):
    fifo = tmp_path / "live.pcap"
    os.mkfifo(fifo)
    data = gzip.compress(sample("close_wait_leak.pcap").read_bytes())
    proc = subprocess.Popen([*PCAPSTATE, "analyze", str(fifo), "--jsonl", "-"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fifo.write_bytes(data)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert len(out.splitlines()) == expected("close_wait_leak")["connections"]
    assert "1 file, 101 records" in err


def jsonl_of(args: str, stdin: bytes | None = None) -> list[dict]:
    """The records of `pcapstate analyze ARGS --jsonl -`, run by bash, sorted."""
    cmd = f"{shlex.join(PCAPSTATE)} analyze {args} --jsonl - --no-progress"
    proc = subprocess.run(["bash", "-c", cmd], input=stdin, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    return sorted((json.loads(line) for line in proc.stdout.splitlines()),
                  key=lambda r: (r["first_ts"], r["id"]))


def test_process_substitution_and_dev_stdin():
    leak = shlex.quote(str(sample("close_wait_leak.pcap")))
    want = jsonl_of(leak)
    assert len(want) == expected("close_wait_leak")["connections"]
    assert jsonl_of(f"<(cat {leak})") == want
    assert jsonl_of(f"<(xz -c {leak})") == want
    assert jsonl_of("/dev/stdin", stdin=sample("close_wait_leak.pcap").read_bytes()) == want
    rotated = [shlex.quote(str(f)) for f in sorted(SAMPLES.glob("rotated-*.pcap"))]
    streamed = " ".join(f"<(cat {f})" for f in reversed(rotated))  # ordered by their times
    assert jsonl_of(streamed) == jsonl_of(" ".join(rotated))


def test_a_folder_is_named(capsys):
    code, out, err = run_cli(capsys, str(SAMPLES))
    assert (code, err) == (2, f"pcapstate: error: {SAMPLES}: is a folder, not a capture "
                              "file\n")


def on_a_terminal(*args: str) -> tuple[bytes, int, bytes]:
    """pcapstate ARGS with a terminal on standard input: the first line it says on stderr,
    then, after one Ctrl-D, its exit code and the rest of its stderr."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([*PCAPSTATE, *args], stdin=slave, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    os.close(slave)
    said, started = b"", time.monotonic()
    try:
        while b"\n" not in said and time.monotonic() - started < 60:
            if select.select([proc.stderr], [], [], 1)[0]:
                said += os.read(proc.stderr.fileno(), 1000)  # type: ignore[union-attr]
        if b"\n" in said:
            os.write(master, b"\x04")  # Ctrl-D, once
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return said, proc.returncode, err


def test_a_terminal_on_standard_input_is_told_what_is_awaited():
    said, code, err = on_a_terminal("analyze", "-")
    assert said == (b"pcapstate: reading a capture from standard input (tcpdump -w - | "
                    b"pcapstate analyze -); Ctrl-D ends it\n")
    assert code == 2 and err == b"pcapstate: error: -: byte 0: empty file\n"


def test_a_pipe_on_standard_input_is_not_told():
    proc = subprocess.run([*PCAPSTATE, "analyze", "-", "-q"], capture_output=True,
                          input=sample("client_close.pcap").read_bytes(), timeout=120)
    assert proc.returncode == 0 and proc.stderr == b""


# --- what tcpdump -z writes ------------------------------------------------------------

COMPRESSORS = {"gzip": ["gzip", "-c"], "bzip2": ["bzip2", "-c"], "xz": ["xz", "-c"],
               "zstd": ["zstd", "-q", "-c"]}


def compress(kind: str, data: bytes, *flags: str) -> bytes:
    tool = COMPRESSORS[kind]
    if shutil.which(tool[0]) is None:
        pytest.skip(f"{tool[0]} is not installed")
    return subprocess.run([*tool, *flags], input=data, capture_output=True,
                          check=True).stdout


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_compressed_samples_read_as_the_plain_ones(tmp_path, kind):
    for name in ("close_wait_leak.pcap", "pcapng.pcapng"):
        packed = tmp_path / f"{name}.{kind}"
        packed.write_bytes(compress(kind, sample(name).read_bytes()))
        for result in both_readers(packed):
            assert result["inputs"][0]["compressed"]
            assert facts(result) == facts(analyze([str(sample(name))]))


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_compressed_files_joined_with_cat(tmp_path, kind):
    names = [f"{n}.pcap" for n in JOINED]
    packed = tmp_path / f"joined.{kind}"
    packed.write_bytes(b"".join(compress(kind, sample(n).read_bytes()) for n in names))
    result = analyze([str(packed)])
    conns, ends, _, records = joined_expectation(JOINED)
    assert result["connections"]["total"] == conns and result["accounting"]["records"] == records
    assert "a second pcap file header at byte" in result["warnings"][0]


def big_capture() -> bytes:
    """A few MiB of real records: lossy.pcap again and again, 2 s later each time."""
    data = sample("lossy.pcap").read_bytes()
    out = [data]
    for i in range(1, 40):
        out.append(rewrite(data, shift=2 * i)[24:])
    return b"".join(out)


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_compressed_stream_cut_short_keeps_what_was_read(tmp_path, kind):
    data = big_capture()
    packed = compress(kind, data, *(["-1"] if kind == "bzip2" else []))  # 100 kB blocks
    cut = tmp_path / f"cut.{kind}"
    cut.write_bytes(packed[: len(packed) // 2])
    for result in both_readers(cut):
        [warning] = result["warnings"]
        assert f"{kind} stream ends early; " in warning, warning
        assert 0 < result["accounting"]["records"] < 40 * 428


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_corrupt_compressed_data_keeps_what_came_before(tmp_path, kind):
    """64 zero bytes in the middle of the compressed file: the records decompressed before
    them are analysed (a decompressor drops what it gave in the call that fails, so it is
    given 64 KiB at a time)."""
    packed = bytearray(compress(kind, big_capture(), *(["-1"] if kind == "bzip2" else [])))
    middle = len(packed) // 2
    packed[middle : middle + 64] = bytes(64)
    bad = tmp_path / f"bad.{kind}"
    bad.write_bytes(packed)
    for result in both_readers(bad):
        [warning] = result["warnings"]
        assert result["accounting"]["records"] > 1000
        # deflate has no check before the member's end: the damage decodes to bad records
        assert ("record claims" if kind == "gzip" else f"corrupt {kind} data (") in warning


def test_zstd_skippable_frames_and_many_frames(tmp_path):
    """pzstd begins with a skippable frame; zstd --long and multi-frame writers cut frames."""
    pytest.importorskip("zstandard")
    import zstandard

    data = big_capture()
    frames = b"".join(zstandard.ZstdCompressor(write_checksum=True).compress(data[i:i + 300_000])
                      for i in range(0, len(data), 300_000))
    skippable = b"\x50\x2a\x4d\x18" + struct.pack("<I", 6) + b"pzstd!"
    path = tmp_path / "frames.zst"
    path.write_bytes(skippable + frames)
    plain = tmp_path / "frames.pcap"
    plain.write_bytes(data)
    assert facts(analyze([str(path)])) == facts(analyze([str(plain)]))


# --- what is not a capture ---------------------------------------------------------------

def tar_of(mode: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as tar:
        tar.add(sample("client_close.pcap"), arcname="client_close.pcap")
    return out.getvalue()


def zip_of() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.write(sample("client_close.pcap"), "client_close.pcap")
    return out.getvalue()


@pytest.mark.parametrize("name,make,message", [
    ("x.zip", zip_of, "a zip archive, not a capture file: extract the capture from it first"),
    ("x.tar", lambda: tar_of("w"), "a tar archive, not a capture file: extract the capture "
                                   "from it first"),
    ("x.tgz", lambda: tar_of("w:gz"), "a tar archive (gzip-compressed), not a capture file: "
                                      "extract the capture from it first"),
    ("x.tar.xz", lambda: tar_of("w:xz"), "a tar archive (xz-compressed), not a capture "
                                         "file: extract the capture from it first"),
    # no 7z or rar tool here: their signatures, which is all that is looked at
    ("x.7z", lambda: b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(100),
     "a 7z archive, not a capture file: extract the capture from it first"),
    ("x.rar", lambda: b"Rar!\x1a\x07\x01\x00" + bytes(100),
     "a RAR archive, not a capture file: extract the capture from it first"),
    ("x.html", lambda: b"\n<!DOCTYPE html>\n<html><body>Sign in</body></html>\n",
     "an HTML page, not a capture file (a download that failed?)"),
    ("x.pcap", lambda: b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\n"
                       b"size 28866\n",
     "a Git LFS pointer, not the capture itself (git lfs pull fetches it)"),
    ("x.txt", lambda: subprocess.run(["tcpdump", "-nr", str(sample("client_close.pcap"))],
                                     capture_output=True).stdout,
     "a text file, not a capture file"),
    ("x.bin", lambda: bytes(range(256)) * 4, "not a pcap or pcapng file (magic 00010203)"),
])
def test_what_is_not_a_capture_is_named(tmp_path, capsys, name, make, message):
    if name == "x.txt" and shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    path = tmp_path / name
    path.write_bytes(make())
    code, out, err = run_cli(capsys, str(path))
    assert (code, err) == (2, f"pcapstate: error: {path}: byte 0: {message}\n")


def test_lz4_is_named(tmp_path, capsys):
    if shutil.which("lz4") is None:
        pytest.skip("lz4 is not installed")
    path = tmp_path / "x.pcap.lz4"
    subprocess.run(["lz4", "-q", str(sample("client_close.pcap")), str(path)], check=True)
    code, out, err = run_cli(capsys, str(path))
    assert (code, err) == (2, f"pcapstate: error: {path}: byte 0: lz4-compressed, which "
                              "pcapstate does not read: decompress it first (lz4 -d)\n")


def test_the_result_and_the_report_name_the_compression(tmp_path, capsys):
    import lzma

    packed = tmp_path / "leak.pcap.xz"
    packed.write_bytes(lzma.compress(sample("close_wait_leak.pcap").read_bytes()))
    assert main(["analyze", str(packed), "-q", "--json", str(tmp_path / "r.json"),
                 "--report", str(tmp_path / "r.md")]) == 0
    (given,) = json.loads((tmp_path / "r.json").read_text())["inputs"]
    assert (given["compressed"], given["compression"]) == (True, "xz")
    assert "| pcap (xz) |" in (tmp_path / "r.md").read_text()


def test_an_empty_file_in_a_rotated_set_is_left_out_with_a_warning(tmp_path, capsys):
    """tcpdump -C cut off by a full disk leaves a last file of 0 bytes: the rest of the set
    is analysed, a warning names it; an empty file alone, or a set of only empty files, is
    still an error (nothing to read)."""
    empty, other = tmp_path / "cap.pcap2", tmp_path / "cap.pcap3"
    empty.write_bytes(b"")
    other.write_bytes(b"")
    leak = str(sample("close_wait_leak.pcap"))
    whole = analyze([leak])
    got = analyze([leak, str(empty)])
    assert got["warnings"] == [f"{empty}: empty file (0 bytes): left out"]
    assert [i["path"] for i in got["inputs"]] == [leak]
    for key in ("connections", "findings", "diagnoses", "accounting"):
        assert got[key] == whole[key]
    assert main(["analyze", str(empty), str(other), "-q"]) == 2
    assert capsys.readouterr().err == f"pcapstate: error: {empty}: byte 0: empty file\n"
