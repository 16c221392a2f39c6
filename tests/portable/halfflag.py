# Tells halfmade.py and halfouter.py whether their import fails part way (test_compat.py).
FAIL = False
OUTER_FAIL = False
