# Runtime differences between MicroPython and CPython, in one place.
# Never imports anything heavy; never touches I/O.
import sys

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


def need(name, *also):
    """Module `name`, imported on first use (the lazy imports of dtls_lite). MicroPython keeps a
    module whose import failed part way (a MemoryError on a small heap) in sys.modules, half
    made: every later import of it would fail ("can't import name"). On a failure drop it and
    those of `also` (what its import loads first) that this call was loading, so the next call
    imports them afresh."""
    m = sys.modules.get(name)
    if m is not None:
        return m
    new = [n for n in (name,) + also if n not in sys.modules]
    try:
        __import__(name)
    except BaseException:
        drop_modules(new)
        raise
    return sys.modules[name]


def drop_modules(names):
    """Forget the modules `names` (and the package's attribute for each): the next import of
    one loads it again."""
    for name in names:
        if name in sys.modules:
            del sys.modules[name]
        i = name.rfind(".")
        pkg = sys.modules.get(name[:i]) if i > 0 else None
        if pkg is not None and hasattr(pkg, name[i + 1:]):
            delattr(pkg, name[i + 1:])  # its package's own reference to it
