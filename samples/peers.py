"""Small TCP servers and clients for the sample captures; make_samples.py runs them inside
network namespaces. Every loop is bounded and every process ends by itself.

    python3 peers.py ROLE MODE HOST PORT [ARGS...]
"""

import errno
import fcntl
import json
import random
import select
import socket
import struct
import sys
import termios
import threading
import time

DEADLINE = time.monotonic() + 420  # no peer outlives seven minutes


def listen(host: str, port: int, backlog: int = 64) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(backlog)
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


_LOG = threading.Lock()


def log(**event) -> None:
    """One JSON line on stdout (the scenario's log), with the wall-clock time it was written
    (`t`, epoch seconds: the clock tcpdump stamps the capture with)."""
    with _LOG:
        print(json.dumps({"t": round(time.time(), 6), **event}), flush=True)


def queued(c: socket.socket) -> int:
    """The bytes in the socket's receive buffer, not yet read by the application."""
    return struct.unpack("i", fcntl.ioctl(c, termios.FIONREAD, b"\0" * 4))[0]


def errno_name(e: OSError) -> str:
    return {ConnectionResetError: "ECONNRESET", BrokenPipeError: "EPIPE",
            TimeoutError: "ETIMEDOUT"}.get(type(e), type(e).__name__)


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


#: keepalive_race: a request is a header block ending with an empty line; the answer has a
#: body of RESPONSE_BODY bytes.
RESPONSE_BODY = 64


def server_keepalive(host: str, port: int, idle: str, seconds: str) -> None:
    """An HTTP/1.1-like server with a keep-alive idle timeout: it answers each request
    (headers ending with an empty line) on a connection, and close()s a connection on
    which no byte came for `idle` seconds since its last answer (or its accept). Serves
    connections concurrently for `seconds`. Logs each answer and each idle close."""
    s, timeout = listen(host, port), float(idle)
    s.settimeout(0.2)
    stop = min(time.monotonic() + float(seconds), DEADLINE)

    def serve(c: socket.socket, peer: int) -> None:
        last, buf = time.monotonic(), b""
        try:
            while time.monotonic() < stop:
                left = timeout - (time.monotonic() - last)
                ready = select.select([c], [], [], left)[0] if left > 0 else []
                if not ready:  # idle for `timeout`: close (a FIN, or a RST if bytes came)
                    unread = queued(c)
                    c.close()
                    log(event="idle_close", peer_port=peer,
                        idle=round(time.monotonic() - last, 6), unread=unread)
                    return
                data = c.recv(4096)
                if not data:
                    log(event="eof", peer_port=peer)
                    break
                buf += data
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                              b"Keep-Alive: timeout=%d\r\n\r\n" % (RESPONSE_BODY, timeout)
                              + b"r" * RESPONSE_BODY)
                    last = time.monotonic()
                    log(event="response", peer_port=peer)
        except OSError as e:
            log(event="error", peer_port=peer, error=errno_name(e))
        c.close()

    threads = []
    while time.monotonic() < stop:
        try:
            c, addr = s.accept()
        except TimeoutError:
            continue
        t = threading.Thread(target=serve, args=(c, addr[1]), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(timeout=5)


def server_keepopen(host: str, port: int, n: str, seconds: str) -> None:
    """Accept `n` connections and answer each request line on them, never closing one
    (no idle timeout, no keep-alives), for `seconds`: peer_gone's server whose sockets
    vanish under it."""
    s, conns, accepted = listen(host, port), [], 0
    stop = min(time.monotonic() + float(seconds), DEADLINE)
    while (conns or accepted < int(n)) and time.monotonic() < stop:
        for c in select.select([s, *conns] if accepted < int(n) else conns, [], [], 0.2)[0]:
            if c is s:
                conns.append(s.accept()[0])
                accepted += 1
                continue
            try:
                data = c.recv(4096)
            except OSError as e:  # ECONNABORTED: ss -K destroyed the socket
                log(event="error", error=e.strerror)
                data = b""
            if not data:
                conns.remove(c)
                c.close()
                continue
            c.sendall(b"reply " * 20 + b"\n")
            log(event="reply", peer_port=c.getpeername()[1])


def server_upload(host: str, port: int, seconds: str) -> None:
    """Accept one connection and read what comes, for `seconds` (no close before): the
    server of peer_gone's upload, whose path is cut."""
    s = listen(host, port)
    c, _ = s.accept()
    n, stop = 0, min(time.monotonic() + float(seconds), DEADLINE)
    while (left := stop - time.monotonic()) > 0:
        if select.select([c], [], [], left)[0]:
            data = c.recv(65536)
            if not data:
                break
            n += len(data)
    log(event="read", bytes=n)


#: unread_close: each request begins with a header of HEADER_LEN bytes, "POST /upload
#: len=N" (N bytes of body follow) or "GET /control", padded with spaces.
HEADER_LEN = 64


def server_unread(host: str, port: int, n: str, hold_s: str, seconds: str) -> None:
    """Serve `n` connections one after another. Each: read the header (HEADER_LEN bytes,
    MSG_WAITALL); an upload is refused unread: wait until its whole body is in the receive
    buffer, log how many bytes are there (read: the header; unread: the body), wait `hold_s`,
    send a short refusal and close() with the body unread: the kernel sends a RST, not a
    FIN, and discards the body (RFC 2525, 2.17). The control request has no body: answer it,
    then read to the client's end (its abort)."""
    s = listen(host, port)
    for _ in range(int(n)):
        c, addr = s.accept()
        c.settimeout(30)
        header = c.recv(HEADER_LEN, socket.MSG_WAITALL)
        path = header.split()[1].decode()
        if path == "/upload":
            body = int(header.split()[2].decode().removeprefix("len="))
            for _ in range(500):  # at most 5 s
                if queued(c) >= body:
                    break
                time.sleep(0.01)
            log(event="unread", peer_port=addr[1], read=len(header), unread=queued(c))
            time.sleep(float(hold_s))
            c.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n"
                      b"Connection: close\r\n\r\n")
            unread = queued(c)
            c.close()
            log(event="closed_unread", peer_port=addr[1], read=len(header), unread=unread)
        else:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"k" * 100)
            try:
                extra = read_to_eof(c)
                outcome = "EOF"
            except OSError as e:
                extra, outcome = 0, errno_name(e)
            unread = queued(c)
            c.close()
            log(event="control", peer_port=addr[1], read=len(header) + extra,
                unread=unread, outcome=outcome)
    hold(float(seconds))


def serve_one(c: socket.socket) -> None:
    """Read a request line, send a reply, read to the client's EOF, close (the client
    closes first)."""
    try:
        c.settimeout(10)
        read_line(c)
        c.sendall(b"reply\n")
        read_to_eof(c)
    except OSError as e:
        log(event="error", error=errno_name(e))
    c.close()


def server_serve(host: str, port: int, seconds: str, backlog: str = "64") -> None:
    """Serve connections concurrently (serve_one, a thread each) for `seconds`, listening
    with `backlog`; log each accept and, at the end, how many."""
    s = listen(host, port, int(backlog))
    s.settimeout(0.2)
    stop, n = min(time.monotonic() + float(seconds), DEADLINE), 0
    while time.monotonic() < stop:
        try:
            c, addr = s.accept()
        except TimeoutError:
            continue
        n += 1
        log(event="accepted", peer=f"{addr[0]}:{addr[1]}")
        threading.Thread(target=serve_one, args=(c,), daemon=True).start()
    s.close()
    log(event="stopped", accepted=n)


def server_backlog(host: str, port: int, backlog: str, pause: str, n: str,
                   seconds: str) -> None:
    """accept_queue_overflow's listener: listen(`backlog`), then call no accept() for `pause`
    seconds (the kernel's accept queue fills); then accept `n` connections (or as many as
    come within 30 s), read each one's request line and close it (a FIN: nothing left
    unread), logging each with when it was accepted."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(int(backlog))
    print("listening", flush=True)
    log(event="listening", backlog=int(backlog))
    hold(float(pause))
    log(event="accepting")
    stop = min(time.monotonic() + 30, DEADLINE)
    for _ in range(int(n)):
        s.settimeout(max(0.1, stop - time.monotonic()))
        try:
            c, addr = s.accept()
        except TimeoutError:
            log(event="accept_timeout")
            break
        accepted = time.time()
        c.settimeout(5)
        try:
            request = read_line(c)
            outcome = f"{len(request)} bytes"
        except OSError as e:
            outcome = errno_name(e)
        c.close()
        log(event="accepted", peer_port=addr[1], accepted=round(accepted, 6),
            request=outcome)
    s.close()
    log(event="done")
    hold(float(seconds))


def server_stall(host: str, port: int, rcvbuf: str, pauses: str, first: str) -> None:
    """zero_window_stall's server: SO_RCVBUF `rcvbuf` on the listener (before listen(): the
    accepted sockets inherit it); one connection per pause (comma-separated seconds), one
    after another: read `first` bytes, stop reading for the pause (the receive buffer fills,
    the window closes), then read to EOF and close. Logs the pause as its own clock timed
    it, and the bytes waiting in the receive buffer at its start and end."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(rcvbuf))
    s.bind((host, port))
    s.listen(8)
    s.settimeout(60)
    print("listening", flush=True)
    for pause in (float(x) for x in pauses.split(",")):
        c, addr = s.accept()
        c.settimeout(30)
        got = len(c.recv(int(first), socket.MSG_WAITALL))
        start, started = time.monotonic(), time.time()
        log(event="pause", peer_port=addr[1], read=got, queued=queued(c),
            rcvbuf=c.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
        hold(pause)
        waiting = queued(c)
        log(event="resume", peer_port=addr[1], paused=round(time.monotonic() - start, 6),
            paused_from=round(started, 6), queued=waiting)
        got += read_to_eof(c)
        c.close()
        log(event="eof", peer_port=addr[1], read=got)


def serve_n(s: socket.socket, n: int) -> None:
    """Serve `n` connections one after another (serve_one), logging each accept."""
    for _ in range(n):
        c, addr = s.accept()
        log(event="accepted", peer_port=addr[1])
        serve_one(c)


def server_flap(host: str, port: int, before: str, down: str, after: str,
                seconds: str) -> None:
    """refused_burst's service: serve `before` connections, close the listener (right after
    the last one's close: nothing waits in its queue), stay down `down` seconds, listen
    again, serve `after` connections, close the listener. Logs when it went down and up."""
    s = listen(host, port)
    serve_n(s, int(before))
    s.close()
    log(event="down")
    hold(float(down))
    s = listen(host, port)
    log(event="up")
    serve_n(s, int(after))
    s.close()
    log(event="closed")
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


def read_response(c: socket.socket) -> int:
    """Read one HTTP-like response (headers, then Content-Length bytes); its size. EOFError
    when the connection ends first."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = c.recv(4096)
        if not chunk:
            raise EOFError
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = c.recv(4096)
        if not chunk:
            raise EOFError
        body += chunk
    return len(head) + 4 + len(body)


def client_keepalive(host: str, port: int, lanes: str, per_lane: str, seed: str,
                     idle_lo: str, idle_mode: str, idle_hi: str, stagger: str) -> None:
    """A client with a small keep-alive pool: `lanes` connections, each in a thread of its
    own sending `per_lane` requests one after another, lanes started `stagger` s apart. Each
    request after a lane's first is sent on its kept connection once it has been idle (since
    its last response came) for a time drawn from random.triangular(idle_lo, idle_hi,
    idle_mode), with random.Random(seed + lane). Before reusing a connection the lane checks
    it as HTTP pools do (readable at once, and a peek says EOF or error: the server closed
    it; then a new connection); one the server closes while the request is on its way is
    the race. A request that fails on a reused connection is sent once more on a new one.
    Logs every request: lane, local port, reused, idle before it, outcome (response, EOF,
    ECONNRESET, EPIPE), and every stale connection the check found."""

    def lane(k: int) -> None:
        rng = random.Random(int(seed) + k)
        time.sleep(k * float(stagger))
        c, last = None, 0.0
        for i in range(int(per_lane)):
            target = rng.triangular(float(idle_lo), float(idle_hi), float(idle_mode))
            if c is not None:
                time.sleep(max(0.0, last + target - time.monotonic()))
                stale = None
                if select.select([c], [], [], 0)[0]:
                    try:
                        stale = "EOF" if not c.recv(1, socket.MSG_PEEK) else None
                    except OSError as e:
                        stale = errno_name(e)
                if stale:
                    log(event="stale", lane=k, port=c.getsockname()[1],
                        idle=round(time.monotonic() - last, 6), found=stale)
                    c.close()
                    c = None
            for attempt in (1, 2):
                reused = c is not None
                if c is None:
                    c = socket.create_connection((host, port), timeout=10)
                local = c.getsockname()[1]
                sent, sent_at = time.monotonic(), time.time()
                idle = round(sent - last, 6) if reused else None
                try:
                    c.sendall(f"GET /{k}/{i} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                    read_response(c)
                    outcome = "response"
                except EOFError:
                    outcome = "EOF"
                except OSError as e:
                    outcome = errno_name(e)
                log(event="request", lane=k, n=i, attempt=attempt, port=local, reused=reused,
                    idle=idle, target=round(target, 6) if reused else None, outcome=outcome,
                    sent=round(sent_at, 6))
                if outcome == "response":
                    last = time.monotonic()
                    break
                c.close()
                c = None
                if not reused:
                    break
        if c is not None:
            c.close()  # the client closes its kept connection first
            log(event="close", lane=k, port=local)

    threads = [threading.Thread(target=lane, args=(k,)) for k in range(int(lanes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, DEADLINE - time.monotonic()))


def client_idle_write(host: str, port: int, n: str, wait: str, gap: str) -> None:
    """Open `n` connections, one request and its reply on each; say "idle"; after `wait` s,
    write a second request on each, `gap` s apart, and log what send and recv returned (the
    server has vanished meanwhile: its host answers with a RST)."""
    conns = []
    for _ in range(int(n)):
        c = connect(host, port)
        c.sendall(b"request\n")
        read_line(c)
        log(event="reply", port=c.getsockname()[1])
        conns.append(c)
    log(event="idle")
    hold(float(wait))
    for c in conns:
        local = c.getsockname()[1]
        sent = c.send(b"request again\n")
        try:
            got = c.recv(4096)
            recv = "EOF" if not got else f"{len(got)} bytes"
        except OSError as e:
            recv = errno_name(e)
        log(event="write", port=local, send=sent, recv=recv)
        c.close()
        time.sleep(float(gap))


def client_upload(host: str, port: int, chunk: str, every: str, chunks: str) -> None:
    """Send `chunk` bytes every `every` s, `chunks` times at most, until a send fails (the
    path was cut: the kernel retransmits, then gives up, net.ipv4.tcp_retries2); log the
    bytes sent and the error."""
    c = connect(host, port)
    log(event="connected", port=c.getsockname()[1])
    start, sent = time.monotonic(), 0
    for i in range(int(chunks)):
        try:
            sent += c.send(b"u" * int(chunk))
        except OSError as e:
            log(event="send_failed", n=i, error=errno_name(e), errno=e.errno, sent=sent,
                after=round(time.monotonic() - start, 3))
            break
        time.sleep(float(every))
    else:
        log(event="done", sent=sent)
    try:
        c.settimeout(1)
        got = c.recv(4096)
        log(event="recv", result="EOF" if not got else f"{len(got)} bytes")
    except OSError as e:
        log(event="recv", result=errno_name(e))
    c.close()


def client_unread(host: str, port: int, sizes: str, gap: str) -> None:
    """One upload per size (comma-separated): a HEADER_LEN-byte header saying the body's
    length, then the body, sent whole; then read what comes back until EOF or an error (the
    server reads only the header and closes: a RST). Last, the control: a request without
    a body, its whole answer read, then close() with SO_LINGER (on, 0 s): a RST from the
    client with nothing unread on either side. Logs bytes sent and received, and how each
    ended."""
    for size in [int(x) for x in sizes.split(",")]:
        c = connect(host, port)
        c.sendall(f"POST /upload len={size}".ljust(HEADER_LEN).encode() + b"b" * size)
        got, outcome = 0, "EOF"
        try:
            while chunk := c.recv(4096):
                got += len(chunk)
        except OSError as e:
            outcome = errno_name(e)
        log(event="upload", port=c.getsockname()[1], sent=HEADER_LEN + size, received=got,
            outcome=outcome)
        c.close()
        time.sleep(float(gap))
    c = connect(host, port)
    c.sendall(b"GET /control".ljust(HEADER_LEN))
    got = read_response(c)
    time.sleep(0.1)
    left = queued(c)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    port_ = c.getsockname()[1]
    c.close()
    log(event="control", port=port_, sent=HEADER_LEN, received=got, unread=left,
        outcome="SO_LINGER 0 abort")


def client_ports(host: str, port: int, ports: str, gap: str) -> None:
    """One connection from each client port (comma-separated), one after another, `gap`
    seconds apart: connect (logging how long connect() took), a request line, its reply,
    close (the client first)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for p in (int(x) for x in ports.split(",")):
        c = socket.socket(family, socket.SOCK_STREAM)
        c.bind(("", p))
        c.settimeout(30)
        start, started = time.monotonic(), time.time()
        c.connect((host, port))
        took = time.monotonic() - start
        c.sendall(b"request\n")
        reply = read_line(c)
        c.close()
        log(event="connection", port=p, connect_start=round(started, 6),
            connect_s=round(took, 6), reply=len(reply))
        time.sleep(float(gap))


def client_burst(host: str, port: int, prefill: str, burst: str, gap: str) -> None:
    """accept_queue_overflow's clients: `prefill` connections one after another, `gap`
    seconds apart, then `burst` at once (a thread each, started together); each sends a
    request line once connect() returns and waits for the server's answer (its close: EOF),
    or an error. Logs each connect (when it began and returned) and how each ended."""

    def one(k: int, group: str) -> None:
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(40)
        started = time.time()
        try:
            c.connect((host, port))
        except OSError as e:
            log(event="connect_failed", k=k, group=group, error=errno_name(e))
            c.close()
            return
        local = c.getsockname()[1]
        log(event="connected", k=k, group=group, port=local,
            connect_start=round(started, 6))
        try:
            c.sendall(b"request\n")
            got = c.recv(4096)
            outcome = "EOF" if not got else f"{len(got)} bytes"
        except OSError as e:
            outcome = errno_name(e)
        log(event="end", k=k, group=group, port=local, outcome=outcome)
        c.close()

    threads = []
    for k in range(int(prefill)):
        threads.append(threading.Thread(target=one, args=(k, "prefill")))
        threads[-1].start()
        time.sleep(float(gap))
    burst_threads = [threading.Thread(target=one, args=(int(prefill) + k, "burst"))
                     for k in range(int(burst))]
    for t in burst_threads:
        t.start()
    for t in threads + burst_threads:
        t.join(timeout=max(1.0, DEADLINE - time.monotonic()))


def client_send(host: str, port: int, nbytes: str, n: str, gap: str) -> None:
    """`n` connections one after another: send `nbytes` as fast as the window lets,
    shutdown(SHUT_WR), read to the server's EOF, close. Logs each send's start and end."""
    for _ in range(int(n)):
        c = connect(host, port)
        local, started = c.getsockname()[1], time.time()
        c.sendall(b"z" * int(nbytes))
        sent = time.time()
        c.shutdown(socket.SHUT_WR)
        read_to_eof(c)
        c.close()
        log(event="sent", port=local, bytes=int(nbytes), start=round(started, 6),
            all_sent=round(sent, 6), closed=round(time.time(), 6))
        time.sleep(float(gap))


def client_churn(host: str, port: int, rate: str, seconds: str) -> None:
    """Short connections at `rate` a second for `seconds`: rate x seconds attempts, attempt
    k due k / rate s after the first: connect, a request line, its reply, close (the client
    first: its socket goes to TIME_WAIT). A connect() that fails (EADDRNOTAVAIL: no local
    port left) is logged and the schedule goes on."""
    interval, start = 1.0 / float(rate), time.monotonic()
    attempts = round(float(rate) * float(seconds))
    for k in range(attempts):
        if time.monotonic() > DEADLINE:
            break
        time.sleep(max(0.0, start + k * interval - time.monotonic()))
        attempt = time.time()
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(5)
        try:
            c.connect((host, port))
        except OSError as e:
            c.close()
            log(event="failed", n=k, attempt=round(attempt, 6),
                error=errno.errorcode.get(e.errno or 0, errno_name(e)))
            continue
        local = c.getsockname()[1]
        try:
            c.sendall(b"request\n")
            read_line(c)
            outcome = "reply"
        except OSError as e:
            outcome = errno_name(e)
        c.close()
        log(event="ok", n=k, port=local, attempt=round(attempt, 6), outcome=outcome)
    log(event="done", attempts=attempts)


def client_every(host: str, port: int, interval: str, after: str, attempts: str) -> None:
    """A connect every `interval` seconds, `attempts` at most: each answered one a request
    line, its reply, close (the client first); each refused one logged. Stops once `after`
    connections have been answered after a refusal."""
    start, answered_after, refused = time.monotonic(), 0, False
    for k in range(int(attempts)):
        time.sleep(max(0.0, start + k * float(interval) - time.monotonic()))
        attempt = time.time()
        try:
            c = socket.create_connection((host, port), timeout=5)
        except ConnectionRefusedError:
            refused = True
            log(event="refused", n=k, attempt=round(attempt, 6))
            continue
        local = c.getsockname()[1]
        c.sendall(b"request\n")
        read_line(c)
        c.close()
        log(event="ok", n=k, port=local, attempt=round(attempt, 6))
        answered_after += refused
        if answered_after >= int(after):
            break


def client_flood(host: str, port: int, first_port: str, n: str, seconds: str) -> None:
    """Send `n` SYNs, from local ports first_port on (sockets connecting without waiting),
    hold them `seconds`, then close them: with the answers dropped on the way in (nftables),
    the listener keeps a request for each until its SYN-ACK retries run out. Logs each."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    held = []
    for k in range(int(n)):
        c = socket.socket(family, socket.SOCK_STREAM)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        c.bind(("", int(first_port) + k))
        c.setblocking(False)
        c.connect_ex((host, port))
        held.append(c)
        log(event="syn", port=int(first_port) + k)
    hold(float(seconds))
    for c in held:
        c.close()
    log(event="closed")


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
