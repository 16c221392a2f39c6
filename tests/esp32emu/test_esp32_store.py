"""The stores on the emulated ESP32: FileStore on the firmware's own FAT filesystem through
power cuts, and RTC memory with machine.reset_cause() across deep sleep and resets.

Power cut = SIGKILL of QEMU while the board saves in a loop: what QEMU had not yet written to
the flash file is lost, as a write in flight is on a chip losing power (QEMU's SPI flash is
written back per erase/program operation). Then a new QEMU boots the same flash.

Deep sleep: machine.deepsleep(ms) wakes through esp32emu's model of the RTC timer
(tools/esp32emu/qemu-esp32.patch; Espressif's QEMU has none): a digital-domain reset with
reset cause DEEPSLEEP_RESET that keeps the RTC memories. The firmware's own bootloader and
MicroPython then decide what survives, as on a chip. Not modelled: the other wake-up
sources, the sleep current, the RTC clock's drift.
"""
import os
import random
import time

import pytest

import esp32tier

SEED = 14
CUTS = 6
BOARD_FILES = os.path.join(esp32tier.TIER, "board")


@pytest.fixture
def board(deployed, tmp_path):
    b = esp32tier.board_from(deployed[0], tmp_path)
    try:
        yield b
    finally:
        b.stop()


def ship_board_module(board, tmp_path, name):
    out = esp32tier.compile_module(os.path.join(BOARD_FILES, name + ".py"), name + ".mpy",
                                   str(tmp_path / "build"), esp32tier.mpy_argv())
    esp32tier.ship(board, {name + ".mpy": out})


def saved(out):
    return [int(line.split()[1]) for line in out.replace("\r", "").splitlines()
            if line.startswith("SAVED ") and line.split()[1].isdigit()]


def test_fat_rename_onto_an_existing_file_replaces_it(board):
    # The platform fact behind FileStore's swap on MicroPython (dtls_lite/store.py): this
    # firmware formats FAT, not littlefs, and MicroPython's VfsFat does not refuse a rename
    # onto an existing file as FAT itself does: it removes the target, then renames (two
    # steps, so not atomic across a power cut).
    out = esp32tier.exec_ok(board, """
import os
for n, d in (('ra', b'a'), ('rb', b'b')):
    with open(n, 'wb') as f:
        f.write(d)
try:
    os.rename('ra', 'rb')
    print('RENAME', repr(('replaced', open('rb').read(), 'ra' in os.listdir())))
except OSError as e:
    print('RENAME', repr(('refused', e.args[0])))
""")
    assert esp32tier.values(out, "RENAME") == [("replaced", "a", False)], out


def test_filestore_keeps_a_whole_blob_through_power_cuts(board, tmp_path):
    ship_board_module(board, tmp_path, "cutsave")
    rng = random.Random(SEED)
    last = None  # index of the blob load() returned after the previous cut
    report = []
    for cut in range(CUTS):
        mark = board.mark()
        esp32tier.mpremote(board, "exec", "--no-follow",
                           "import cutsave\ncutsave.run('node.bin')")
        assert board.wait_for(lambda out: len(saved(out)) >= 1, 120, since=mark), \
            "no save completed within 120 s:\n" + board.output(mark)[-3000:]
        time.sleep(rng.uniform(0.0, 2.5))
        board.power_cut()
        done = saved(board.output(mark))
        board.power_on()
        assert board.wait_booted(timeout=esp32tier.BOOT_TIMEOUT), board.output()[-3000:]
        out = esp32tier.exec_ok(board, "import cutsave\ncutsave.check('node.bin')")
        (index, how, names), = esp32tier.values(out, "LOADED")
        report.append((cut, done[-1], index, how, names))
        # Never nothing, never a torn blob: the last one save() returned, or the one after
        # it (whose save was cut after its rename), never an older one.
        assert how == "whole", report
        assert index in (done[-1], done[-1] + 1), report
        assert last is None or index >= last, report
        last = index
    print("power cuts (cut, last SAVED printed, loaded, files):", report)


DEEPSLEEP_CODE = """
import machine, rtcstore
print('BEFORE', repr((machine.reset_cause(), rtcstore.RTCStore().load())))
rtcstore.RTCStore().save(b'state kept in RTC memory')
machine.deepsleep(%d)
"""

AFTER_CODE = """
import machine, rtcstore
print('AFTER', repr((machine.reset_cause(), machine.wake_reason(), rtcstore.RTCStore().load())))
"""


def after(board):
    (v,) = esp32tier.values(esp32tier.exec_ok(board, AFTER_CODE), "AFTER")
    return v


def save_rtc(board, data):
    esp32tier.exec_ok(board, "import rtcstore\nrtcstore.RTCStore().save(%r)" % (data,))


def test_rtc_memory_and_reset_cause_across_deep_sleep_and_resets(board):
    c = dict(esp32tier.values(esp32tier.exec_ok(board, """
import machine
print('C', repr([(n, getattr(machine, n)) for n in ('PWRON_RESET', 'HARD_RESET', 'WDT_RESET',
      'DEEPSLEEP_RESET', 'SOFT_RESET', 'TIMER_WAKE')]))
"""), "C")[0])
    facts = {}
    # Power-on: nothing framed in RTC memory.
    facts["power-on"] = after(board)
    assert facts["power-on"][0] == c["PWRON_RESET"] and facts["power-on"][2] is None, facts

    # Deep sleep: RTC memory kept, reset cause DEEPSLEEP_RESET, woken by the timer.
    mark = board.mark()
    t0 = time.monotonic()
    esp32tier.mpremote(board, "exec", "--no-follow", DEEPSLEEP_CODE % 1500)
    assert board.wait_for(lambda out: "rst:0x5 (DEEPSLEEP_RESET)" in out, 60, since=mark), \
        board.output(mark)[-3000:]
    slept = time.monotonic() - t0
    assert board.wait_booted(timeout=esp32tier.BOOT_TIMEOUT, since=mark)
    facts["deep sleep"] = after(board)
    assert facts["deep sleep"] == (c["DEEPSLEEP_RESET"], c["TIMER_WAKE"],
                                   b"state kept in RTC memory"), facts
    assert slept >= 1.4, slept  # the RTC timer counts QEMU's virtual time (the host's)

    # Soft reset (Ctrl-D at the REPL): not a chip reset, RTC memory stays; MicroPython reports
    # SOFT_RESET (the node then trusts no RTC state: only a deep-sleep wake does).
    esp32tier.exec_ok(board, "pass", resume=False)
    facts["soft reset"] = after(board)
    assert facts["soft reset"][0] == c["SOFT_RESET"], facts
    assert facts["soft reset"][2] == b"state kept in RTC memory", facts

    # machine.reset() (a software CPU reset): the bootloader loads RTC data again -> cleared.
    save_rtc(board, b"before machine.reset")
    mark = board.mark()
    esp32tier.mpremote(board, "exec", "--no-follow", "import machine\nmachine.reset()")
    assert board.wait_for(lambda out: "rst:0xc (SW_CPU_RESET)" in out, 60, since=mark)
    assert board.wait_booted(timeout=esp32tier.BOOT_TIMEOUT, since=mark)
    facts["machine.reset()"] = after(board)
    assert facts["machine.reset()"][0] == c["HARD_RESET"], facts
    assert facts["machine.reset()"][2] is None, facts

    # The reset pin (QEMU's system_reset): POWERON_RESET (esp32emu's patch: QEMU kept the
    # previous cause), RTC memory cleared by the bootloader.
    save_rtc(board, b"before the reset pin")
    mark = board.mark()
    board.reset()
    assert board.wait_booted(timeout=esp32tier.BOOT_TIMEOUT, since=mark)
    facts["reset pin"] = after(board)
    assert facts["reset pin"][0] == c["PWRON_RESET"] and facts["reset pin"][2] is None, facts

    # Power cycle (a new QEMU): RTC memory gone.
    save_rtc(board, b"before the power cycle")
    board.power_cut()
    mark = board.mark()
    board.power_on()
    assert board.wait_booted(timeout=esp32tier.BOOT_TIMEOUT, since=mark)
    facts["power cycle"] = after(board)
    assert facts["power cycle"][0] == c["PWRON_RESET"] and facts["power cycle"][2] is None, \
        facts
    print("reset cause, wake reason, RTCStore.load() after each:", facts)
