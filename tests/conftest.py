"""pytest setup: import paths, the real-DTLS-server fixtures (see tests/peers.py) and the
pytest-xdist groups.

Fixtures `openssl_server`, `gnutls_server`, `mbedtls_server`, `pion_server` start a fresh server for each test
(the servers serve one association at a time and get stuck on a client that vanishes without
close_notify) and yield a `peers.Server` (.host, .port, .name, .psk_hex, .identity, .output()).
Pass keyword arguments with indirect parametrization:

    @pytest.mark.parametrize("gnutls_server", [{"cookie": False}], indirect=True)
    def test_no_cookie(gnutls_server): ...

or use the context managers directly: `with peers.mbedtls_server(cid=False) as srv: ...`.
A missing server binary FAILS the test (message names `make peers`); it never skips.

Import paths: the repo root (dtls_lite), tests/portable (fakeserver and the portable tests),
tests (peers, keylog_check, the support package), and tools/ last (netem, the relay shared with
the benchmarks; deploy, emuboard, footprint).

Parallel runs (`make test`: pytest -n 2 --dist loadgroup). Every test process takes its server
ports from its own block (peers.free_udp_port), so workers never collide. Tests that share a
costly per-process result are one xdist_group, so it is made once, on one worker: the portable
suite per module and runtime (support.runtimes.portable_cases), the .mpy compile of
tests/test_mpy.py, the frozen firmware of tests/test_frozen.py.
"""
import os
import sys

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
for _p in (ROOT, os.path.join(TESTS, "portable"), TESTS):
    if _p not in sys.path:
        sys.path.insert(0, _p)
if os.path.join(ROOT, "tools") not in sys.path:
    sys.path.append(os.path.join(ROOT, "tools"))

import peers  # noqa: E402


def _server_fixture(request, factory, kwargs=None):
    if kwargs is None:
        kwargs = dict(getattr(request, "param", None) or {})
    try:
        cm = factory(**kwargs)
        srv = cm.__enter__()
    except peers.PeerUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield srv
    finally:
        cm.__exit__(None, None, None)


@pytest.fixture
def openssl_server(request):
    """OpenSSL s_server, echo (see peers.openssl_server for kwargs and behaviour)."""
    yield from _server_fixture(request, peers.openssl_server)


@pytest.fixture
def gnutls_server(request):
    """gnutls-serv --echo (see peers.gnutls_server for kwargs and behaviour)."""
    yield from _server_fixture(request, peers.gnutls_server)


@pytest.fixture
def mbedtls_server(request):
    """Mbed TLS ssl_server2, fixed HTTP-like answer (see peers.mbedtls_server)."""
    yield from _server_fixture(request, peers.mbedtls_server)


@pytest.fixture
def pion_server(request):
    """pion/dtls echo server (see peers.pion_server)."""
    yield from _server_fixture(request, peers.pion_server)


@pytest.fixture(params=sorted(peers.SERVERS))
def dtls_server(request):
    """Each of the real servers in turn, with default settings."""
    yield from _server_fixture(request, peers.SERVERS[request.param], {})


# The longest tests (20-50 s each with -n 2, mostly waiting for timers) run first, so that no
# worker is left with one of them at the end while the other is idle.
SLOW_FIRST = ("test_lossy.py::test_handshake_and_echo_through_lossy_link", "test_nonce_safety.py",
              "test_lossy_wakes.py", "test_emulated_board.py", "test_memory_exhaustion.py",
              "test_wake_scenarios.py")


def _rank(item):
    for i, key in enumerate(SLOW_FIRST):
        if key in item.nodeid:
            return i
    return len(SLOW_FIRST)


def pytest_collection_modifyitems(config, items):
    # Everything that uses a real server is an interop test (`-m "not interop"` to skip them).
    names = {"openssl_server", "gnutls_server", "mbedtls_server", "pion_server", "dtls_server"}
    for item in items:
        if names.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.interop)
    items.sort(key=_rank)  # stable: the same order on every xdist worker
