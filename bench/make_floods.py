"""Make the two flood captures of the memory benchmark (crafted: no kernel makes a million
spoofed sources or keeps a million idle sockets on demand).

    python3 bench/make_floods.py [--count 1000000] [--rate 100000] [--out bench/out]

- syn_flood.pcap: COUNT SYNs, each from its own source (10.0.0.0/8 addresses, ports
  1024..65535), to 192.0.2.1:80, RATE a second, never answered. Before the flood, one
  real-looking connection to 192.0.2.1:5001 whose server never closes after the client's
  FIN (a CLOSE_WAIT leak); the client's keep-alive ACKs go on during the flood.
- idle_million.pcap: COUNT connections, each a full handshake (SYN, SYN/ACK, ACK) and then
  nothing: never closed. RATE handshakes a second.

Ethernet/IPv4/TCP, 54-byte frames with correct IPv4 checksums. Deterministic.
"""

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SERVER = bytes([192, 0, 2, 1])
SYN, RST, ACK, FIN = 0x02, 0x04, 0x10, 0x01
FRAME = 54
HEADER = (b"\xd4\xc3\xb2\xa1" + (2).to_bytes(2, "little") + (4).to_bytes(2, "little")
          + bytes(8) + (65535).to_bytes(4, "little") + (1).to_bytes(4, "little"))
START = 1_795_000_000  # 2026-11-18, seconds


def frames(ts: np.ndarray, src: np.ndarray, dst: np.ndarray, sport: np.ndarray,
           dport: np.ndarray, seq: np.ndarray, ack: np.ndarray, flags: np.ndarray) -> bytes:
    """pcap records (record header and frame) for arrays of segments; addresses are uint32."""
    n = len(ts)
    rec = np.zeros((n, 16 + FRAME), np.uint8)

    def put(col: int, values: np.ndarray, size: int, order: str) -> None:
        dtype = np.dtype(f"{order}u{size}")
        rec[:, col:col + size] = np.asarray(values).astype(dtype).view(np.uint8).reshape(n, size)

    secs = np.floor(ts).astype(np.int64)
    put(0, secs, 4, "<")
    put(4, np.round((ts - secs) * 1e6).astype(np.int64), 4, "<")
    put(8, np.full(n, FRAME), 4, "<")
    put(12, np.full(n, FRAME), 4, "<")
    eth = 16
    rec[:, eth:eth + 6] = [2, 0, 0, 0, 0, 2]
    rec[:, eth + 6:eth + 12] = [2, 0, 0, 0, 0, 1]
    rec[:, eth + 12:eth + 14] = [8, 0]
    ip = eth + 14
    rec[:, ip] = 0x45
    put(ip + 2, np.full(n, 40), 2, ">")
    put(ip + 4, np.arange(n) & 0xFFFF, 2, ">")
    rec[:, ip + 8] = 64
    rec[:, ip + 9] = 6
    put(ip + 12, src, 4, ">")
    put(ip + 16, dst, 4, ">")
    put(ip + 10, checksum(rec[:, ip:ip + 20]), 2, ">")
    tcp = ip + 20
    put(tcp, sport, 2, ">")
    put(tcp + 2, dport, 2, ">")
    put(tcp + 4, seq, 4, ">")
    put(tcp + 8, ack, 4, ">")
    rec[:, tcp + 12] = 0x50
    rec[:, tcp + 13] = flags
    put(tcp + 14, np.full(n, 64240), 2, ">")
    pseudo = np.concatenate([rec[:, ip + 12:ip + 20], np.tile([0, 6, 0, 20], (n, 1)),
                             rec[:, tcp:tcp + 20]], axis=1)
    put(tcp + 16, checksum(pseudo), 2, ">")
    return rec.tobytes()


def checksum(data: np.ndarray) -> np.ndarray:
    """The Internet checksum of each row (an even number of bytes)."""
    words = data.astype(np.uint32).reshape(len(data), -1, 2)
    total = (words[:, :, 0] << 8 | words[:, :, 1]).sum(axis=1)
    while (total >> 16).any():
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def address(a: int, b: int, c: int, d: int) -> int:
    return a << 24 | b << 16 | c << 8 | d


def leak(start: float, until: float) -> list[tuple]:
    """A connection to :5001 the server never closes: handshake, a request, the client's
    FIN acknowledged, then one ACK from the client every 5 s (kept alive, say) up to
    `until`. Segments as (ts, src, dst, sport, dport, seq, ack, flags)."""
    c, s = address(198, 51, 100, 7), int.from_bytes(SERVER, "big")
    cp, sp, ci, si = 40000, 5001, 1000, 5000
    rows = [(start, c, s, cp, sp, ci, 0, SYN),
            (start + 0.001, s, c, sp, cp, si, ci + 1, SYN | ACK),
            (start + 0.002, c, s, cp, sp, ci + 1, si + 1, ACK),
            (start + 0.010, c, s, cp, sp, ci + 1, si + 1, FIN | ACK),
            (start + 0.011, s, c, sp, cp, si + 1, ci + 2, ACK)]
    t = start + 5
    while t < until:
        rows.append((t, c, s, cp, sp, ci + 2, si + 1, ACK))
        t += 5
    return rows


def columns(rows: list[tuple]) -> list[np.ndarray]:
    return [np.array(col) for col in zip(*rows, strict=True)]


def sorted_frames(cols: list[np.ndarray]) -> bytes:
    order = np.argsort(cols[0], kind="stable")
    return frames(*(c[order] for c in cols))


def syn_flood(count: int, rate: float) -> bytes:
    k = np.arange(count, dtype=np.int64)
    ts = START + 1.0 + k / rate
    src = (10 << 24) + 1 + k  # 10.0.0.1 upwards: every SYN its own source
    sport = 1024 + (k * 7919) % 64512
    flood = [ts, src, np.full(count, int.from_bytes(SERVER, "big")), sport,
             np.full(count, 80), (k * 2654435761) & 0xFFFFFFFF, np.zeros(count),
             np.full(count, SYN)]
    extra = columns(leak(START, float(ts[-1]) + 1))
    return sorted_frames([np.concatenate([a, b]) for a, b in zip(flood, extra, strict=True)])


def idle_million(count: int, rate: float) -> bytes:
    k = np.arange(count, dtype=np.int64)
    t0 = START + k / rate
    client = (10 << 24) + 1 + k // 60000
    cport = 1024 + k % 60000
    server = np.full(count, int.from_bytes(SERVER, "big"))
    isn_c, isn_s = (k * 2654435761) & 0xFFFFFFFF, (k * 40503 + 7) & 0xFFFFFFFF
    n1 = lambda a: (a + 1) & 0xFFFFFFFF  # noqa: E731
    parts = [
        [t0, client, server, cport, np.full(count, 443), isn_c, np.zeros(count),
         np.full(count, SYN)],
        [t0 + 0.0002, server, client, np.full(count, 443), cport, isn_s, n1(isn_c),
         np.full(count, SYN | ACK)],
        [t0 + 0.0004, client, server, cport, np.full(count, 443), n1(isn_c), n1(isn_s),
         np.full(count, ACK)],
    ]
    return sorted_frames([np.concatenate(cols) for cols in zip(*parts, strict=True)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=100_000, help="SYNs (handshakes) a second")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, make in (("syn_flood", syn_flood), ("idle_million", idle_million)):
        path = args.out / f"{name}.pcap"
        path.write_bytes(HEADER + make(args.count, args.rate))
        print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
