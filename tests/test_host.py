"""Host evidence (--ss, derive/host.py): the kernel's own socket lists, taken during each
incident of the kernel samples (samples/NAME.ss-during.txt, `ss -tanp` in each namespace),
joined to the capture: the kernel is the ground truth for every socket it lists."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pcapstate.cli import main
from pcapstate.derive.host import read_ss
from pcapstate.pipeline import analyze

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def records_of(name: str, views: list) -> tuple[dict, list[dict]]:
    records: list[dict] = []
    result = analyze([str(SAMPLES / f"{name}.pcap")], on_record=records.append, hosts=views)
    return result, records


@pytest.mark.parametrize("name", ["peer_gone", "unread_close"])
def test_every_socket_the_kernel_listed_is_in_the_state_pcapstate_gives(name):
    view = read_ss(str(SAMPLES / f"{name}.ss-during.txt"))
    result, _ = records_of(name, [view])
    [host] = result["host_evidence"]
    assert host["taken_at"] == view.taken_at and host["sockets"] == len(view.sockets) > 0
    assert host["agree"] == host["in_capture"] == host["sockets"]
    assert host["disagreements"] == []


def test_the_processes_holding_a_diagnosed_service_are_named():
    """unread_close: the server (pid in the kernel's list) holds the socket whose unread
    request it will reset."""
    result, _ = records_of("unread_close", [read_ss(str(SAMPLES / "unread_close.ss-during.txt"))])
    [held] = result["host_evidence"][0]["held_by"]
    assert (held["service"], held["state"], held["sockets"]) == ("10.86.0.2:8080",
                                                                 "ESTABLISHED", 1)
    assert held["process"].startswith("python3 (pid ")


def test_a_host_across_the_path_differs_by_the_path_delay():
    """keepalive_race is captured at the server, 50 ms each way from the client. Of the 18
    sockets the kernels listed, one is a client's SYN_SENT whose SYN reaches the capture a
    one-way delay later (50.6 ms); one is a racing client in LAST_ACK: it had received the
    server's FIN (CLOSE_WAIT) and sent its own FIN before the server's RST (answering its
    request) reached it; the capture sees that FIN 33 ms after the RST, and pcapstate
    takes it as sent before the RST arrived (within a round trip of it), then the client
    closed by the RST when it arrived, an inference. Every other socket agrees."""
    view = read_ss(str(SAMPLES / "keepalive_race.ss-during.txt"))
    result, records = records_of("keepalive_race", [view])
    host = result["host_evidence"][0]
    assert (host["sockets"], host["in_capture"], host["agree"]) == (18, 17, 16)
    [off] = host["disagreements"]
    assert (off["host"], off["pcapstate"]) == ("LAST_ACK", "CLOSE_WAIT")
    [race] = [r for r in records if r["id"] == off["conn_id"]]
    moves = race["endpoints"]["client"]["transitions"]
    assert [t["state"] for t in moves][-3:] == ["CLOSE_WAIT", "LAST_ACK", "CLOSED"]
    assert moves[-1].get("inferred") and "packet_after_close" not in race["anomalies"]
    assert 0 < moves[-2]["ts"] - view.taken_at < 0.06  # its FIN: a one-way delay later
    seen = {(r["client"], r["server"]) for r in records if r["first_ts"] <= view.taken_at}
    [unseen] = [s for s in view.sockets if (s.local, s.peer) not in seen
                and (s.peer, s.local) not in seen]
    [later] = [r for r in records if r["client"] == unseen.local]
    assert unseen.state == "SYN_SENT" and 0 < later["first_ts"] - view.taken_at < 0.06


@pytest.mark.parametrize(("arg", "says"), [
    ("nothing-here.txt", "nothing-here.txt: No such file or directory"),
    ("{samples}/peer_gone.expected.json@soon", "'soon' is not a time"),
    ("{samples}/peer_gone.expected.json", "not the output of ss -tanp or netstat -tanp"),
])
def test_a_bad_host_list_is_a_one_line_error(arg, says, capsys):
    assert main(["analyze", str(SAMPLES / "peer_gone.pcap"), "-q", "--ss",
                 arg.format(samples=SAMPLES)]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1


def test_netstat_and_a_time_given_on_the_command_line(tmp_path):
    """netstat -tanp's columns, the time after @ (ISO 8601), without a '# taken at' line."""
    listing = tmp_path / "netstat.txt"
    listing.write_text(
        "Proto Recv-Q Send-Q Local Address           Foreign Address         State       "
        "PID/Program name\n"
        "tcp        0      0 10.86.0.2:8080          0.0.0.0:*               LISTEN      "
        "8312/python3\n"
        "tcp    20000      0 10.86.0.2:8080          10.86.0.1:49566         ESTABLISHED "
        "8312/python3\n")
    taken = read_ss(str(SAMPLES / "unread_close.ss-during.txt")).taken_at
    view = read_ss(f"{listing}@{datetime.fromtimestamp(taken, UTC).isoformat()}")
    assert [(s.state, s.local, s.peer, s.process) for s in view.sockets] == [
        ("ESTABLISHED", "10.86.0.2:8080", "10.86.0.1:49566", "python3 (pid 8312)")]
    result, _ = records_of("unread_close", [view])
    assert result["host_evidence"][0]["agree"] == 1


def test_a_list_without_processes_says_the_process_is_unknown(tmp_path, capsys):
    """The samples' NAME.ss.txt are `ss -tanH`, without -p: no line names a process, so the
    5 CLOSE-WAIT sockets the kernel listed on the leaking service are held by a process the
    list cannot name, not by none (orphaned); in the summary and the report alike."""
    listing = SAMPLES / "close_wait_leak.ss.txt"
    assert "users:(" not in listing.read_text()
    result, _ = records_of("close_wait_leak", [read_ss(str(listing))])
    [held] = result["host_evidence"][0]["held_by"]
    assert (held["service"], held["state"], held["sockets"]) == ("127.0.0.1:5001",
                                                                 "CLOSE_WAIT", 5)
    unknown = "an unknown process (the list names none: ss or netstat was run without -p)"
    assert held["process"] == unknown
    md = tmp_path / "r.md"
    assert main(["analyze", str(SAMPLES / "close_wait_leak.pcap"), "--ss", str(listing),
                 "--report", str(md)]) == 0
    assert f"127.0.0.1:5001: 5 sockets in CLOSE_WAIT, held by {unknown}" \
        in capsys.readouterr().out
    assert f"| 127.0.0.1:5001 | CLOSE\\_WAIT | {unknown} | 5 |" in md.read_text()
    assert "no process" not in md.read_text()


def test_a_list_with_processes_says_why_a_socket_has_none():
    """keepalive_race's list during the incident is `ss -tanp`: the server's TIME-WAIT
    sockets belong to the kernel alone, its FIN-WAIT-1 one (the keep-alive timeout's close)
    to no process any more, its ESTAB one to the server."""
    view = read_ss(str(SAMPLES / "keepalive_race.ss-during.txt"))
    result, _ = records_of("keepalive_race", [view])
    held = {h["state"]: (h["process"], h["sockets"])
            for h in result["host_evidence"][0]["held_by"]}
    server = [s for s in view.sockets if s.local == "10.84.0.2:80"]
    assert held["TIME_WAIT"] == ("no process (TIME_WAIT: the kernel's alone)",
                                 sum(s.state == "TIME_WAIT" for s in server))
    assert held["FIN_WAIT_1"] == ("no process (orphaned: its process closed it, or exited)", 1)
    assert held["ESTABLISHED"][0].startswith("python3 (pid ")


def packet_times(name: str) -> tuple[float, float]:
    """The first and last packet's time of a sample, as dpkt reads them."""
    import dpkt

    with (SAMPLES / f"{name}.pcap").open("rb") as f:
        times = [ts for ts, _ in dpkt.pcap.Reader(f)]
    return times[0], times[-1]


def days_and_hours(gap: float) -> str:
    return f"{int(gap // 86400):,}d{int(gap % 86400 // 3600):02d}h"


@pytest.mark.parametrize("where", ["before", "after", "during"])
def test_a_list_taken_outside_the_capture_is_warned_of(tmp_path, capsys, where):
    """A time given with @ before the capture's first packet (2020, the capture is of
    2026), or a '# taken at' line after its last (2030): a warning, by how much, in the
    result and the summary; the time of a list taken during the incident: none."""
    first, last = packet_times("close_wait_leak")
    listing = SAMPLES / "close_wait_leak.ss.txt"
    arg = f"{listing}@2020-01-01T00:00:00Z"
    if where == "after":
        arg = str(tmp_path / "later.ss.txt")
        (tmp_path / "later.ss.txt").write_text("# taken at 2030-01-01T00:00:00Z\n"
                                               + listing.read_text())
    elif where == "during":
        arg = f"{listing}@{first + 10}"
    result, _ = records_of("close_wait_leak", [read_ss(arg)])
    said = [w for w in result["warnings"] if w.startswith("--ss ")]
    if where == "during":
        assert said == []
        return
    [warning] = said
    if where == "before":
        gap = first - datetime(2020, 1, 1, tzinfo=UTC).timestamp()
        assert f"taken at 2020-01-01 00:00:00.000Z, {days_and_hours(gap)} before the " \
               "capture's first packet" in warning
    else:
        gap = datetime(2030, 1, 1, tzinfo=UTC).timestamp() - last
        assert f"taken at 2030-01-01 00:00:00.000Z, {days_and_hours(gap)} after the capture " \
               "ended" in warning
    assert "cannot be trusted" in warning
    assert main(["analyze", str(SAMPLES / "close_wait_leak.pcap"), "--ss", arg]) == 0
    assert f"warning: {warning}" in capsys.readouterr().out


@pytest.mark.parametrize("listing", ["close_wait_leak.ss.txt", "unread_close.ss-during.txt"])
def test_the_report_says_when_the_list_was_taken_in_a_sentence(tmp_path, listing):
    """The Markdown and HTML reports open each list's section with a sentence: when it was
    taken (its '# taken at' line), or that no time was given; then its sockets (the
    connected ones its lines list)."""
    import html

    text = (SAMPLES / listing).read_text()
    stamp = next((line.split("taken at", 1)[1].split()[0] for line in text.splitlines()
                  if line.startswith("# taken at")), None)
    sockets = sum(1 for line in text.splitlines()
                  if line.split()[:1] and line.split()[0] not in ("LISTEN", "State", "#"))
    opening = (f"Taken at {datetime.fromtimestamp(float(stamp), UTC):%Y-%m-%d %H:%M:%S.%f}"[:-3]
               + "Z." if stamp else "No time given: the sockets are compared with the "
               "states at capture end.") + f" {sockets} sockets, {sockets} of them in the capture"
    md, page = tmp_path / "r.md", tmp_path / "r.html"
    name = listing.split(".")[0]
    assert main(["analyze", str(SAMPLES / f"{name}.pcap"), "--ss", str(SAMPLES / listing),
                 "--report", str(md), "--html", str(page), "-q"]) == 0
    section = md.read_text().split("## Host sockets", 1)[1].split("\n\n", 2)[1]
    assert section.startswith(opening.replace("_", "\\_")), section
    assert f"<p>{html.escape(opening)}" in page.read_text()
    assert "Taken no time" not in md.read_text()
