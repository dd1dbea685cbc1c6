"""End to end on every shipped sample: the expected facts beside it, the kernel's own view of
each endpoint at capture end (`ss -tan` in the namespace), and tshark's connection count."""

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from pcapstate.check.corpus import is_capture
from pcapstate.pipeline import analyze
from pcapstate.vocab import SS_STATES

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
EXPECTED = sorted(SAMPLES.glob("*.expected.json"))


def captures(expected: Path) -> list[str]:
    name = expected.name.removesuffix(".expected.json")
    files = [f for f in sorted(SAMPLES.glob(f"{name}.pcap*")) + sorted(
        SAMPLES.glob(f"{name}-*.pcap")) if is_capture(f.name)]
    assert files, f"no capture for {name}"
    return [str(f) for f in files]


def run(expected: Path) -> tuple[dict, list[dict]]:
    records: list[dict] = []
    result = analyze(captures(expected), on_record=records.append)
    records.sort(key=lambda r: (r["first_ts"], r["id"]))
    return result, records


@pytest.fixture(params=EXPECTED, ids=lambda p: p.name.removesuffix(".expected.json"))
def sample(request):
    expected = request.param
    return expected, json.loads(expected.read_text()), *run(expected)


def test_samples_are_there():
    names = {p.name.removesuffix(".expected.json") for p in EXPECTED}
    assert {"close_wait_leak", "close_wait_reset", "client_close", "server_close",
            "rst_abort", "refused", "half_close", "mid_stream", "ipv6", "pcapng", "rotated",
            "crafted_simultaneous_close", "crafted_wraparound", "vantage_client",
            "vantage_server", "idle_leak", "syn_timeout", "late_leak"} <= names


def test_expected_facts(sample):
    _, exp, result, records = sample
    conns = result["connections"]
    assert conns["total"] == exp["connections"] == len(records)
    assert conns["by_end"] == exp["end_kinds"]
    assert conns["by_closer"] == exp["closers"]
    found = sorted((f["state"], f["service"], f["role"], f["count"]) for f in result["findings"])
    assert found == sorted((s["state"], s["service"], s["role"], s["count"])
                           for s in exp["stuck"])
    groups = {(f["state"], f["service"]): f for f in result["findings"]}
    for s in exp["stuck"]:
        if "outcomes" in s:
            assert groups[s["state"], s["service"]]["outcomes"] == s["outcomes"]
        assert groups[s["state"], s["service"]]["inferred"] == s.get("inferred", False)
    if "by_closer_evidence" in exp:
        assert conns["by_closer_evidence"] == exp["by_closer_evidence"]
    elif set(conns["roles_from"]) == {"syn"}:  # every start seen: every closer seen to close
        assert set(conns["by_closer_evidence"]) <= {"fin_seen", "rst_seen"}
    if "anomalies" in exp:
        assert {k: conns["anomalies"].get(k) for k in exp["anomalies"]} == exp["anomalies"]
    if "vantage" in exp:
        assert result["vantage"]["estimate"] == exp["vantage"]
    if "zeek" in exp:  # Zeek's connections, in its conn.log order here (by first packet)
        lines = sorted((z for r in records for z in (r["zeek"], *r.get("zeek_later", ()))),
                       key=lambda z: z["ts"])
        assert len(lines) == len(exp["zeek"])
        assert [{k: z[k] for k in want}
                for z, want in zip(lines, exp["zeek"], strict=True)] == exp["zeek"]
    if "final_states" in exp:
        assert [{"client": r["endpoints"]["client"]["final_state"],
                 "server": r["endpoints"]["server"]["final_state"]} for r in records] \
            == exp["final_states"]


def test_diagnoses(sample):
    """The causes the scenario created, and no other (a sample whose expected facts name
    none has only its stuck CLOSE_WAIT groups' leaks): docs/diagnoses.md's verification."""
    _, exp, result, records = sample
    want = exp.get("diagnoses", [
        {"name": "close_wait_leak", "service": s["service"], "side": s["role"],
         "count": s["count"]} for s in exp["stuck"] if s["state"] == "CLOSE_WAIT"])
    got = {(d["name"], d["service"], d["side"]): d for d in result["diagnoses"]}
    assert sorted(got) == sorted((w["name"], w["service"], w.get("side", "server"))
                                 for w in want)
    sent = {r["client"]: r["endpoints"]["client"]["payload_bytes"] for r in records}
    for w in want:
        d = got[w["name"], w["service"], w.get("side", "server")]
        assert d["count"] == w["count"], w
        if "server_idle_timeout_s" in w:
            assert d["server_idle_timeout"] == pytest.approx(w["server_idle_timeout_s"],
                                                             rel=0.05)
            lo, hi = w["client_reuse_idle_s"]
            assert d["client_reuse_idle_min"] == pytest.approx(lo, abs=0.01)
            assert d["client_reuse_idle_max"] == pytest.approx(hi, abs=0.01)
        if "how" in w:
            key = {("peer_gone", "rst"): "by_reset", ("peer_gone", "timeout"): "by_silence",
                   ("accept_queue_overflow", "rst"): "by_rst",
                   ("accept_queue_overflow", "syn_cookie"): "by_syn_cookie"}[w["name"], w["how"]]
            assert d[key] == w["count"]
            if "last_heard" in w:
                assert d["last_heard"] == pytest.approx(w["last_heard"], abs=1e-3)
        if "added_latency_s" in w:
            assert [d["added_latency_min"], d["added_latency_max"]] == pytest.approx(
                w["added_latency_s"], abs=0.01)
            assert (d["syn_dropped"], d["synack_lost"]) == (w["syn_dropped"],
                                                            w["synack_dropped"])
        if "longest_s" in w:
            assert d["longest"] == pytest.approx(w["longest_s"], abs=0.1)
            assert d.get("recovered", 0) == (d["count"] if w["recovered"] else 0)
        if "time_wait_peak" in w:
            assert (d["host"], d["time_wait_peak"]) == (w["client"], w["time_wait_peak"])
            assert abs(d["peak_rate_per_s"] - w["peak_rate_per_s"]) <= 1
        if "accepted_before_and_after" in w:
            assert d["accepted_before_and_after"] == w["accepted_before_and_after"]
        if "from" in w:
            assert (d["bursts"][0]["from"], d["bursts"][-1]["to"]) == pytest.approx(
                (w["from"], w["to"]), abs=1e-3)
        if "bytes_lost" in w:  # at least what was lost, at most what the clients sent
            clients = {ex["client"] for ex in d["evidence"]}
            assert w["bytes_lost"] <= d["bytes_lost"] <= sum(sent[c] for c in clients)
    for no in exp.get("not_diagnosed", []):  # a client by address, or by address and port
        named = [d for d in result["diagnoses"] if d["name"] == no["name"]]
        assert all(d.get("host") != no["client"] for d in named)
        assert all(no["client"] not in (ex["client"], ex["client"].rsplit(":", 1)[0])
                   for d in named for ex in d["evidence"])


def test_packet_accounting_adds_up(sample):
    _, _, result, _ = sample
    acc = result["accounting"]
    assert acc["records"] > 0
    assert acc["records"] == acc["tcp_segments"] + sum(acc["other"].values()) \
        + sum(acc["undecodable"].values())
    assert acc["records"] == sum(i["records"] for i in result["inputs"])


def kernel_view(path: Path) -> dict[tuple[str, str], str]:
    """(local, peer) -> state, from `ss -tanH`; listening sockets left out."""
    view = {}
    for line in path.read_text().splitlines():
        fields = line.split()
        if not fields or fields[0] in ("LISTEN", "State"):
            continue
        state, local, peer = fields[0], fields[3], fields[4]
        view[(_normal(local), _normal(peer))] = SS_STATES[state].value
    return view


def _normal(address: str) -> str:
    """ss prints [::ffff:127.0.0.1]:80 and [::1]:80; keep what pcapstate prints."""
    address = re.sub(r"%\w+", "", address)
    m = re.fullmatch(r"\[::ffff:([\d.]+)\]:(\d+)", address)
    return f"{m.group(1)}:{m.group(2)}" if m else address


def test_final_states_match_the_kernel(sample):
    expected, _, _, records = sample
    ss = expected.with_name(expected.name.replace(".expected.json", ".ss.txt"))
    if not ss.exists():
        pytest.skip("crafted sample: no kernel view")
    view = kernel_view(ss)
    last = {}  # only the last instance on a 4-tuple can be the one ss saw
    for r in records:
        last[(r["client"], r["server"])] = r
    mismatches = []
    for (client, server), r in last.items():
        for role, local, peer in (("client", client, server), ("server", server, client)):
            want = view.get((local, peer), "CLOSED")
            got = r["endpoints"][role]["final_state"]
            if got != want:
                mismatches.append(f"{local} ({role}) -> {peer}: pcapstate {got}, kernel {want}")
    assert not mismatches
    seen = {(c, s) for c, s in last} | {(s, c) for c, s in last}
    assert set(view) <= seen, "the kernel has sockets pcapstate did not see"


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_connection_count_matches_tshark(sample, tmp_path):
    expected, _, result, _ = sample
    files = captures(expected)
    if len(files) > 1:
        merged = tmp_path / "merged.pcap"
        subprocess.run(["mergecap", "-F", "pcap", "-w", str(merged), *files], check=True)
        files = [str(merged)]
    out = subprocess.run(["tshark", "-n", "-q", "-z", "conv,tcp", "-r", files[0]],
                         capture_output=True, text=True, check=True).stdout
    conversations = [ln for ln in out.splitlines() if "<->" in ln]
    # tshark keys conversations by 4-tuple (and splits them at port reuse, like pcapstate)
    assert len(conversations) == result["connections"]["total"], out


def test_by_end_counts_are_consistent(sample):
    _, _, result, records = sample
    assert Counter(r["end"] for r in records) == Counter(result["connections"]["by_end"])
