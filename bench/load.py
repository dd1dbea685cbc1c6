"""Traffic for the benchmark capture; bench/make_capture.py runs it inside a network namespace.

    python3 load.py servers SECONDS
    python3 load.py clients WORKER WORKERS CONNECTIONS SEED

The servers: a request/response service on 127.0.0.1:8080 (replies, then closes first when
the request asks for it, else waits for the client's FIN), a bulk sink on :9000, and an
iperf2-like service on :5001 that never closes what its clients closed (the CLOSE_WAIT leak).
Nothing listens on :9999 (refused connections). Every loop is bounded; every process ends
by itself.
"""

import os
import random
import selectors
import socket
import struct
import sys
import time

LEAK_PORT, REPLY_PORT, BULK_PORT, CLOSED_PORT = 5001, 8080, 9000, 9999
DEADLINE = time.monotonic() + 900  # nothing here outlives fifteen minutes


def servers(seconds: str) -> None:
    """One process serving all three ports with a selector; ends after `seconds`."""
    sel = selectors.DefaultSelector()
    for port in (LEAK_PORT, REPLY_PORT, BULK_PORT):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(4096)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, ("listen", port))
    leaked = []  # the leak: these sockets are never closed
    print("listening", flush=True)
    stop = min(time.monotonic() + float(seconds), DEADLINE)
    while time.monotonic() < stop:
        for key, _ in sel.select(timeout=0.5):
            kind, port = key.data
            sock = key.fileobj
            if kind == "listen":
                for _ in range(64):
                    try:
                        c, _ = sock.accept()
                    except BlockingIOError:
                        break
                    c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ, ("conn", port))
                continue
            try:
                data = sock.recv(262144)
            except ConnectionResetError:
                data = None
            if port == REPLY_PORT and data:
                sock.send(b"HTTP/1.0 200 OK\r\n\r\n" + b"r" * 600)
                if data.startswith(b"GET /close"):
                    sel.unregister(sock)
                    sock.close()
            elif not data:  # EOF or reset
                sel.unregister(sock)
                if port == LEAK_PORT and data is not None:
                    leaked.append(sock)
                else:
                    sock.close()
    print(f"leaked {len(leaked)}", flush=True)


def clients(worker: str, workers: str, connections: str, seed: str) -> None:
    """This worker's share of a seeded schedule of connections, from its own source
    addresses (so that client TIME_WAIT never exhausts the ports)."""
    w, n = int(worker), int(workers)
    rng = random.Random(int(seed) * 1000 + w)
    plan = []
    for _ in range(int(connections) // n):
        r = rng.random()
        kind = ("refused" if r < 0.01 else "reset" if r < 0.03 else "leak" if r < 0.032
                else "server_close" if r < 0.25 else "client_close")
        plan.append(kind)
    for i in range(int(os.environ.get("BULK", "8"))):
        plan.insert(len(plan) * (i + 1) // 5, "bulk")
    linger0 = struct.pack("ii", 1, 0)
    for i, kind in enumerate(plan):
        if time.monotonic() > DEADLINE:
            break
        src = f"127.{1 + w}.{i // 20000 % 250}.{1 + i // 5_000_000}"
        port = {"refused": CLOSED_PORT, "leak": LEAK_PORT, "bulk": BULK_PORT}.get(kind,
                                                                                  REPLY_PORT)
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        c.bind((src, 0))
        c.settimeout(10)
        try:
            c.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            c.close()
            continue
        if kind == "bulk":
            block = b"b" * 65536
            for _ in range(256):  # 16 MiB
                c.sendall(block)
        elif kind == "leak":
            c.sendall(b"x" * 2000)
        elif kind == "reset":
            c.sendall(b"GET /abort\r\n\r\n")
            c.recv(4096)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)
        else:
            c.sendall(b"GET /close\r\n\r\n" if kind == "server_close" else b"GET /\r\n\r\n")
            got = 0
            while got < 619:
                data = c.recv(4096)
                if not data:
                    break
                got += len(data)
            if kind == "server_close":
                c.recv(16)  # the server's FIN
        c.close()


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
