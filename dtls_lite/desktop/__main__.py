# `python -m dtls_lite.desktop ...`: the same as `python -m dtls_lite` and `dtls-lite`.
if __name__ == "__main__":  # importing it (tests/test_mpy.py does) runs nothing
    import sys

    from dtls_lite.desktop.cli import main

    sys.exit(main())
