"""Incident reports: the verdict names the leaking service, the HTML stands alone, charts
are real PNGs, captured strings cannot inject markup, and a real browser renders it."""

import base64
import html
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pcapstate.cli import main
from pcapstate.render.report import wireshark_filter

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
LEAK = SAMPLES / "close_wait_leak.pcap"
CLEAN = SAMPLES / "client_close.pcap"
pytestmark = pytest.mark.skipif(not LEAK.exists(), reason="kernel samples not made")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href", "action") and v]

    def handle_data(self, data):
        self.text.append(data)


def report(tmp_path, capture, *extra):
    md, page = tmp_path / "r.md", tmp_path / "r.html"
    assert main(["analyze", str(capture), "--report", str(md), "--html", str(page), "-q",
                 *extra]) == 0
    return md.read_text(), page.read_text()


def test_leak_report_states_service_count_and_closer(tmp_path):
    md, page = report(tmp_path, LEAK)
    verdict = md.split("## Verdict", 1)[1].split("##", 1)[0]
    assert "127.0.0.1:5001: 5 connections left in CLOSE\\_WAIT on the server side" in verdict
    assert "the peer closed first" in verdict
    assert "all were still there at capture end" in verdict
    assert "| CLOSE\\_WAIT | 127.0.0.1:5001 | server | 5 | 5 |" in md
    assert "| half closed | 5 | 0 | 0 | 0 | 5 |" in md  # ended half-closed, the client first
    assert re.search(r"\| [^|]*close\\_wait\\_leak.pcap \| pcap \| [\d,]+ bytes \| 101 \|", md)
    assert re.search(r"\| [0-9a-f]{64} \|", md)  # the file's sha256
    assert f"<td>pcapstate analyze {LEAK} --report {tmp_path}/r.md --html" in page
    for name in ("durations", "states_over_time", "close_wait", "endings"):
        assert f"](r-charts/{name}.png)" in md
        w, h = png_size((tmp_path / "r-charts" / f"{name}.png").read_bytes())
        assert 500 <= w <= 2000 and 150 <= h <= 2000, (name, w, h)


@pytest.mark.parametrize(("sample", "extra", "says"), [
    # the server's process exits about 330 s after the client's FIN: its kernel's FIN
    ("idle_leak", [], r"it closed late: the server sent its FIN only after 5m30s in "
                      r"CLOSE_WAIT \(the application behind 127\.0\.0\.1:5001 closed it late, "
                      r"or its process exited: the packets cannot tell which\)"),
    # the server writes about 11 s after each client's FIN; the client's RST ends it
    ("close_wait_reset", [], r"all were ended by the peer's RST after 11\.\d\ds to "
                             r"11\.\d\ds in CLOSE_WAIT, the server having sent no FIN by then"),
    # the client closes first, then the server: every server FIN at once, a stuck-after 0
    ("client_close", ["--stuck-after", "0"], r"all closed late: the server sent its FIN only "
                                             r"after \d+us to \d+us in CLOSE_WAIT"),
    # the server never closes: all 5 in CLOSE_WAIT when the capture ends
    ("close_wait_leak", [], r"all were still there at capture end: the application behind "
                            r"127\.0\.0\.1:5001 did not close them"),
])
def test_a_leak_says_did_not_close_only_of_sockets_still_in_close_wait(tmp_path, capsys,
                                                                       sample, extra, says):
    """close_wait_leak's verdict, in the terminal summary and both reports: how the
    endpoints left CLOSE_WAIT, as the scenario made them (samples/make_samples.py): "did not
    close" only of those still in it at capture end, which the kernel's list then
    (NAME.ss.txt) shows; a FIN sent later, after how long."""
    still = "CLOSE-WAIT" in (SAMPLES / f"{sample}.ss.txt").read_text()
    md, page = report(tmp_path, SAMPLES / f"{sample}.pcap", *extra)
    assert main(["analyze", str(SAMPLES / f"{sample}.pcap"), *extra]) == 0
    [line] = [x for x in capsys.readouterr().out.splitlines() if "close_wait_leak:" in x]
    verdict = md.split("## Verdict", 1)[1].split("##", 1)[0].replace("\\_", "_")
    [md_line] = [x for x in verdict.splitlines() if "left in CLOSE_WAIT on the" in x]
    [html_line] = [html.unescape(x) for x in re.findall(r'<p class="verdict">(.*?)</p>', page)
                   if "left in CLOSE_WAIT on the" in x]
    for words in (line, md_line, html_line):
        assert re.search(says, words), words
        assert ("did not close" in words) == still, words
    assert "never called close()" not in md and "did not call close() on its socket for " \
        "long, or never" in md
    assert bool(re.search(r"its own FIN, after [\dmsu.]+ in CLOSE\\_WAIT: LAST\\_ACK", md)) \
        == (sample in ("idle_leak", "client_close"))


def two_clients_of_time_wait_pressure(path: Path) -> None:
    """samples/time_wait_pressure.pcap with its pressed client (10.91.0.1) twice: as
    itself, and as 10.91.0.5 (each of its frames again, the addresses changed, the
    checksums made anew), the control client once."""
    import dpkt

    client, twin = bytes([10, 91, 0, 1]), bytes([10, 91, 0, 5])
    frames = []
    with (SAMPLES / "time_wait_pressure.pcap").open("rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            frames.append((ts, buf))
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if client not in (ip.src, ip.dst):
                continue
            ip.src, ip.dst = (twin if a == client else a for a in (ip.src, ip.dst))
            ip.sum = ip.data.sum = 0  # dpkt computes both anew
            frames.append((ts, bytes(eth)))
    with path.open("wb") as f:
        out = dpkt.pcap.Writer(f, snaplen=262144)
        for ts, buf in sorted(frames, key=lambda fr: fr[0]):
            out.writepkt(buf, ts)


def test_diagnoses_of_one_kind_and_service_have_distinct_headings(tmp_path):
    """Two client hosts of one service, each holding its ports in TIME_WAIT: a
    time_wait_pressure for each, whose headings name the host; every heading of a report
    differs, on every sample."""
    capture = tmp_path / "two.pcap"
    two_clients_of_time_wait_pressure(capture)
    md, page = report(tmp_path, capture)
    headings = [line for line in md.splitlines() if line.startswith("### ")]
    assert "### time\\_wait\\_pressure: 10.91.0.2:80 (client side, host 10.91.0.1)" in headings
    assert "### time\\_wait\\_pressure: 10.91.0.2:80 (client side, host 10.91.0.5)" in headings
    assert "<h3>time_wait_pressure: 10.91.0.2:80 (client side, host 10.91.0.5)</h3>" in page
    from pcapstate.pipeline import analyze
    from pcapstate.render import report as rendered

    for sample in [capture, *sorted(SAMPLES.glob("*.pcap"))]:  # the report's blocks, no
        headings = [b[2] for b in rendered.blocks(analyze([str(sample)]), [])  # charts drawn
                    if b[0] == "h"]
        assert len(headings) == len(set(headings)), (sample, headings)


def test_html_is_self_contained_and_its_images_decode(tmp_path):
    _, page = report(tmp_path, LEAK)
    p = Page()
    p.feed(page)
    assert "script" not in p.tags and "link" not in p.tags
    assert p.refs and all(r.startswith("data:image/png;base64,") for r in p.refs)
    for ref in p.refs:
        w, h = png_size(base64.b64decode(ref.split(",", 1)[1]))
        assert w >= 500 and h >= 150
    assert "http://" not in page and "https://" not in page
    assert "5 connections left in CLOSE_WAIT" in "".join(p.text)
    assert "What to check: <code>ss -tanp state close-wait</code> on the host" in page
    assert not any("`" in t for t in p.text)


def test_nothing_wrong_reads_as_such(tmp_path):
    md, page = report(tmp_path, CLEAN)
    assert "Nothing wrong found: of 3 connections, no endpoint stayed in CLOSE\\_WAIT" in md
    assert "Stuck endpoints by service" not in md and "close_wait.png" not in md
    assert 'class="verdict ok"' in page


def test_captured_strings_cannot_inject_markup(tmp_path):
    hostile = tmp_path / "<img src=x onerror=alert(1)> |x| [a](b) é.pcap"
    shutil.copy(LEAK, hostile)
    md, page = report(tmp_path, hostile)
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "\\<img src=x onerror=alert\\(1\\)\\>" not in md  # escaped once, not twice
    assert "\\<img src=x onerror=alert(1)\\> \\|x\\| \\[a\\](b) é.pcap" in md


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_wireshark_filter_finds_the_connection():
    flt = wireshark_filter("127.0.0.1:5001", "127.0.0.1:46564", 0.0)
    out = subprocess.run(["tshark", "-n", "-r", str(LEAK), "-Y", flt, "-T", "fields", "-e",
                          "tcp.flags.fin", "-e", "tcp.srcport"], capture_output=True,
                         text=True, check=True).stdout.split("\n")
    rows = [r.split("\t") for r in out if r]
    assert len(rows) > 5 and {port for _, port in rows} == {"5001", "46564"}
    assert ["1", "46564"] in [[f.replace("True", "1"), p] for f, p in rows]  # the client's FIN


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_a_real_browser_renders_the_report(tmp_path):
    report(tmp_path, LEAK)
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={shot}", "--window-size=1200,3000",
                    (tmp_path / "r.html").as_uri()], capture_output=True, timeout=120,
                   check=True)
    data = shot.read_bytes()
    assert png_size(data) == (1200, 3000)
    assert len(data) > 50_000  # text, tables and charts, not a blank page


def test_unwritable_report_is_exit_2_without_traceback(tmp_path, capsys):
    missing = tmp_path / "missing" / "r.md"
    assert main(["analyze", str(LEAK), "--report", str(missing), "-q"]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "Traceback" not in err
    assert not (tmp_path / "missing").exists()
    assert main(["analyze", str(LEAK), "--html", str(LEAK), "-q"]) == 2  # its own input
    assert "refusing to overwrite the input" in capsys.readouterr().err


def packets_of(capture: Path, a: str, b: str) -> list[tuple[float, str, "object"]]:
    """(time, sender "a" or "b", TCP header) of the connection between a and b."""
    import dpkt

    ends = {a: "a", b: "b"}
    out = []
    with capture.open("rb") as f:
        for ts, frame in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(frame).data
            tcp = ip.data
            src = f"{ip_str(ip.src)}:{tcp.sport}"
            dst = f"{ip_str(ip.dst)}:{tcp.dport}"
            if {src, dst} == {a, b}:
                out.append((ts, ends[src], tcp))
    return out


def ip_str(raw: bytes) -> str:
    import ipaddress

    return str(ipaddress.ip_address(raw))


@pytest.mark.parametrize("sample", ["close_wait_leak", "close_wait_reset"])
def test_stuck_evidence_is_the_packets_own_times(sample):
    """The FIN, its ACK and the RST named for each stuck connection are those packets."""
    import dpkt

    from pcapstate.pipeline import analyze

    result = analyze([str(SAMPLES / f"{sample}.pcap")])
    examples = [ex for f in result["findings"] for ex in f["examples"]]
    assert examples
    for ex in examples:
        pkts = packets_of(SAMPLES / f"{sample}.pcap", ex["endpoint"], ex["peer"])
        fin_ts, fin = next((ts, t) for ts, who, t in pkts
                           if who == "b" and t.flags & dpkt.tcp.TH_FIN)
        ack_ts = next(ts for ts, who, t in pkts if who == "a" and t.flags & dpkt.tcp.TH_ACK
                      and t.ack == fin.seq + len(fin.data) + 1)
        rst = [ts for ts, _, t in pkts if t.flags & dpkt.tcp.TH_RST]
        assert ex["fin_ts"] == pytest.approx(fin_ts, abs=1e-6)
        assert ex["ack_ts"] == pytest.approx(ack_ts, abs=1e-6)
        assert ex["rst_ts"] == (pytest.approx(rst[0], abs=1e-6) if rst else None)
    if sample == "close_wait_reset":
        assert all(ex["outcome"] == "reset_by_peer" for ex in examples)


@pytest.mark.parametrize("records", ["in --json", "in --jsonl"])
def test_report_of_a_saved_result_is_the_report_of_the_capture(tmp_path, records):
    """`pcapstate report RESULT.json` writes what `analyze --report` wrote, byte for byte
    (the result keeps the command line and the sha256 of its captures)."""
    direct, saved = tmp_path / "direct", tmp_path / "saved"
    direct.mkdir()
    saved.mkdir()
    result = tmp_path / "result.json"
    extra = ["--jsonl", str(tmp_path / "records.jsonl")] if records == "in --jsonl" else []
    assert main(["analyze", str(LEAK), "--json", str(result), "--report",
                 str(direct / "r.md"), "--html", str(direct / "r.html"), "-q", *extra]) == 0
    assert main(["report", str(result), "--report", str(saved / "r.md"), "--html",
                 str(saved / "r.html")]) == 0
    for name in ("r.md", "r.html", "r-charts/durations.png", "r-charts/close_wait.png"):
        assert (saved / name).read_bytes() == (direct / name).read_bytes(), name
    assert "Connection 1, 127.0.0.1:46564 to 127.0.0.1:5001: 2026-11-24 19:24:44.869Z the " \
        "peer's FIN" in (saved / "r.md").read_text()


def test_read_result_stops_before_the_records(tmp_path):
    import json

    from pcapstate.render.output import read_result

    path = tmp_path / "r.json"
    assert main(["analyze", str(LEAK), "--json", str(path), "-q"]) == 0
    whole = json.loads(path.read_text())
    assert len(whole.pop("connection_records")) == 5
    with path.open() as f:
        assert read_result(f) == whole


@pytest.mark.parametrize("records", [0, 1, 3, 4000])
def test_the_records_spooled_become_the_results_last_array(records):
    """The records' lines, each ending with SEPARATOR, spooled a few at a time, become the
    result's last array (write_json, from a file by the kernel, from memory, and in the
    file they were written into, moved up in place past MOVE): every record once, in order,
    also one with a newline in a string; read_result reads the head alone."""
    import io
    import json
    import tempfile
    from functools import partial

    from pcapstate.render.output import SEPARATOR, Behind, read_result, write_all, write_json

    rows = [{"id": i, "text": "a\nb" if i == 1 else "x" * (300 + i % 7)}
            for i in range(records)]
    lines = [json.dumps(r).encode() + SEPARATOR.encode() for r in rows]
    for spool in (io.BytesIO(), tempfile.TemporaryFile()):
        behind = Behind()  # in order, from its thread
        for at in range(0, records, 7):
            behind.later(partial(write_all, spool, b"".join(lines[at:at + 7])))
        behind.close()
        in_place = () if isinstance(spool, io.BytesIO) else (spool,)  # the file itself, last
        for out in (io.BytesIO(), tempfile.TemporaryFile(), *in_place):
            write_json(out, {"schema": "s", "n": records}, spool)
            out.seek(0)
            text = out.read().decode()
            assert json.loads(text) == {"schema": "s", "n": records, "connection_records": rows}
            assert read_result(io.StringIO(text)) == {"schema": "s", "n": records}
            assert text.endswith("\n ]\n}\n")
            if records:  # a record a line, a comma after each but the last
                assert text.split('"connection_records": [\n', 1)[1].splitlines()[:-2] == \
                    [line.decode().rstrip("\n") for line in lines[:-1]] + \
                    [lines[-1].decode()[:-len(SEPARATOR)]]


def test_behind_runs_what_each_job_leaves_after_it_in_order_in_a_second_thread():
    """render/output.py Behind: the functions a job yields run after it, in order, in a
    thread of their own (neither the caller's nor the jobs'); a failure of one of them is
    raised by `close`."""
    import threading
    from functools import partial

    from pcapstate.render.output import Behind

    done: list[tuple[int, int]] = []
    threads: dict[str, set[int]] = {"job": set(), "after": set()}

    def after(i, k):
        threads["after"].add(threading.get_ident())
        done.append((i, k))

    def job(i):
        threads["job"].add(threading.get_ident())
        for k in range(3):
            yield partial(after, i, k)

    behind = Behind()
    for i in range(200):
        behind.later(partial(job, i))
    behind.close()
    assert done == [(i, k) for i in range(200) for k in range(3)]
    assert len(threads["job"]) == len(threads["after"]) == 1
    assert threads["job"] != threads["after"]
    assert threading.get_ident() not in threads["job"] | threads["after"]

    def full():
        raise OSError(28, "No space left on device")

    behind = Behind()
    behind.later(lambda: [full])
    with pytest.raises(OSError, match="No space"):
        behind.close()


@pytest.mark.parametrize(("content", "says"), [
    (None, "nothing to write"),
    (b'{"schema": "pcapstate-result/0"}', "is a pcapstate-result/0 result; this pcapstate "
                                          "reads pcapstate-result/1, pcapstate-result/2 and "
                                          "pcapstate-result/3"),
    (b'{"a": 1}', "is not a pcapstate result"),
    (b'{"a": ', "is not valid JSON"),
    (b"\xd4\xc3\xb2\xa1\x02\x00", "is not a JSON file"),
    (b'{"schema": "pcapstate-result/1"}', "bad.json: pcapstate_version: missing"),
])
def test_report_of_a_bad_result_is_a_one_line_error(tmp_path, capsys, content, says):
    path = tmp_path / "bad.json"
    path.write_bytes(content or b"{}")
    out = ["--html", str(tmp_path / "r.html")] if content else []
    assert main(["report", str(path), *out]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()


class Rendered(HTMLParser):
    """The structure of rendered Markdown: tables as rows of cells, images, code, tags."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self.code: list[str] = []  # code blocks
        self.spans: list[str] = []  # code spans, within a paragraph
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self._in_code: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag == "code":
            self._in_code = self.code if self.tags[-2:-1] == ["pre"] else self.spans
            self._in_code.append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell or []))
            self._cell = None
        elif tag == "code":
            self._in_code = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._in_code is not None:
            self._in_code[-1] += data


@pytest.mark.parametrize("name", ["leak", "hostile"])
def test_markdown_renders_as_github_renders_it(tmp_path, name):
    """Through cmark-gfm, GitHub's own renderer (GitLab's is also CommonMark with GFM
    tables): every table keeps its columns, every image resolves beside the report, each
    filter is a code block, and nothing from the capture becomes markup."""
    cmarkgfm = pytest.importorskip("cmarkgfm")
    from cmarkgfm.cmark import Options

    capture = LEAK
    if name == "hostile":
        capture = tmp_path / "<b onclick=x>y |a|b| *c* `d` [e](f) &amp; é.pcap"
        shutil.copy(LEAK, capture)
    md, _ = report(tmp_path, capture, "--zeek")
    page = Rendered()
    page.feed(cmarkgfm.github_flavored_markdown_to_html(md, options=Options.CMARK_OPT_UNSAFE))
    assert len(page.tables) == 7  # files, facts, accounting, endings, Zeek, findings, durations
    for table in page.tables:
        assert len({len(row) for row in table}) == 1, table
    assert page.tables[0][1][0] == str(capture)  # the file name, verbatim as text
    assert ["vantage point"] == [r[0] for r in page.tables[1] if r[0] == "vantage point"]
    assert len(page.images) == 4 and all((tmp_path / src).is_file() for src in page.images)
    assert len(page.code) == 5 and all(c.startswith("((ip.src==127.0.0.1") for c in page.code)
    # the diagnosis's command to run, a code span (not the capture's name's `d`)
    assert page.spans == ["ss -tanp state close-wait"]
    assert not any("`" in t for t in page.text if "What to check" in t)
    assert set(page.tags) <= {"h1", "h2", "h3", "p", "strong", "table", "thead", "tbody", "tr",
                              "th", "td", "pre", "code", "img"}
    assert page.text[0] == f"pcapstate report: {capture}"


def flood_and_scan(path: Path) -> None:
    """bench/make_floods.py's SYN flood, small: 3,000 clients connecting to 192.0.2.1:80
    from as many sources, 100 a second, each sending its SYN again 1, 3, 7 and 15 s later
    (Linux's backoff) and still trying when the capture ends; beside a CLOSE_WAIT leak at
    192.0.2.1:5001; and a scan, 29 s in: one client's SYNs to 30 services, retried the same
    way, never answered, still tried at the end."""
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location(
        "make_floods", SAMPLES.parent / "bench" / "make_floods.py")
    assert spec is not None and spec.loader is not None
    mf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mf)
    retries = np.array([0.0, 1.0, 3.0, 7.0, 15.0])
    n, r = 3000, len(retries)
    k = np.repeat(np.arange(n, dtype=np.int64), r)
    ts = mf.START + 1.0 + k / 100 + np.tile(retries, n)
    flood = [ts, (10 << 24) + 1 + k, np.full(n * r, int.from_bytes(mf.SERVER, "big")),
             1024 + (k * 7919) % 64512, np.full(n * r, 80), (k * 2654435761) & 0xFFFFFFFF,
             np.zeros(n * r), np.full(n * r, mf.SYN)]
    leak = mf.columns(mf.leak(mf.START, float(ts.max()) + 1))
    scan = mf.columns([(mf.START + 30.0 + i / 100 + dt, mf.address(198, 51, 100, 9),
                        mf.address(203, 0, 113, 1 + i), 40000 + i, 443, 77 * i, 0, mf.SYN)
                       for i in range(30) for dt in retries])
    path.write_bytes(mf.HEADER + mf.sorted_frames(
        [np.concatenate(cols) for cols in zip(flood, leak, scan, strict=True)]))


def test_a_flood_is_one_group_and_the_output_stays_small(tmp_path, capsys):
    """Stuck clients are grouped by the service they tried to reach: 3,000 sources flooding
    one service are one group, not 3,000. The terminal summary and the reports show the
    worst groups and say how many more there are (a scan of 30 services); the JSON keeps
    every group."""
    import json

    capture, result = tmp_path / "flood.pcap", tmp_path / "r.json"
    flood_and_scan(capture)
    assert main(["analyze", str(capture), "--json", str(result), "--report",
                 str(tmp_path / "r.md"), "--html", str(tmp_path / "r.html")]) == 0
    summary = capsys.readouterr().out
    findings = json.loads(result.read_text())["findings"]
    assert len(findings) == 32  # the flood, the leak, each service scanned
    flood, leak, *scanned = findings
    assert (flood["state"], flood["service"], flood["role"]) == (
        "SYN_SENT", "192.0.2.1:80", "client")
    assert flood["count"] == 3000 and len(flood["examples"]) == 10  # each over 15 s
    assert len({ex["endpoint"].split(":")[0] for ex in flood["examples"]}) == 10
    assert (leak["state"], leak["service"], leak["role"]) == (
        "CLOSE_WAIT", "192.0.2.1:5001", "server")
    assert [f["service"] for f in scanned] == [f"203.0.113.{1 + i}:443" for i in range(30)]
    assert {(f["state"], f["role"], f["count"]) for f in scanned} == {
        ("SYN_SENT", "client", 1)}

    assert len(summary.splitlines()) <= 50, summary  # with 2 diagnoses
    assert f"SYN_SENT     192.0.2.1:80 (client): {flood['count']:,} connections" in summary
    assert "203.0.113.8:443 (client)" in summary and "203.0.113.9:443" not in summary
    assert "  and 22 more groups (22 stuck endpoints; the JSON result lists every group)" \
        in summary

    md = (tmp_path / "r.md").read_text()
    assert len(md) < 20_000 and (tmp_path / "r.html").stat().st_size < 400_000
    verdict = md.split("## Verdict", 1)[1].split("##", 1)[0]
    assert f"**{flood['count']:,} connections to 192.0.2.1:80 (client side) were left in " \
           "SYN\\_SENT" in verdict
    # the CLOSE_WAIT leak is a diagnosis, first; of the other 31 groups, the first 10
    assert verdict.index("192.0.2.1:5001: 1 connection left in CLOSE\\_WAIT") \
        < verdict.index("connections to 192.0.2.1:80 (client side)")
    assert "**And 21 more groups (21 stuck endpoints; the JSON result lists every group).**" \
        in verdict
    table = md.split("## Stuck endpoints by service", 1)[1].split("##", 1)[0]
    assert table.count("| SYN\\_SENT |") == 9 and "And 22 more groups" in table
    # the top stuck groups' examples but CLOSE_WAIT's (5 + 8), then the diagnoses' (the
    # leak's 1, and 5 of the connects that timed out)
    assert md.count("Wireshark display filter") == 5 + 8 + 1 + 5


def test_a_timestamp_no_date_can_show_is_written_as_seconds(tmp_path, capsys):
    """pcapng's 64-bit clock (here in whole seconds) allows the year 31 million: analyze
    summarises and reports it without a traceback; a saved result with such a timestamp is
    refused by `pcapstate report` (the schema's range), in one line."""
    def block(kind: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", kind, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))

    frame = (b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
             + bytes([0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
             + struct.pack(">HHIIBBHHH", 1234, 80, 1, 0, 0x50, 0x02, 1000, 0, 0))
    ts = 10**15  # seconds: if_tsresol 10^0
    capture = tmp_path / "far.pcapng"
    capture.write_bytes(
        block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
        + block(1, struct.pack("<HHI", 1, 0, 65535) + struct.pack("<HHB3xHH", 9, 1, 0, 0, 0))
        + block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame))
                + frame))
    result = tmp_path / "r.json"
    assert main(["analyze", str(capture), "--json", str(result), "--report",
                 str(tmp_path / "r.md")]) == 0
    assert "from 1000000000000000.000000 s since 1970 (no date) to" in capsys.readouterr().out
    assert "| time span | 1000000000000000.000000 s since 1970 (no date) to" in \
        (tmp_path / "r.md").read_text()
    assert main(["report", str(result), "--html", str(tmp_path / "r.html")]) == 2
    assert capsys.readouterr().err == (
        f"pcapstate: error: {result}: capture.first_ts: expected a timestamp (seconds since "
        "1970, before the year 10000), got 1000000000000000.0\n")
