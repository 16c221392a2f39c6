"""The shape of the package (issue 13): no import circle inside dtls_lite/, no module reaching
into another object's _private names, and what a continued wake imports at module level stays
free of the handshake (read from the source with ast); the blocking client never loads the
asyncio one (issue 16: ast, and an import on each runtime), nor the CoAP client (issue 17: an
application without CoAP pays nothing for dtls_lite/coap.py; ast, and an import on each
runtime)."""
import ast
import glob
import os
import subprocess

import pytest

from support import runtimes as rt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HANDSHAKE_CODE = {"dtls_lite.client_handshake", "dtls_lite.handshake", "dtls_lite.reassembly",
                  "dtls_lite.flight"}


def _modules():
    out = {}
    for path in glob.glob(os.path.join(ROOT, "dtls_lite", "**", "*.py"), recursive=True):
        rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        name = rel[:-9] if rel.endswith(".__init__") else rel
        with open(path) as f:
            out[name] = ast.parse(f.read(), path)
    return out


def _imports(tree, top_level_only):
    """dtls_lite modules a module imports (anywhere in it, or at module level only)."""
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for n in nodes:
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("dtls_lite"):
            if n.module == "dtls_lite":
                found.update("dtls_lite." + a.name for a in n.names)
            else:
                found.add(n.module)
        elif isinstance(n, ast.Import):
            found.update(a.name for a in n.names if a.name.startswith("dtls_lite."))
        elif not top_level_only and _is_need(n):  # a lazy import: compat.need("dtls_lite.x", ...)
            found.update(a.value for a in n.args if a.value.startswith("dtls_lite."))
    return found


def _is_need(n):
    return (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "need"
            and n.args and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in n.args))


# Lazily imported with a plain import statement (not compat.need): modules that are always
# loaded already when the function runs (so the import cannot fail part way), and the
# handshake, whose import in connect() drops every handshake module when it fails.
PLAIN_LAZY = {"dtls_lite.client_handshake", "dtls_lite.crypto", "dtls_lite.errors", "dtls_lite.record",
              "dtls_lite.compat", "dtls_lite.client"}


def test_lazy_imports_leave_nothing_half_made():
    # A MemoryError part way through an import left MicroPython 1.16 (the emulated ESP32) with a
    # half-made module, and every later import of it failed: dtls_lite's lazy imports go through
    # compat.need, which drops it (tests/portable/test_compat.py)
    bad = []
    for m, tree in _modules().items():
        if m.startswith("dtls_lite.desktop"):
            continue  # CPython tools
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for n in ast.walk(fn):
                if isinstance(n, (ast.Import, ast.ImportFrom)):
                    got = _imports(ast.Module(body=[n], type_ignores=[]), True) - PLAIN_LAZY
                    bad += ["%s:%d %s" % (m, n.lineno, x) for x in sorted(got)]
    assert not bad, bad
    needs = sum(1 for t in _modules().values() for n in ast.walk(t) if _is_need(n))
    assert needs >= 10, needs  # the check above saw them


def test_no_import_circle():
    mods = _modules()
    graph = dict((m, _imports(t, False) & set(mods)) for m, t in mods.items())
    state = {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", "import circle: " + " -> ".join(path + [m])
        state[m] = "open"
        for d in sorted(graph[m]):
            visit(d, path + [m])
        state[m] = "done"

    for m in sorted(graph):
        visit(m, [])


def test_no_private_names_of_other_objects():
    bad = []
    for m, tree in _modules().items():
        for n in ast.walk(tree):
            if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__"):
                if not (isinstance(n.value, ast.Name) and n.value.id in ("self", "cls")):
                    bad.append("%s:%d %s" % (m, n.lineno, ast.unparse(n)))
    assert not bad, bad


def _reached_by_a_wake(mods, top_level_only):
    """The modules a wake's imports reach (client, keeper, store, state and what they import:
    at module level only, or lazily too), and the import graph."""
    graph = dict((m, _imports(t, top_level_only) & set(mods)) for m, t in mods.items())
    seen = set()
    todo = ["dtls_lite.client", "dtls_lite.keeper", "dtls_lite.store", "dtls_lite.state"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    return seen, graph


def test_a_wake_imports_no_handshake_code_at_module_level():
    # What a continued wake loads (client, keeper, state, store, wake, connection and below)
    # must not pull the handshake in: connection.py imports it inside connect() only.
    seen = _reached_by_a_wake(_modules(), True)[0]
    assert not HANDSHAKE_CODE & seen, sorted(HANDSHAKE_CODE & seen)
    assert "dtls_lite.connection" in seen and "dtls_lite.record" in seen


def test_the_blocking_client_never_imports_the_async_one():
    # issue 16: AsyncDTLSClient builds on client.Driver; the blocking client, the one a device
    # runs, must not load dtls_lite/aio.py (nor asyncio) anywhere, not even lazily.
    mods = _modules()
    seen, graph = _reached_by_a_wake(mods, False)
    assert "dtls_lite.connection" in seen and "dtls_lite.client_handshake" in seen
    assert "dtls_lite.aio" not in seen
    assert [m for m in mods if "dtls_lite.aio" in graph[m]] == []  # no module of the package uses it
    for m in seen:
        for n in ast.walk(mods[m]):
            if isinstance(n, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in n.names] + [getattr(n, "module", None) or ""]
                assert not {"asyncio", "uasyncio"} & set(names), (m, names)


@pytest.mark.parametrize("runtime", ["cpython", "micropython", "micropython32"])
def test_importing_the_blocking_client_loads_no_asyncio(runtime):
    code = ("import sys\nimport dtls_lite.client, dtls_lite.store, dtls_lite.keeper\n"
            "print(sorted(m for m in sys.modules if 'asyncio' in m or m == 'dtls_lite.aio'))\n")
    p = subprocess.run([rt.executable(runtime), "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "[]", (p.stdout, p.stderr)


def _wake_closure(mods, graph):
    seen = set()
    todo = ["dtls_lite.client", "dtls_lite.keeper", "dtls_lite.store", "dtls_lite.state"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    return seen


def test_the_blocking_client_never_imports_coap():
    # issue 17: dtls_lite/coap.py builds on the client (reserve_counter, request); the client,
    # its stores and keeper never load it, not even lazily, and no other module of the device
    # package does either. (The desktop CLI imports it for coaps:// URIs: not shipped.)
    mods = _modules()
    graph = dict((m, _imports(t, False) & set(mods)) for m, t in mods.items())
    seen = _wake_closure(mods, graph)
    assert "dtls_lite.client_handshake" in seen and "dtls_lite.coap" not in seen
    users = sorted(m for m in mods if "dtls_lite.coap" in graph[m])
    assert [m for m in users if not m.startswith("dtls_lite.desktop")] == [], users


@pytest.mark.parametrize("runtime", ["cpython", "micropython", "micropython32"])
def test_importing_the_blocking_client_loads_no_coap(runtime):
    code = ("import sys\nimport dtls_lite.client, dtls_lite.store, dtls_lite.keeper, dtls_lite.state\n"
            "print(sorted(m for m in sys.modules if 'coap' in m))\n")
    p = subprocess.run([rt.executable(runtime), "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "[]", (p.stdout, p.stderr)


@pytest.mark.parametrize("runtime", ["cpython", "micropython", "micropython32"])
def test_importing_coap_loads_neither_asyncio_nor_the_handshake(runtime):
    # a blocking CoAP node: dtls_lite.coap's AsyncClient waits for aio only when used, and
    # a continued CoAP wake stays free of the handshake code
    code = ("import sys\nimport dtls_lite.coap, dtls_lite.client, dtls_lite.store\n"
            "print(sorted(m for m in sys.modules if 'asyncio' in m or m == 'dtls_lite.aio'"
            " or m in %r))\n" % sorted(HANDSHAKE_CODE))
    p = subprocess.run([rt.executable(runtime), "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "[]", (p.stdout, p.stderr)
