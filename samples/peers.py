"""Small TCP servers and clients for the sample captures; make_samples.py runs them inside
network namespaces. Every loop is bounded and every process ends by itself.

    python3 peers.py ROLE MODE HOST PORT [ARGS...]
"""

import socket
import struct
import sys
import threading
import time

DEADLINE = time.monotonic() + 420  # no peer outlives seven minutes


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(64)
    s.settimeout(max(1.0, DEADLINE - time.monotonic()))
    print("listening", flush=True)
    return s


def connect(host: str, port: int) -> socket.socket:
    return socket.create_connection((host, port), timeout=30)


def read_to_eof(c: socket.socket) -> int:
    n = 0
    while time.monotonic() < DEADLINE:
        data = c.recv(65536)
        if not data:
            break
        n += len(data)
    return n


def read_line(c: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n") and time.monotonic() < DEADLINE:
        chunk = c.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def hold(seconds: float) -> None:
    time.sleep(max(0.0, min(seconds, DEADLINE - time.monotonic())))


# ---- servers ---------------------------------------------------------------------------

def server_leak(host: str, port: int, n: str, seconds: str, keepalive: str = "yes") -> None:
    """iperf2-daemon-like: read each connection to EOF, never close() it; the sockets close
    when the process exits, after `seconds`. Keep-alives every 3 s keep the stuck sockets
    talking, as long-lived servers configure them (unless `keepalive` is "no")."""
    s, kept = listen(host, port), []
    for _ in range(int(n)):
        c, _ = s.accept()
        if keepalive == "yes":
            c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 3)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 3)
        read_to_eof(c)
        kept.append(c)  # the leak: the socket stays in CLOSE_WAIT
    hold(float(seconds))


def server_late(host: str, port: int, n: str, late: str, seconds: str) -> None:
    """Read each connection to EOF, sit in CLOSE_WAIT for `late` seconds, then send a late
    reply and close: the client's socket is long gone, so its kernel answers with a RST."""
    s, kept = listen(host, port), []
    for _ in range(int(n)):
        c, _ = s.accept()
        read_to_eof(c)
        kept.append(c)
    hold(float(late))
    for c in kept:
        c.sendall(b"late reply\n")
        time.sleep(0.2)
        c.close()
    hold(float(seconds))


def server_reply(host: str, port: int, n: str, close_first: str, seconds: str) -> None:
    """Read a request line, send a reply; close first, or wait for the client's FIN."""
    s = listen(host, port)
    for _ in range(int(n)):
        c, _ = s.accept()
        read_line(c)
        c.sendall(b"reply " * 50 + b"\n")
        if close_first == "no":
            read_to_eof(c)
        c.close()
    hold(float(seconds))


def server_sink(host: str, port: int, n: str, seconds: str) -> None:
    """Serve connections concurrently: read each to EOF (a reply line first), then close."""
    s = listen(host, port)

    def serve(c: socket.socket) -> None:
        try:
            if read_line(c).startswith(b"req"):
                c.sendall(b"ok\n")
            read_to_eof(c)
        except ConnectionResetError:
            pass  # rst_abort: the client resets on purpose
        c.close()

    threads = []
    for _ in range(int(n)):
        c, _ = s.accept()
        t = threading.Thread(target=serve, args=(c,))
        t.start()
        threads.append(t)
    for t in threads:
        t.join(timeout=max(0.1, DEADLINE - time.monotonic()))
    hold(float(seconds))


def server_half(host: str, port: int, nbytes: str, seconds: str) -> None:
    """Read the request to EOF (the client half-closed), then keep sending, then close."""
    s = listen(host, port)
    c, _ = s.accept()
    read_to_eof(c)
    total, chunks = int(nbytes), 20
    for _ in range(chunks):
        c.sendall(b"d" * (total // chunks))
        time.sleep(1.0 / chunks)
    c.close()
    hold(float(seconds))


def server_echo(host: str, port: int, seconds: str) -> None:
    """Echo lines until EOF, then close."""
    s = listen(host, port)
    c, _ = s.accept()
    while time.monotonic() < DEADLINE:
        data = c.recv(4096)
        if not data:
            break
        c.sendall(data)
    time.sleep(0.3)
    c.close()
    hold(float(seconds))


def server_listen(host: str, port: int, seconds: str) -> None:
    """Listen for `seconds`, accept nothing, then exit: the listener that syn_giveup's and
    synack_giveup's SYNs (or SYN-ACKs) never get through to or from."""
    s = listen(host, port)
    hold(float(seconds))
    s.close()


#: The first bytes of an `aborts` connection: which side aborts it and how, padded to 16.
PLAN_LEN = 16


def server_aborts(host: str, port: int, n: str, seconds: str) -> None:
    """Serve `n` connections one after another, each as the plan its client sends first
    (PLAN_LEN bytes) says: server_linger: close with SO_LINGER (on, 0 s): a RST;
    server_unread: wait until the client's next bytes are in the receive buffer and close
    without reading them: the kernel sends a RST (RFC 2525, 2.17); client_linger: read to
    the client's RST; client_unread: send a reply the client will not read, then read to
    its RST."""
    s = listen(host, port)
    for _ in range(int(n)):
        c, _ = s.accept()
        c.settimeout(30)
        plan = c.recv(PLAN_LEN, socket.MSG_WAITALL).decode().strip()
        try:
            if plan == "server_linger":
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif plan == "server_unread":
                c.recv(1, socket.MSG_PEEK)  # the bytes have come: leave them unread
                time.sleep(0.1)
            else:
                if plan == "client_unread":
                    c.sendall(b"reply " * 200)
                read_to_eof(c)
                raise SystemExit(f"{plan}: expected the client's RST, got its FIN")
        except ConnectionResetError:
            pass  # the client aborted, as planned
        c.close()
    hold(float(seconds))


# ---- clients ---------------------------------------------------------------------------

def client_send_close(host: str, port: int, n: str, gap: str, nbytes: str) -> None:
    """Connect, send, close (the client closes first); one connection after another."""
    for _ in range(int(n)):
        c = connect(host, port)
        c.sendall(b"x" * int(nbytes))
        c.close()
        time.sleep(float(gap))


def client_request(host: str, port: int, n: str, gap: str, close_first: str) -> None:
    """Send a request line, read the reply; then close, or wait for the server's close."""
    for _ in range(int(n)):
        c = connect(host, port)
        c.sendall(b"request\n")
        if close_first == "yes":
            read_line(c)
            time.sleep(0.05)
        else:
            read_to_eof(c)
            time.sleep(0.05)
        c.close()
        time.sleep(float(gap))


def client_abort(host: str, port: int, n: str, gap: str) -> None:
    """Close with SO_LINGER (on, 0 s): the kernel sends a RST instead of a FIN."""
    for _ in range(int(n)):
        c = connect(host, port)
        c.sendall(b"x" * 2000)
        time.sleep(0.1)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        time.sleep(float(gap))


def client_refused(host: str, port: int, n: str, gap: str) -> None:
    for _ in range(int(n)):
        try:
            connect(host, port).close()
            raise SystemExit("expected a refusal")
        except ConnectionRefusedError:
            pass
        time.sleep(float(gap))


def client_attempt(host: str, port: int) -> None:
    """Connect to an address where nothing answers, until the kernel gives up (its SYN
    retries, net.ipv4.tcp_syn_retries); print how long that took."""
    start = time.monotonic()
    try:
        socket.create_connection((host, port), timeout=max(1.0, DEADLINE - start)).close()
        raise SystemExit("expected no answer")
    except OSError as e:  # ETIMEDOUT from the kernel (a socket timeout would say so)
        print(f"gave up after {time.monotonic() - start:.1f} s: {e}", flush=True)


def client_half(host: str, port: int) -> None:
    """Send a request, shutdown(SHUT_WR), read the reply to EOF, close."""
    c = connect(host, port)
    c.sendall(b"request\n")
    c.shutdown(socket.SHUT_WR)
    read_to_eof(c)
    c.close()


def client_chatter(host: str, port: int, seconds: str) -> None:
    """Exchange a small message every 100 ms for `seconds`, then close first."""
    c = connect(host, port)
    print("connected", flush=True)
    stop = time.monotonic() + float(seconds)
    while time.monotonic() < min(stop, DEADLINE):
        c.sendall(b"ping\n")
        read_line(c)
        time.sleep(0.1)
    c.close()


def client_bulk(host: str, port: int, nbytes: str, seconds: str) -> None:
    """Send `nbytes` paced over `seconds`, then close."""
    c = connect(host, port)
    c.sendall(b"bulk\n")
    chunks = 50
    for _ in range(chunks):
        c.sendall(b"b" * (int(nbytes) // chunks))
        time.sleep(float(seconds) / chunks)
    c.close()


def client_aborts(host: str, port: int, plans: str, first_port: str, gap: str) -> None:
    """One connection per plan (comma-separated; server_aborts says them), from client
    ports first_port, first_port + 1, ...: the plan's PLAN_LEN bytes first, then
    client_linger: 2 KB, and close with SO_LINGER (on, 0 s): a RST; client_unread: wait
    until the server's reply is in the receive buffer and close without reading it: the
    kernel sends a RST (RFC 2525, 2.17); server_linger: wait for the server's RST;
    server_unread: 2 KB the server will not read, then wait for its RST."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for i, plan in enumerate(plans.split(",")):
        c = socket.socket(family, socket.SOCK_STREAM)
        c.bind((host, int(first_port) + i))
        c.settimeout(30)
        c.connect((host, port))
        c.sendall(plan.ljust(PLAN_LEN).encode())
        if plan == "client_linger":
            c.sendall(b"x" * 2000)
            time.sleep(0.1)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif plan == "client_unread":
            c.recv(1, socket.MSG_PEEK)  # the reply has come: leave it unread
            time.sleep(0.1)
        else:
            if plan == "server_unread":
                time.sleep(0.1)
                c.sendall(b"x" * 2000)
            try:
                read_to_eof(c)
                raise SystemExit(f"{plan}: expected the server's RST, got its FIN")
            except ConnectionResetError:
                pass  # the server aborted, as planned
        c.close()
        time.sleep(float(gap))


def client_datagram(host: str, port: int) -> None:
    """Send one UDP datagram (no TCP): the last packet of a capture, so that the file (which
    ends at its last packet) says how long the capture ran."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as u:
        u.sendto(b"end of capture\n", (host, port))
    time.sleep(0.2)  # the answer (ICMP port unreachable, when nobody listens) comes back


if __name__ == "__main__":
    role, mode, host, port, *rest = sys.argv[1:]
    globals()[f"{role}_{mode}"](host, int(port), *rest)
