# Where saved-state blobs (dtls_lite/state.py) live between wakes.
#
# Store interface, two methods (plus clear()), so an ESP32 RTC-memory store can implement it:
#     load() -> bytes | None      the last blob saved, None when there is none
#     save(data: bytes)           replace it; raises (OSError) if that failed: the caller must
#                                 not use sequence numbers it was about to reserve
#     clear()                     forget it
# A store never looks inside the blob: checking it is state.load()'s job.
#
# FileStore writes path + ".tmp", then renames it onto path: atomic on POSIX and on littlefs
# (the ESP32 default). On FAT, renaming onto an existing file fails; then the old file moves to
# path + ".old" first, and load() falls back to ".old" while path is missing, so a power cut at
# any step leaves a valid copy (the new one or the one before it). ".tmp" is never loaded: it
# may be half-written. MicroPython's FAT (VfsFat) does not fail: it removes the target, then
# renames, and a power cut between the two would leave only ".tmp"; so on MicroPython the old
# copy always moves to ".old" first (one rename more on littlefs, which would not need it).
# Runs on CPython and MicroPython's VFS (os.rename/remove/stat only).
import errno
import os

_HAS_FSYNC = hasattr(os, "fsync") and hasattr(os, "open")
try:
    import micropython  # noqa: F401
    _SWAP_FIRST = True  # see the header: VfsFat's replacing rename is not atomic
except ImportError:
    _SWAP_FIRST = False


class MemoryStore:
    """A store in RAM: lost with the process (tests, or a node that never sleeps)."""

    def __init__(self, data=None):
        self._data = None if data is None else bytes(data)

    def load(self):
        return self._data

    def save(self, data):
        self._data = bytes(data)

    def clear(self):
        self._data = None


class FileStore:
    """A store in one file (plus ".tmp" and ".old" siblings while saving)."""

    def __init__(self, path):
        self.path = path
        self._tmp = path + ".tmp"
        self._old = path + ".old"

    def load(self):
        """Contents of path, else of path.old, else None. Errors other than a missing file
        (EIO, EACCES, ...) raise OSError."""
        for name in (self.path, self._old):
            try:
                with open(name, "rb") as f:
                    return f.read()
            except OSError as e:
                if e.args[0] != errno.ENOENT:
                    raise
        return None

    def save(self, data):
        data = bytes(data)
        self._write(self._tmp, data)
        if _SWAP_FIRST:
            self._swap_in()
        else:
            try:
                self._rename(self._tmp, self.path)
            except OSError as e:
                if e.args[0] != errno.EEXIST:
                    raise
                self._swap_in()  # FAT (and Windows): no rename onto an existing file
        # A leftover .old (from this swap or an earlier crash) is stale now that path is new.
        self._remove_if_there(self._old)

    def _swap_in(self):
        # Keep the previous copy as .old until the new one is in place.
        self._remove_if_there(self._old)
        try:
            if os.stat(self.path)[0] & 0x4000:  # a directory where the file belongs
                raise OSError(errno.EISDIR)
            self._rename(self.path, self._old)
        except OSError as e:
            if e.args[0] != errno.ENOENT:
                raise
        self._rename(self._tmp, self.path)

    def clear(self):
        for name in (self.path, self._tmp, self._old):
            self._remove_if_there(name)

    # The file operations, one method each (tests override them to simulate FAT and crashes).

    def _write(self, name, data):
        with open(name, "wb") as f:
            f.write(data)
            f.flush()
            if _HAS_FSYNC:  # CPython: to the disk, not only to the OS cache
                os.fsync(f.fileno())
        if not _HAS_FSYNC and hasattr(os, "sync"):  # MicroPython ports that have it (ESP32)
            os.sync()

    def _rename(self, src, dst):
        os.rename(src, dst)
        if _HAS_FSYNC:
            _sync_dir(src)

    def _remove(self, name):
        os.remove(name)

    def _remove_if_there(self, name):
        try:
            self._remove(name)
        except OSError as e:
            if e.args[0] != errno.ENOENT:
                raise


def _sync_dir(path):
    # POSIX: a rename is durable only once its directory is synced; a save() that returned
    # must survive a power cut, or an older reservation could come back (DESIGN.md 4).
    i = path.rfind("/")
    try:
        fd = os.open(path[:i] if i > 0 else ("/" if i == 0 else "."), os.O_RDONLY)
    except OSError:
        return  # e.g. Windows cannot open a directory
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
