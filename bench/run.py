"""The benchmark: pcapstate against the tools users would otherwise run, on one capture.

    python3 bench/run.py [CAPTURE] [--runs 3] [--long 10] [--corpus 4] [--floods]
                         [--first-run N] [--dask N] [--skip TOOL ...]

Needs GNU time (Debian package `time`). Without CAPTURE it uses bench/out/bench.pcap, made
first by bench/make_capture.py if missing. Each tool runs `--runs` times on the same file,
in rounds that run each tool once, so that a slow spell of a shared machine falls on every
tool alike. Each timed run follows an untimed run of the same tool (as if run back to back,
with the page cache and the memory it takes warm: on this project's virtual machine,
tcptrace, which takes 1.2 GiB, ran 2.5-3.7 s after 8 s idle and 1.8-2.0 s straight after
itself) and `sync` (the files written so far go to disk before it, not during it); the
report gives the median wall time, packets per second, the peak resident memory of the run
and pcapstate's time as a ratio of each tool's (of the two medians, and the median of the
rounds' own ratios). `--long N` also makes a capture N times longer with the same number of
live connections (N copies of the capture, each shifted in time past every timer and given
its own client addresses) and compares pcapstate's peak memory on both. `--corpus N` runs
`pcapstate check` over a corpus of N copies of the capture (against their goldens), with
one worker and with two, and reports captures/s and packets/s for each. `pcapstate+json` is
pcapstate also writing every connection's record (`--json`), `pcapstate+jsonl` the records
alone as JSON Lines (`--jsonl`), `pcapstate+zeek` Zeek's conn.log (`--zeek-conn`),
`pcapstate+parquet` the records as Parquet (`--parquet`),
`pcapstate+report` also writing the Markdown and HTML reports with their charts.
`pcapstate-tshark` is the tshark engine, compared with `tshark-fields`, tshark printing the
same fields to nowhere. `--floods` measures memory under floods (bench/make_floods.py makes
them: a million SYNs from distinct sources, a million connections never closed): pcapstate
at its default connection-table limit, at 100,000 and with none, against tcptrace, tshark
and the dpkt loop, once each, with the evictions pcapstate reported. `--first-run N` times
the first run after installing and the next, N times each, on a small sample (analysed
uncompiled) and on a capture past jit.PLAIN_BYTES (the engine compiled once into an empty
cache), wall and CPU seconds; `--runs 0` measures only that (and `--wrapped`). `--wrapped
N` takes the capture's first N packets as they are, inside one MPLS label (read by the
compiled decoder), inside VXLAN (read by the slow path, decode/unwrap.py) and mixed (every
Ethernet encapsulation of tests/test_encapsulations.py in turn with plain frames), and
times pcapstate, tcptrace, tshark and the dpkt loop on each, with packets/s: what an
encapsulation costs. `--dask N` runs `pcapstate analyze --dask` on a LocalCluster of N
worker processes (a fresh one each time), on the capture and on the floods of a million
connections never closed and of a million SYNs (--max-connections 0: every one stays live
until it ends), against the run in one process: wall time, this machine's peak memory and
each worker's (its peak resident memory as the operating system counts it, idle and after
the run).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PY = sys.executable

TOOLS = {
    "pcapstate": lambda f: [PY, "-m", "pcapstate", "analyze", f, "-q"],
    "pcapstate+json": lambda f: [PY, "-m", "pcapstate", "analyze", f, "-q", "--json",
                                 str(HERE / "out" / "result.json")],
    "pcapstate+jsonl": lambda f: [PY, "-m", "pcapstate", "analyze", f, "-q", "--jsonl",
                                  str(HERE / "out" / "records.jsonl")],
    "pcapstate+zeek": lambda f: [PY, "-m", "pcapstate", "analyze", f, "-q", "--zeek-conn",
                                 str(HERE / "out" / "conn.log")],
    "pcapstate+parquet": lambda f: [PY, "-m", "pcapstate", "analyze", f, "-q", "--parquet",
                                    str(HERE / "out" / "conns.parquet")],
    "pcapstate+report": lambda f: [PY, "-m", "pcapstate", "analyze", f, "-q", "--report",
                                   str(HERE / "out" / "report.md"), "--html",
                                   str(HERE / "out" / "report.html")],
    "tcptrace": lambda f: ["tcptrace", "-n", f],
    "tshark": lambda f: ["tshark", "-n", "-q", "-z", "conv,tcp", "-r", f],
    "naive-dpkt": lambda f: [PY, str(HERE / "naive_dpkt.py"), f],
    # the tshark engine, against tshark printing the very fields that engine asks for
    "pcapstate-tshark": lambda f: [PY, "-m", "pcapstate", "analyze", f, "-q", "--engine",
                                   "tshark"],
    "tshark-fields": lambda f: tshark_fields(f),
}


def tshark_fields(path: str) -> list[str]:
    from pcapstate.decode.tshark import command

    return command(path)


def measure(cmd: list[str], errors: list[str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak resident MiB of one run of `cmd`. GNU time starts it, so that
    the peak is the tool's own, not this process's memory inherited through fork. The
    tool's own stderr goes to `errors`, if given."""
    started = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    if p.returncode not in (0, 1):  # pcapstate exits 1 only with --fail-on
        raise SystemExit(f"{cmd[0]} failed with exit code {p.returncode}: {' '.join(cmd)}")
    if errors is not None:
        errors.extend(p.stderr.splitlines()[:-1])
    return wall, int(p.stderr.split()[-1]) / 1024


FLOOD_TOOLS = {
    "pcapstate": lambda f: TOOLS["pcapstate"](f),
    "pcapstate-100k": lambda f: [*TOOLS["pcapstate"](f), "--max-connections", "100000"],
    "pcapstate-unlimited": lambda f: [*TOOLS["pcapstate"](f), "--max-connections", "0"],
    "tcptrace": TOOLS["tcptrace"],
    "tshark": TOOLS["tshark"],
    "naive-dpkt": TOOLS["naive-dpkt"],
}


def floods(skip: list[str]) -> dict[str, dict]:
    """Each tool once on each flood capture: wall time, peak memory, evictions."""
    out: dict[str, dict] = {}
    for name in ("syn_flood", "idle_million"):
        path = HERE / "out" / f"{name}.pcap"
        if not path.exists():
            subprocess.run([PY, str(HERE / "make_floods.py")], check=True)
        n = packets(str(path))
        print(f"flood {path.name}: {n:,} packets, {path.stat().st_size / 1048576:,.0f} MiB")
        out[name] = {"packets": n}
        for tool, cmd in FLOOD_TOOLS.items():
            if tool in skip or shutil.which(cmd("x")[0]) is None:
                continue
            errors: list[str] = []
            wall, mib = measure(cmd(str(path)), errors)
            m = re.search(r"([\d,]+) connections were evicted", " ".join(errors))
            evicted = int(m.group(1).replace(",", "")) if m else 0
            out[name][tool] = {"wall_s": round(wall, 2), "peak_mib": round(mib, 1),
                               **({"evicted": evicted} if tool.startswith("pcapstate") else {})}
            print(f"  {tool:<20} {wall:7.2f} s  {mib:8.0f} MiB peak"
                  + (f"  {evicted:,} evicted" if tool.startswith("pcapstate") else ""),
                  flush=True)
    return out


def on_dask(capture: str, workers: int, extra: list[str]) -> dict[str, Any]:
    """`pcapstate analyze --dask` on a fresh LocalCluster of `workers` processes: wall time,
    the client's peak memory, and each worker's peak, idle and after the run."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        idle = sorted(client.run(_peak_mib).values())
        wall, mib = measure([*TOOLS["pcapstate"](capture), *extra, "--dask",
                             cluster.scheduler_address])
        after = sorted(client.run(_peak_mib).values())
    return {"wall_s": round(wall, 2), "client_peak_mib": round(mib, 1),
            "worker_idle_peak_mib": [round(m, 1) for m in idle],
            "worker_peak_mib": [round(m, 1) for m in after]}


def _peak_mib() -> float:
    """This process's peak resident memory, MiB (on a Dask worker)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dask_memory(capture: str, workers: int) -> dict[str, Any]:
    """The capture and the floods (a million connections never closed: they retire at the
    end; a million SYNs: their timers run out together while it is read), in one process
    and on `workers` workers, with no connection limit."""
    idle, syn = HERE / "out" / "idle_million.pcap", HERE / "out" / "syn_flood.pcap"
    if not idle.exists() or not syn.exists():
        subprocess.run([PY, str(HERE / "make_floods.py")], check=True)
    out: dict[str, Any] = {}
    for name, path, extra in (("capture", capture, []),
                              ("idle_million", str(idle), ["--max-connections", "0"]),
                              ("syn_flood", str(syn), ["--max-connections", "0"])):
        wall, mib = measure([*TOOLS["pcapstate"](path), *extra])
        out[name] = {"single": {"wall_s": round(wall, 2), "peak_mib": round(mib, 1)},
                     f"dask_{workers}": on_dask(path, workers, extra)}
        d = out[name][f"dask_{workers}"]
        print(f"{name} on {workers} Dask workers: {d['wall_s']:.1f} s (one process "
              f"{wall:.1f} s); peak MiB: one process {mib:.0f}, this machine "
              f"{d['client_peak_mib']:.0f}, each worker {d['worker_peak_mib']} (idle "
              f"{d['worker_idle_peak_mib']})", flush=True)
    return out


def wrapped(src: str, limit: int) -> dict[str, str]:
    """The first `limit` packets of `src` (Ethernet, IPv4) as they are, in one MPLS label
    (the compiled decoder's), in VXLAN (the slow path's), and mixed: each connection as it
    is or in one of tests/test_encapsulations.py's Ethernet forms (shims, tunnels), chosen
    by its endpoints."""
    import dpkt

    sys.path.insert(0, str(HERE.parent))
    from tests.test_encapsulations import CASES, LEAK, eth, labels, vxlan

    forms = [None, *(c.wrap for c in CASES.values() if c.linktype == 1 and c.sample == LEAK)]
    out = {kind: str(HERE / "out" / f"wrapped_{limit}_{kind}.pcap")
           for kind in ("plain", "mpls", "vxlan", "mixed")}
    if all(Path(p).exists() for p in out.values()):
        return out
    outer = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800)
    with open(src, "rb") as f:
        files = {kind: open(path, "wb") for kind, path in out.items()}
        writers = {kind: dpkt.pcap.Writer(fh, snaplen=65535) for kind, fh in files.items()}
        for i, (ts, frame) in enumerate(dpkt.pcap.Reader(f)):
            if i == limit:
                break
            frame = bytes(frame)
            udp = dpkt.udp.UDP(sport=49152 + i % 64, dport=4789, data=vxlan(42, frame))
            udp.ulen = len(udp)
            outer.data = dpkt.ip.IP(src=bytes([192, 0, 2, 1]), dst=bytes([192, 0, 2, 2]),
                                    p=17, data=udp)
            outer.data.len = len(outer.data)
            # one form per connection, as on a real network (by its two endpoints)
            ends = sorted((frame[26:30] + frame[34:36], frame[30:34] + frame[36:38]))
            form = forms[zlib.crc32(b"".join(ends)) % len(forms)]
            for kind, data in (("plain", frame), ("mpls", eth(0x8847, labels(100) + frame[14:])),
                               ("vxlan", bytes(outer)),
                               ("mixed", frame if form is None else form(i, frame))):
                writers[kind].writepkt(data, ts)
        for fh in files.values():
            fh.close()
    return out


def packets(path: str) -> int:
    """Records in a pcap file, walking the record headers."""
    n = 0
    with open(path, "rb") as f:
        head = f.read(24)
        order = "<" if head[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        rec = struct.Struct(order + "IIII")
        while True:
            h = f.read(16)
            if len(h) < 16:
                return n
            f.seek(rec.unpack(h)[2], 1)
            n += 1


def stretch(src: str, dst: str, copies: int) -> None:
    """`copies` back-to-back copies of a pcap of Ethernet/IPv4 127.0.0.0/8 traffic, each
    starting 600 s after the previous one ends, each with the client addresses' last octet
    changed (the server, 127.0.0.1, is kept), so that every copy's connections are new."""
    import numpy as np

    data = np.fromfile(src, dtype=np.uint8)
    offsets, pos = [], 24
    raw = data.tobytes()
    while pos + 16 <= len(raw):
        offsets.append(pos)
        pos += 16 + int.from_bytes(raw[pos + 8:pos + 12], "little")
    off = np.array(offsets, dtype=np.int64)
    secs = data[(off[:, None] + np.arange(4)).ravel()].view("<u4")
    span = int(secs.max() - secs.min()) + 600
    ip_fields = [off + 16 + 26, off + 16 + 30]  # IPv4 source and destination
    with open(dst, "wb") as out:
        out.write(raw[:24])
        for k in range(copies):
            chunk = data[24:].copy()
            body = chunk  # record offsets are relative to the file: shift by the header
            ts = (secs + np.uint32(k * span)).view(np.uint8).reshape(-1, 4)
            body[(off[:, None] - 24 + np.arange(4)).ravel()] = ts.ravel()
            for field in ip_fields:
                first = data[field]
                client = ~((first == 127) & (data[field + 1] == 0) & (data[field + 2] == 0)
                           & (data[field + 3] == 1))
                last = field[client] + 3 - 24
                body[last] = (data[field[client] + 3] + k) % 250 + 1
            out.write(body.tobytes())


def corpus(capture: str, copies: int, workers: int) -> float:
    """Wall seconds of `pcapstate check -j WORKERS` over a corpus of `copies` captures (hard
    links to the capture) against their goldens, written first by an untimed --update."""
    folder = HERE / "out" / f"corpus-{copies}"
    if not folder.is_dir():
        folder.mkdir()
        for k in range(copies):
            (folder / f"copy-{k}.pcap").hardlink_to(capture)
        subprocess.run(["pcapstate", "check", str(folder), "--update", "-j", "2"], check=True,
                       stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    subprocess.run(["pcapstate", "check", str(folder), "-j", str(workers)], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def first_run(times: int) -> dict[str, Any]:
    """The first run after installing and the next one, `times` times each, wall and CPU
    (user + system) seconds: on a small sample (analysed uncompiled: nothing to compile) and
    on the same sample joined to itself past jit.PLAIN_BYTES (the engine compiled, once,
    into an empty cache)."""
    import tempfile

    from pcapstate.jit import PLAIN_BYTES

    sample = HERE.parent / "samples" / "close_wait_leak.pcap"
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        big = Path(folder) / "big.pcap"
        data = sample.read_bytes()
        big.write_bytes(data * (PLAIN_BYTES // len(data) + 1))
        for name, capture in (("small", str(sample)), ("past_plain_bytes", str(big))):
            runs: dict[str, list[tuple[float, float]]] = {"first": [], "warm": []}
            for _ in range(times):
                with tempfile.TemporaryDirectory() as cache:
                    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
                    for which in ("first", "warm"):
                        started = time.perf_counter()
                        p = subprocess.run(["/usr/bin/time", "-f", "%U %S",
                                            *TOOLS["pcapstate"](capture)],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                           text=True, env={**env, "XDG_CACHE_HOME": cache},
                                           check=True)
                        user, system = map(float, p.stderr.split()[-2:])
                        runs[which].append((time.perf_counter() - started, user + system))
            for which, got in runs.items():
                wall = statistics.median(w for w, _ in got)
                cpu = statistics.median(c for _, c in got)
                out[f"{name}_{which}"] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                                          "runs_wall_s": [round(w, 2) for w, _ in got]}
                print(f"{name} capture ({os.path.getsize(capture):,} bytes), {which} run"
                      f"{' after installing' if which == 'first' else ''}: {wall:.2f} s wall, "
                      f"{cpu:.2f} s CPU (median of {times})", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture", nargs="?", default=str(HERE / "out" / "bench.pcap"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--long", type=int, default=0, metavar="N")
    ap.add_argument("--corpus", type=int, default=0, metavar="N")
    ap.add_argument("--floods", action="store_true")
    ap.add_argument("--first-run", type=int, default=0, metavar="N")
    ap.add_argument("--wrapped", type=int, default=0, metavar="N")
    ap.add_argument("--dask", type=int, default=0, metavar="N")
    ap.add_argument("--skip", nargs="*", default=[], choices=list(TOOLS | FLOOD_TOOLS))
    args = ap.parse_args()
    if not args.runs and not args.wrapped and not args.dask:  # `--runs 0 --first-run 3`
        print(json.dumps({"tools": {"first_run": first_run(args.first_run or 1)}}))
        return
    if not Path(args.capture).exists():
        subprocess.run([PY, str(HERE / "make_capture.py"), "--out", args.capture], check=True)
    n = packets(args.capture)
    print(f"capture: {args.capture}: {n:,} packets, "
          f"{Path(args.capture).stat().st_size / 1048576:,.0f} MiB")
    rows: dict[str, Any] = {}
    tools = {name: cmd(args.capture) for name, cmd in TOOLS.items()
             if args.runs and name not in args.skip and shutil.which(cmd("x")[0])}
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in tools}
    for k in range(args.runs):  # a round runs each tool once: all see the same conditions
        for name, cmd in tools.items():
            measure(cmd)  # untimed: the same warm page cache and memory as back to back
            os.sync()  # the files written go to disk before, not during, the timed run
            runs[name].append(measure(cmd))
        print(f"  round {k + 1} of {args.runs}: " + ", ".join(
            f"{name} {runs[name][-1][0]:.2f} s" for name in tools), flush=True)
    for name, got in runs.items():
        wall = statistics.median(w for w, _ in got)
        rows[name] = {"wall_s": round(wall, 3), "packets_per_s": round(n / wall),
                      "peak_mib": round(max(m for _, m in got), 1),
                      "runs_s": [round(w, 3) for w, _ in got]}
        print(f"  {name:<16} {wall:8.2f} s  {n / wall / 1e3:8.0f} k packets/s  "
              f"{rows[name]['peak_mib']:8.0f} MiB peak", flush=True)
    base = rows.get("pcapstate")

    def rounds(a: str, b: str) -> float:
        """The median over the rounds of a's time over b's in the same round."""
        return round(statistics.median(x / y for (x, _), (y, _) in zip(
            runs[a], runs[b], strict=True)), 3)
    if base:
        print("pcapstate's wall time as a ratio of each tool's, of the medians and the median "
              "of each round's (targets: <= 0.5 of tcptrace, <= 0.12 of tshark):")
        for name, r in rows.items():
            if not name.startswith("pcapstate") and name != "tshark-fields":
                r["pcapstate_ratio"] = round(base["wall_s"] / r["wall_s"], 3)
                r["pcapstate_ratio_rounds"] = rounds("pcapstate", name)
                print(f"  pcapstate / {name:<11} {r['pcapstate_ratio']:6.2f}"
                      f"  {r['pcapstate_ratio_rounds']:6.2f}")
    written = [name for name in ("pcapstate+json", "pcapstate+jsonl", "pcapstate+zeek",
                                 "pcapstate+parquet") if name in rows]
    if base and written:
        print("writing every connection's record, as times the analysis alone, of the medians "
              "and the median of each round's (target: <= 2):")
        for name in written:
            r = rows[name]
            r["times_analysis"] = round(r["wall_s"] / base["wall_s"], 3)
            r["times_analysis_rounds"] = rounds(name, "pcapstate")
            print(f"  {name:<18} {r['times_analysis']:6.2f}  {r['times_analysis_rounds']:6.2f}")
    if "pcapstate-tshark" in rows and "tshark-fields" in rows:
        r = rows["pcapstate-tshark"]
        r["ratio_to_tshark_fields"] = round(r["wall_s"] / rows["tshark-fields"]["wall_s"], 3)
        print(f"the tshark engine takes {r['ratio_to_tshark_fields']:.2f}x the time of tshark "
              "printing its fields (target: <= 1.5)")
    if args.long:
        longer = str(Path(args.capture).with_suffix(f".x{args.long}.pcap"))
        if not Path(longer).exists():
            stretch(args.capture, longer, args.long)
        wall, mib = measure(TOOLS["pcapstate"](longer))
        ratio = mib / base["peak_mib"] if base else float("nan")
        rows["pcapstate_long"] = {"copies": args.long, "wall_s": round(wall, 2),
                                  "peak_mib": round(mib, 1), "memory_ratio": round(ratio, 3)}
        print(f"{args.long}x longer capture: pcapstate {wall:.1f} s, {mib:.0f} MiB peak, "
              f"{ratio:.2f}x the memory of the original (target: <= 1.1)")
    if args.corpus:
        rows["corpus"] = {"captures": args.corpus}
        for workers in (1, 2):
            wall = corpus(args.capture, args.corpus, workers)
            rows["corpus"][f"workers_{workers}"] = {
                "wall_s": round(wall, 2), "captures_per_s": round(args.corpus / wall, 3),
                "packets_per_s": round(args.corpus * n / wall)}
            print(f"corpus of {args.corpus} captures, {workers} at a time: {wall:.1f} s, "
                  f"{args.corpus / wall:.2f} captures/s, "
                  f"{args.corpus * n / wall / 1e6:.2f} M packets/s", flush=True)
        w1, w2 = (rows["corpus"][f"workers_{w}"]["wall_s"] for w in (1, 2))
        rows["corpus"]["speedup_2_workers"] = round(w1 / w2, 2)
        print(f"  two workers: {w1 / w2:.2f}x the throughput of one")
    if args.floods:
        rows["floods"] = floods(args.skip)
    if args.first_run:
        rows["first_run"] = first_run(args.first_run)
    if args.dask:
        rows["dask"] = dask_memory(args.capture, args.dask)
    if args.wrapped:
        rows["wrapped"] = {}
        print(f"the first {args.wrapped:,} packets, as they are and wrapped (median of "
              f"{max(args.runs, 1)}):")
        for kind, path in wrapped(args.capture, args.wrapped).items():
            rows["wrapped"][kind] = {}
            for name in ("pcapstate", "tcptrace", "tshark", "naive-dpkt"):
                if name in args.skip or shutil.which(TOOLS[name]("x")[0]) is None:
                    continue
                wall = statistics.median(measure(TOOLS[name](path))[0]
                                         for _ in range(max(args.runs, 1)))
                rows["wrapped"][kind][name] = {"wall_s": round(wall, 3),
                                               "packets_per_s": round(args.wrapped / wall)}
            print(f"  {kind:<6} " + "  ".join(
                f"{k} {v['wall_s']:.2f} s ({v['packets_per_s'] / 1e3:,.0f} k/s)"
                for k, v in rows["wrapped"][kind].items()), flush=True)
    print(json.dumps({"packets": n, "tools": rows}))


if __name__ == "__main__":
    main()
