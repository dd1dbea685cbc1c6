"""The connection-table limit (--max-connections): floods are evicted, counted and
reported; the connections that matter stay; the tracker's arrays stay within the limit."""

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pcapstate.cli import main
from pcapstate.derive.summary import Summary
from pcapstate.pipeline import analyze
from pcapstate.settings import Settings
from pcapstate.track.connections import FREE_N, FRESH, KEYS_N, Tracker
from pcapstate.track.slots import INLINE
from tests.transcript import batch_of

ROOT = Path(__file__).resolve().parent.parent
CLIENT, SERVER = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
SYN, ACK, FIN = 0x02, 0x10, 0x01


@pytest.fixture(scope="module")
def floods(tmp_path_factory) -> Path:
    """bench/make_floods.py's captures, small: 3,000 SYNs at 300 a second beside a
    CLOSE_WAIT leak; 3,000 idle connections opened at 1,000 a second."""
    out = tmp_path_factory.mktemp("floods")
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_floods.py"), "--count", "3000",
                    "--rate", "300", "--out", str(out)], check=True, capture_output=True)
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_floods.py"), "--count", "3000",
                    "--rate", "1000", "--out", str(out / "idle")], check=True,
                   capture_output=True)
    return out


def analysed(path: Path, limit: int) -> tuple[dict, list[dict]]:
    """The result and the records."""
    records: list[dict] = []
    result = analyze([str(path)], Settings(max_connections=limit), on_record=records.append)
    return result, records


def run(rows: list[tuple], s: Settings) -> tuple[dict, list[dict]]:
    """The summary and the records of segments given as tests.transcript.batch_of rows."""
    records: list[dict] = []
    s = replace(s, zeek=True)  # (records hold Zeek's view)
    summary = Summary(s, records.append)
    tracker = Tracker(s, summary.take, slots=2)
    tracker.feed(batch_of(rows))
    tracker.finish(rows[-1][0] + 100)
    return summary.to_json(tracker.evicted), records


def test_a_syn_flood_recycles_its_own_attempts_and_the_leak_is_still_found(floods):
    result, records = analysed(floods / "syn_flood.pcap", 1000)
    conns = result["connections"]
    assert conns["total"] == 3001
    assert conns["evicted"] == {"total": 2001, "finished": 0, "attempt": 2001, "open": 0}
    assert result["peak_live_connections"] == 1000
    assert conns["by_end"] == {"evicted": 2001, "unanswered": 999, "half_closed": 1}
    evicted = [r for r in records if r["evicted"]]
    assert len(evicted) == 2001 and {r["end"] for r in evicted} == {"evicted"}
    assert {r["server"] for r in evicted} == {"192.0.2.1:80"}
    # the oldest attempts went first: the evicted are the flood's first 2,001 SYNs
    assert sorted(r["id"] for r in evicted) == list(range(2, 2003))
    [finding] = result["findings"]
    assert (finding["state"], finding["service"], finding["count"]) == (
        "CLOSE_WAIT", "192.0.2.1:5001", 1)
    [warning] = result["warnings"]
    assert "connection table was full (1,000 connections" in warning
    assert "2,001 connections were evicted" in warning


def test_idle_connections_beyond_the_limit_evict_the_least_recently_active(floods):
    """Handshakes in progress are not broken up to keep idle connections: every handshake
    stays whole, and the oldest idle connections make room."""
    result, records = analysed(floods / "idle" / "idle_million.pcap", 1000)
    conns = result["connections"]
    assert conns["total"] == 3000
    assert conns["roles_from"] == {"syn": 3000}
    assert conns["evicted"] == {"total": 2000, "finished": 0, "attempt": 0, "open": 2000}
    assert sorted(r["id"] for r in records if r["end"] == "evicted") == list(range(1, 2001))
    assert sorted(r["id"] for r in records if r["end"] == "open") == list(range(2001, 3001))


def test_without_a_limit_nothing_is_evicted(floods):
    """3,000 SYNs at 300 a second, never sent again: each flood client gave up a second
    after its SYN (the initial retransmission timeout; known a little later) and its
    connection, closed, leaves the table 5 s (linger) after its last packet, at the next
    sweep (every second): about 300 x 6 live at once, not all 3,001."""
    result, records = analysed(floods / "syn_flood.pcap", 0)
    assert result["connections"]["evicted"]["total"] == 0
    assert 300 * 5 <= result["peak_live_connections"] <= 300 * 6 + 1
    assert result["warnings"] == []
    flood = [r for r in records if r["end"] == "unanswered"]
    end = result["capture"]["end_ts"]
    assert len(flood) == 3000
    for r in flood:  # those whose give-up the capture shows: due 1 s after the SYN, known
        if r["first_ts"] + 1.0 * 1.125 + 0.2 <= end:  # an eighth of that and 200 ms later
            assert r["endpoints"]["client"]["transitions"][-1] == {
                "ts": pytest.approx(r["first_ts"] + 1.0), "state": "CLOSED", "timer": True}
        else:
            assert r["endpoints"]["client"]["final_state"] == "SYN_SENT"


def short(i: int, ts: float) -> list[tuple]:
    """Connection i, closed by the client: its client is left in TIME_WAIT."""
    port, c, s = 20000 + i, 1000 * i, 7_000_000 + i
    return [(ts, CLIENT, SERVER, port, 80, c, 0, SYN, 0),
            (ts + 0.01, SERVER, CLIENT, 80, port, s, c + 1, SYN | ACK, 0),
            (ts + 0.02, CLIENT, SERVER, port, 80, c + 1, s + 1, FIN | ACK, 0),
            (ts + 0.03, SERVER, CLIENT, 80, port, s + 1, c + 2, FIN | ACK, 0),
            (ts + 0.04, CLIENT, SERVER, port, 80, c + 2, s + 2, ACK, 0)]


def idle(port: int, ts: float) -> list[tuple]:
    """An established connection that then says nothing."""
    return [(ts, CLIENT, SERVER, port, 443, 5, 0, SYN, 0),
            (ts + 0.01, SERVER, CLIENT, 443, port, 9, 6, SYN | ACK, 0),
            (ts + 0.02, CLIENT, SERVER, port, 443, 6, 10, ACK, 0)]


def test_finished_connections_go_first_and_keep_their_end():
    rows = idle(50000, 0.0) + [r for i in range(50) for r in short(i, 1.0 + i)]
    s = Settings(max_connections=10)
    summary, records = run(rows, s)
    assert summary["connections"]["evicted"] == {"total": 41, "finished": 41, "attempt": 0,
                                                 "open": 0}
    assert summary["connections"]["by_end"] == {"closed": 50, "open": 1}
    evicted = [r for r in records if r["evicted"]]
    assert len(evicted) == 41 and {r["end"] for r in evicted} == {"closed"}
    # evicted before its TIME_WAIT ran out: the state is as it was then
    assert {r["endpoints"]["client"]["final_state"] for r in evicted} == {"TIME_WAIT"}
    assert not [r for r in records if r["server"].endswith(":443") and r["evicted"]]


def test_a_segment_of_an_evicted_connection_starts_a_new_one():
    rows = idle(50000, 0.0) + idle(50001, 5.0)
    rows.append((6.0, CLIENT, SERVER, 50000, 443, 6, 10, ACK, 10))
    s = Settings(max_connections=1)
    summary, records = run(rows, s)
    assert [(r["id"], r["server"], r["end"], r["roles_from"]) for r in records] == [
        (1, "10.0.0.2:443", "evicted", "syn"), (2, "10.0.0.2:443", "evicted", "syn"),
        (3, "10.0.0.2:443", "open", "port")]
    assert records[2]["client"] == "10.0.0.1:50000" and records[2]["mid_stream"]
    assert summary["connections"]["evicted"]["open"] == 2


def test_the_compiled_engine_stays_within_the_limit():
    """Slots grow up to the limit and a sixteenth more (at least 1,024); the timer heap
    drops superseded entries instead of growing with the connections evicted; the table
    holds a key for each live connection, no more (evicted ones are removed)."""
    s = Settings(max_connections=100, time_wait=60.0)
    rows = [r for i in range(6000) for r in short(i % 30000, 0.001 * i)]
    rows.sort(key=lambda r: r[0])
    tracker = Tracker(s, Summary(s).take, slots=16)
    for k in range(0, len(rows), 1000):
        tracker.feed(batch_of(rows[k:k + 1000]))
        assert tracker.live <= 100
        assert len(tracker.T) <= 100 + 1024
        assert len(tracker.heap) <= 4 * (2 * 100 + 1024)
        keys = tracker.table["value"] >= 0
        assert tracker.S[KEYS_N] == keys.sum() == tracker.live and len(tracker.table) == 1024
        assert np.all(tracker.T["cid"][tracker.table["value"][keys] // 2] > 0)
        blocks_accounted(tracker)
    assert tracker.evicted == [5900, 0, 0]
    # the free slots, those in the free list and those never taken, are the empty ones
    fresh = int(tracker.S[FRESH])
    given_back = tracker.free[:int(tracker.S[FREE_N]) - (len(tracker.T) - fresh)]
    free = np.concatenate([given_back, np.arange(fresh, len(tracker.T))])
    assert sorted(free) == np.flatnonzero(tracker.T["cid"] == 0).tolist()
    tracker.finish(rows[-1][0] + 100)
    assert blocks_accounted(tracker) == 0


def blocks_accounted(tracker: Tracker) -> int:
    """Each block of the pool of moves (track/slots.py MOVES) ever taken is held by one
    live connection's endpoint or free, once; they are at most two a slot, and each live
    endpoint past its slot's moves holds one. The blocks held."""
    P, T = tracker.P, tracker.T
    taken = int(P["ts"][0, 0])
    free, b = [], int(P["next"][0])
    while b and len(free) <= taken:
        free.append(b)
        b = int(P["next"][b])
    live = T["cid"] > 0
    held = T["mv_more"][live]
    assert np.all(T["mv_more"][~live] == 0)
    assert np.all(held[T["ntr"][live] > INLINE] > 0)
    assert np.all(T["ntr"][live][held > 0] >= INLINE)  # (INLINE: a move taken back)
    assert sorted(free + held[held > 0].tolist()) == list(range(1, taken + 1))
    assert taken <= 2 * len(T) and len(P) == 2 * len(T) + 1
    return int((held > 0).sum())


def test_command_line_and_configuration(tmp_path, floods, capsys):
    flood = str(floods / "syn_flood.pcap")
    assert main(["analyze", flood, "--max-connections", "1000"]) == 0
    out = capsys.readouterr()
    assert "Connections: 3,001; at most 1,000 at once (limit 1,000); 2,001 evicted from the " \
           "full table (0 finished, 2,001 handshake attempts, 0 open)" in out.out
    assert "warning: the connection table was full" in out.out
    with pytest.raises(SystemExit) as usage:
        main(["analyze", flood, "--max-connections", "-1"])
    assert usage.value.code == 2
    assert "argument --max-connections: not a whole number: '-1'" in capsys.readouterr().err
    report = tmp_path / "r.md"
    assert main(["analyze", flood, "--max-connections", "1000", "-q", "--report",
                 str(report)]) == 0
    text = report.read_text()
    assert "| connection table | at most 1,000 at once (limit 1,000); 2,001 evicted" in text
    # check: the golden keeps the evictions, and the configuration sets the limit
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "flood.pcap").symlink_to(flood)
    (corpus / "pcapstate.toml").write_text("max-connections = 1000\n")
    assert main(["check", str(corpus), "--update"]) == 0
    golden = json.loads((corpus / "flood.pcap.golden.json").read_text())
    assert golden["evicted"] == 2001 and golden["settings"]["max_connections"] == 1000
    capsys.readouterr()
    assert main(["check", str(corpus), "--max-connections", "2000"]) == 1
    out = capsys.readouterr().out  # 2,000 is more than the flood keeps live (above)
    assert "connections evicted from a full table: 0, expected 2001" in out
    (corpus / "pcapstate.toml").write_text("max-connections = \"many\"\n")
    assert main(["check", str(corpus)]) == 2
    assert "max-connections must be a whole number" in capsys.readouterr().err


def test_evictions_make_a_clean_looking_run_inconclusive(tmp_path, capsys):
    """The CLOSE_WAIT leak sample (5 endpoints stuck) in a table of 4: the stuck connections
    are evicted again and again (their keep-alives bring them back as new ones), so no
    endpoint is found stuck. --fail-on cannot pass then (exit 3, as for TCP not decoded),
    a policy of check fails as inconclusive, and the connections seen mid-stream are not
    all said to predate the capture."""
    leak = str(Path(__file__).resolve().parent.parent / "samples" / "close_wait_leak.pcap")
    assert main(["analyze", leak, "--fail-on", "close-wait"]) == 1  # the whole table
    capsys.readouterr()
    assert main(["analyze", leak, "--max-connections", "4", "--fail-on", "close-wait"]) == 3
    out, err = capsys.readouterr()
    assert "Stuck endpoints: none" in out or "stuck" not in out.lower().split("connections:")[1]
    evicted = int(re.search(r"(\d+) evicted from the full table", out).group(1))
    assert evicted > 5
    assert f"pcapstate: inconclusive: {evicted} connections evicted from the full " \
           "connection table (--max-connections; 0: no limit), so --fail-on cannot pass\n" in err
    assert "first seen mid-stream: already open when the capture started, or back after " \
           "the full table evicted them" in out
    assert main(["analyze", leak, "--max-connections", "4", "-q"]) == 0  # no policy: a pass
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "leak.pcap").symlink_to(leak)
    (corpus / "pcapstate.toml").write_text("max-connections = 4\nfail-on = [\"close-wait\"]\n")
    assert main(["check", str(corpus), "--update"]) == 1
    assert f"inconclusive: {evicted} connections evicted from the full connection table" \
           in capsys.readouterr().out


@pytest.mark.parametrize("span", [10, 1 << 32])
def test_the_live_connections_end_in_the_order_of_their_ids(span):
    """At the capture's end the live connections retire in the order of their ids, whichever
    tier and place in it they hold: packed with their slots and sorted (ids within 2**32 of
    each other), or sorted apart."""
    from pcapstate.jit import records
    from pcapstate.track.connections import FRESH, LIVE, NS, _link, live_slots
    from pcapstate.track.slots import SLOT

    rng = np.random.default_rng(7)
    T = records(np.zeros(64, SLOT))
    L = np.array([-1, -1, 0] * 3, np.int64)
    S = np.zeros(NS)
    slots = rng.permutation(64)[:40]
    cids = np.sort(rng.choice(span + 40, 40, replace=False)) + 1
    cids[[0, -1]] = 1, span + 41  # (the ids span `span` and more)
    for c, cid in zip(rng.permutation(slots), cids, strict=True):
        T["cid"][c] = cid
        _link(T, L, c, int(rng.integers(0, 3)))
    S[LIVE], S[FRESH] = 40, 64  # every slot taken once
    got = live_slots(T, S, np.inf)
    assert T["cid"][got].tolist() == cids.tolist()
    some = live_slots(T, S, float(cids[19]))
    assert T["cid"][some].tolist() == cids[:20].tolist()
