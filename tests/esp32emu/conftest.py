"""The emulated-ESP32 tier: MicroPython's own v1.16 ESP32 firmware under Espressif's QEMU
(tools/esp32emu.py; `make esp32emu` builds and prepares it).

It runs on its own, serially: `pytest tests/esp32emu` (or `make esp32emu`, which prepares the
emulator first). Each test boots one emulated board (a QEMU that keeps one host core busy), so
in a whole-suite run (`make test`) its tests are skipped, saying so, unless ESP32EMU_TIER=1.
When the emulator, its prepared flash or mpremote is missing, every test is skipped, naming
what is missing and how to get it.

Fixtures: `deployed` (session) is a flash image with dtls_lite and the ESP32 port deployed by
the real tools/deploy.py, main.py removed so that the board boots to its REPL; tests boot
copies of it (`esp32tier.board_from`), a few seconds each.
"""
import os

import pytest

import esp32tier

TIER = os.path.dirname(os.path.abspath(__file__))


def _selected_explicitly(config):
    for arg in config.args:
        path = os.path.abspath(str(arg).split("::")[0])
        if path == TIER or path.startswith(TIER + os.sep):
            return True
    return False


def pytest_collection_modifyitems(config, items):
    mine = [i for i in items if str(i.fspath).startswith(TIER + os.sep)]
    if not mine:
        return
    if not (_selected_explicitly(config) or os.environ.get("ESP32EMU_TIER") == "1"):
        skip = pytest.mark.skip(reason="the emulated-ESP32 tier runs on its own: "
                                "`pytest tests/esp32emu` or `make esp32emu` (ESP32EMU_TIER=1 "
                                "includes it here)")
        for item in mine:
            item.add_marker(skip)
        return
    why = esp32tier.unavailable()
    if why:
        skip = pytest.mark.skip(reason="no emulated ESP32: " + why.replace("\n", "; "))
        for item in mine:
            item.add_marker(skip)
        return
    for item in mine:  # one board at a time, also under pytest-xdist
        item.add_marker(pytest.mark.xdist_group("esp32emu"))


@pytest.fixture(scope="session")
def deployed(tmp_path_factory):
    """(flash image with the device package deployed, tools/deploy.py's output)."""
    d = tmp_path_factory.mktemp("esp32-deployed")
    board = esp32tier.board_from(esp32emu_prepared(), d, "deploying.bin")
    try:
        rc, out = esp32tier.deploy_tool(board, "--target", "esp32")
        assert rc == 0, "tools/deploy.py failed on the emulated ESP32:\n" + out
        esp32tier.exec_ok(board, "import os\nos.remove('main.py')")
        board.shutdown()  # QEMU quits: the flash file has everything
    finally:
        board.stop()
    image = os.path.join(str(d), "deployed.bin")
    os.replace(os.path.join(str(d), "deploying.bin"), image)
    return image, out


def esp32emu_prepared():
    import esp32emu
    return esp32emu.prepared_path()
