# Runtime differences between MicroPython and CPython, in one place.
# Never imports anything heavy; never touches I/O.
try:
    from micropython import const  # noqa: F401
    MICROPYTHON = True
except ImportError:  # CPython
    MICROPYTHON = False

    def const(x):
        return x


class _Probe:
    pass


def _dict_is_live():
    p = _Probe()
    d = p.__dict__
    p.x = 1
    return "x" in d


_LIVE_DICT = _dict_is_live()  # CPython: __dict__ is the instance's own table


def attrs(obj):
    """A copy of obj's instance attributes (MicroPython's __dict__ is a copy already: one
    memcpy of the table)."""
    return obj.__dict__.copy() if _LIVE_DICT else obj.__dict__


def put_attrs(obj, saved, class_defaults):
    """Put obj's attributes back as attrs() saved them; class_defaults names the class
    attributes obj may have overridden since. Allocates nothing (it runs after a MemoryError):
    setattr only of names the instance had."""
    cls = type(obj)
    for k in class_defaults:
        if k not in saved:
            v = getattr(cls, k)
            if getattr(obj, k) is not v:
                setattr(obj, k, v)
    for k in saved:
        setattr(obj, k, saved[k])
