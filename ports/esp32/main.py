# ESP32 sensor node: on every boot, one wake (ports/node.py), then machine.deepsleep().
# Stays a .py on the board (the firmware runs main.py only); the rest ships as .mpy.
#
# After a power-on or reset (not a deep-sleep wake) it waits BOOT_GRACE_MS first, so that
# `mpremote` (whose Ctrl-C arrives right after it resets the board) gets the REPL before the
# node goes to sleep. Ctrl-C during a wake also stops it. Anything else that goes wrong,
# even a failed import, ends in deep sleep: a node on a battery never stays awake.
import machine
import time

_FALLBACK_SLEEP_MS = 60000  # when even config.py cannot be read


def _setting(name, default):
    try:
        import config
        return getattr(config, name, default)
    except Exception:
        return default


def _main():
    if machine.reset_cause() != machine.DEEPSLEEP_RESET:
        grace = _setting("BOOT_GRACE_MS", 3000)
        if grace:
            print("node: reset; Ctrl-C within %d ms for the REPL" % grace)
            time.sleep_ms(grace)
    import config
    import node
    from esp32board import Esp32Board
    node.run(config, Esp32Board())


def start():
    try:
        _main()
    except KeyboardInterrupt:
        print("node: interrupted, staying awake (REPL)")
    except BaseException as e:  # noqa: B036 - the last line of defence before the battery drains
        import sys
        sys.print_exception(e)
        machine.deepsleep(_setting("FAIL_SLEEP_MS", None) or _setting("SLEEP_MS", _FALLBACK_SLEEP_MS))


if __name__ == "__main__":  # the firmware runs main.py as __main__; an import only defines
    start()
