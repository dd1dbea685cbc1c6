"""A regression corpus: which captures it holds, where their golden files are, and the
policy and settings that apply to it (pcapstate.toml, or [tool.pcapstate] in pyproject.toml).

A capture is one file (.pcap, .pcapng, .cap, each optionally .gz), except where the
configuration's `sets` patterns group files: every file of a folder that matches one
pattern (say "rotated-*.pcap") is one capture, a rotated set. A capture's golden file sits
beside it: NAME.golden.json for the file NAME, the pattern with "*" as "N" for a set
(rotated-N.pcap.golden.json).
"""

import fnmatch
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pcapstate.settings import MAX_CONNECTIONS, Settings, duration, settings_for
from pcapstate.vocab import State, stuck_states

SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz", ".cap.gz")
GOLDEN = ".golden.json"
CONFIG = "pcapstate.toml"



class CorpusError(Exception):
    """A corpus or its configuration cannot be used; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class Policy:
    """When a capture fails the check regardless of its golden file."""

    fail_on: frozenset[State] = frozenset()
    """Fail when an endpoint is stuck in one of these (beyond the allowances)."""
    max_close_wait: int | None = None
    """Fail when more endpoints than this are stuck in CLOSE_WAIT (beyond the allowances)."""
    allow: dict[str, dict[State, int]] = field(default_factory=dict)
    """Per service ("ip:port" as the findings name it): stuck endpoints allowed per state."""

    def allowed(self, service: str, state: State) -> int:
        return self.allow.get(service, {}).get(state, 0)


@dataclass(frozen=True, slots=True)
class Config:
    settings: Settings = field(default_factory=Settings)
    policy: Policy = field(default_factory=Policy)
    tolerance: float = 0.001
    """Timings (first timestamps, the oldest stuck endpoint) may differ by this many seconds."""
    sets: tuple[str, ...] = ()
    source: str | None = None  # the file it was read from


@dataclass(frozen=True, slots=True)
class Entry:
    """One capture of the corpus; with no files, a golden whose capture is gone."""

    name: str  # as reported: the path relative to the corpus folder given
    files: tuple[str, ...]
    golden: str
    config: Config


def find_config(start: Path) -> Path | None:
    """pcapstate.toml in `start` or the nearest folder above it, or the nearest
    pyproject.toml with a [tool.pcapstate] table, whichever is nearer."""
    for folder in [start, *start.parents]:
        candidate = folder / CONFIG
        if candidate.is_file():
            return candidate
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and "pcapstate" in _toml(candidate).get("tool", {}):
            return candidate
    return None


def config_from(table: dict[str, Any], source: str | None = None) -> Config:
    """A Config from the configuration's keys (the command line's option names)."""
    known = {"fail-on", "max-close-wait", "allow", "sets", "time-tolerance", "time-wait",
             "fin-timeout", "stuck-after", "close-wait-after", "max-connections"}
    unknown = set(table) - known
    if unknown:
        raise ValueError(f"unknown key {', '.join(sorted(unknown))} (known: "
                         f"{', '.join(sorted(known))})")

    def seconds(key: str) -> float | None:
        """The duration at `key`, None if absent."""
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            return duration(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(value)
        raise ValueError(f"{key} must be a duration (10s, 500ms, 2m, or seconds)")

    def given(key: str, default: float) -> float:
        value = seconds(key)
        return default if value is None else value

    settings = settings_for(given("time-wait", 60.0), given("fin-timeout", 60.0),
                            given("stuck-after", 10.0), seconds("close-wait-after"),
                            _count(table.get("max-connections", MAX_CONNECTIONS),
                                   "max-connections"))
    allow = {str(service): {stuck_states(k)[0]: _count(v, f"allow.{service}.{k}")
                            for k, v in states.items()}
             for service, states in table.get("allow", {}).items()}
    max_cw = table.get("max-close-wait")
    policy = Policy(fail_on=frozenset(stuck_states(table["fail-on"])
                                             if table.get("fail-on") else ()),
                    max_close_wait=None if max_cw is None else _count(max_cw, "max-close-wait"),
                    allow=allow)
    sets = table.get("sets", [])
    if not isinstance(sets, list) or not all(isinstance(s, str) and "*" in s for s in sets):
        raise ValueError("sets must be a list of file patterns with a '*' (\"rotated-*.pcap\")")
    return Config(settings=settings, policy=policy, tolerance=given("time-tolerance", 0.001),
                  sets=tuple(sets), source=source)


def _count(value: Any, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key} must be a whole number, 0 or more")
    return value


def _toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise CorpusError(f"{path}: not valid TOML ({e})") from None
    except OSError as e:
        raise CorpusError(f"cannot read {path}: {e.strerror}") from None


def is_capture(name: str) -> bool:
    return name.lower().endswith(SUFFIXES) and not name.startswith(".")


def entries(paths: list[str], override: dict[str, Any] | None = None) -> list[Entry]:
    """The captures of the corpus folders and files given, each with its configuration
    (the nearest configuration file, then `override`: the command line's settings)."""
    out: list[Entry] = []
    for given in paths:
        root = Path(given)
        if not root.exists():
            raise CorpusError(f"{given}: no such file or folder")
        folder = root if root.is_dir() else root.parent
        path = find_config(folder.resolve())
        table = {}
        if path is not None:
            table = _toml(path)
            table = table["tool"]["pcapstate"] if path.name == "pyproject.toml" else table
        try:
            config = config_from({**table, **(override or {})}, str(path) if path else None)
        except (TypeError, ValueError, KeyError) as e:
            raise CorpusError(f"{path or 'command line'}: {e}") from None
        if root.is_file():
            out.append(_entry(root, [root], given, config))
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            folder_entries = _group(Path(dirpath), sorted(filter(is_capture, filenames)),
                                    config)
            found = [_entry(name, files, str(root), config) for name, files in folder_entries]
            goldens = {e.golden for e in found}
            for stale in sorted(n for n in filenames if n.endswith(GOLDEN)):
                golden = os.path.join(dirpath, stale)
                if golden not in goldens:  # its capture is gone: an entry with no files
                    found.append(Entry(os.path.relpath(golden, root), (), golden, config))
            out += found
    names = [e.name for e in out]
    twice = {n for n in names if names.count(n) > 1}
    if twice:
        raise CorpusError(f"{sorted(twice)[0]} is given twice")
    return out


def _group(folder: Path, names: list[str], config: Config) -> list[tuple[Path, list[Path]]]:
    """(name path, files) per capture of one folder: sets first grouped, then single files."""
    taken: set[str] = set()
    out = []
    for pattern in config.sets:
        members = [n for n in names if fnmatch.fnmatchcase(n, pattern) and n not in taken]
        if members:
            taken.update(members)
            out.append((folder / pattern, [folder / n for n in members]))
    out += [(folder / n, [folder / n]) for n in names if n not in taken]
    return sorted(out, key=lambda item: str(item[0]))


def _entry(name: Path, files: list[Path], root: str, config: Config) -> Entry:
    base = Path(root) if Path(root).is_dir() else Path(root).parent
    shown = os.path.relpath(name, base) if Path(root).is_dir() else root
    golden = name.with_name(name.name.replace("*", "N") + GOLDEN)
    return Entry(shown, tuple(str(f) for f in files), str(golden), config)
