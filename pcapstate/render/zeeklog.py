"""A Zeek conn.log from pcapstate's records: Zeek's ASCII (TSV) format, header lines and
all, or its JSON Lines form, so that the result drops into zeek-cut and log pipelines.

Columns are Zeek's default conn.log ones, in Zeek's order. What pcapstate does not compute
is left unset (`-`), never guessed: `service` (no protocol analyzers), `tunnel_parents`.
`local_orig` and `local_resp` are set as Zeek sets them: only when local networks are given
(Zeek's Site::local_nets, empty by default). docs/zeek.md has the details.
"""

import hashlib
import ipaddress
import json
import time
from collections.abc import Sequence
from typing import Any, TextIO

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto",
          "service", "duration", "orig_bytes", "resp_bytes", "conn_state", "local_orig",
          "local_resp", "missed_bytes", "history", "orig_pkts", "orig_ip_bytes", "resp_pkts",
          "resp_ip_bytes", "tunnel_parents")
TYPES = ("time", "string", "addr", "port", "addr", "port", "enum", "string", "interval",
         "count", "count", "string", "bool", "bool", "count", "string", "count", "count",
         "count", "count", "set[string]")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def uid(record: dict[str, Any], ts: float) -> str:
    """A Zeek-style uid ("C" and base 62), derived from the connection's 4-tuple and the
    first timestamp of Zeek's connection rather than random: the same capture gives the
    same uids."""
    key = f"{record['client']}|{record['server']}|{ts:.6f}".encode()
    n = int.from_bytes(hashlib.blake2b(key, digest_size=12).digest(), "big")
    out = ""
    while n:
        n, d = divmod(n, 62)
        out = _BASE62[d] + out
    return "C" + out


def split_address(address: str) -> tuple[str, int]:
    """"10.0.0.5:80", "[::1]:80": the host and the port."""
    host, port = address.rsplit(":", 1)
    return host.strip("[]"), int(port)


def local_nets(text: str) -> list[Network]:
    """"10.0.0.0/8,fd00::/8" as networks (host bits allowed, as Zeek's subnets); ValueError
    naming the first that is not one."""
    nets = []
    for part in text.split(","):
        try:
            nets.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not a network: {part.strip()!r} (example: 10.0.0.0/8)") from None
    return nets


def entries(record: dict[str, Any], nets: Sequence[Network] = ()) -> list[dict[str, Any]]:
    """The conn.log entries of a record: Zeek's connection that began with it, and those
    Zeek began later on its 4-tuple (`zeek_later`: after its timers ended the one before)."""
    return [_entry(record, z, nets) for z in (record["zeek"], *record.get("zeek_later", ()))]


def _entry(record: dict[str, Any], z: dict[str, Any],
           nets: Sequence[Network]) -> dict[str, Any]:
    """One conn.log entry, None for what is unset; `nets`: Site::local_nets."""
    orig, resp = ((record["client"], record["server"]) if z["orig"] == "client"
                  else (record["server"], record["client"]))
    (oh, op), (rh, rp) = split_address(orig), split_address(resp)
    entry = {f: z.get(f) for f in FIELDS}  # Zeek's view's fields; the others, None for now
    entry.update({"uid": uid(record, z["ts"]), "id.orig_h": oh, "id.orig_p": op,
                  "id.resp_h": rh, "id.resp_p": rp, "proto": "tcp",
                  "local_orig": _is_local(oh, nets), "local_resp": _is_local(rh, nets)})
    return entry


def _is_local(host: str, nets: Sequence[Network]) -> bool | None:
    """Site::is_local_addr; unset (None) without local networks, as in Zeek by default."""
    return any(ipaddress.ip_address(host) in net for net in nets) if nets else None


def _tsv(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):  # numpy's floats too
        return f"{value:.6f}"  # Zeek prints times and intervals with 6 decimals
    text = str(value)
    if text == "":
        return "(empty)"
    if text in ("-", "(empty)"):
        return f"\\x{ord(text[0]):02x}" + text[1:]
    if "\\" in text or "\t" in text or "\n" in text:
        return text.replace("\\", "\\x5c").replace("\t", "\\x09").replace("\n", "\\x0a")
    return text


class ConnLog:
    """Writes entries to `out` as they come: Zeek's TSV (with its header lines and a #close
    line at the end) or, with `as_json`, one JSON object a line as Zeek's JSON logs have."""

    def __init__(self, out: TextIO, as_json: bool = False,
                 nets: Sequence[Network] = ()) -> None:
        self.out, self.as_json, self.nets = out, as_json, nets
        if not as_json:
            out.write("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n"
                      "#unset_field\t-\n#path\tconn\n"
                      f"#open\t{_now()}\n#fields\t" + "\t".join(FIELDS) + "\n"
                      "#types\t" + "\t".join(TYPES) + "\n")

    def write(self, record: dict[str, Any]) -> None:
        for e in entries(record, self.nets):
            if self.as_json:
                self.out.write(json.dumps({k: v for k, v in e.items() if v is not None},
                                          separators=(",", ":")) + "\n")
            else:
                self.out.write("\t".join(_tsv(e[f]) for f in FIELDS) + "\n")

    def close(self) -> None:
        if not self.as_json:
            self.out.write(f"#close\t{_now()}\n")


def _now() -> str:
    return time.strftime("%Y-%m-%d-%H-%M-%S")
