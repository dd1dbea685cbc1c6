"""A Zeek conn.log of pcapstate's connections, written in bulk from the engine's arrays
(derive/records.py conn_entries): Zeek's ASCII (TSV) format, header lines and all, and its
JSON Lines form, so that the result drops into zeek-cut and log pipelines.

Columns are Zeek's default conn.log ones, in Zeek's order. What pcapstate does not compute
is left unset (`-`), never guessed: `service` (no protocol analyzers). `local_orig` and
`local_resp` are set as Zeek sets them: when there are local networks (Zeek's
Site::local_nets, the private address space by default since Zeek 6.0).
`tunnel_parents`: a uid for the tunnel a connection came in (Zeek's is its tunnel.log or
outer UDP connection's uid; pcapstate writes neither log, so this one only ties the
connections of one tunnel together). docs/zeek.md has the details.
"""

import ipaddress
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

import numpy as np
import orjson

if TYPE_CHECKING:
    from pcapstate.derive.texts import Part, Texts

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto",
          "service", "duration", "orig_bytes", "resp_bytes", "conn_state", "local_orig",
          "local_resp", "missed_bytes", "history", "orig_pkts", "orig_ip_bytes", "resp_pkts",
          "resp_ip_bytes", "tunnel_parents")
TYPES = ("time", "string", "addr", "port", "addr", "port", "enum", "string", "interval",
         "count", "count", "string", "bool", "bool", "count", "string", "count", "count",
         "count", "count", "set[string]")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE62_PAIRS = np.array([a + b for a in _BASE62 for b in _BASE62], "U2")


def _uids(keys: "Texts") -> list[str]:
    """Zeek-style uids ("C" and base 62), derived from `keys` rather than random, so that
    the same capture gives the same uids: a connection's key is its 4-tuple and the first
    timestamp of Zeek's connection, a tunnel's its description (decode/unwrap.py). Each
    key's 96-bit BLAKE2b hash (derive/records.py digests) is cut into base-62 digits in
    bulk, two at a time, the highest first (9 pairs: 62**18 > 2**96), leading zeros left
    out."""
    from pcapstate.derive.records import digests

    words = digests(keys, 12).view(">u4").astype(np.uint64)  # highest first
    pairs = np.empty((len(keys), 9), np.intp)
    for j in range(8, -1, -1):  # long division by 62**2, the lowest pair first
        rest = np.zeros(len(keys), np.uint64)
        for w in range(3):
            value = (rest << np.uint64(32)) | words[:, w]
            words[:, w], rest = value // np.uint64(62 * 62), value % np.uint64(62 * 62)
        pairs[:, j] = rest
    digits = np.ascontiguousarray(_BASE62_PAIRS[pairs]).view("U18").reshape(-1)
    return np.char.add("C", np.char.lstrip(digits, "0")).tolist()


#: Zeek's Site::private_address_space (base/utils/site.zeek), local by default since Zeek
#: 6.0 (Site::private_address_space_is_local): IPv4's private, shared, loopback, link-local,
#: documentation and reserved ranges, their 6to4 forms, and IPv6's.
PRIVATE_ADDRESS_SPACE = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "255.255.255.255/32",
    "2002::/24", "2002:a00::/24", "2002:6440::/26", "2002:7f00::/24", "2002:a9fe::/32",
    "2002:ac10::/28", "2002:c000::/40", "2002:c000:200::/40", "2002:c0a8::/32",
    "2002:c612::/31", "2002:c633:6400::/40", "2002:cb00:7100::/40", "2002:f000::/20",
    "2002:ffff:ffff::/48", "::/128", "::1/128", "64:ff9b:1::/48", "100::/64", "2001::/23",
    "2001:2::/48", "2001:db8::/32", "fc00::/7", "fe80::/10")


def local_nets(text: str) -> list[Network]:
    """"private,10.0.0.0/8,fd00::/8" as networks (host bits allowed, as Zeek's subnets;
    "private": PRIVATE_ADDRESS_SPACE); "none": none. ValueError naming the first that is
    not one."""
    if text.strip() == "none":
        return []
    nets = []
    for part in (p.strip() for p in text.split(",")):
        for name in PRIVATE_ADDRESS_SPACE if part == "private" else (part,):
            try:
                nets.append(ipaddress.ip_network(name, strict=False))
            except ValueError:
                raise ValueError(f"not a network: {part!r} (examples: private, 10.0.0.0/8, "
                                 "none)") from None
    return nets


class Site:
    """Site::local_nets, and whether each host met is in them (remembered, up to 65,536
    hosts: a host has many connections, and parsing its address again for each took
    longer than the analysis)."""

    def __init__(self, nets: Sequence[Network] = ()) -> None:
        self.nets = tuple(nets)
        self.known: dict[str, bool] = {}

    def is_local(self, host: str) -> bool | None:
        """Site::is_local_addr; unset (None) without local networks, as in Zeek by
        default."""
        if not self.nets:
            return None
        local = self.known.get(host)
        if local is None:
            ip = ipaddress.ip_address(host)
            local = any(ip in net for net in self.nets)
            if len(self.known) < 65536:
                self.known[host] = local
        return local


def _values(entries: dict[str, Any], site: Site) -> dict[str, Any]:
    """Each conn.log column of a batch's entries (derive/records.py conn_entries), by its
    name in FIELDS: a list of values, None where unset; and "ts_text" and "duration_text",
    ts and duration as Zeek's TSV writes them (texts.gather's Parts: the uids are made
    from the first)."""
    from pcapstate.derive.records import fixed6
    from pcapstate.derive.texts import gather, in_stead, words

    unset = ~entries["timed"]
    untimed = np.flatnonzero(unset).tolist()

    def when_timed(name: str) -> list[Any]:
        values = entries[name].tolist()
        for i in untimed:
            values[i] = None
        return values
    ts, times = entries["ts"].tolist(), fixed6(entries["ts"])
    hosts = [entries["orig_h"].tolist(), entries["resp_h"].tolist()]
    local = {h: site.is_local(h) for h in {*hosts[0], *hosts[1]}}
    tunnels = entries["tunnel"].tolist()
    parents = {t: tuple(_uids(words([t]))) for t in set(tunnels) if t is not None} \
        | {None: None}
    keys = gather([words(entries["client"].tolist()), "|", words(entries["server"].tolist()),
                   "|", times], len(ts))
    return {
        "ts": ts, "ts_text": times, "uid": _uids(keys),
        "id.orig_h": hosts[0], "id.orig_p": entries["orig_p"].tolist(),
        "id.resp_h": hosts[1], "id.resp_p": entries["resp_p"].tolist(),
        "proto": ["tcp"] * len(ts), "service": [None] * len(ts),
        "duration": when_timed("duration"),
        "duration_text": in_stead(fixed6(entries["duration"]), unset, words([_tsv_time(None)])),
        "orig_bytes": when_timed("orig_bytes"),
        "resp_bytes": when_timed("resp_bytes"), "conn_state": entries["conn_state"].tolist(),
        "local_orig": [local[h] for h in hosts[0]], "local_resp": [local[h] for h in hosts[1]],
        **{f: entries[f].tolist() for f in ("missed_bytes", "history", "orig_pkts",
                                            "orig_ip_bytes", "resp_pkts", "resp_ip_bytes")},
        "tunnel_parents": [parents[t] for t in tunnels]}


def _tsv(value: Any) -> str:
    """A string column's value (string, addr, enum) or a set of strings, as Zeek writes it."""
    if value is None:
        return "-"
    if isinstance(value, tuple):  # a set, as Zeek writes one
        return ",".join(map(_tsv, value)) if value else "(empty)"
    text = str(value)
    if text == "":
        return "(empty)"
    if text in ("-", "(empty)"):
        return f"\\x{ord(text[0]):02x}" + text[1:]
    if "\\" in text or "\t" in text or "\n" in text:
        return text.replace("\\", "\\x5c").replace("\t", "\\x09").replace("\n", "\\x0a")
    return text


def _tsv_time(value: float | None) -> str:
    """A time or interval as Zeek prints it: 6 decimals (derive/records.py fixed6, which
    _values writes the columns' texts with)."""
    from pcapstate.derive.records import fixed6

    return "-" if value is None else fixed6(np.array([value])).strings()[0]


def _tsv_count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _tsv_bool(value: bool | None) -> str:
    return "-" if value is None else "T" if value else "F"


# Each column's writer, by its type (_tsv for the string columns)
_TSV = [{"time": _tsv_time, "interval": _tsv_time, "count": _tsv_count, "port": _tsv_count,
         "bool": _tsv_bool}.get(t, _tsv) for t in TYPES]


class ConnLog:
    """Writes entries as they come to `tsv`, Zeek's TSV (UTF-8, with its header lines and a
    #close line at the end), and to `lines`, one JSON object a line as Zeek's JSON logs
    have (either may be None)."""

    def __init__(self, tsv: BinaryIO | None, lines: TextIO | None,
                 nets: Sequence[Network] = ()) -> None:
        self.tsv, self.lines, self.site = tsv, lines, Site(nets)
        if tsv is not None:
            tsv.write(("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n"
                       "#unset_field\t-\n#path\tconn\n"
                       f"#open\t{_now()}\n#fields\t" + "\t".join(FIELDS) + "\n"
                       "#types\t" + "\t".join(TYPES) + "\n").encode())

    def take(self, entries: dict[str, Any]) -> None:
        """A batch's entries (derive/records.py conn_entries), written in bulk: each
        column's texts at once, then the lines."""
        if not len(entries["ts"]):
            return
        values = _values(entries, self.site)
        if self.lines is not None:  # unset members left out
            columns = [_json_column(field, values[field]) for field in FIELDS]
            self.lines.write("".join(["{" + "".join(parts)[1:] + "}\n"
                                      for parts in zip(*columns, strict=True)]))
        if self.tsv is not None:
            self.tsv.write(_tsv_lines(values))

    def close(self) -> None:
        if self.tsv is not None:
            self.tsv.write(f"#close\t{_now()}\n".encode())


def _tsv_lines(values: dict[str, Any]) -> memoryview:
    """The lines of Zeek's TSV of a batch's columns (_values): each column's texts made in
    bulk, the lines put together by compiled code (derive/texts.py gather). A line at a
    time, its columns' texts joined in Python, took 0.3 s of the benchmark capture's
    conn.log."""
    from pcapstate.derive.texts import Part, gather, json_columns, words  # (_json_column)

    n = len(values["ts"])
    counts = [f for f, writer in zip(FIELDS, _TSV, strict=True) if writer is _tsv_count]
    counted = dict(zip(counts, json_columns([values[f] for f in counts]), strict=True))
    parts: list[Part] = []
    for field, writer in zip(FIELDS, _TSV, strict=True):
        parts += [words(values[field]) if field == "uid"  # base 62: nothing Zeek escapes,
                  # never unset; the times' texts made by _values
                  else values[f"{field}_text"] if writer is _tsv_time
                  else _tsv_count_texts(counted[field], values[field]) if writer is _tsv_count
                  else _tsv_column(values[field], writer), "\t"]
    parts[-1] = "\n"
    return gather(parts, n).data.data  # the array's buffer, not copied


def _tsv_column(values: list[Any], writer: Callable[[Any], str]) -> "Part":
    """A string or flag column's texts in Zeek's TSV (texts.gather's Part): each distinct
    value's written once and picked by each line."""
    from pcapstate.derive.texts import words

    distinct = {v: k for k, v in enumerate(dict.fromkeys(values))}
    return (words([writer(v) for v in distinct]),
            np.fromiter(map(distinct.__getitem__, values), np.int64, len(values)))


def _tsv_count_texts(texts: "Texts", values: list[Any]) -> "Part":
    """A count column's texts in Zeek's TSV: orjson's of its numbers (`texts`: an integer's
    as str() writes it), the unset ones' (None, orjson's null) as _tsv_count writes them."""
    from pcapstate.derive.texts import in_stead, words

    if None not in values:
        return texts
    return in_stead(texts, np.array([v is None for v in values]), words([_tsv_count(None)]))


def _json_column(field: str, values: list[Any]) -> list[str]:
    """A column's members of the JSON objects ("," key ":" value), an unset one left out
    ("")."""
    # not at the top: the command line reads local_nets, before the engine may be
    # imported uncompiled (jit.plain_for), and records imports compiled code
    from pcapstate.derive.texts import json_texts

    head = "," + orjson.dumps(field).decode() + ":"
    return ["" if text == "null" else head + text for text in json_texts(values).strings()]


def _now() -> str:
    return time.strftime("%Y-%m-%d-%H-%M-%S")
