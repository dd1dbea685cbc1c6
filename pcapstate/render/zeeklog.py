"""A Zeek conn.log from pcapstate's records: Zeek's ASCII (TSV) format, header lines and
all, or its JSON Lines form, so that the result drops into zeek-cut and log pipelines.

Columns are Zeek's default conn.log ones, in Zeek's order. What pcapstate does not compute
is left unset (`-`), never guessed: `service` (no protocol analyzers). `local_orig` and
`local_resp` are set as Zeek sets them: when there are local networks (Zeek's
Site::local_nets, the private address space by default since Zeek 6.0).
`tunnel_parents`: a uid for the tunnel a connection came in (Zeek's is its tunnel.log or
outer UDP connection's uid; pcapstate writes neither log, so this one only ties the
connections of one tunnel together). docs/zeek.md has the details.
"""

import hashlib
import ipaddress
import json
import time
from collections.abc import Sequence
from typing import Any, TextIO

import orjson

from pcapstate.words import split_address

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto",
          "service", "duration", "orig_bytes", "resp_bytes", "conn_state", "local_orig",
          "local_resp", "missed_bytes", "history", "orig_pkts", "orig_ip_bytes", "resp_pkts",
          "resp_ip_bytes", "tunnel_parents")
TYPES = ("time", "string", "addr", "port", "addr", "port", "enum", "string", "interval",
         "count", "count", "string", "bool", "bool", "count", "string", "count", "count",
         "count", "count", "set[string]")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE62_PAIRS = [a + b for a in _BASE62 for b in _BASE62]


def _uid(key: str) -> str:
    """A Zeek-style uid ("C" and base 62), derived from `key` rather than random, so that
    the same capture gives the same uids: a connection's key is its 4-tuple and the first
    timestamp of Zeek's connection, a tunnel's its description (decode/unwrap.py)."""
    n = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=12).digest(), "big")
    pairs = []  # two base-62 digits at a time, the lowest first
    while n:
        n, d = divmod(n, 62 * 62)
        pairs.append(_BASE62_PAIRS[d])
    return "C" + "".join(reversed(pairs)).lstrip("0")


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


def entries(record: dict[str, Any], site: Site | None = None) -> list[dict[str, Any]]:
    """The conn.log entries of a record: Zeek's connection that began with it, and those
    Zeek began later on its 4-tuple (`zeek_later`: after its timers ended the one before)."""
    site = site or Site()
    return [_entry(record, z, site) for z in (record["zeek"], *record.get("zeek_later", ()))]


def _entry(record: dict[str, Any], z: dict[str, Any], site: Site) -> dict[str, Any]:
    """One conn.log entry, None for what is unset."""
    orig, resp = ((record["client"], record["server"]) if z["orig"] == "client"
                  else (record["server"], record["client"]))
    (oh, op), (rh, rp) = split_address(orig), split_address(resp)
    # Zeek's view's fields, in FIELDS' order, the others None; then those of the record
    return {f: z.get(f) for f in FIELDS} | {
        "uid": _uid(f"{record['client']}|{record['server']}|{z['ts']:.6f}"),
        "id.orig_h": oh, "id.orig_p": op, "id.resp_h": rh, "id.resp_p": rp, "proto": "tcp",
        "local_orig": site.is_local(oh), "local_resp": site.is_local(rh),
        "tunnel_parents": [_uid(json.dumps(record["tunnel"], sort_keys=True))]
        if record.get("tunnel") else None}


def _tsv(value: Any) -> str:
    """A string column's value (string, addr, enum) or a set of strings, as Zeek writes it."""
    if value is None:
        return "-"
    if isinstance(value, list):  # a set, as Zeek writes one
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
    return "-" if value is None else f"{value:.6f}"  # Zeek prints times with 6 decimals


def _tsv_count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _tsv_bool(value: bool | None) -> str:
    return "-" if value is None else "T" if value else "F"


# Each column's writer, by its type (_tsv for the string columns)
_TSV = [{"time": _tsv_time, "interval": _tsv_time, "count": _tsv_count, "port": _tsv_count,
         "bool": _tsv_bool}.get(t, _tsv) for t in TYPES]
_COLUMNS = tuple(zip(FIELDS, _TSV, strict=True))


class ConnLog:
    """Writes entries to `out` as they come: Zeek's TSV (with its header lines and a #close
    line at the end) or, with `as_json`, one JSON object a line as Zeek's JSON logs have."""

    def __init__(self, out: TextIO, as_json: bool = False,
                 nets: Sequence[Network] = ()) -> None:
        self.out, self.as_json, self.site = out, as_json, Site(nets)
        if not as_json:
            out.write("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n"
                      "#unset_field\t-\n#path\tconn\n"
                      f"#open\t{_now()}\n#fields\t" + "\t".join(FIELDS) + "\n"
                      "#types\t" + "\t".join(TYPES) + "\n")

    def write(self, record: dict[str, Any]) -> None:
        for e in entries(record, self.site):
            if self.as_json:
                self.out.write(orjson.dumps({k: v for k, v in e.items() if v is not None},
                                            option=orjson.OPT_APPEND_NEWLINE).decode())
            else:
                self.out.write("\t".join([w(e[f]) for f, w in _COLUMNS]) + "\n")

    def close(self) -> None:
        if not self.as_json:
            self.out.write(f"#close\t{_now()}\n")


def _now() -> str:
    return time.strftime("%Y-%m-%d-%H-%M-%S")
