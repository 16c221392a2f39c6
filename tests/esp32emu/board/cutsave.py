# On the emulated ESP32: FileStore saves in a loop until the power is cut (run), and what
# load() finds after the next boot (check). Blob i: 8 digits of i, then 392 bytes that depend
# on i, so a torn or mixed blob is told from a whole one.
from dtls_lite.store import FileStore


def blob(i):
    head = ("%08d" % i).encode()
    return head + bytes((i * 7 + k) & 0xFF for k in range(392))


def run(path, first=None):
    st = FileStore(path)
    if first is None:
        old = st.load()
        first = int(old[:8].decode()) + 1 if old else 0
    i = first
    while True:
        st.save(blob(i))
        print("SAVED", i)
        i += 1


def check(path):
    import os
    data = FileStore(path).load()
    names = sorted(n for n in os.listdir() if n.startswith(path))
    if data is None:
        print("LOADED", repr((None, "none", names)))
        return
    try:
        i = int(data[:8].decode())
    except (ValueError, UnicodeError):
        i = -1
    if len(data) == 400 and i >= 0 and data == blob(i):
        print("LOADED", repr((i, "whole", names)))
    else:
        print("LOADED", repr((None, "torn %d bytes" % len(data), names)))
