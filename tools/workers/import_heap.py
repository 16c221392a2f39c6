# Import heap worker (tools/footprint.py --heap): runs on MicroPython (from .mpy or frozen).
#   micropython tools/workers/import_heap.py PATH[:PATH...] MODULE ...
# With only PATH on sys.path ('.frozen' for the firmware's frozen modules), imports the modules
# one by one in the order given and prints "heap MODULE BYTES" (gc.mem_alloc() after
# gc.collect(), above the figure before the first import: running totals) or
# "missing MODULE ERROR" for one that does not import.
import gc
import sys

sys.path[:] = sys.argv[1].split(":")
gc.collect()
base = gc.mem_alloc()
for name in sys.argv[2:]:
    try:
        __import__(name)
    except ImportError as e:
        print("missing", name, e)
        continue
    gc.collect()
    print("heap", name, gc.mem_alloc() - base)
