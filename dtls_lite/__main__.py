# `python -m dtls_lite ...`: the desktop CLI (dtls_lite/cli.py; CPython only).
import sys

if __name__ == "__main__":  # importing dtls_lite.__main__ (tests/test_mpy.py does) runs nothing
    from dtls_lite.cli import main

    sys.exit(main())
