# One continued CoAP wake as tools/footprint.py measures it: footprint_wake.py's wake (the
# client with a FileStore, a new process per wake, the library from .mpy or frozen; this file
# compiled to .mpy too) whose request is a CoAP PUT through dtls_lite.coap, against libcoap's
# coap-server (its /example_data resource takes a PUT: 2.04 Changed).
#   footprint_coap_wake HOST PORT IDENTITY PSK_HEX STATE_FILE BIND_HOST BIND_PORT [measure]
# Prints "wake ACTION REPLIED" (REPLIED 1 for a 2.xx response) and, with "measure",
# "heap START IMPORTED CLIENT CONNECTED DONE" and "modules NAME,NAME,..." as footprint_wake does.
import sys

_a = sys.argv
_measure = len(_a) > 8 and _a[8] == "measure"
if _measure:
    import gc
    gc.collect()
    _heap = [gc.mem_alloc()]
from dtls_lite import coap  # noqa: E402
from dtls_lite.client import DTLSClient  # noqa: E402
from dtls_lite.store import FileStore  # noqa: E402

if _measure:
    gc.collect()
    _heap.append(gc.mem_alloc())
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
ok = 0
try:
    r = coap.Client(c).put("/example_data", b"t=21.5C rh=40%", timeout_ms=3000)
    ok = 1 if r.code >> 5 == 2 else 0
except coap.CoAPError:  # CoAPTimeout too: no response
    pass
c.suspend()
if _measure:
    gc.collect()
    _heap.append(gc.mem_alloc())
    print("heap", " ".join(str(h) for h in _heap))
    print("modules", _mods)
print("wake", c.wake_action, ok)
