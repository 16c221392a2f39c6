# Stores of saved-state blobs (dtls_lite/store.py): MemoryStore, FileStore with atomic replace,
# the FAT fallback, and a power cut at every step of a save (never zero valid copies).
# Runs under pytest and under the MicroPython unix port (plain asserts, no fixtures).
import errno
import os

from dtls_lite.store import FileStore, MemoryStore
from helpers import raises


class Crash(Exception):
    """Stands for a power cut: the process stops in the middle of a save."""


class FatStore(FileStore):
    """FileStore on a filesystem whose rename refuses an existing target (FAT)."""

    def _rename(self, src, dst):
        try:
            os.stat(dst)
        except OSError:
            FileStore._rename(self, src, dst)
            return
        raise OSError(errno.EEXIST)


def crashing(base):
    class CrashingStore(base):
        """Performs `steps` file operations of a save, then crashes (a write half done)."""

        def __init__(self, path, steps):
            base.__init__(self, path)
            self.steps = steps
            self.ops = []

        def _tick(self, op):
            self.ops.append(op)
            if len(self.ops) > self.steps:
                raise Crash(op)

        def _write(self, name, data):
            if len(self.ops) == self.steps:  # the crash hits in the middle of this write
                with open(name, "wb") as f:
                    f.write(data[:len(data) // 2])
            self._tick("write")
            base._write(self, name, data)

        def _rename(self, src, dst):
            self._tick("rename")
            base._rename(self, src, dst)

        def _remove(self, name):
            self._tick("remove")
            base._remove(self, name)

    return CrashingStore


def _hex(b):
    return "".join("%02x" % x for x in b)


def new_dir():
    try:
        os.mkdir("/tmp")  # an ESP32's FAT filesystem has none (on a host it exists)
    except OSError:
        pass
    d = "/tmp/dtls_lite_store_" + _hex(os.urandom(6))
    os.mkdir(d)
    return d


def remove_dir(d):
    for name in os.listdir(d):
        os.remove(d + "/" + name)
    os.rmdir(d)


def files(d):
    return sorted(os.listdir(d))


def test_memory_store():
    s = MemoryStore()
    assert s.load() is None
    s.save(bytearray(b"one"))
    assert s.load() == b"one" and type(s.load()) is bytes
    s.save(b"two")
    assert s.load() == b"two"
    s.clear()
    assert s.load() is None
    assert MemoryStore(b"x").load() == b"x"


def test_file_store_round_trip_and_clear():
    d = new_dir()
    try:
        for cls in (FileStore, FatStore):
            s = cls(d + "/state.bin")
            assert s.load() is None  # missing file: None, no exception
            s.save(b"first")
            assert s.load() == b"first"
            assert files(d) == ["state.bin"]  # no .tmp or .old left behind
            s.save(bytearray(b"second, longer"))
            assert s.load() == b"second, longer"
            assert cls(d + "/state.bin").load() == b"second, longer"  # a new process sees it
            assert files(d) == ["state.bin"]
            s.save(b"")
            assert s.load() == b""
            s.clear()
            assert s.load() is None and files(d) == []
            s.clear()  # idempotent
    finally:
        remove_dir(d)


def test_fat_store_really_refuses_rename_onto_existing():
    d = new_dir()
    try:
        open(d + "/a", "wb").close()
        open(d + "/b", "wb").close()
        e = raises(OSError, FatStore(d + "/x")._rename, d + "/a", d + "/b")
        assert e.args[0] == errno.EEXIST
    finally:
        remove_dir(d)


def test_load_falls_back_to_old_and_clear_removes_every_copy():
    d = new_dir()
    try:
        p = d + "/state.bin"
        for name, data in ((".old", b"previous"), (".tmp", b"half-writ")):
            with open(p + name, "wb") as f:
                f.write(data)
        s = FileStore(p)
        assert s.load() == b"previous"  # path missing: the .old copy; never the .tmp
        s.save(b"new")
        assert s.load() == b"new" and files(d) == ["state.bin"]
        for name in ("", ".old", ".tmp"):
            with open(p + name, "wb") as f:
                f.write(b"x")
        s.clear()
        assert files(d) == [] and s.load() is None
    finally:
        remove_dir(d)


def test_only_tmp_left_loads_nothing():
    d = new_dir()
    try:
        with open(d + "/state.bin.tmp", "wb") as f:
            f.write(b"maybe half written")
        assert FileStore(d + "/state.bin").load() is None
    finally:
        remove_dir(d)


def test_save_errors_propagate():
    d = new_dir()
    try:
        s = FileStore(d + "/no/such/dir/state.bin")
        raises(OSError, s.save, b"data")  # the caller must learn that nothing was saved
        assert s.load() is None
        os.mkdir(d + "/state.bin")  # a directory where the file should be
        s = FileStore(d + "/state.bin")
        raises(OSError, s.save, b"data")
        raises(OSError, s.load)  # EISDIR is not "missing": it must not pass for "no state"
        os.rmdir(d + "/state.bin")
        os.remove(d + "/state.bin.tmp")
    finally:
        remove_dir(d)


def test_crash_at_every_step_leaves_a_valid_copy():
    d = new_dir()
    p = d + "/state.bin"
    old, new = b"old state " * 10, b"new state " * 12
    try:
        for base in (FileStore, FatStore):
            for leftover in (None, ".old", ".tmp"):
                for had_old in (True, False):
                    # One line per case: on the emulated ESP32 a case's FAT writes can take
                    # minutes, and the tier's watch takes a long silence for a hung board.
                    print("crash case", base.__name__, leftover, had_old)
                    steps = 0
                    while True:  # one more completed file operation on each run
                        FileStore(p).clear()
                        if had_old:
                            base(p).save(old)
                        if leftover is not None:  # debris of an earlier crash
                            with open(p + leftover, "wb") as f:
                                f.write(old if leftover == ".old" else b"junk")
                        s = crashing(base)(p, steps)
                        try:
                            s.save(new)
                            done = True
                        except Crash:
                            done = False
                        got = FileStore(p).load()  # the next boot
                        where = (base.__name__, leftover, had_old, steps, s.ops)
                        if done:
                            assert got == new and files(d) == ["state.bin"], where
                            break
                        if had_old:
                            assert got in (old, new), where
                        else:
                            assert got in (None, new) or (leftover == ".old" and got == old), where
                        # and the next save after the crash works and cleans up
                        base(p).save(b"after")
                        assert FileStore(p).load() == b"after", where
                        assert files(d) == ["state.bin"], (where, files(d))
                        steps += 1
                        assert steps < 10, where
                    if base is FatStore and had_old:
                        assert "rename" in s.ops and len(s.ops) >= 3, s.ops  # the swap was exercised
        FileStore(p).clear()
    finally:
        remove_dir(d)
