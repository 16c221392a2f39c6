# `python -m dtls_lite ...`: the desktop command line (dtls_lite/desktop/, CPython only).
# Harmless on a device: importing dtls_lite.__main__ runs and imports nothing.
if __name__ == "__main__":
    import sys

    from dtls_lite.desktop.cli import main

    sys.exit(main())
