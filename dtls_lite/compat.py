# Runtime differences between MicroPython and CPython, in one place.
# Never imports anything heavy; never touches I/O.
try:
    from micropython import const  # noqa: F401
    MICROPYTHON = True
except ImportError:  # CPython
    MICROPYTHON = False

    def const(x):
        return x
