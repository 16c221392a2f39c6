# dtls_lite/compat.py's need(), the lazy imports of dtls_lite: an import that fails part way
# (a MemoryError on a small heap) leaves nothing half made, so the next call imports afresh.
# MicroPython 1.16 (the emulated ESP32) keeps such a module in sys.modules without the names
# after the failure: every later import of it then failed ("can't import name Keeper"). CPython
# and newer MicroPythons drop it themselves. Both runtimes.
import sys

import halfflag
from dtls_lite.compat import drop_modules, need
from helpers import raises


def _fail(inner, outer=False):
    halfflag.FAIL = inner
    halfflag.OUTER_FAIL = outer
    drop_modules(("halfmade", "halfouter"))


def test_a_failed_import_leaves_nothing_half_made():
    _fail(True)
    try:
        raises(MemoryError, need, "halfmade")
        assert "halfmade" not in sys.modules
        raises(MemoryError, need, "halfmade")  # tried again, not taken half made from sys.modules
    finally:
        _fail(False)
    m = need("halfmade")
    assert m.BEFORE == 1 and m.AFTER == 2
    assert need("halfmade") is m and sys.modules["halfmade"] is m  # loaded once


def test_what_its_import_was_loading_goes_too():
    _fail(True)  # halfouter imports halfmade, which fails
    try:
        raises(MemoryError, need, "halfouter", "halfmade")
        assert "halfouter" not in sys.modules and "halfmade" not in sys.modules
    finally:
        _fail(False)
    assert need("halfouter", "halfmade").OUTER == 2


def test_a_module_loaded_before_stays():
    # Dropping a module that was whole would make a second copy of it (and of its classes)
    _fail(False)
    m = need("halfmade")
    halfflag.OUTER_FAIL = True
    try:
        raises(MemoryError, need, "halfouter", "halfmade")
        assert "halfouter" not in sys.modules and sys.modules["halfmade"] is m
    finally:
        _fail(False)
    assert need("halfouter", "halfmade").OUTER == 2 and sys.modules["halfmade"] is not m


def test_other_errors_and_missing_modules():
    raises(ImportError, need, "dtls_lite.no_such_module")
    assert "dtls_lite.no_such_module" not in sys.modules
    assert need("dtls_lite.record") is sys.modules["dtls_lite.record"]


def test_drop_modules_forgets_the_package_attribute():
    import dtls_lite
    m = need("dtls_lite.alerts")
    assert getattr(dtls_lite, "alerts", m) is m
    drop_modules(("dtls_lite.alerts",))
    assert "dtls_lite.alerts" not in sys.modules and not hasattr(dtls_lite, "alerts")
    from dtls_lite import alerts  # imported afresh
    assert alerts.ALERT_NAMES[0] == "close_notify" and alerts is not m
