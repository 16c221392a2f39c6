# Freeze dtls-lite into MicroPython firmware (the format of MicroPython's tools/manifestfile.py):
# frozen bytecode runs from flash, so importing it costs almost no heap.
#
# A board's firmware has its own manifest; write one that includes both, e.g. my_manifest.py:
#     include("$(PORT_DIR)/boards/manifest.py")
#     include("/path/to/dtls-lite/manifest.py", node="esp32")
# and build with it:
#     make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/my_manifest.py
#
# Options (keyword arguments of include()):
#   node=None     the library only (the top-level dtls_lite/*.py; not dtls_lite/desktop/)
#   node="esp32"  also ports/node.py and the ESP32 port's modules; main.py and config.py stay
#                 on the filesystem (the firmware runs main.py from there; tools/deploy.py
#                 --target esp32 copies them)
#   node="unix"   the same for the MicroPython unix port (tests, footprint measurements)
# The module list matches what tools/deploy.py ships as .mpy (tests/test_ports.py checks it).
import os

options.defaults(node=None)  # noqa: F821 - the manifest API is given by manifestfile.py

metadata(  # noqa: F821
    description="PSK-only DTLS 1.2 client that keeps its session across deep sleep",
    version="0.2.0",
)

# The device package: the top-level dtls_lite/*.py modules. The desktop command line is the
# subpackage dtls_lite/desktop/, so it is never frozen (package() without files= would take it).
package(  # noqa: F821
    "dtls_lite",
    files=sorted(f for f in os.listdir("dtls_lite")
                 if f.endswith(".py") and os.path.isfile(os.path.join("dtls_lite", f))),
)

_NODE_MODULES = {
    "esp32": (("esp32board.py", "ports/esp32"), ("netaddr.py", "ports/esp32"),
              ("rtcstore.py", "ports/esp32")),
    "unix": (("unixboard.py", "ports/unix"), ("rtcstore.py", "ports/esp32")),
}
if options.node:  # noqa: F821
    if options.node not in _NODE_MODULES:  # noqa: F821
        raise ValueError("node= must be one of %s" % ", ".join(sorted(_NODE_MODULES)))
    module("node.py", base_path="ports")  # noqa: F821
    for _name, _base in _NODE_MODULES[options.node]:  # noqa: F821
        module(_name, base_path=_base)  # noqa: F821
