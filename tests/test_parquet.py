"""analyze --parquet: a row per connection, the same as the JSON Lines records say, in row
groups as connections retire; DuckDB, pandas and Polars read it, and README's DuckDB query
answers "which services leaked CLOSE_WAIT, and since when"."""

import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pcapstate.cli import main
from pcapstate.derive.records import tunnel_name
from tests.test_samples import EXPECTED, captures

duckdb = pytest.importorskip("duckdb")
pq = pytest.importorskip("pyarrow.parquet")

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
README = Path(__file__).resolve().parent.parent / "README.md"


def micros(ts: float | None) -> datetime | None:
    """A record's time as the Parquet file holds it: UTC, to the microsecond."""
    return None if ts is None else datetime.fromtimestamp(round(ts * 1e6) / 1e6, UTC)


def zeek_row(z: dict[str, Any]) -> dict[str, Any]:
    return {**z, "ts": micros(z["ts"])}


def as_row(rec: dict[str, Any]) -> dict[str, Any]:
    """A JSON Lines record as its Parquet row (render/parquet.py says how they differ)."""
    row = {k: rec[k] for k in ("id", "client", "server", "roles_from", "mid_stream", "end",
                               "closer", "closer_evidence", "closed_by", "reset_by",
                               "evicted")}
    row |= {"first_ts": micros(rec["first_ts"]), "last_ts": micros(rec["last_ts"])}
    for role, e in rec["endpoints"].items():
        row |= {f"{role}_{k}": v for k, v in e.items() if k != "transitions"}
        row[f"{role}_transitions"] = [
            {"ts": micros(t["ts"]), "state": t["state"], "timer": t.get("timer", False),
             "inferred": t.get("inferred", False)} for t in e["transitions"]]
    row["anomalies"] = sorted(rec["anomalies"].items())
    row["tunnel"] = tunnel_name(rec["tunnel"]) if "tunnel" in rec else None
    row["wireshark_analysis"] = sorted(rec["wireshark_analysis"].items()) \
        if "wireshark_analysis" in rec else None
    row["zeek"] = zeek_row(rec["zeek"])
    row["zeek_later"] = [zeek_row(z) for z in rec.get("zeek_later", [])]
    return row


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows but their diagnosis_signs, which the JSON record has not (the last test's)."""
    rows = pq.read_table(path).drop_columns(["diagnosis_signs"]).to_pylist()
    for row in rows:
        for k in ("anomalies", "wireshark_analysis"):
            if row[k] is not None:
                row[k] = sorted(row[k])
    return rows


def analyze_both(tmp_path: Path, files: list[str], *options: str) -> tuple[list, list]:
    """The JSON Lines records and the Parquet rows of one run."""
    lines, table = tmp_path / "r.jsonl", tmp_path / "r.parquet"
    assert main(["analyze", *files, "-q", "--jsonl", str(lines), "--parquet", str(table),
                 *options]) == 0
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    return records, read_rows(table)


@pytest.mark.parametrize("expected", EXPECTED, ids=lambda p: p.name.split(".")[0])
def test_every_sample_gives_the_rows_its_records_say(tmp_path, expected):
    records, rows = analyze_both(tmp_path, captures(expected))
    assert len(rows) == len(records) == json.loads(expected.read_text())["connections"]
    assert rows == [as_row(r) for r in records]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_the_tshark_engine_fills_wireshark_analysis(tmp_path):
    records, rows = analyze_both(tmp_path, [str(SAMPLES / "lossy.pcap")], "--engine",
                                 "tshark")
    assert rows == [as_row(r) for r in records]
    assert any(row["wireshark_analysis"] for row in rows)


def test_row_groups_as_connections_retire(tmp_path, monkeypatch):
    """A row group is written whenever ROW_GROUP connections are held: never all at once;
    the rows are the same however they are grouped."""
    from pcapstate.render import parquet

    files = captures(SAMPLES / "time_wait_pressure.expected.json")
    _, whole = analyze_both(tmp_path, files)
    monkeypatch.setattr(parquet, "ROW_GROUP", 50)
    _, grouped = analyze_both(tmp_path, files)
    groups = pq.ParquetFile(tmp_path / "r.parquet").metadata
    sizes = [groups.row_group(g).num_rows for g in range(groups.num_row_groups)]
    assert sizes == [50] * (len(whole) // 50) + [len(whole) % 50] and len(sizes) >= 5
    assert grouped == whole


def readme_query() -> str:
    """The DuckDB query README shows for the Parquet file."""
    return re.search(r"```sql\n(.*?)```", README.read_text(), re.S).group(1)


def test_readme_query_finds_the_leak_and_since_when(tmp_path):
    """On the CLOSE_WAIT leak sample (an iperf2-like server never closes; the scenario and
    `ss` say 5 stuck on 127.0.0.1:5001), the README's query names the service, its 5
    sockets, and the time of the first client FIN to it, as tshark reads it."""
    path = tmp_path / "conns.parquet"
    assert main(["analyze", str(SAMPLES / "close_wait_leak.pcap"), "-q", "--parquet",
                 str(path)]) == 0
    got = duckdb.connect().sql(readme_query().replace("conns.parquet", str(path))).fetchall()
    expected = json.loads((SAMPLES / "close_wait_leak.expected.json").read_text())["stuck"]
    assert [(service, n) for service, n, *_ in got] == [
        (s["service"], s["count"]) for s in expected]
    if shutil.which("tshark"):
        fins = subprocess.run(
            ["tshark", "-r", str(SAMPLES / "close_wait_leak.pcap"), "-Y",
             "tcp.flags.fin == 1 && tcp.dstport == 5001", "-T", "fields", "-e",
             "frame.time_epoch"], capture_output=True, text=True, check=True).stdout.split()
        assert got[0][2] == micros(float(fins[0]))


def test_pandas_and_polars_read_it(tmp_path):
    pandas = pytest.importorskip("pandas")
    polars = pytest.importorskip("polars")
    path = tmp_path / "conns.parquet"
    assert main(["analyze", str(SAMPLES / "vxlan.pcap"), "-q", "--parquet", str(path)]) == 0
    frame = pandas.read_parquet(path)
    assert len(frame) == 7 and frame["tunnel"].str.match(r"vxlan 4[23] 10\.79\.").all()
    table = polars.read_parquet(path)
    assert table.height == 7
    assert table["client_transitions"].list.len().min() >= 1


def test_without_pyarrow_it_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "pcapstate.render.parquet", raising=False)
    out = tmp_path / "conns.parquet"
    assert main(["analyze", str(SAMPLES / "close_wait_leak.pcap"), "--parquet",
                 str(out)]) == 2
    assert capsys.readouterr().err == (
        "pcapstate: error: --parquet needs pyarrow: pip install 'pcapstate[parquet]'\n")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_diagnosed_connection_shows_its_sign(tmp_path):
    """Every connection a diagnosis gives as evidence has that diagnosis among its
    diagnosis_signs (the rule's own condition, derive/rules.py SIGNS), on every sample."""
    from pcapstate.derive.rules import SIGNS

    signed = set()
    for expected in EXPECTED:
        table, result = tmp_path / "r.parquet", tmp_path / "r.json"
        assert main(["analyze", *captures(expected), "-q", "--parquet", str(table),
                     "--json", str(result)]) == 0
        signs = {row["id"]: row["diagnosis_signs"] for row in pq.read_table(table).to_pylist()}
        for d in json.loads(result.read_text())["diagnoses"]:
            if d["name"] in dict(SIGNS):
                for example in d["evidence"]:
                    assert d["name"] in signs[example["conn_id"]], (expected.name, example)
                signed.add(d["name"])
    assert signed == set(dict(SIGNS))  # the samples show every one
