"""The shape of the package (issue 13): no import circle inside dtls_lite/, no module reaching
into another object's _private names, and what a continued wake imports at module level stays
free of the handshake. Read from the source with ast (CPython)."""
import ast
import glob
import os

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
    return found


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


def test_a_wake_imports_no_handshake_code_at_module_level():
    # What a continued wake loads (client, keeper, state, store, wake, connection and below)
    # must not pull the handshake in: connection.py imports it inside connect() only.
    mods = _modules()
    graph = dict((m, _imports(t, True) & set(mods)) for m, t in mods.items())
    seen = set()
    todo = ["dtls_lite.client", "dtls_lite.keeper", "dtls_lite.store", "dtls_lite.state"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    assert not HANDSHAKE_CODE & seen, sorted(HANDSHAKE_CODE & seen)
    assert "dtls_lite.connection" in seen and "dtls_lite.record" in seen
