"""The VXLAN sample (samples/make_samples.py `vxlan`): real kernel traffic of two tenants,
VNIs 42 and 43, over one underlay, with the same inner addresses (10.9.0.1 -> 10.9.0.2) in
both; in each, a server leaks connections in CLOSE_WAIT (3 in VNI 42, 2 in VNI 43) and one
request/response closes cleanly from the same client port in both VNIs (one inner 4-tuple,
two tunnels). Captured on the underlay: Ethernet / IPv4 / UDP 4789 / VXLAN / Ethernet /
IPv4 / TCP.

The oracles share no code with pcapstate:
- the kernel's view at capture end, `ss -tanH` in each tenant's namespaces
  (samples/vxlan.ss.txt, each line tagged with its VNI and namespace): per VNI, the
  connections, both endpoints' states, the endpoints stuck in CLOSE-WAIT;
- tshark's decode of the capture: which frames are VXLAN, each TCP conversation's VNI and
  outer (underlay) addresses, what share of the capture it reads;
- the scenario's design (samples/vxlan.expected.json).
"""

import json
import re
import shutil
import subprocess
from collections import Counter, defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from pcapstate.pipeline import analyze

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
PCAP = SAMPLES / "vxlan.pcap"
SS = SAMPLES / "vxlan.ss.txt"
EXPECTED = json.loads((SAMPLES / "vxlan.expected.json").read_text())
VNIS = sorted(int(v) for v in EXPECTED["by_vni"])
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None,
                                  reason="tshark is not installed")

Pair = tuple[str, str]  # (local, peer) of a socket; (client, server) of a connection


def _state(ss_state: str) -> str:
    """ss's name of a TCP state as RFC 9293 spells it (ESTAB, SYN-RECV, CLOSE-WAIT, ...)."""
    return {"ESTAB": "ESTABLISHED", "SYN-RECV": "SYN_RCVD"}.get(ss_state,
                                                                ss_state.replace("-", "_"))


@cache
def kernel() -> dict[int, dict[str, dict[Pair, str]]]:
    """VNI -> "client" / "server" (the tenant namespace) -> (local, peer) -> state, from
    `ss -tanH` in each namespace; listening sockets left out."""
    roles = {EXPECTED["by_vni"][str(vni)][f"{role}_netns"]: role
             for vni in VNIS for role in ("client", "server")}
    view: dict[int, dict[str, dict[Pair, str]]] = {vni: {"client": {}, "server": {}}
                                                   for vni in VNIS}
    for line in SS.read_text().splitlines():
        fields = line.split()
        if not fields or fields[0] == "LISTEN":
            continue
        where = re.search(r"# vni=(\d+) netns=(\S+)$", line)
        assert where, f"a line of {SS.name} without its VNI and namespace: {line!r}"
        vni, netns = int(where.group(1)), where.group(2)
        view[vni][roles[netns]][(fields[3], fields[4])] = _state(fields[0])
    return view


def kernel_connections(vni: int) -> set[Pair]:
    """The (client, server) pairs the kernel still had a socket of, at either end."""
    k = kernel()[vni]
    return set(k["client"]) | {(client, server) for server, client in k["server"]}


@cache
def analysis() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    records: list[dict[str, Any]] = []
    result = analyze([str(PCAP)], on_record=records.append)
    return result, sorted(records, key=lambda r: (r["first_ts"], r["id"]))


def in_vni(vni: int) -> list[dict[str, Any]]:
    return [r for r in analysis()[1] if (r.get("tunnel") or {}).get("id") == vni]


@cache
def tshark_frames() -> list[dict[str, list[str]]]:
    """Each frame as tshark decodes it: the fields below, every occurrence (outer first)."""
    names = ["frame.time_epoch", "ip.src", "ip.dst", "udp.dstport", "vxlan.vni", "tcp.stream",
             "tcp.srcport", "tcp.dstport"]
    out = subprocess.run(["tshark", "-n", "-r", str(PCAP), "-T", "fields", "-E",
                          "occurrence=a", "-E", "aggregator=,",
                          *[a for n in names for a in ("-e", n)]],
                         capture_output=True, text=True, check=True).stdout
    return [{n: v.split(",") if v else [] for n, v in zip(names, line.split("\t"), strict=True)}
            for line in out.splitlines()]


@cache
def tshark_conversations() -> dict[int, dict[str, Any]]:
    """tshark's TCP conversations (tcp.stream: split at port reuse): the inner (client,
    server) pair as its first frame (the SYN) has it, the first frame's time, the VNIs and
    the outer (underlay) addresses of its frames."""
    conv: dict[int, dict[str, Any]] = {}
    for f in tshark_frames():
        if not f["tcp.stream"]:
            continue
        c = conv.setdefault(int(f["tcp.stream"][0]), {
            "pair": (f"{f['ip.src'][-1]}:{f['tcp.srcport'][0]}",
                     f"{f['ip.dst'][-1]}:{f['tcp.dstport'][0]}"),
            "first_ts": float(f["frame.time_epoch"][0]), "vnis": set(), "outer": set()})
        c["vnis"].update(int(v) for v in f["vxlan.vni"])
        if len(f["ip.src"]) > 1:  # an outer IP header, then the inner one
            c["outer"].add(tuple(sorted((f["ip.src"][0], f["ip.dst"][0]))))
    return conv


def test_the_sample_is_the_scenario():
    """The kernel's view is what the scenario was designed to leave, VNI by VNI; the capture
    is small."""
    assert PCAP.stat().st_size < 100_000
    for vni in VNIS:
        design, k = EXPECTED["by_vni"][str(vni)], kernel()[vni]
        assert len(kernel_connections(vni)) == design["connections"]
        assert Counter(k["server"].values()) == {"CLOSE_WAIT": design["close_wait"]}
        assert Counter(k["client"].values()) == {"FIN_WAIT_2": design["close_wait"],
                                                 "TIME_WAIT": 1}
        clean = design["clean"]
        assert k["client"][(clean["client"], clean["server"])] == "TIME_WAIT"


@needs_tshark
def test_tshark_reads_tcp_inside_vxlan():
    """Every TCP segment of the capture is inside VXLAN (UDP 4789), between the two VTEPs,
    in one of the two VNIs; each tshark conversation is in one VNI."""
    frames = tshark_frames()
    tcp = [f for f in frames if f["tcp.stream"]]
    assert tcp and all(f["vxlan.vni"] and f["udp.dstport"] == ["4789"] for f in tcp)
    underlay = {tuple(t["endpoints"]) for t in EXPECTED["tunnels"]}
    assert {c for conv in tshark_conversations().values() for c in conv["outer"]} == underlay
    assert {int(v) for f in tcp for v in f["vxlan.vni"]} == set(VNIS)
    assert all(len(c["vnis"]) == 1 for c in tshark_conversations().values())


def test_connections_per_vni_are_the_kernels():
    """In each VNI, pcapstate's connections are the kernel's (client, server) pairs there,
    each once; no connection outside the tunnels."""
    _, records = analysis()
    for vni in VNIS:
        pairs = [(r["client"], r["server"]) for r in in_vni(vni)]
        assert sorted(pairs) == sorted(kernel_connections(vni)), vni
    assert len(records) == sum(len(kernel_connections(vni)) for vni in VNIS)


@needs_tshark
def test_connections_per_vni_are_tsharks():
    """The same per VNI by tshark's conversations: the pair, the first frame's time."""
    for vni in VNIS:
        theirs = sorted((c["pair"], round(c["first_ts"], 6))
                        for c in tshark_conversations().values() if c["vnis"] == {vni})
        ours = sorted(((r["client"], r["server"]), round(r["first_ts"], 6))
                      for r in in_vni(vni))
        assert ours == theirs, vni


def test_final_states_per_vni_are_the_kernels():
    """Both endpoints of every connection end where the kernel of their tenant's namespace
    says (CLOSED: no socket left)."""
    mismatches = []
    for vni in VNIS:
        k = kernel()[vni]
        for r in in_vni(vni):
            for role, local, peer in (("client", r["client"], r["server"]),
                                      ("server", r["server"], r["client"])):
                want = k[role].get((local, peer), "CLOSED")
                got = r["endpoints"][role]["final_state"]
                if got != want:
                    mismatches.append(f"VNI {vni} {local} ({role}) -> {peer}: pcapstate "
                                      f"{got}, kernel {want}")
    assert not mismatches


def test_close_wait_endpoints_per_vni_are_the_kernels():
    """The endpoints reported stuck in CLOSE_WAIT, each traced to its connection's VNI, are
    the sockets the kernel shows in CLOSE-WAIT in that VNI's server namespace."""
    result, records = analysis()
    vni_of = {r["id"]: r["tunnel"]["id"] for r in records}
    stuck: dict[int, set[Pair]] = defaultdict(set)
    count = 0
    for f in result["findings"]:
        assert f["state"] == "CLOSE_WAIT" and f["role"] == "server", f
        assert len(f["examples"]) == f["count"]  # every one named (10 at most are)
        count += f["count"]
        for e in f["examples"]:
            stuck[vni_of[e["conn_id"]]].add((e["endpoint"], e["peer"]))
    for vni in VNIS:
        want = {pair for pair, state in kernel()[vni]["server"].items()
                if state == "CLOSE_WAIT"}
        assert stuck[vni] == want, vni
        assert len(want) == EXPECTED["by_vni"][str(vni)]["close_wait"]
    assert count == sum(len(stuck[vni]) for vni in VNIS)


@needs_tshark
def test_tunnels_are_tsharks():
    """Each connection's tunnel: VXLAN, the two underlay addresses and the VNI that tshark
    decodes in the frames of the same conversation (by pair and first frame's time); no
    parent."""
    by_start = {(c["pair"], round(c["first_ts"], 6)): c for c in tshark_conversations().values()}
    _, records = analysis()
    for r in records:
        c = by_start[((r["client"], r["server"]), round(r["first_ts"], 6))]
        (vni,), (outer,) = c["vnis"], c["outer"]
        assert r["tunnel"] == {"kind": "vxlan", "endpoints": list(outer), "id": vni,
                               "parent": None}, r
    assert sorted({json.dumps(r["tunnel"], sort_keys=True) for r in records}) == sorted(
        json.dumps(t, sort_keys=True) for t in EXPECTED["tunnels"])


def test_the_same_inner_4tuple_in_two_vnis_is_two_connections():
    """The clean connections share their inner 4-tuple; the kernel of each tenant has its
    TIME-WAIT socket: two connections, one per VNI, both closed by the client."""
    for vni in VNIS:
        clean = EXPECTED["by_vni"][str(vni)]["clean"]
        pair = (clean["client"], clean["server"])
        assert kernel()[vni]["client"][pair] == "TIME_WAIT"
        (r,) = [r for r in in_vni(vni) if (r["client"], r["server"]) == pair]
        assert (r["end"], r["closer"]) == ("closed", "client")
    pairs = {(EXPECTED["by_vni"][str(v)]["clean"]["client"],
              EXPECTED["by_vni"][str(v)]["clean"]["server"]) for v in VNIS}
    assert len(pairs) == 1


@needs_tshark
def test_coverage_is_whole_and_unwrapped_counts_tsharks_vxlan():
    """Every record read (tshark reads them all); those read inside VXLAN are the frames
    tshark decodes as VXLAN."""
    result, _ = analysis()
    frames = tshark_frames()
    cov = result["coverage"]
    assert cov["records"] == len(frames)
    assert cov["share"] == 1.0 and cov["not_decoded"] == {} and not cov["tcp_unread"]
    assert cov["unwrapped"] == {"vxlan": sum(1 for f in frames if f["vxlan.vni"])}
