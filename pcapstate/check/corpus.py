"""A regression corpus: which captures it holds, where their golden files are, and the
policy and settings that apply to it (pcapstate.toml, or [tool.pcapstate] in pyproject.toml).

A capture is one file (.pcap, .pcapng, .cap, each optionally .gz), except where the
configuration's `sets` patterns group files: every file of a folder that matches one
pattern (say "rotated-*.pcap") is one capture, a rotated set. A capture's golden file sits
beside it: NAME.golden.json for the file NAME, the pattern with "*" as "N" for a set
(rotated-N.pcap.golden.json).

Each folder takes the nearest configuration: a subfolder with a pcapstate.toml of its own
follows that one (it replaces the one above, it does not add to it), and the command line's
settings go on top of whichever applies.
"""

import fnmatch
import json
import os
import tomllib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pcapstate.settings import MAX_CONNECTIONS, Settings, duration, settings_for
from pcapstate.vocab import State, stuck_states

SUFFIXES = tuple(f"{name}{packed}" for name in (".pcap", ".pcapng", ".cap")
                 for packed in ("", ".gz", ".bz2", ".xz", ".zst"))  # tcpdump -z's compressions
GOLDEN = ".golden.json"
CONFIG = "pcapstate.toml"


class CorpusError(Exception):
    """A corpus or its configuration cannot be used; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class Policy:
    """When a capture fails the check regardless of its golden file."""

    fail_on: frozenset[State | str] = frozenset()
    """Fail when an endpoint is stuck in one of these states, or one of these diagnoses
    (names, vocab.DIAGNOSES) is found (beyond the allowances)."""
    max_close_wait: int | None = None
    """Fail when more endpoints than this are stuck in CLOSE_WAIT (beyond the allowances)."""
    allow: dict[str, dict[State | str, int]] = field(default_factory=dict)
    """Per service ("ip:port" as the findings name it): stuck endpoints allowed per state,
    connections per diagnosis."""

    def allowed(self, service: str, state: State | str) -> int:
        return self.allow.get(service, {}).get(state, 0)


@dataclass(frozen=True, slots=True)
class Config:
    settings: Settings = field(default_factory=Settings)
    policy: Policy = field(default_factory=Policy)
    tolerance: float = 0.001
    """Timings (first timestamps, the oldest stuck endpoint) may differ by this many seconds."""
    sets: tuple[str, ...] = ()


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


def config_from(table: dict[str, Any], prefix: str = "") -> Config:
    """A Config from the configuration's keys (the command line's option names); `prefix`:
    where the configuration sits in its file ("tool.pcapstate." in a pyproject.toml)."""
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
    max_cw = table.get("max-close-wait")
    policy = Policy(allow=_allowances(table.get("allow", {}), prefix),  # its errors come first
                    fail_on=frozenset(stuck_states(table["fail-on"], diagnoses=True)
                                      if table.get("fail-on") else ()),
                    max_close_wait=None if max_cw is None else _count(max_cw, "max-close-wait"))
    sets = table.get("sets", [])
    if not isinstance(sets, list) or not all(isinstance(s, str) and "*" in s for s in sets):
        raise ValueError("sets must be a list of file patterns with a '*' (\"rotated-*.pcap\")")
    return Config(settings=settings, policy=policy, tolerance=given("time-tolerance", 0.001),
                  sets=tuple(sets))


def _allowances(table: Any, prefix: str) -> dict[str, dict[State | str, int]]:
    """The [allow."SERVICE"] tables: one stuck state a key, with the endpoints allowed in
    it, or a diagnosis, with the connections allowed; an error names the table (`prefix`:
    where the configuration sits in its file)."""
    if not isinstance(table, dict):
        raise ValueError(f'{prefix}allow must be a table of services ([{prefix}allow.'
                         '"10.0.0.5:5001"])')
    out: dict[str, dict[State | str, int]] = {}
    for service, states in table.items():
        where = f"[{prefix}allow.{json.dumps(str(service))}]"
        if not isinstance(states, dict):
            raise ValueError(f"{where} must be a table of states and counts (close-wait = 3)")
        out[str(service)] = {}
        for key, value in states.items():
            try:
                named = stuck_states(key, diagnoses=True)
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
            if len(named) != 1:
                raise ValueError(f"{where}: {key!r} names {len(named)} states: give each "
                                 "state a line of its own (close-wait = 3)")
            if named[0] in out[str(service)]:
                raise ValueError(f"{where}: {named[0]} is given twice")
            out[str(service)][named[0]] = _count(value, f"{where} {key}")
    return out


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
    (the nearest configuration file above its folder, then `override`: the command line's
    settings). A capture given twice (a folder and a file in it, the same folder by two
    names) is one entry; two captures with the same name in different folders given are
    named by their paths."""
    loaded: dict[Path | None, Config] = {}

    def config_of(folder: Path) -> Config:
        """The nearest configuration file's (read once), with `override` on top."""
        path = find_config(folder.resolve())
        if path not in loaded:
            loaded[path] = _load(path, override or {})
        return loaded[path]

    found: list[tuple[Entry, str]] = []  # each entry, and its path as given
    alone: set[int] = set()  # the files given as such (not found in a folder)
    for given in paths:
        root = normal(given)
        if not root.exists():
            raise CorpusError(f"{given}: no such file or folder")
        if root.is_dir():
            found += _walk(root, config_of)
        else:
            alone.add(len(found))
            found.append((_entry(root, [root], str(root), config_of(root.parent)),
                          str(root)))
    kept = _distinct(found, alone)
    names = Counter(e.name for e, _ in kept)
    return [replace(e, name=where) if names[e.name] > 1 else e for e, where in kept]


def normal(given: str) -> Path:
    """The path given, in the one form every path of the corpus is built from, so that every
    way of naming a folder gives the same corpus: Path drops "." parts and trailing slashes
    ("./", "samples/"); a path with ".." is resolved (relative to the current folder when
    it is in it)."""
    path = Path(given)
    if ".." in path.parts:
        path = Path(os.path.realpath(path))
        cwd = Path.cwd()
        if path.is_relative_to(cwd):
            path = path.relative_to(cwd)
    return path


def _walk(root: Path, config_of: Callable[[Path], Config]) -> list[tuple[Entry, str]]:
    """The entries of a corpus folder and its subfolders, each folder under its nearest
    configuration: every path is built from `root` with Path, never by joining strings."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        config = config_of(folder)
        found = [(_entry(name, files, str(name.relative_to(root)), config), str(name))
                 for name, files in _group(folder, sorted(
                     n for n in filenames if is_capture(n) and (folder / n).is_file()), config)]
        goldens = {Path(e.golden) for e, _ in found}
        for stale in sorted(n for n in filenames if n.endswith(GOLDEN)):
            golden = folder / stale
            if golden not in goldens:  # its capture is gone: an entry with no files
                found.append((Entry(str(golden.relative_to(root)), (), str(golden), config),
                              str(golden)))
        out += found
    return out


def _identity(path: str) -> str:
    """Where a file is, whatever the path that names it: its folder resolved (a symlink to
    the file itself stays a file of its own, with its own golden)."""
    head, tail = os.path.split(path)
    return os.path.join(os.path.realpath(head or "."), tail)


def _distinct(found: list[tuple[Entry, str]], alone: set[int]) -> list[tuple[Entry, str]]:
    """`found` without repeats, in order: an entry whose files are only some of those of
    another (a file of a rotated set given alone) is left out, and of entries with the same
    files the first found in a folder is kept (a file given alone, if none was)."""
    ids = [frozenset(map(_identity, e.files or (e.golden,))) for e, _ in found]
    holders: dict[str, list[int]] = {}
    for i, files in enumerate(ids):
        for f in files:
            holders.setdefault(f, []).append(i)

    return [found[i] for i, files in enumerate(ids)
            if not any(files < ids[j] or (files == ids[j] and (j in alone, j) < (i in alone, i))
                       for j in holders[next(iter(files))] if j != i)]


def _load(path: Path | None, override: dict[str, Any]) -> Config:
    """The Config of a configuration file (None: the defaults), with `override` on top."""
    table: Any = {}
    prefix = ""
    if path is not None:
        table = _toml(path)
        if path.name == "pyproject.toml":
            table, prefix = table["tool"]["pcapstate"], "tool.pcapstate."
    try:
        if not isinstance(table, dict):
            raise ValueError("[tool.pcapstate] must be a table")
        return config_from({**table, **override}, prefix)
    except (TypeError, ValueError, KeyError) as e:
        raise CorpusError(f"{path or 'command line'}: {e}") from None


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


def _entry(name: Path, files: list[Path], shown: str, config: Config) -> Entry:
    golden = name.with_name(name.name.replace("*", "N") + GOLDEN)
    return Entry(shown, tuple(str(f) for f in files), str(golden), config)
