"""The JSON result's schema (`pcapstate-result/1`, docs/json.md), written once as data, and
the validator that `pcapstate report` runs on a saved result before rendering it.

A result that parses may still be damaged or hand-edited: a count that is a string, a
timestamp of 1e300 (a report cannot draw the year 10^292), a peer without a port, a key
gone, a list where an object goes. `problem(result)` names the first such field by its
JSON path (`findings[0].count: expected a whole number (0 or more), got "many"`), in the
order analyze writes the fields, so the report fails in one line instead of a traceback.

The schema is small on purpose: objects with their keys (a key ending in "?" may be
absent; keys it does not name are allowed, as new fields may be added within a version),
lists, maps (any keys of one kind, values of one kind), nullable values, enumerations,
and a few named scalars (`SCALARS`). A test validates the result of every sample so that
the schema cannot drift from what analyze writes. Nothing here imports the engine.
"""

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from pcapstate.vocab import STUCK_STATES, Censor, Closer, EndKind, Roles, State

#: The result's schema and version: `schema` in every result.
SCHEMA = "pcapstate-result/1"

#: Timestamps a report can draw: from the Unix epoch (pcap's seconds are unsigned) to the
#: end of year 9999 (the last a date can be written in).
TS_MIN, TS_MAX = 0.0, 253402300800.0
#: The longest duration: the whole span of timestamps above.
MAX_SECONDS = TS_MAX - TS_MIN
#: Counts are 64-bit in the engine.
MAX_COUNT = 2**64 - 1
#: The histograms' bins (summary.duration_bin, 100 a decade from a microsecond): bin -1
#: holds up to a microsecond, the last one MAX_SECONDS.
MAX_BIN = int(math.log10(MAX_SECONDS / 1e-6) * 100)
#: The timeline's bins (timeline.BINS).
TIMELINE_BINS = 2048


@dataclass(frozen=True, slots=True)
class List:
    """A JSON array of `item`, with at least `min` and at most `max` items."""

    item: "Spec"
    min: int = 0
    max: int | None = None


@dataclass(frozen=True, slots=True)
class Map:
    """A JSON object with any keys of one kind (`key`: a Spec for the key's string) and
    values of one kind."""

    key: "Spec"
    value: "Spec"


@dataclass(frozen=True, slots=True)
class Maybe:
    """`spec` or null."""

    spec: "Spec"


@dataclass(frozen=True, slots=True)
class OneOf:
    """One of these strings; `what` names them in a message."""

    values: tuple[str, ...]
    what: str


#: A spec: a scalar's name (SCALARS), an object (a dict of key to spec; "key?": optional),
#: or one of the classes above.
Spec: TypeAlias = str | dict[str, "Spec"] | List | Map | Maybe | OneOf


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_COUNT


def _ts(v: Any) -> bool:
    return _number(v) and TS_MIN <= v < TS_MAX  # False for NaN and the infinities


def _seconds(v: Any) -> bool:
    return _number(v) and 0 <= v <= MAX_SECONDS


def _positive(v: Any) -> bool:
    return _number(v) and 0 < v <= MAX_SECONDS


_ADDRESS = re.compile(r"(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):(\d{1,5})")


def _address(v: Any) -> bool:
    m = _ADDRESS.fullmatch(v) if isinstance(v, str) else None
    return m is not None and int(m.group(1)) <= 65535


def _bin(v: Any) -> bool:
    """A histogram bin, as a key: a whole number from -1 to MAX_BIN."""
    return isinstance(v, str) and re.fullmatch(r"-1|0|[1-9]\d{0,5}", v) is not None \
        and int(v) <= MAX_BIN


#: The scalars: name -> (test, what the message says was expected).
SCALARS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "text": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "count": (_count, "a whole number (0 or more)"),
    "ts": (_ts, "a timestamp (seconds since 1970, before the year 10000)"),
    "seconds": (_seconds, f"a number of seconds (0 to {MAX_SECONDS:.0f})"),
    "positive": (_positive, f"a number of seconds (over 0, up to {MAX_SECONDS:.0f})"),
    "address": (_address, "an address (ip:port, or [ip]:port for IPv6)"),
    "bin": (_bin, f"a histogram bin (-1 to {MAX_BIN})"),
}


def _one_of(values: Any, what: str) -> OneOf:
    return OneOf(tuple(str(v) for v in values), what)


STATE = _one_of(State, "a TCP state")
STUCK_STATE = _one_of(STUCK_STATES, "a stuck state")
END_KIND = _one_of(EndKind, "an end kind")
CLOSER = _one_of(Closer, "a closer")
ROLE = OneOf(("client", "server"), "a role")
OUTCOME = _one_of(["open", "reset_by_peer", "reset_by_self",
                   *(st.lower() for st in State)], "an outcome")
CONN_STATE = OneOf(("S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH",
                    "SH", "SHR", "OTH"), "a Zeek conn_state")  # zeek.CONN_STATES
COUNTS = Map("text", "count")

INPUT: dict[str, Spec] = {
    "path": "text",
    "format": "text",
    "compressed": "bool",
    "compression?": Maybe(OneOf(("gzip", "bzip2", "xz", "zstd"), "a compression")),
    "size": Maybe("count"),
    "records": "count",
    "linktypes": List("count"),
    "snaplen": Maybe("count"),
    "end_ts": Maybe("ts"),
    "dropped": Maybe("count"),
    "sha256?": Maybe("text"),
}

EXAMPLE: dict[str, Spec] = {
    "state": STUCK_STATE,
    "role": ROLE,
    "endpoint": "address",
    "peer": "address",
    "service": "address",
    "conn_id": "count",
    "since": "ts",
    "duration": "seconds",
    "outcome": OUTCOME,
    "fin_ts": Maybe("ts"),
    "ack_ts": Maybe("ts"),
    "rst_ts": Maybe("ts"),
}

FINDING: dict[str, Spec] = {
    "state": STUCK_STATE,
    "service": "address",
    "role": ROLE,
    "count": "count",
    "still_open": "count",
    "oldest": "seconds",
    "outcomes": Map(OUTCOME, "count"),
    "examples": List(EXAMPLE, min=1),
}

DURATIONS: dict[str, Spec] = {
    "count": "count",
    "complete": "count",
    "right_censored": "count",
    "left_censored": "count",
    "both_censored": "count",
    "p50": Maybe("seconds"),
    "p90": Maybe("seconds"),
    "p99": Maybe("seconds"),
    "max": Maybe("seconds"),
    "max_censored": Maybe("seconds"),
    "histogram": Map(_one_of(Censor, "a kind of censoring"), Map("bin", "count")),
}

ZEEK: dict[str, Spec] = {
    "ts": "ts",
    "orig": ROLE,
    "conn_state": CONN_STATE,
    "history": "text",
    "missed_bytes": "count",
    "duration": Maybe("seconds"),  # these three null when the duration is 0, as in Zeek
    "orig_bytes": Maybe("count"),
    "resp_bytes": Maybe("count"),
    "orig_pkts": "count",
    "orig_ip_bytes": "count",
    "resp_pkts": "count",
    "resp_ip_bytes": "count",
}

ENDPOINT: dict[str, Spec] = {
    "final_state": STATE,
    "packets": "count",
    "payload_bytes": "count",
    "syn": "count",
    "fin": "count",
    "rst": "count",
    "transitions": List({"ts": "ts", "state": STATE, "timer?": "bool"}),
}

#: One connection: an item of `connection_records`, and a line of --jsonl.
RECORD: dict[str, Spec] = {
    "id": "count",
    "client": "address",
    "server": "address",
    "roles_from": _one_of(Roles, "how the roles were told"),
    "mid_stream": "bool",
    "first_ts": "ts",
    "last_ts": "ts",
    "end": END_KIND,
    "closer": CLOSER,
    "reset_by": Maybe(ROLE),
    "endpoints": {"client": ENDPOINT, "server": ENDPOINT},
    "anomalies": COUNTS,
    "evicted": "bool",
    "wireshark_analysis?": COUNTS,
    "zeek?": ZEEK,
    "zeek_later?": List(ZEEK),
}

#: The whole result, in the order analyze writes it.
RESULT: dict[str, Spec] = {
    "schema": "text",
    "pcapstate_version": "text",
    "command_line?": Maybe("text"),
    "decoder": {"engine": OneOf(("fast", "tshark", "plain"), "an engine"),
                "reason": Maybe("text")},
    "inputs": List(INPUT),
    "capture": {"first_ts": Maybe("ts"), "last_ts": Maybe("ts"), "end_ts": Maybe("ts"),
                "duration": "seconds"},
    "settings": {
        "time_wait": "seconds",
        "fin_timeout": "seconds",
        "linger": "seconds",
        "max_connections": "count",
        "zeek_checksums": "bool",
        "stuck_after": Map(STUCK_STATE, "seconds"),
        "histogram_bins_per_decade": "count",
    },
    "accounting": {"records": "count", "tcp_segments": "count", "other": COUNTS,
                   "undecodable": COUNTS},
    "peak_live_connections": "count",
    "connections": {
        "total": "count",
        "by_end": Map(END_KIND, "count"),
        "by_closer": Map(CLOSER, "count"),
        "by_end_and_closer": Map(END_KIND, Map(CLOSER, "count")),
        "roles_from": Map(_one_of(Roles, "how the roles were told"), "count"),
        "mid_stream": "count",
        "evicted": {"total": "count", "finished": "count", "attempt": "count",
                    "open": "count"},
        "final_states": {"client": Map(STATE, "count"), "server": Map(STATE, "count")},
        "anomalies": COUNTS,
        "zeek_conn_states": Map(CONN_STATE, "count"),
        "wireshark_analysis?": COUNTS,
    },
    "cross_check?": {
        "connections": {"fast": "count", "tshark": "count"},
        "segments_sent_again": {"pcapstate": "count", "wireshark": "count"},
        "keep_alives": {"pcapstate": "count", "wireshark": "count"},
        "disagreements": List("text"),
    },
    "findings": List(FINDING),
    "vantage": {
        "estimate": OneOf(("client", "server", "between", "mixed", "unknown"),
                          "a vantage estimate"),
        "handshakes": "count",
        "near_client": "count",
        "between": "count",
        "near_server": "count",
        "too_close_to_tell": "count",
        "round_trip_min": Maybe("seconds"),
        "round_trip_max": Maybe("seconds"),
    },
    "durations": Map(STATE, DURATIONS),
    "timeline": {"start": Maybe("ts"), "bin_seconds": Maybe("positive"),
                 "states": Map(STATE, List("count", min=1, max=TIMELINE_BINS))},
    "warnings": List("text"),
    "interrupted?": "bool",
    "elapsed_seconds": "seconds",
    "connection_records?": List(RECORD),
}


class Invalid(Exception):
    """A value that does not fit: `path` (JSON path parts) and what is wrong."""

    def __init__(self, path: list[str | int], message: str) -> None:
        super().__init__(message)
        self.path, self.message = list(path), message

    def __str__(self) -> str:
        where = json_path(self.path)
        return f"{where}: {self.message}" if where else self.message


def json_path(parts: list[str | int]) -> str:
    """findings[0].examples[2].peer; a key that is not a name is quoted: histogram["-1"]."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p):
            out += f".{p}" if out else p
        else:
            out += f"[{json.dumps(p)}]"
    return out


def shown(v: Any) -> str:
    """A value as a message shows it: as JSON, short; an object or a list by its kind."""
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return "a list"
    text = json.dumps(v)  # NaN, Infinity and 1e+300 as Python's json reads them
    return text if len(text) <= 40 else text[:37] + "..."


def check(value: Any, spec: Spec, path: list[str | int] | None = None) -> None:
    """Raise Invalid at the first part of `value` (in the spec's order) that `spec` does
    not allow."""
    _check(value, spec, [] if path is None else path)


def _check(v: Any, spec: Spec, path: list[str | int]) -> None:
    if isinstance(spec, str):
        test, what = SCALARS[spec]
        if not test(v):
            raise Invalid(path, f"expected {what}, got {shown(v)}")
    elif isinstance(spec, dict):
        if not isinstance(v, dict):
            raise Invalid(path, f"expected an object, got {shown(v)}")
        for key, sub in spec.items():
            name = key.removesuffix("?")
            path.append(name)
            if name in v:
                _check(v[name], sub, path)
            elif name == key:
                raise Invalid(path, "missing")
            path.pop()
    elif isinstance(spec, Maybe):
        if v is not None:
            _check(v, spec.spec, path)
    elif isinstance(spec, List):
        if not isinstance(v, list):
            raise Invalid(path, f"expected a list, got {shown(v)}")
        if len(v) < spec.min:
            raise Invalid(path, f"expected at least {spec.min} item"
                                f"{'s' if spec.min != 1 else ''}, got {len(v)}")
        if spec.max is not None and len(v) > spec.max:
            raise Invalid(path, f"expected at most {spec.max:,} items, got {len(v):,}")
        for i, item in enumerate(v):
            path.append(i)
            _check(item, spec.item, path)
            path.pop()
    elif isinstance(spec, Map):
        if not isinstance(v, dict):
            raise Invalid(path, f"expected an object, got {shown(v)}")
        for key, item in v.items():
            path.append(key)
            try:
                _check(key, spec.key, [])
            except Invalid as e:
                raise Invalid(path, e.message.replace("expected ", "expected a key that is ",
                                                      1)) from None
            _check(item, spec.value, path)
            path.pop()
    elif isinstance(spec, OneOf):
        if v not in spec.values:  # a list or an object is in no tuple of strings
            raise Invalid(path, f"expected {spec.what} ({', '.join(spec.values)}), "
                                f"got {shown(v)}")
    else:  # pragma: no cover - a spec of a kind this module does not define
        raise TypeError(f"not a spec: {spec!r}")


def _agrees(result: dict[str, Any]) -> None:
    """What the renderers need of fields together, beyond each field's own kind."""
    conns, tl = result["connections"], result["timeline"]
    for kind in conns["by_end"]:
        if kind not in conns["by_end_and_closer"]:
            raise Invalid(["connections", "by_end_and_closer"],
                          f"missing {json.dumps(kind)}, which connections.by_end counts")
    if tl["states"] and (tl["start"] is None or tl["bin_seconds"] is None):
        which = "start" if tl["start"] is None else "bin_seconds"
        raise Invalid(["timeline", which], "expected a number where states are given, "
                                           "got null")
    if result["findings"] and result["capture"]["first_ts"] is None:
        raise Invalid(["capture", "first_ts"], "expected a timestamp where there are "
                                               "findings, got null")


def problem(result: Any) -> str | None:
    """The first thing wrong with a saved result, as `path: what` (one line); None when it
    fits the schema."""
    try:
        check(result, RESULT)
        _agrees(result)
    except Invalid as e:
        return str(e)
    return None
