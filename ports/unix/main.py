# The ESP32 sensor node on the MicroPython unix port: one wake per process (ports/node.py),
# one JSON line report on stdout, then "deep sleep" (ports/unix/unixboard.py): the RTC file
# records it, the process sleeps SLEEP_MS and exits with status 0.
#
# On an emulated board (tools/emuboard.py, files deployed by tools/deploy.py --target unix):
#     main.py runs at every boot with config.py beside it, like on the ESP32.
# From a checkout (no deploy), one wake:
#     micropython ports/unix/main.py --config my_config.py --once
#   --once: do not sleep before exiting (the caller decides when the next wake is)
#   --aio: the asyncio node (ports/anode.py: a sensor task beside the exchange)
#   --coap: the CoAP node (PROTOCOL = "coap" in ports/node.py: the reading POSTed to
#           COAP_PATH; with --aio the asyncio node does the same)
import sys


def _repo_paths():
    # Running from a checkout: node.py is in ports/, rtcstore.py in ports/esp32/, dtls_lite
    # in the repo root. On a deployed board they all sit beside main.py.
    here = sys.path[0]
    ports = here.rsplit("/", 1)[0] if "/" in here else ".."
    for p in (ports, ports + "/esp32", ports.rsplit("/", 1)[0] if "/" in ports else ".."):
        if p not in sys.path:
            sys.path.append(p)


def start(argv):
    once = "--once" in argv
    try:
        import node  # noqa: F401
    except ImportError:
        _repo_paths()
    import node
    from unixboard import UnixBoard, config_from_file
    if "--config" in argv:
        cfg = config_from_file(argv[argv.index("--config") + 1])
    else:
        import config as cfg
    if "--coap" in argv:
        cfg = _With(cfg, PROTOCOL="coap")
    if "--aio" in argv:
        import anode
        anode.run(cfg, UnixBoard(cfg, sleep=not once))
    else:
        node.run(cfg, UnixBoard(cfg, sleep=not once))


class _With:
    """cfg with some settings replaced."""

    def __init__(self, cfg, **values):
        self._cfg = cfg
        self._values = values

    def __getattr__(self, name):
        if name in self._values:
            return self._values[name]
        return getattr(self._cfg, name)


if __name__ == "__main__":
    start(sys.argv[1:])
