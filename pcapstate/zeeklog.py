"""A Zeek conn.log from pcapstate's records: Zeek's ASCII (TSV) format, header lines and
all, or its JSON Lines form, so that the result drops into zeek-cut and log pipelines.

Columns are Zeek's default conn.log ones, in Zeek's order. What pcapstate does not compute
is left unset (`-`), never guessed: `service` (no protocol analyzers), `local_orig` and
`local_resp` (no Site::local_nets), `missed_bytes` (no reassembly), `tunnel_parents`.
docs/zeek.md has the details.
"""

import hashlib
import json
import time
from typing import Any, TextIO

FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto",
          "service", "duration", "orig_bytes", "resp_bytes", "conn_state", "local_orig",
          "local_resp", "missed_bytes", "history", "orig_pkts", "orig_ip_bytes", "resp_pkts",
          "resp_ip_bytes", "tunnel_parents")
TYPES = ("time", "string", "addr", "port", "addr", "port", "enum", "string", "interval",
         "count", "count", "string", "bool", "bool", "count", "string", "count", "count",
         "count", "count", "set[string]")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def uid(record: dict[str, Any]) -> str:
    """A Zeek-style uid ("C" and base 62), derived from the connection's 4-tuple and first
    timestamp rather than random: the same capture gives the same uids."""
    key = f"{record['client']}|{record['server']}|{record['first_ts']:.6f}".encode()
    n = int.from_bytes(hashlib.blake2b(key, digest_size=12).digest(), "big")
    out = ""
    while n:
        n, d = divmod(n, 62)
        out = _BASE62[d] + out
    return "C" + out


def _split(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host.strip("[]"), int(port)


def entry(record: dict[str, Any]) -> dict[str, Any]:
    """One conn.log entry, None for what is unset."""
    z = record["zeek"]
    orig, resp = ((record["client"], record["server"]) if z["orig"] == "client"
                  else (record["server"], record["client"]))
    (oh, op), (rh, rp) = _split(orig), _split(resp)
    return {"ts": record["first_ts"], "uid": uid(record), "id.orig_h": oh, "id.orig_p": op,
            "id.resp_h": rh, "id.resp_p": rp, "proto": "tcp", "service": None,
            "duration": z["duration"], "orig_bytes": z["orig_bytes"],
            "resp_bytes": z["resp_bytes"], "conn_state": z["conn_state"],
            "local_orig": None, "local_resp": None, "missed_bytes": None,
            "history": z["history"], "orig_pkts": z["orig_pkts"],
            "orig_ip_bytes": z["orig_ip_bytes"],
            "resp_pkts": z["resp_pkts"], "resp_ip_bytes": z["resp_ip_bytes"],
            "tunnel_parents": None}


def _tsv(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}"  # Zeek prints times and intervals with 6 decimals
    text = str(value)
    if text == "":
        return "(empty)"
    if text in ("-", "(empty)"):
        return f"\\x{ord(text[0]):02x}" + text[1:]
    return text.replace("\\", "\\x5c").replace("\t", "\\x09").replace("\n", "\\x0a")


class ConnLog:
    """Writes entries to `out` as they come: Zeek's TSV (with its header lines and a #close
    line at the end) or, with `as_json`, one JSON object a line as Zeek's JSON logs have."""

    def __init__(self, out: TextIO, as_json: bool = False) -> None:
        self.out, self.as_json = out, as_json
        if not as_json:
            out.write("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n"
                      "#unset_field\t-\n#path\tconn\n"
                      f"#open\t{_now()}\n#fields\t" + "\t".join(FIELDS) + "\n"
                      "#types\t" + "\t".join(TYPES) + "\n")

    def write(self, record: dict[str, Any]) -> None:
        e = entry(record)
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
