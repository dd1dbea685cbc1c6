"""`analyze --dask ADDRESS --partitions N`: the connection table split across the workers of
a Dask cluster (a LocalCluster of 2 worker processes here) by a hash of the 4-tuple gives
what one process gives: the same result (peak of live connections included), the same
records in the same order, the same conn.log lines; on every sample, a rotated set read as
one capture, and a kernel capture with thousands of connections whose timers retire them
while it is read (the order partitions' retirements are merged in matters there)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pcapstate.cli import main
from pcapstate.pipeline import analyze
from pcapstate.settings import Settings
from tests.transcript import entry_dicts

distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
CAPTURES = sorted(p.name for p in SAMPLES.iterdir() if p.suffix in (".pcap", ".pcapng"))


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as c:
        yield c.scheduler_address


def run(paths, settings=None, **options):
    """The result (without its run time), every record and every conn.log line."""
    records, zeek = [], []
    result = analyze([str(p) for p in paths], settings, on_record=records.append,
                     on_zeek=lambda entries: zeek.extend(entry_dicts(entries)), **options)
    del result["elapsed_seconds"]
    return result, records, zeek


def test_every_sample_alike_in_two_and_three_partitions(cluster):
    assert len(CAPTURES) >= 35
    for name in CAPTURES:
        single = run([SAMPLES / name])
        for parts in (2, 3):
            assert run([SAMPLES / name], dask=cluster, partitions=parts) == single, \
                (name, parts)


def test_a_rotated_set_and_tighter_timers_alike(cluster, monkeypatch):
    """Four files read as one capture (the records numbered across them), with timers
    short enough that connections retire while it is read; at the end, the connections
    still live retire one id at a time (partitions.FINISH_STEP, the client's)."""
    from pcapstate import partitions

    rotated = sorted(SAMPLES.glob("rotated-*.pcap"))
    assert len(rotated) == 4
    settings = Settings(time_wait=0.05, fin_timeout=0.05)
    single = run(rotated, settings)
    assert single[0]["connections"]["total"] == len(single[1]) == 4
    assert run(rotated, settings, dask=cluster, partitions=4) == single
    monkeypatch.setattr(partitions, "FINISH_STEP", 1)
    assert run(rotated, dask=cluster, partitions=3) == run(rotated)


def test_retired_connections_handed_on_a_few_at_a_time_alike(monkeypatch):
    """The tracker hands retired connections on HAND_ON at most at a time (memory), at the
    end too: in pieces of 2, the same result and records as in one piece."""
    from pcapstate.track import connections

    capture = [SAMPLES / "refused_burst.pcap"]
    whole = run(capture)
    assert len(whole[1]) > 10
    monkeypatch.setattr(connections, "HAND_ON", 2)
    assert run(capture) == whole


def test_stopped_early_alike(cluster):
    """stop() (the first Ctrl-C) asked between batches: every partition stops after the
    same batch, and what was read is reported as one process reports it."""
    rotated = sorted(SAMPLES.glob("rotated-*.pcap"))
    single = run(rotated, stop=lambda: True)
    assert single[0]["interrupted"] is True
    assert single[0]["accounting"]["records"] < sum(
        i["records"] for i in run(rotated)[0]["inputs"])
    assert run(rotated, stop=lambda: True, dask=cluster, partitions=2) == single


def test_the_tshark_engine_alike(cluster):
    """Each partition runs its own tshark; Wireshark's flags come out as from one."""
    from pcapstate.decode import tshark

    if not tshark.available():
        pytest.skip("tshark not installed")
    capture = [SAMPLES / "keepalive_race.pcap"]
    single = run(capture, engine="tshark")
    assert "wireshark_analysis" in single[0]["connections"]
    assert run(capture, engine="tshark", dask=cluster, partitions=2) == single


def stretched(capture: Path, out: Path, factor: float) -> None:
    """The capture with its records' times `factor` times as far from its first."""
    import dpkt

    with capture.open("rb") as f, out.open("wb") as g:
        reader = dpkt.pcap.Reader(f)
        writer = dpkt.pcap.Writer(g, snaplen=reader.snaplen, linktype=reader.datalink())
        first = None
        for ts, frame in reader:
            first = ts if first is None else first
            writer.writepkt(frame, first + (ts - first) * factor)


@pytest.mark.slow
def test_a_kernel_capture_with_thousands_of_connections_alike(cluster, tmp_path, monkeypatch):
    """bench/make_capture.py's traffic (3,000 request/response connections from two client
    processes, resets, refused connects, a CLOSE_WAIT leak), its times stretched 30 times
    (to about 20 s: timers are checked once a second of capture time): with a 0.1 s
    TIME_WAIT most connections retire at a timer while the capture is read, many at the
    same check in several partitions. The diagnoses (on this machine, in both runs) count
    their facts every 256 connections, so that a single run's batches and the merged ones
    cut them in different places."""
    from pcapstate.derive import diagnoses

    monkeypatch.setattr(diagnoses, "HELD", 256)
    made, capture = tmp_path / "made.pcap", tmp_path / "stretched.pcap"
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_capture.py"), "--connections",
                    "3000", "--out", str(made)], check=True, capture_output=True, timeout=300)
    stretched(made, capture, 30)
    settings = Settings(time_wait=0.1, fin_timeout=0.1)
    single = run([capture], settings)
    result, records, _ = single
    assert result["connections"]["total"] >= 3000
    end = result["capture"]["end_ts"]
    early = sum(r["last_ts"] < end - 2 for r in records)  # retired at a timer, mid-capture
    assert early > len(records) / 2
    for parts in (2, 3):
        got = run([capture], settings, dask=cluster, partitions=parts)
        assert got[0] == result
        assert got[1] == records
        assert got[2] == single[2]


def test_the_command_line_writes_the_same_files(cluster, tmp_path):
    capture = str(SAMPLES / "keepalive_race.pcap")
    outputs = {}
    for how, extra in (("single", []), ("dask", ["--dask", cluster, "--partitions", "2"])):
        out = tmp_path / how
        out.mkdir()
        assert main(["analyze", capture, "-q", "--json", str(out / "r.json"), "--jsonl",
                     str(out / "r.jsonl"), "--zeek-conn", str(out / "conn.log"), *extra]) == 0
        result = json.loads((out / "r.json").read_text())
        for volatile in ("elapsed_seconds", "command_line"):
            del result[volatile]
        log = [line for line in (out / "conn.log").read_text().splitlines()
               if not line.startswith(("#open", "#close"))]
        outputs[how] = result, (out / "r.jsonl").read_bytes(), log
    assert outputs["dask"] == outputs["single"]
    assert outputs["single"][1].count(b"\n") == 22


@pytest.mark.parametrize("args, message", [
    (["--partitions", "2"], "--partitions splits the table across a Dask cluster: give "
                            "--dask too"),
    (["--dask", "tcp://127.0.0.1:9", "-"], "--dask: every worker reads the capture files: "
                                           "give files, not standard input or a stream"),
])
def test_usage_errors_are_one_line(args, message, capsys):
    files = [] if "-" in args else [str(SAMPLES / "close_wait_leak.pcap")]
    assert main(["analyze", *files, *args]) == 2
    err = capsys.readouterr().err
    assert err == f"pcapstate: error: {message}\n"


def test_no_scheduler_is_a_one_line_error(capsys):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):  # 30s by default
        assert main(["analyze", str(SAMPLES / "close_wait_leak.pcap"), "--dask",
                     "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pcapstate: error: Dask cluster tcp://127.0.0.1:9: ")
    assert err.count("\n") == 1


def test_one_client_host_to_one_service_is_split_evenly():
    """A proxy's or a pool's connections (one client host, one service, the client's port
    all that differs) are shared out evenly: every bit of the key reaches the share, also
    for a power of two of partitions (the key's low bits alone gave one part all)."""
    import numpy as np

    from pcapstate.track.connections import _canonical, _share

    for client in (0x0A000001, 0x0A000009):  # below and above the server's address
        for parts in (2, 3, 4, 8):
            counts = [0] * parts
            for port in range(32768, 32768 + 8000):
                key, _ = _canonical((np.int64(0), np.int64(client), np.int64(0),
                                     np.int64(0x0A000002), np.int64(port << 16 | 80)))
                counts[_share(key, parts)] += 1
            assert all(abs(n - 8000 / parts) < 0.1 * 8000 / parts for n in counts), counts


def test_a_full_table_in_partitions_is_said(cluster):
    """--max-connections holds in each partition, which evicts among its own: the warning
    says so, since the result is then not one process's."""
    capture = [SAMPLES / "refused_burst.pcap"]
    result = run(capture, Settings(max_connections=2), dask=cluster, partitions=2)[0]
    [warning] = [w for w in result["warnings"] if "table was full" in w]
    assert "in each of 2 partitions" in warning and "not one process's" in warning


def test_numbering_keeps_only_steps_with_live_connections():
    """The client's map from a partition's ids to a single run's (partitions.Numbering),
    over many steps and retirements in any order: every id maps as a plain list would map
    it, `upto` retires exactly the live connections a single run's numbering puts at or
    below a number, and a step's ids are dropped once all of them retired."""
    import numpy as np

    from pcapstate.partitions import Numbering

    rng = np.random.default_rng(7)
    numbering, plain, live = Numbering(), [], set()
    number = 0
    for _ in range(300):
        new = np.sort(number + 1 + rng.choice(40, rng.integers(0, 8), replace=False))
        if len(new):
            number = int(new[-1])
        numbering.add(new)
        live |= set(range(len(plain) + 1, len(plain) + len(new) + 1))
        plain += new.tolist()
        going = np.array(sorted(x for x in live if rng.random() < 0.3), np.int64)
        assert numbering.of(going).tolist() == [plain[i - 1] for i in going]
        numbering.retire(going)
        live -= set(going.tolist())
        for n in rng.integers(0, number + 2, 5).tolist():
            below = numbering.upto(n)
            assert {i for i in live if i <= below} == {i for i in live if plain[i - 1] <= n}
    kept = sum(len(ids) for ids in numbering.ids if ids is not None)
    assert kept == len(live) or kept < len(plain) / 2
    numbering.retire(np.array(sorted(live), np.int64))
    assert all(ids is None for ids in numbering.ids)


def test_the_end_takes_a_round_per_step_of_live_connections(cluster, monkeypatch):
    """At the end, one round trip per FINISH_STEP live connections (here 1), starting at
    the first still live: not one per FINISH_STEP ids of every connection ever opened."""
    from pcapstate import partitions
    from pcapstate.track.connections import Tracker

    capture = [SAMPLES / "keepalive_race.pcap"]  # 22 connections, 10 live at the end
    settings = Settings(time_wait=0.05, fin_timeout=0.05)
    left = []
    finish = Tracker.finish
    monkeypatch.setattr(Tracker, "finish", lambda self, *a: (left.append(self.live),
                                                             finish(self, *a))[1])
    single = run(capture, settings)
    assert 0 < left[0] < single[0]["connections"]["total"] / 2
    rounds = []
    agreed = partitions._agreed
    monkeypatch.setattr(partitions, "_agreed", lambda outs: rounds.append(
        "next" in outs[0] and "batch" not in outs[0]) or agreed(outs))
    monkeypatch.setattr(partitions, "FINISH_STEP", 1)
    assert run(capture, settings, dask=cluster, partitions=2) == single
    assert sum(rounds) == left[0]


def test_retired_connections_merged_a_few_at_a_time(cluster, monkeypatch):
    """Each partition hands on what it retired in a step partitions.PIECE connections at a
    time (here 1 and 3), and the client merges them as they come: the same result, records
    and conn.log as a single run, while the client never holds more than PIECE of each
    partition's (a flood's timers running out together came back whole before). The
    capture: a burst of refused connects and keep-alive connections, with timers short
    enough that many retire at the same check."""
    from pcapstate import partitions

    capture = [SAMPLES / "refused_burst.pcap", SAMPLES / "keepalive_race.pcap"]
    settings = Settings(time_wait=0.05, fin_timeout=0.05)
    held = []
    ready = partitions.Merge.ready

    def watched(self, more):
        held.append(len(self.held.get("rows", ())))
        return ready(self, more)

    monkeypatch.setattr(partitions.Merge, "ready", watched)
    for path in capture:
        single = run([path], settings)
        for piece, parts in ((1, 2), (3, 3)):
            monkeypatch.setattr(partitions, "PIECE", piece)
            held.clear()
            assert run([path], settings, dask=cluster, partitions=parts) == single, \
                (path.name, piece)
            assert max(held) <= piece * parts, (path.name, piece)
            assert len(held) > single[0]["connections"]["total"] / (piece * parts)


@pytest.mark.parametrize("seed", range(6))
def test_the_merge_a_piece_at_a_time_is_the_whole_steps(seed):
    """partitions.Merge, fed pieces of 1 to 5 rows as the partitions hand them on, against
    the plain computation over each whole step: every partition's retirements put together
    and sorted by (record, deadline, single run's id; for no deadline, partition then its
    own order), and the peak of live connections just after each opening (the
    retirements at the same record first). Random steps: 1 to 4 partitions, connections
    opened and retired across steps, deadlines tied, none (inf) and at the end (-inf)."""
    import numpy as np

    from pcapstate.partitions import Merge
    from pcapstate.track.connections import RETIRED
    from pcapstate.track.slots import ROW
    from pcapstate.track.zeek_view import VIEW

    rng = np.random.default_rng(seed)
    parts = int(rng.integers(1, 5))
    merge, piece = Merge(parts), int(rng.integers(1, 6))
    live: list[list[tuple[int, float]]] = [[] for _ in range(parts)]  # (own id, opened at)
    own = [0] * parts
    numbers: dict[tuple[int, int], int] = {}  # (partition, own id): single run's id
    opened_total = live_total = peak = 0
    for step in range(8):
        base = step * 100.0
        opened = [np.sort(base + rng.choice(100, int(rng.integers(0, 6)), replace=False))
                  .astype(float) for _ in range(parts)]
        order = sorted((at, p, k) for p in range(parts) for k, at in enumerate(opened[p]))
        for n, (_, p, k) in enumerate(order, 1):
            numbers[p, own[p] + k + 1] = opened_total + n
        for p in range(parts):
            live[p] += [(own[p] + k + 1, at) for k, at in enumerate(opened[p])]
            own[p] += len(opened[p])
        opened_total += len(order)
        streams, whole = [], []
        for p in range(parts):  # each partition's retirements, in its own order
            going = [c for c in live[p] if rng.random() < 0.4]
            rows = []
            for cid, at_open in going:
                at = float(rng.integers(max(int(at_open), int(base)), int(base) + 100)) \
                    if step < 7 else np.inf
                due = np.inf if step < 7 and rng.random() < 0.4 else \
                    (-np.inf if step == 7 else float(rng.integers(0, 3)))
                rows.append((at, due, cid))
            live[p] = [c for c in live[p] if c not in going]
            rows.sort(key=lambda r: (r[0], r[1], r[2]))
            streams.append(rows)
            whole += [(at, due, 0 if due == np.inf else numbers[p, cid], p, i, numbers[p, cid])
                      for i, (at, due, cid) in enumerate(rows)]
        # the plain computation over the whole step
        want = [w[5] for w in sorted(whole, key=lambda w: w[:5])]
        retired_at = np.sort([w[0] for w in whole])
        opened_at = np.sort(np.concatenate(opened))
        if len(opened_at):
            peak = max(peak, int((live_total + np.arange(1, len(opened_at) + 1)
                                  - np.searchsorted(retired_at, opened_at, "right")).max()))
        live_total += len(opened_at) - len(whole)

        def pieces(p, first, streams=streams):
            rows = streams[p][first:first + piece]
            slot, handed = np.zeros(len(rows), ROW), np.zeros(len(rows), RETIRED)
            views = np.zeros(len(rows), VIEW)  # each marked with its row's single run's id
            if rows:
                handed["at"], handed["due"], slot["cid"] = zip(*rows, strict=True)
                views["z_missed"] = [numbers[p, cid] for cid in slot["cid"].tolist()]
            return [(slot, views, np.zeros(len(rows)), handed, {})]

        merge.open([{"opened": o} for o in opened])
        sent = [min(piece, len(streams[p])) for p in range(parts)]
        for p in range(parts):
            merge.add(p, pieces(p, 0))
        more = [sent[p] < len(streams[p]) for p in range(parts)]
        got = []
        while True:
            out = merge.ready(more)
            if out is not None:
                got += out[0]["cid"].tolist()
                assert out[1]["z_missed"].tolist() == out[0]["cid"].tolist()  # with its row
            asked = merge.waits_on(more)
            if not asked:
                break
            for p in asked:
                merge.add(p, pieces(p, sent[p]))
                sent[p] += piece
                more[p] = sent[p] < len(streams[p])
        merge.close()
        assert got == want, (seed, step)
    assert merge.peak == peak


def test_a_partition_out_of_order_stops_the_merge():
    """A partition whose retirements are not in a single run's order (a bug) leaves rows
    the merge cannot place: the step ends in an error, not in rows lost or misplaced."""
    import numpy as np

    from pcapstate.partitions import DaskError, Merge
    from pcapstate.track.connections import RETIRED
    from pcapstate.track.slots import ROW

    merge = Merge(1)
    merge.open([{"opened": np.array([1.0, 2.0])}])
    rows, handed = np.zeros(2, ROW), np.zeros(2, RETIRED)
    rows["cid"], handed["at"], handed["due"] = [1, 2], [5.0, 3.0], np.inf
    merge.add(0, [(rows, rows[:0], np.zeros(2), handed, {})])  # (no Zeek views)
    going, _, _, _ = merge.ready([True])  # more to come: up to its last, at 3
    assert going["cid"].tolist() == [2] and merge.waits_on([True]) == []
    with pytest.raises(DaskError, match="could not be merged"):
        merge.close()


def test_a_failure_handing_on_is_one_line(monkeypatch):
    """An error while a partition hands on what it retired: one line, as the others."""
    from pcapstate.partitions import DaskError, Partition, _agreed

    part = Partition([str(SAMPLES / "aborts.pcap")], ["aborts.pcap"], Settings(), "fast", 0, 1)

    def broken(self, piece):
        raise MemoryError("no room to hand on")

    monkeypatch.setattr(Partition, "_piece", broken)
    with pytest.raises(DaskError, match=r"^partition 0 failed: MemoryError: no room to hand "
                                        r"on$"):
        _agreed([part.more()])


def test_partitions_that_read_different_records_stop_the_analysis(tmp_path):
    """A file that changes while the partitions read it (two partitions here, one given a
    shorter copy): the first step they differ in is an error, not a merged result."""
    from pcapstate.partitions import DaskError, Partition, _agreed

    whole = SAMPLES / "refused_burst.pcap"
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    parts = [Partition([str(f)], ["capture.pcap"], Settings(), "fast", p, 2)
             for p, f in enumerate((whole, cut))]
    with pytest.raises(DaskError, match=r"^the partitions read different records \(was a "
                                        r"file still being written\?\): partition 0: "):
        _agreed([p.step(False) for p in parts])


def test_a_failure_in_a_partition_is_one_line(monkeypatch):
    """An error on a worker that is not the capture's (here the reading cannot start):
    one line naming the partition, as the CLI prints it."""
    from pcapstate import pipeline
    from pcapstate.partitions import DaskError, Partition, _agreed

    def broken(*args, **kwargs):
        raise RuntimeError("no room\nsecond line")

    monkeypatch.setattr(pipeline, "Reading", broken)
    part = Partition([str(SAMPLES / "aborts.pcap")], ["aborts.pcap"], Settings(), "fast", 1, 2)
    with pytest.raises(DaskError, match=r"^partition 0 failed: RuntimeError: no room$"):
        _agreed([part.step(False)])


def test_a_failure_at_the_end_is_one_line(monkeypatch):
    """An error while a partition retires its live connections at the end (not the
    capture's): one line naming the partition, as during the reading."""
    from pcapstate.partitions import DaskError, Partition, _agreed
    from pcapstate.track.connections import Tracker

    part = Partition([str(SAMPLES / "aborts.pcap")], ["aborts.pcap"], Settings(), "fast", 0, 1)
    while not _agreed([part.step(False)])[0]["read"]:
        pass

    def broken(self, *args):
        raise MemoryError("no room for the end")

    monkeypatch.setattr(Tracker, "finish", broken)
    with pytest.raises(DaskError, match=r"^partition 0 failed: MemoryError: no room for the "
                                        r"end$"):
        _agreed([part.finish(10)])


def test_without_zeeks_view_alike(cluster):
    """No output holds Zeek's view: the partitions hand on no Zeek views, and the result is
    a single run's, without Zeek's counts."""
    for name in ("syn_timeout.pcap", "close_wait_leak.pcap", "ipv6.pcap"):
        single = analyze([str(SAMPLES / name)])
        del single["elapsed_seconds"]
        assert "zeek_conn_states" not in single["connections"]
        got = analyze([str(SAMPLES / name)], dask=cluster, partitions=2)
        del got["elapsed_seconds"]
        assert got == single, name
