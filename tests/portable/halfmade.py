# A module whose import fails part way when halfflag.FAIL says so (test_compat.py): what a
# MemoryError in the middle of an import does.
import halfflag

BEFORE = 1
if halfflag.FAIL:
    raise MemoryError("halfmade: told to fail part way")
AFTER = 2
