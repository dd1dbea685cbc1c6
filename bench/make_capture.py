"""Make the benchmark capture: real kernel traffic in a network namespace, captured inside it.

    python3 bench/make_capture.py [--connections N] [--out bench/out/bench.pcap]

Many short request/response connections (the client closes first in about three quarters,
the server in the rest), a few 16 MiB bulk uploads, resets (SO_LINGER 0), refused connects
and an iperf2-like service that leaks its sockets in CLOSE_WAIT; two client processes, each
from its own source addresses. tcpdump captures with snaplen 128, as incident captures often
are. Needs root, iproute2, tcpdump, ethtool. The schedule is seeded; kernel timing is not.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "samples"))
from make_samples import Namespace, ss_states  # noqa: E402

LOAD = str(HERE / "load.py")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=150_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "out" / "bench.pcap")
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with Namespace("bench", script=LOAD) as ns:
        servers = ns.peer("servers", "850", wait_for="listening")
        ns.start_capture(str(args.out), snaplen=128, buffer_kib=262144, immediate=False)
        clients = [ns.peer("clients", str(w), str(args.workers), str(args.connections),
                           str(args.seed)) for w in range(args.workers)]
        for c in clients:
            c.wait(timeout=900)
            assert c.returncode == 0, f"a client worker failed ({c.returncode})"
        time.sleep(2)
        ss = ns.stop_capture(args.out.with_suffix(".ss.txt"))
        servers.terminate()
    count = subprocess.run(["tcpdump", "-nr", str(args.out), "-q"], capture_output=True,
                           text=True).stdout.count("\n")
    meta = {"connections_planned": args.connections, "packets": count,
            "bytes": args.out.stat().st_size, "seconds_to_make": round(time.monotonic() -
                                                                       started, 1),
            "kernel_states_at_end": dict(ss_states(ss))}
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
