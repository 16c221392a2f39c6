# A module that loads halfmade.py at its top (test_compat.py), and can fail itself after that.
import halfflag
import halfmade

if halfflag.OUTER_FAIL:
    raise MemoryError("halfouter: told to fail part way")
OUTER = halfmade.AFTER
