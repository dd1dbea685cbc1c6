"""Numbers, times and counts in words, as every output of pcapstate writes them, and a
connection as a Wireshark display filter."""

from datetime import UTC, datetime


def seconds(value: float | None) -> str:
    """A duration for people: 850us, 12.3ms, 4.20s, 3m05s, 2h10m, 3d04h."""
    if value is None:
        return "-"
    if value < 0.9995e-3:
        return f"{value * 1e6:.0f}us"
    if value < 0.9995:
        return f"{value * 1e3:.1f}ms"
    if value < 59.995:
        return f"{value:.2f}s"
    if value < 3600:
        return f"{int(value // 60)}m{int(value % 60):02d}s"
    if value < 86400:
        return f"{int(value // 3600)}h{int(value % 3600 // 60):02d}m"
    return f"{int(value // 86400):,}d{int(value % 86400 // 3600):02d}h"


def when(ts: float | None) -> str:
    """A timestamp as a UTC date; one no date can show (a pcapng's 64-bit clock allows the
    year 31 million) as its seconds."""
    if ts is None:
        return "-"
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"
    except (ValueError, OverflowError, OSError):
        return f"{ts:.6f} s since 1970 (no date)"


def count(n: int, noun: str) -> str:
    """"1 connection", "2,048 connections"."""
    return f"{n:,} {noun}{'s' if n != 1 else ''}"


def split_address(address: str) -> tuple[str, int]:
    """"10.0.0.5:80", "[::1]:80": the host and the port."""
    host, port = address.rsplit(":", 1)
    return host.strip("[]"), int(port)


def wireshark_filter(a: str, b: str, since: float) -> str:
    """A display filter for one connection (both directions of its 4-tuple) from a second
    before `since`."""
    (ha, pa), (hb, pb) = split_address(a), split_address(b)
    ip = "ipv6" if ":" in ha else "ip"
    return (f"(({ip}.src=={ha} && tcp.srcport=={pa} && {ip}.dst=={hb} && tcp.dstport=={pb}) "
            f"|| ({ip}.src=={hb} && tcp.srcport=={pb} && {ip}.dst=={ha} && tcp.dstport=={pa})) "
            f"&& frame.time_epoch >= {since - 1:.6f}")


def inconclusive(records: int, tcp_unread: bool, evicted: int) -> list[str]:
    """Why a policy (--fail-on) cannot pass on a capture, however clean it looks: no packets
    at all, TCP that was not read, or connections evicted from a full table (their state
    was dropped, and their later segments followed as new connections: a stuck endpoint may
    be missed)."""
    return ((["the capture holds no packets"] if not records else [])
            + (["records that may hold TCP were not decoded (the warnings say which)"]
               if tcp_unread else [])
            + ([f"{count(evicted, 'connection')} evicted from the full connection table "
                "(--max-connections; 0: no limit)"] if evicted else []))
