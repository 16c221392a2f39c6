"""One copy of each test helper (issue 13 item 8).

- support.wire (portable: CPython and both MicroPythons): DTLS records, handshake messages and
  hellos as the tests read them off the wire; written from the RFCs, apart from dtls_lite.
- support.runtimes (CPython): where the runtimes and tools are (micropython, micropython32,
  mpy-cross, mpy-cross32, mpremote), running a tools/ client under a runtime (run_tool), and
  running a portable test module under a MicroPython (run_portable, Run).
- the UDP relay (lossy link, NAT rebinding, CID routing, capture) is tools/netem.py, shared
  with the benchmarks and the demo (`import netem`: tests/conftest.py and support.runtimes put
  tools/ on sys.path).
- tests/peers.py: the real DTLS servers and the ports they get; tests/portable/fakeserver.py:
  the scripted server of the sans-I/O tests; tests/keylog_check.py: the nonce-safety checker.

This file stays importable on MicroPython (support.wire is imported by the portable tests).
"""
