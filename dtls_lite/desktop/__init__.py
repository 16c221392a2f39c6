# dtls_lite.desktop: the `dtls-lite` command line, for CPython on a desktop. A subpackage, so a
# device never gets it: tools/deploy.py, manifest.py and package.json ship the top-level
# dtls_lite/*.py modules only. It still compiles with mpy-cross and imports under MicroPython
# (tests/test_mpy.py loads every module), though it is never meant to run there.
#
#   cli.py    the arguments and their checks, main() and its exit status
#   coapcli.py  the coaps:// form: the URI, one CoAP request (dtls_lite.coap), the response
#   run.py    one run: local address, DTLSClient, connect, lines in and replies out, suspend/close
#   trace.py  stderr notes, the -v trace, and the socket DTLSClient gets through socket_factory=
#   exits.py  exit codes and the exception -> (code, message) mapping
