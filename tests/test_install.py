"""Installing: numba's compiled code is cached outside the package (a leftover cache folder
once shadowed an editable install), and README's set-up commands work in a fresh venv in
either order."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pcapstate.jit import PLAIN_BYTES

ROOT = Path(__file__).resolve().parent.parent
WRAP = str(ROOT / "samples" / "crafted_wraparound.pcap")


def _run_cache_dir(env: dict[str, str]) -> str:
    code = "from pcapstate import jit; print(jit.cache_dir())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=True).stdout.strip()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    return {**env, **extra}


def _python(code: str, cwd: Path | None = None, **env: str) -> str:
    """What `python -c code` prints, compiled (NUMBA_DISABLE_JIT=0) with `env` added;
    it must succeed."""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=cwd, env=_env(NUMBA_DISABLE_JIT="0", **env), timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_the_cache_folder_is_per_user_and_keyed_by_version(tmp_path):
    import numba

    from pcapstate import __version__

    folder = _run_cache_dir(_env(XDG_CACHE_HOME=str(tmp_path)))
    assert Path(folder).parent == tmp_path / "pcapstate"
    assert __version__ in Path(folder).name and numba.__version__ in Path(folder).name
    assert Path(folder).is_dir()


def test_the_cache_folder_changes_with_the_engines_sources(tmp_path):
    """numba checks a cached function against its own file only: the tracker, compiled with
    the state machine inside it, would be loaded stale after zeek_view.py changed. The
    folder is keyed by the engine's sources, so a change there is a new folder."""
    import shutil

    env = _env(XDG_CACHE_HOME=str(tmp_path / "cache"))
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "pcapstate", copy / "pcapstate",
                    ignore=shutil.ignore_patterns("__pycache__"))

    def folder() -> str:
        code = "from pcapstate import jit; print(jit.cache_dir())"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**env, "PYTHONPATH": str(copy)}, cwd=copy,
                              check=True).stdout.strip()

    before = folder()
    view = copy / "pcapstate" / "track" / "zeek_view.py"
    view.write_text(view.read_text() + "\n# changed\n")
    after = folder()
    assert before != after and Path(before).parent == Path(after).parent
    render = copy / "pcapstate" / "render" / "text.py"  # not compiled: the same folder
    render.write_text(render.read_text() + "\n# changed\n")
    assert folder() == after


def test_an_unwritable_cache_home_falls_back_to_the_temporary_folder(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    (tmp_path / "t").mkdir()
    folder = _run_cache_dir(_env(XDG_CACHE_HOME=str(blocked), TMPDIR=str(tmp_path / "t")))
    assert folder.startswith(str(tmp_path / "t" / f"pcapstate-{os.getuid()}" / ""))


def test_a_cache_folder_others_can_write_to_is_not_used(tmp_path):
    """numba loads the code it finds in its cache: a folder others can write to is not
    used, the temporary folder's is."""
    (tmp_path / "pcapstate").mkdir()
    os.chmod(tmp_path / "pcapstate", 0o777)
    (tmp_path / "t").mkdir()
    folder = _run_cache_dir(_env(XDG_CACHE_HOME=str(tmp_path), TMPDIR=str(tmp_path / "t")))
    assert folder.startswith(str(tmp_path / "t" / f"pcapstate-{os.getuid()}" / ""))
    assert os.stat(folder).st_mode & 0o077 == 0


def test_a_small_capture_stays_uncompiled_with_every_output(tmp_path):
    """A small capture is analysed uncompiled whatever the outputs: the Parquet writer's
    import (records, texts) must not load the compiled engine first (it did: 2.8 s and 240
    MiB for a 28 kB sample). Nor does the Parquet writer have pyarrow import pandas (its
    own conversion of arrays does, to look for pandas' objects: 0.2 s)."""
    pytest.importorskip("pyarrow")
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "pcapstate", "analyze",
                        WRAP, "-q", "--parquet", str(tmp_path / "c.parquet"),
                        "--json", str(tmp_path / "c.json"),
                        "--zeek-conn", str(tmp_path / "conn.log")],
                       capture_output=True, timeout=300, env=_env())
    assert p.returncode == 0, p.stderr
    assert b"| numba" not in p.stderr and b"pcapstate.derive.records" in p.stderr
    assert not re.search(rb"\| +pandas", p.stderr)
    assert (tmp_path / "c.parquet").stat().st_size > 0


def test_a_compile_after_the_first_says_it_compiles_parts(tmp_path):
    """The first compile into an empty cache is the engine's ("once after installing");
    a later one (an output first asked for after runs that did not need it: 3 s for the
    records' writer after -q on the benchmark capture) says it compiles the parts earlier
    runs did not need."""
    (tmp_path / "onefunc.py").write_text(
        "from pcapstate.jit import njit\n\n\n"
        "@njit(cache=True)\ndef twice(x):\n    return x * 2\n\n\n"
        "@njit(cache=True)\ndef thrice(x):\n    return x * 3\n")
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(tmp_path)}

    def said(name: str) -> str:
        return _python("import onefunc; from pcapstate import jit; jit.QUIET_SECONDS = 0\n"
                       "with jit.watch(print):\n"
                       f"    onefunc.{name}(2)\n", **env).splitlines()[0]

    assert said("twice").startswith("compiling the analysis engine (once after installing")
    assert said("thrice").startswith("compiling the parts of the engine this run needs")


def test_a_dispatcher_is_made_when_first_called():
    """The engine's functions are numba's dispatchers only once called (jit._Deferred):
    importing them imports no numba; the first call makes the dispatcher, which then
    stands in the module."""
    code = ("import sys, numpy as np; from pcapstate.derive import texts; "
            "print('numba' in sys.modules, type(texts._cut).__name__); "
            "print(texts.json_texts(np.array([1, 22])).strings(), "
            "type(texts._cut).__module__.split('.')[0], type(texts._gather).__name__)")
    assert _python(code).splitlines() == ["False _Deferred", "['1', '22'] numba _Deferred"]
    # pickled and copied as numba's dispatcher is (Dask ships functions so)
    code = ("import copy, pickle, numpy as np; from pcapstate.derive import texts; "
            "f = texts.json_texts.__globals__['_gather']; "
            "print(type(pickle.loads(pickle.dumps(f))).__name__, type(copy.copy(f)).__name__)")
    assert _python(code).split() == ["CPUDispatcher", "CPUDispatcher"]


def test_dispatchers_made_at_once_in_threads_all_use_the_cache_folder(tmp_path):
    """Dispatchers are made in whichever thread first calls a function (the reader's, the
    writer's, the main one); numba's cache folder is a setting of the whole process, set
    while one is made (jit._cache_in), so they are made one at a time. Made 8 threads at a
    time, 20 times over, the threads switching as often as they can: every one's cache lies
    in cache_dir()."""
    code = """
import sys, threading
from pcapstate import jit
import pcapstate.derive.texts, pcapstate.derive.fold, pcapstate.track.connections
sys.setswitchinterval(1e-6)  # the threads taking turns as often as Python lets them
fns = list({id(v.fn): v.fn for m in jit.ENGINE if m in sys.modules
            for v in vars(sys.modules[m]).values() if isinstance(v, jit._Deferred)}.values())
wrong = 0
for _ in range(20):
    made = [jit._Deferred(fn, {"cache": True, "nogil": True}) for fn in fns]
    barrier = threading.Barrier(8)
    def work(k):
        barrier.wait()
        for d in made[k::8]:
            d.dispatcher()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    wrong += sum(not d.made._cache._cache_path.startswith(jit.cache_dir()) for d in made)
print(len(fns), wrong)
"""
    made, wrong = map(int, _python(code, cwd=tmp_path).split())
    assert made > 30 and wrong == 0


@pytest.mark.parametrize("numba_config", [False, True])
def test_numba_is_imported_without_scipy_and_yaml(tmp_path, numba_config):
    """numba's import looks at SciPy's version and reads a .numba_config.yaml with PyYAML:
    the engine's import leaves both out (jit._numba), PyYAML in when the working folder
    holds such a file; both stay importable."""
    installed = [m for m in ("scipy", "yaml") if importlib.util.find_spec(m) is not None]
    if not installed:
        pytest.skip("neither SciPy nor PyYAML installed")
    if numba_config:
        (tmp_path / ".numba_config.yaml").write_text("{}\n")
    code = ("import sys; import pcapstate.decode.frames; "
            "print(' '.join(sorted(m for m in ('scipy', 'yaml') if m in sys.modules))); "
            f"import {', '.join(installed)}")
    expected = ["yaml"] if numba_config and "yaml" in installed else []
    assert _python(code, cwd=tmp_path).split() == expected


@pytest.mark.slow
def test_first_run_compiles_into_the_user_cache_and_says_so(tmp_path):
    """With an empty cache the engine compiles, says so on stderr (a terminal or not), and
    leaves nothing beside the package's source."""
    import pcapstate

    package = Path(pcapstate.__file__).parent
    before = {p.name for p in (package / "__pycache__").glob("*.nb*")} \
        if (package / "__pycache__").is_dir() else set()
    env = _env(XDG_CACHE_HOME=str(tmp_path))
    # a small capture is analysed uncompiled: nothing compiles, numba is not even loaded
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "pcapstate", "analyze",
                        WRAP, "-q"], capture_output=True, timeout=900, env=env)
    assert p.returncode == 0, p.stderr
    assert b"compiling the analysis engine" not in p.stderr and b"numba" not in p.stderr
    assert not list(tmp_path.rglob("*.nbi"))
    # a larger one (the sample joined to itself with cat, past jit.PLAIN_BYTES) compiles
    data = Path(WRAP).read_bytes()
    big = tmp_path / "big.pcap"
    big.write_bytes(data * (PLAIN_BYTES // len(data) + 1))
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "pcapstate", "analyze",
                        str(big), "-q", "--jsonl", str(tmp_path / "compiled.jsonl")],
                       capture_output=True, timeout=900, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stderr.count(b"compiling the analysis engine") == 1
    # compiling refreshes numba's target context: every implementation numba has, imported
    refreshed = (b"numba.np.arraymath", b"numba.np.polynomial.polynomial_core")
    assert all(m in p.stderr for m in refreshed)
    assert b"compiled in " in p.stderr
    assert list((tmp_path / "pcapstate").rglob("*.nbi"))
    after = {p.name for p in (package / "__pycache__").glob("*.nb*")} \
        if (package / "__pycache__").is_dir() else set()
    assert after == before
    again = subprocess.run([sys.executable, "-X", "importtime", "-m", "pcapstate", "analyze",
                            str(big), "-q", "--jsonl", str(tmp_path / "loaded.jsonl")],
                           capture_output=True, timeout=300, env=env)
    assert again.returncode == 0 and b"compiling the analysis engine" not in again.stderr
    # loading the cached code does without them (jit._load_lean), to the same records;
    # nor does it import the array functions' module for their environments
    # (jit._lean_environments) or compile numba's runtime, kept from the first run
    # (jit._runtime)
    assert not any(m in again.stderr for m in refreshed)
    assert b"numba.np.arrayobj" in p.stderr and b"numba.np.arrayobj" not in again.stderr
    assert len(list((tmp_path / "pcapstate").rglob("nrt-numba*.pickle"))) == 1
    assert (tmp_path / "loaded.jsonl").read_bytes() == (tmp_path / "compiled.jsonl").read_bytes()
    # check, in CI, says so too (its workers compile where the parent cannot see)
    env = _env(XDG_CACHE_HOME=str(tmp_path / "other"))
    p = subprocess.run([sys.executable, "-m", "pcapstate", "check", WRAP],
                       capture_output=True, timeout=900, env=env)
    assert p.returncode == 0, p.stderr  # it has its golden beside it
    assert p.stderr.startswith(b"pcapstate: compiling the analysis engine first")


def test_the_symbols_read_from_an_object_file_are_those_nm_lists_as_defined(tmp_path):
    """A cached function's code is loaded without its bitcode (jit._unserialize_lean): the
    names its object file defines come from the file's symbol table, read as binutils' nm
    reads it (defined, global or weak)."""
    import llvmlite.binding as ll

    from pcapstate.jit import _defined_symbols

    ll.initialize_native_target()
    ll.initialize_native_asmprinter()
    module = ll.parse_assembly("""
        @table = global [2 x i64] [i64 1, i64 2]
        @kept = internal global i64 3
        declare i64 @elsewhere(i64)
        define internal i64 @hidden(i64 %x) { ret i64 %x }
        define weak i64 @weakly(i64 %x) { ret i64 %x }
        define i64 @visible(i64 %x) {
          %y = call i64 @elsewhere(i64 %x)
          %z = call i64 @hidden(i64 %y)
          %k = load i64, ptr @kept
          %s = add i64 %z, %k
          ret i64 %s
        }""")
    target = ll.Target.from_triple(ll.get_process_triple()).create_target_machine()
    obj = target.emit_object(module)
    (tmp_path / "a.o").write_bytes(obj)
    listed = subprocess.run(["nm", "--defined-only", "--extern-only", str(tmp_path / "a.o")],
                            capture_output=True, text=True, check=True).stdout
    expected = {line.split()[-1] for line in listed.splitlines()}
    assert expected == {"table", "weakly", "visible"}
    assert _defined_symbols(obj) == expected
    assert _defined_symbols(b"not an object file") is None


@pytest.mark.slow
def test_code_loaded_lean_is_still_linked_into_a_later_compile(tmp_path):
    """A function loaded from the cache without parsing its bitcode can still be compiled
    into a caller compiled later in the same process (the bitcode is parsed then); so can
    numba's runtime, whose code the first run kept (jit._runtime), into a caller that
    allocates an array."""
    (tmp_path / "twofuncs.py").write_text(
        "import numpy as np\n\nfrom pcapstate.jit import njit\n\n\n"
        "@njit(cache=True)\ndef inner(x):\n    return x * 3\n\n\n"
        "@njit(cache=True)\ndef outer(x):\n    a = np.full(x, 2)\n"
        "    return inner(x) + a.sum() - 2 * x + 1\n")
    env = _env(XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=str(tmp_path))

    def run(code: str) -> str:
        return subprocess.run([sys.executable, "-c", "import twofuncs as t; " + code],
                              capture_output=True, text=True, env=env, timeout=300,
                              check=True).stdout.split()

    assert run("print(t.inner(2), t.inner.stats.cache_misses[t.inner.signatures[0]])") \
        == ["6", "1"]
    assert run("print(t.inner(2), t.inner.stats.cache_hits[t.inner.signatures[0]], "
               "t.outer(2), t.outer.stats.cache_misses[t.outer.signatures[0]])") \
        == ["6", "1", "7", "1"]


def _readme_commands() -> list[str]:
    """README's two set-up commands, as README writes them."""
    text = (ROOT / "README.md").read_text()
    setup = text[text.index("## Set up"):text.index("\n## ", text.index("## Set up") + 1)]
    blocks = [b.split("```", 1)[0].strip() for b in setup.split("```sh\n")[1:]]
    assert len(blocks) == 2 and all(b.startswith("pip install ") for b in blocks), blocks
    return blocks


@pytest.mark.slow
@pytest.mark.parametrize("order", [(0, 1), (1, 0)], ids=["run-then-tests", "tests-then-run"])
def test_readme_set_up_commands_in_one_fresh_venv(tmp_path, order):
    """README's set-up commands in a new venv, one after the other, in either order: then
    pcapstate still runs (a numba cache left in site-packages once made every later call
    fail with "cannot import name '__version__'"). The test command runs a quick part of
    the suite (the whole of it is what is being run)."""
    import shutil

    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = _env(PATH=f"{venv / 'bin'}:{os.environ['PATH']}", VIRTUAL_ENV=str(venv),
               XDG_CACHE_HOME=str(tmp_path / "cache"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    commands = _readme_commands()
    commands[1] = commands[1].replace("python3 -m pytest -q",
                                      "python3 -m pytest -q tests/test_install.py")
    for i in order:
        p = subprocess.run(["bash", "-c", commands[i]], cwd=src, env=env, capture_output=True,
                           text=True, timeout=1800)
        assert p.returncode == 0, (commands[i], p.stdout[-3000:], p.stderr[-3000:])
    site = next((venv / "lib").glob("python3.*/site-packages"))
    for args in (["--version"], ["analyze", "samples/close_wait_leak.pcap"]):
        p = subprocess.run(["pcapstate", *args], cwd=src, env=env, capture_output=True,
                           text=True, timeout=900)
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert "127.0.0.1:5001" in p.stdout
    # whichever install came last, nothing of pcapstate's is left beside another one
    installed = (site / "pcapstate").exists()
    editable = order[-1] == 1
    assert installed != editable, sorted(p.name for p in site.iterdir())
    assert not list(site.rglob("*.nbi"))
