# ESP32 sensor node: on every boot, one wake (ports/node.py), then machine.deepsleep().
# Stays a .py on the board (the firmware runs main.py only); the rest ships as .mpy.
#
# After a power-on or reset (not a deep-sleep wake) it waits BOOT_GRACE_MS first: a board in
# deep sleep does not answer mpremote, so press reset (EN) and connect (mpremote's Ctrl-C stops
# main.py) within that time to reach the REPL. Ctrl-C during a wake stops it too. Anything
# else that goes wrong, even a failed import, ends in deep sleep: a battery node never stays
# awake.
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
    except Exception as e:  # the last line of defence before the battery drains
        import sys
        sys.print_exception(e)
        ms = _setting("FAIL_SLEEP_MS", None) or _setting("SLEEP_MS", _FALLBACK_SLEEP_MS)
        machine.deepsleep(ms)


if __name__ == "__main__":  # the firmware runs main.py as __main__; an import only defines
    start()
