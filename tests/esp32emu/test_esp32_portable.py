"""The portable suite (tests/portable) on the emulated ESP32, from flash, as .mpy.

dtls_lite and the ESP32 port come from the real tools/deploy.py (the `deployed` image); the
test modules, their helpers (fakeserver, support) and a small runner (emurun.py, the output
protocol of tests/mp_runner.py) are compiled to .mpy for the board and copied next to them.
Each module runs after a soft reset, so each starts with the whole heap (about 106 KB free
after boot, on this firmware without PSRAM). One pytest test per portable test.

Tests that cannot fit that heap are listed in HEAP_BOUND with the reason; they must fail on
the board with a MemoryError (anything else fails the test, and so does a pass: then they fit
and leave the list). Tests of the unix port's own code (PLATFORM_BOUND) must fail on the board
because that code is not there. Modules whose import alone does not fit (IMPORT_HEAP_BOUND) must fail to import with a
MemoryError, and modules that need a newer MicroPython than the firmware's (VERSION_BOUND)
must fail each test (or refuse to import) saying so, the same way.
"""
import os

import pytest

import esp32tier
from support import runtimes

_SERVER_AND_CLIENT = ("a DTLS server in Python (fakeserver.FakeServer in a thread) and the client "
                      "with its handshake in one 111 KB heap: about 23 KB are left after the "
                      "module's import, the handshake's import alone takes 23.5 KB")
_CCM_64K = "a 64 KB CCM message (the 2-octet length field's limit) and its working copies"

# (module, test) -> why it cannot run in the ESP32's heap (seen: MemoryError on the board,
# the emulated MicroPython 1.16 firmware, 106 KB free after boot).
HEAP_BOUND = {
    ("test_adaptive", "test_estimate_is_saved_with_the_keys"): _SERVER_AND_CLIENT,
    ("test_adaptive", "test_lost_record_costs_a_retry_with_a_new_sequence_number"): _SERVER_AND_CLIENT,
    ("test_adaptive", "test_lost_reply_costs_a_retry_and_delivers_the_data_twice"): _SERVER_AND_CLIENT,
    ("test_adaptive", "test_no_timeout_still_waits_rto_then_resumes"): _SERVER_AND_CLIENT,
    ("test_adaptive", "test_restarted_server_costs_three_rto_and_a_handshake"): _SERVER_AND_CLIENT,
    ("test_adaptive", "test_silence_after_an_answer_this_wake_is_loss_not_a_forgotten_connection"):
        _SERVER_AND_CLIENT,
    ("test_adaptive", "test_slow_but_live_server_needs_no_handshake"): _SERVER_AND_CLIENT,
    ("test_coap_client", "test_over_asyncdtlsclient"): _SERVER_AND_CLIENT,
    ("test_coap_client", "test_over_dtlsclient_lost_request_retransmitted"): _SERVER_AND_CLIENT,
    ("test_coap_client", "test_over_dtlsclient_wakes_and_the_saved_counter"): _SERVER_AND_CLIENT,
    ("test_counter_client", "test_client_app_data_and_misuse"): _SERVER_AND_CLIENT,
    ("test_counter_client", "test_client_counter_across_wakes_restart_and_no_extra_store_write"):
        _SERVER_AND_CLIENT,
    ("test_crypto", "test_ccm_bad_arguments"): _CCM_64K + " (seals 65535 bytes)",
    ("test_crypto", "test_ccm_sp800_38c_example_4_long_aad"): _CCM_64K + " (a 65536-byte aad)",
}

# (module, test) -> (what its failure on the board must say, why): tests of the unix port's own
# code, which tools/deploy.py never ships to an ESP32 (strict: each must fail saying so).
_UNIX_BOARD = ("no module named 'unixboard'",
               "the unix port's board (ports/unix/unixboard.py) is not on an ESP32")
PLATFORM_BOUND = {
    ("test_ports_node", "test_file_rtc_reset_causes"): _UNIX_BOARD,
    ("test_ports_node", "test_unix_board_wifi_stand_in_and_sleep"): _UNIX_BOARD,
}

# module -> (the MicroPython version it needs, the text its tests fail with before it): on an
# older firmware every test of the module must fail saying so (a pass fails: unlist it).
VERSION_BOUND = {
    # "test_aio" refuses to import where asyncio streams lack readinto (1.16 releases); this
    # firmware (v1.16-237, a later build) has it, and the module is IMPORT_HEAP_BOUND instead
}

# module -> why its import alone does not fit (it must fail to import with a MemoryError).
IMPORT_HEAP_BOUND = {
    "test_aio": "its scripted server (test_adaptive's UdpServer: FakeServer in a thread) and the "
                "asyncio client do not fit beside it: MemoryError importing test_adaptive",
}


def _firmware_version():
    return tuple(int(x) for x in esp32tier.facts()["version"].split(".")[:2])


class VersionBound(Exception):
    """A test of a VERSION_BOUND module failed as it must on this firmware."""


class PlatformBound(Exception):
    """A PLATFORM_BOUND test failed as it must on an ESP32."""


def _version_bound(module):
    if module not in VERSION_BOUND:
        return False
    try:
        return _firmware_version() < VERSION_BOUND[module][0]
    except (OSError, KeyError, ValueError):  # not prepared: the tier is skipped anyway
        return False


def _failed_import(run, module, text):
    """The module's import failed on the board, its traceback saying text."""
    out = run.output
    i = out.find("FAIL <import %s>" % module)
    return i >= 0 and text in out[i:]


def _refused_at_import(run, module):
    """The module's import failed on the board saying it needs a newer MicroPython."""
    return _failed_import(run, module, VERSION_BOUND[module][1])


def _cases():
    out = []
    for m in runtimes.portable_modules():
        for t in runtimes.listed_tests(m):
            marks = []
            if (m, t) in HEAP_BOUND:
                marks.append(pytest.mark.xfail(raises=MemoryError, strict=True,
                                               reason=HEAP_BOUND[(m, t)]))
            if (m, t) in PLATFORM_BOUND:
                marks.append(pytest.mark.xfail(raises=PlatformBound, strict=True,
                                               reason=PLATFORM_BOUND[(m, t)][1]))
            if m in IMPORT_HEAP_BOUND:
                marks.append(pytest.mark.xfail(raises=MemoryError, strict=True, reason=IMPORT_HEAP_BOUND[m]))
            if _version_bound(m):
                marks.append(pytest.mark.xfail(raises=VersionBound, strict=True,
                                               reason="needs MicroPython %d.%d" % VERSION_BOUND[m][0]))
            out.append(pytest.param(m, t, id="%s.py::%s" % (m, t), marks=marks))
    return out


class _Suite:
    def __init__(self, board, tmp):
        self.board = board
        self.tmp = tmp
        self.runs = {}

    def run(self, module):
        if module not in self.runs:
            self.runs[module] = esp32tier.run_module(self.board, module)
        return self.runs[module]


@pytest.fixture(scope="module")
def suite(deployed, tmp_path_factory):
    d = tmp_path_factory.mktemp("esp32-portable")
    board = esp32tier.board_from(deployed[0], d)
    try:
        files = esp32tier.portable_files(str(d / "build"))
        esp32tier.ship(board, files)
        s = _Suite(board, d)
        yield s
        _write_summary(s)
    finally:
        board.stop()


def _write_summary(s):
    """build/esp32emu-portable.txt: seconds and heap per module (for README's figures)."""
    lines = []
    for m in sorted(s.runs):
        r = s.runs[m]
        start = r.heap.get("<start>", (0, 0))[0]
        imp = r.heap.get("<import>", (0, 0))[0]
        lines.append("%-22s %6.0f s  %s  heap free at start %d, after import %d"
                     % (m, r.seconds, r.summary, start, imp))
    out = os.path.join(esp32tier.ROOT, "build")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "esp32emu-portable.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


@pytest.mark.parametrize("module,test", _cases())
def test_portable_on_esp32(suite, module, test):
    run = suite.run(module)
    result = run.results.get(test)
    if result is None and module in IMPORT_HEAP_BOUND and _failed_import(run, module, "MemoryError"):
        raise MemoryError("%s: the module's import ran out of memory on the board" % test)
    if result is None and _version_bound(module) and _refused_at_import(run, module):
        raise VersionBound("%s on MicroPython %s: the module refuses to import: %s"
                           % (test, esp32tier.facts()["version"], VERSION_BOUND[module][1]))
    if result is None:
        pytest.fail("%s.py::%s did not report on the emulated ESP32 (%s). Output tail:\n%s"
                    % (module, test, run.error or "import failed or the board crashed?",
                       run.output[-4000:]), pytrace=False)
    passed, text = result
    if (module, test) in PLATFORM_BOUND:
        if not passed and any(PLATFORM_BOUND[(module, test)][0] in line for line in text):
            raise PlatformBound("%s on the ESP32: %s" % (test, PLATFORM_BOUND[(module, test)][1]))
        if passed:
            return  # strict xfail: a pass fails (unlist it)
    if _version_bound(module):
        if not passed and any(VERSION_BOUND[module][1] in line for line in text):
            raise VersionBound("%s on MicroPython %s: %s" % (test, esp32tier.facts()["version"],
                                                           VERSION_BOUND[module][1]))
        if passed:
            return  # strict xfail: a pass on this firmware is a failure (unlist it)
    if (module, test) in HEAP_BOUND:
        if not passed and any("MemoryError" in line for line in text):
            raise MemoryError("%s on the board: %s" % (test, text[-1] if text else ""))
        if passed:
            return  # strict xfail turns this into a failure: it fits now, unlist it
    if not passed:
        pytest.fail("%s.py::%s FAILED on the emulated ESP32:\n%s" % (module, test,
                                                                     "\n".join(text)),
                    pytrace=False)


@pytest.mark.parametrize("module", runtimes.portable_modules())
def test_module_ran_whole(suite, module):
    """Every listed test of the module reported, and nothing else did (no import failure)."""
    run = suite.run(module)
    listed = runtimes.listed_tests(module)
    if _version_bound(module) and _refused_at_import(run, module):
        return  # every test of it is a strict xfail saying so (test_portable_on_esp32)
    if module in IMPORT_HEAP_BOUND and _failed_import(run, module, "MemoryError"):
        return  # the same, for a module whose import does not fit
    assert run.summary is not None, "no summary line (crashed?):\n" + run.output[-3000:]
    assert sorted(run.results) == listed, run.output[-3000:]
