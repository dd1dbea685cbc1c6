"""Compiled code: numba's `njit`, with its cache kept out of the installed package; or the
same code uncompiled.

The engine is plain Python that numba compiles. Uncompiled (`PLAIN`), it runs as written,
without numba even imported: a few thousand records a second, where compiled code does over
a million but first takes about a minute to compile (once after installing) and 0.4 s to
load (numba's import, the engine's cached code). So a small capture is analysed uncompiled
(`plain_for`), and NUMBA_DISABLE_JIT=1 runs everything so (to read the engine, step through
it, measure coverage).

numba caches compiled machine code beside the source by default (`pcapstate/__pycache__`).
pip does not know those files: after `pip uninstall` they stay, and the leftover folder
shadows a later editable install of pcapstate (a namespace package without `__version__`).
So the cache goes to a per-user folder keyed by pcapstate's, Python's and numba's versions
and by the engine's sources (`_engine_digest`): `$XDG_CACHE_HOME/pcapstate/`
(`~/.cache/pcapstate/`), or a folder of the user's in the
temporary directory when that one is not writable; with neither, nothing is cached (every
run compiles). `NUMBA_CACHE_DIR`, when set, is numba's own choice and is left alone.
"""

import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import cache, update_wrapper
from typing import Any, cast

from pcapstate import __version__

#: The engine runs uncompiled (see the module's docstring).
PLAIN = os.environ.get("NUMBA_DISABLE_JIT", "0").strip() not in ("", "0")
#: A capture of at most this many bytes is analysed uncompiled by the command line: a few
#: thousand records, about a second at most (0.9 s for 236 kB of the benchmark capture's
#: records, 44 MiB), against 0.45 s to load the compiled engine (154 MiB) and a minute to
#: compile it on a first run, which this spares the samples.
PLAIN_BYTES = 256 << 10
#: The modules whose functions numba compiles: imported, they are compiled or not for good.
ENGINE = ("pcapstate.decode.frames", "pcapstate.track.connections", "pcapstate.derive.fold",
          "pcapstate.derive.rules", "pcapstate.derive.texts")


def plain_for(sizes: list[int | None]) -> None:
    """Run the engine uncompiled for inputs of these sizes (None: a stream, size unknown),
    if they are small and the engine was not imported compiled yet."""
    global PLAIN
    if not PLAIN and all(m not in sys.modules for m in ENGINE) and sizes \
            and None not in sizes and sum(s or 0 for s in sizes) <= PLAIN_BYTES:
        PLAIN = True


def _config() -> Any:
    """numba's configuration (its settings are module attributes that mypy does not see)."""
    from numba.core import config

    return config


def records(a: Any) -> Any:
    """An array of packed records (track/slots.py) as compiled code takes it. With numba's
    JIT disabled (NUMBA_DISABLE_JIT=1), the engine runs as the plain Python it is written
    in, to read, step through in a debugger or measure coverage; then the array is a
    np.recarray, whose records take attribute access (r.st[e]) as numba's do."""
    import numpy as np

    return a.view(np.recarray) if PLAIN else a


def njit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """numba.njit(**options) for a function of pcapstate's (every one is `cache=True`),
    cached in cache_dir(), its dispatcher made when first needed (_Deferred). With PLAIN,
    the function itself."""
    def decorate(fn: Callable[..., Any]) -> Any:
        return fn if PLAIN else _Deferred(fn, options)
    return decorate


class _Deferred:
    """A function numba compiles, whose dispatcher is made at its first call from Python or
    when numba types a compiled caller (numba asks a global for `_numba_type_`, an
    attribute of the dispatcher's, and for `targetoptions` to inline one): a run calls 11 to
    14 of the engine's 113 functions from Python, their callees come compiled in their
    code, and making the dispatchers of all took 27-34 ms of each run. Once made, the
    dispatcher takes the function's place in its module (calls from there go straight to
    it); it answers every other attribute."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        self.made: Any = None
        self.fn, self.options = fn, options
        update_wrapper(self, fn)

    def dispatcher(self) -> Any:
        if self.made is None:
            with _MAKING:  # one at a time: _cache_in sets numba's configuration for all
                if self.made is None:  # threads (the reader's, the writer's, the main one)
                    self.made = _dispatcher(self.fn, self.options)
                    module = sys.modules.get(self.fn.__module__)
                    if getattr(module, self.fn.__name__, None) is self:
                        setattr(module, self.fn.__name__, self.made)
        return self.made

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.dispatcher()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in ("made", "fn", "options"):  # not set yet: an instance being built
            raise AttributeError(name)
        return getattr(self.dispatcher(), name)

    def __reduce__(self) -> Any:
        return self.dispatcher().__reduce__()  # pickled, copied: as numba's dispatcher


_MAKING = threading.Lock()  # (making a dispatcher takes no lock of numba's: a compile in
# another thread, which holds numba's, may ask for one)


def _dispatcher(fn: Callable[..., Any], options: dict[str, Any]) -> Any:
    """numba's dispatcher of `fn`, loading its machine code from cache_dir()."""
    numba = _numba()
    folder = cache_dir()
    if folder is None:
        return numba.njit(**{**options, "cache": False})(fn)
    with _cache_in(folder):
        compiled = numba.njit(**options)(fn)
    _load_lean(compiled)
    return compiled


def _numba() -> Any:
    """numba, imported without the modules its import only looks at when they are
    installed: SciPy (to check its version) and PyYAML (to read a .numba_config.yaml in the
    working folder: imported when there is one). 25-35 ms of each run's start, measured.
    They stay importable after."""
    if "numba" in sys.modules:
        return sys.modules["numba"]
    skipped = [m for m in ("scipy", "yaml") if m not in sys.modules
               and not (m == "yaml" and os.path.isfile(".numba_config.yaml"))]
    for m in skipped:
        sys.modules[m] = cast(Any, None)  # "import scipy" raises ImportError
    try:
        import numba
    finally:
        for m in skipped:
            if m in sys.modules and sys.modules[m] is None:
                del sys.modules[m]
    return numba


def _load_lean(compiled: Any) -> None:
    """Have numba load `compiled`'s machine code from its cache without refreshing its
    target context first.

    The refresh imports and registers every implementation numba has (its linear algebra,
    random generators, typed containers, datetime, ...), a tenth of a run over the
    benchmark capture (0.15-0.2 s before the first packet), for what only compiling uses.
    Loading links the cached object code to the Python API, numba's helpers (both set up
    with the context) and its runtime (NRT), which is set up here (_runtime); the engine's
    object code names nothing else (`nm -u` over every cached function). A compile, should
    the cache miss, refreshes the context itself. With a numba whose cache lacks these
    parts, the load is numba's own. The code itself is loaded lean too (_unserialize_lean),
    and so are its environments (_lean_environments)."""
    cache: Any = getattr(compiled, "_cache", None)
    guard = getattr(cache, "_guard_against_spurious_io_errors", None)
    load = getattr(cache, "_load_overload", None)
    if guard is None or load is None:
        return

    def load_overload(sig: Any, target_context: Any) -> Any:
        _unserialize_lean(target_context.codegen())
        _runtime(target_context)
        with guard(), _lean_environments():
            return load(sig, target_context)
        return None  # the guard swallowed an error: compile

    cache.load_overload = load_overload


def _runtime(context: Any) -> None:
    """numba's runtime (NRT) set up, its few functions' machine code read from the cache
    folder: numba compiles them with LLVM in every process that loads compiled code (19-27
    ms on the benchmark capture's runs, of which 15-18 the compile, and 25 MiB of the peak
    memory: LLVM's optimizer set up for it), where reading them takes 1-2 ms. The first
    run compiles them as numba does and keeps the object code; numba's own set-up does the
    rest (its helpers' symbols, before these functions are linked)."""
    from numba.core.runtime import nrtdynmod, rtsys

    folder = cache_dir()
    if getattr(rtsys, "_init", True) or folder is None \
            or not hasattr(nrtdynmod, "create_nrt_module"):
        rtsys.initialize(context)
        return
    import pickle

    import numba

    path = os.path.join(folder, f"nrt-numba{numba.__version__}.pickle")
    compile_ = nrtdynmod.compile_nrt_functions

    def cached(context: Any) -> Any:
        codegen = context.codegen()
        try:
            with open(path, "rb") as f:
                return codegen.unserialize_library(pickle.load(f))
        except (OSError, EOFError, ValueError, TypeError, RuntimeError, pickle.UnpicklingError):
            pass  # not there yet (or unreadable): compiled, and kept
        module, library = nrtdynmod.create_nrt_module(context)
        library.enable_object_caching()
        library.add_ir_module(module)
        library.finalize()
        part = f"{path}.{os.getpid()}"
        try:
            with open(part, "wb") as f:
                pickle.dump(library.serialize_using_object_code(), f)
            os.replace(part, path)  # whole or not at all, whichever process writes last
        except OSError:  # a full disk, say: the next run compiles them again
            with suppress(OSError):
                os.remove(part)
        return library

    nrtdynmod.compile_nrt_functions = cached
    try:
        rtsys.initialize(context)
    finally:
        nrtdynmod.compile_nrt_functions = compile_


@contextmanager
def _lean_environments() -> Iterator[None]:
    """While inside, the environments of cached functions from modules not imported yet
    are rebuilt without importing them. An environment holds the Python objects compiled
    code reaches (constants, the module's globals for object mode); the engine's hold none
    and are nopython code, so it is never read. numba imports the module for its
    globals: the array functions' module (numba.np.arrayobj, with the modules it imports)
    took 26 ms of the first load, and 5-6 MiB. Loads run under numba's compile lock: no
    other load sees the swap."""
    from numba.core import environment

    rebuild = environment._rebuild_env

    def lean(modname: str, consts: list[Any], env_name: str) -> Any:
        if consts or modname in sys.modules:
            return rebuild(modname, consts, env_name)
        env = environment.lookup_environment(env_name)
        if env is None:
            env = environment.Environment({"__name__": modname})
            env.env_name = env_name
            environment.Environment._memo[env_name] = env
        return env

    environment._rebuild_env = lean
    try:
        yield
    finally:
        environment._rebuild_env = rebuild


def _unserialize_lean(codegen: Any) -> None:
    """Have `codegen` load a cached library's object code without parsing its LLVM bitcode.

    numba caches each function's object code with its bitcode, and parses the bitcode on
    every load: to list the symbols the object defines, and for a later compile that calls
    the function and inlines it. Parsing took a fifth of each load (7-25 ms) and kept the
    parsed module in memory (11 MiB over the benchmark capture's 14 functions). The symbols
    are read from the object's own table instead (_defined_symbols), and the bitcode is
    parsed only if a compile links the library in. An object that is not ELF, or a numba
    without these parts, is loaded numba's way."""
    engine: Any = getattr(codegen, "_engine", None)
    full = getattr(codegen, "unserialize_library", None)
    parts = ("enable_object_caching", "_set_compiled_object", "_finalize_final_module",
             "_get_module_for_linking")
    if getattr(codegen, "lean", False) or full is None \
            or not isinstance(getattr(engine, "_defined_symbols", None), set) \
            or not all(hasattr(getattr(codegen, "_library_class", None), a) for a in parts):
        return
    import llvmlite.binding as ll

    def unserialize(serialized: Any) -> Any:
        name, kind, data = serialized
        names = _defined_symbols(data[0]) if kind == "object" else None
        if names is None:
            return full(serialized)
        library = codegen.create_library(name)
        library.enable_object_caching()
        library._set_compiled_object(data[0])

        def for_linking() -> Any:
            if library._shared_module is None:
                library._shared_module = ll.parse_bitcode(data[1])
            return library._shared_module

        library._get_module_for_linking = for_linking
        library._finalize_final_module()
        engine._defined_symbols |= names
        return library

    codegen.unserialize_library = unserialize
    codegen.lean = True


def _defined_symbols(obj: bytes) -> set[str] | None:
    """The names of the global and weak symbols an ELF64 little-endian object file defines
    (what its linker could resolve), or None if it is not one."""
    import struct

    if obj[:4] != b"\x7fELF" or obj[4:6] != b"\x02\x01":
        return None
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    entsize, count = struct.unpack_from("<HH", obj, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * entsize) for i in range(count)]
    names = set()
    for _, kind, _, _, offset, size, link, _, _, _ in sections:
        if kind != 2:  # SHT_SYMTAB
            continue
        strings = obj[sections[link][4]:sections[link][4] + sections[link][5]]
        for at, info, _, section, _, _ in struct.iter_unpack("<IBBHQQ", obj[offset:offset + size]):
            if section and info >> 4 in (1, 2):  # defined; STB_GLOBAL or STB_WEAK
                names.add(strings[at:strings.index(b"\0", at)].decode())
    return names


@cache
def borrowing() -> Callable[[Any], Any]:
    """`borrowed(a)`: the array `a` for compiled code that does not count references to it.

    numba counts a reference to an array (an atomic operation on its memory's counter)
    each time a function takes it, unless it can prove the count unneeded, which it seldom
    can in the tracker's branching functions: 4.5 times a segment over the benchmark
    capture's first 30,000, a quarter of the tracker's time. A borrowed array has no
    counter to count on. It is for the length of one compiled call that neither keeps nor
    returns it, while its caller holds the array itself. Uncompiled, `borrowed` gives the
    array back."""
    if PLAIN:
        return lambda a: a
    _numba()
    from numba.core import types
    from numba.extending import intrinsic

    @intrinsic
    def borrowed(typingctx: Any, a: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            given = context.make_array(sig.args[0])(context, builder, args[0])
            view = context.make_array(sig.return_type)(context, builder)
            view.meminfo = context.get_constant_null(types.MemInfoPointer(types.voidptr))
            view.parent = context.get_constant_null(types.pyobject)
            view.nitems, view.itemsize, view.data = given.nitems, given.itemsize, given.data
            view.shape, view.strides = given.shape, given.strides
            return view._getvalue()
        return a(a), codegen

    return borrowed  # type: ignore[return-value]


@cache
def cache_dir() -> str | None:
    """The folder numba caches pcapstate's compiled code in, created if need be; None when
    no folder is writable (then nothing is cached)."""
    numba = _numba()
    config = _config()
    if config.CACHE_DIR:
        return str(config.CACHE_DIR)
    key = (f"{__version__}-py{sys.version_info.major}{sys.version_info.minor}"
           f"-numba{numba.__version__}-{_engine_digest()}")
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    user = f"pcapstate-{os.getuid()}" if hasattr(os, "getuid") else "pcapstate"
    for base in (os.path.join(home, "pcapstate"), os.path.join(tempfile.gettempdir(), user)):
        folder = os.path.join(base, key)
        if _own(base) and _own(folder):
            return folder
    return None


def _engine_digest() -> str:
    """A digest of the compiled code's sources. numba checks a cached function against its
    own file only: a function compiled with another module's function inside it (the
    tracker with the state machine) would be loaded stale after that module changed, in
    an editable install or a checkout. Keyed by the sources, the cache never is."""
    import hashlib
    from pathlib import Path

    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted([*root.glob("decode/*.py"), *root.glob("track/*.py"),
                        *root.glob("derive/*.py"), root / "vocab.py", root / "settings.py",
                        root / "jit.py"]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _own(folder: str) -> bool:
    """Whether `folder` is (now) a writable folder of this user's that no one else can
    write to: numba loads the code it finds there, so a folder others could fill is not
    used."""
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        st = os.stat(folder)
        if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o022):
            return False
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


@contextmanager
def _cache_in(folder: str) -> Iterator[None]:
    """numba's cache folder is chosen when a function is decorated: set it for that moment
    only, so that other code in the process keeps its own."""
    config = _config()
    saved = config.CACHE_DIR
    config.CACHE_DIR = folder
    try:
        yield
    finally:
        config.CACHE_DIR = saved


def is_cached() -> bool:
    """Whether compiled code of this version is in the cache already (the first run after
    installing compiles for a while: the command says so)."""
    folder = cache_dir()
    return folder is not None and any(f.endswith(".nbi") for _, _, files in os.walk(folder)
                                      for f in files)


#: What the first run after installing takes to compile the engine, for the message that
#: says so (measured on 2 cores: docs/benchmarks.md).
COMPILE_SECONDS = "about a minute"


#: A compile shorter than this goes unannounced (a function or two, after a change).
QUIET_SECONDS = 2.0


@contextmanager
def watch(note: Callable[[str], object]) -> Iterator[None]:
    """While inside, say (through `note`) when numba has been compiling for QUIET_SECONDS,
    and at the end how long it took: a first run otherwise looks like a hang."""
    if PLAIN:  # nothing compiles
        yield
        return
    from numba.core import event

    first = not is_cached()  # else an output not asked before needs a function or two

    class Timer(event.Listener):
        def __init__(self) -> None:
            self.depth = 0
            self.started = 0.0
            self.seconds = 0.0
            self.lock = threading.Lock()
            self.said = threading.Event()
            self.alarm: threading.Timer | None = None

        def say(self) -> None:
            with self.lock:
                busy = self.seconds + (time.perf_counter() - self.started if self.depth else 0)
                if busy < QUIET_SECONDS / 2:  # it compiled a little, then ran: wait again
                    self.alarm = None
                    return
                self.said.set()
            note("compiling the analysis engine (once after installing or upgrading "
                 f"pcapstate: {COMPILE_SECONDS})" if first else
                 "compiling the parts of the engine this run needs that earlier runs did not "
                 "(once: seconds)")

        def on_start(self, ev: event.Event) -> None:
            with self.lock:
                if self.alarm is None:
                    self.alarm = threading.Timer(QUIET_SECONDS, self.say)
                    self.alarm.daemon = True
                    self.alarm.start()
                if not self.depth:
                    self.started = time.perf_counter()
                self.depth += 1

        def on_end(self, ev: event.Event) -> None:
            with self.lock:
                self.depth -= 1
                if not self.depth:
                    self.seconds += time.perf_counter() - self.started

    timer = Timer()
    try:
        with event.install_listener("numba:compile", timer):
            yield
    finally:
        if timer.alarm is not None:
            timer.alarm.cancel()
    if timer.said.is_set():
        where = cache_dir()
        note(f"compiled in {timer.seconds:.0f} s"
             + (f"; cached in {where}" if where else "; not cached (no writable folder)"))
