# One wake of a node as tools/footprint.py measures it: the client with a FileStore, a new
# process per wake (MicroPython, the library from .mpy or frozen; this file compiled to .mpy
# too, run as `micropython -X heapsize=N -m footprint_wake ...` with MICROPYPATH set).
#   footprint_wake HOST PORT IDENTITY PSK_HEX STATE_FILE BIND_HOST BIND_PORT [measure]
# connect() (the wake policy continues, resumes or does a full handshake; at most 4 s), one
# request and its reply (at most 2 s), suspend() (saved, no close_notify). Prints
# "wake ACTION REPLIED": ACTION the wake policy's final choice (continue, abbreviated, full),
# REPLIED 1 if the reply came.
# With "measure" it also prints the heap in use (gc.mem_alloc() after gc.collect()) at each
# step, and the dtls_lite modules loaded once connected:
#   "heap START IMPORTED CLIENT CONNECTED DONE" and "modules NAME,NAME,...".
# Without it nothing but the wake runs, so the smallest heap it needs is the wake's own.
import sys

_a = sys.argv
_measure = len(_a) > 8 and _a[8] == "measure"
if _measure:
    import gc
    gc.collect()
    _heap = [gc.mem_alloc()]
from dtls_lite.client import DTLSClient  # noqa: E402
from dtls_lite.store import FileStore  # noqa: E402

if _measure:
    gc.collect()
    _heap.append(gc.mem_alloc())
# A handshake whose datagrams keep meeting MemoryError (dropped, the connection rolled back)
# would wait for the server's retransmissions until the default deadline (minutes): 4 s is a
# few of pion's retransmissions, so a heap that is too small fails fast.
c = DTLSClient(_a[1], int(_a[2]), _a[3].encode(), bytes.fromhex(_a[4]), bind=(_a[6], int(_a[7])),
               store=FileStore(_a[5]), connect=False, handshake_timeout_ms=4000)
if _measure:
    gc.collect()
    _heap.append(gc.mem_alloc())
c.connect()
if _measure:
    gc.collect()
    _heap.append(gc.mem_alloc())
    _mods = ",".join(sorted(k for k in sys.modules if k.startswith("dtls_lite")))
reply = c.request(b"t=21.5C rh=40%", 2000)
c.suspend()
if _measure:
    gc.collect()
    _heap.append(gc.mem_alloc())
    print("heap", " ".join(str(h) for h in _heap))
    print("modules", _mods)
print("wake", c.wake_action, 0 if reply is None else 1)
