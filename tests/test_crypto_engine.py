"""Encryption, homomorphic sums and decryption with real Paillier keys.

Unit tests use the session's 1024-bit key; one test runs the full secure sum on a real
2048-bit key; ``phe`` serves as an independent reference implementation of Paillier.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from fractions import Fraction

import gmpy2
import numpy as np
import phe
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedtab.crypto import (
    EncodingSpec,
    EncryptedVector,
    Encryptor,
    add_encrypted,
    num_ciphertexts,
    quantisation_bound,
    slots_per_plaintext,
)
from fedtab.crypto.crt import CrtEncryptCore
from fedtab.crypto.decryptor import Decryptor
from fedtab.crypto.encoding import encode_values, max_encoded, pack_encoded, slot_bits
from fedtab.crypto.keys import PrivateKey, generate_keypair
from fedtab.crypto.paillier import FixedBaseTable, djn_base, djn_exponent_bits
from fedtab.errors import CiphertextError, ConfigError, EncodingError, KeyMaterialError

SPEC = EncodingSpec(frac_bits=24, clip=2.0**20, max_summands=16)


@pytest.fixture(scope="module")
def encryptor(small_private_key: PrivateKey) -> Iterator[Encryptor]:
    with Encryptor(small_private_key.public) as enc:
        yield enc


@pytest.fixture(scope="module")
def crt_encryptor(small_private_key: PrivateKey) -> Iterator[Encryptor]:
    with Encryptor(small_private_key.public, private_key=small_private_key, method="crt") as enc:
        yield enc


@pytest.fixture(scope="module")
def decryptor(small_private_key: PrivateKey) -> Iterator[Decryptor]:
    with Decryptor(small_private_key) as dec:
        yield dec


def _assert_within_bound(
    decoded: np.ndarray, vectors: list[np.ndarray], spec: EncodingSpec
) -> None:
    """|decoded - exact sum| <= k * quantisation_bound + half an ulp of the decoded value."""
    bound = Fraction(len(vectors)) * Fraction(quantisation_bound(spec))
    for i, got in enumerate(decoded.tolist()):
        exact = sum(Fraction(float(v[i])) for v in vectors)
        slack = Fraction(float(np.spacing(abs(got)))) / 2
        assert abs(Fraction(got) - exact) <= bound + slack, (i, got, float(exact))


@st.composite
def _parties(draw: st.DrawFn) -> tuple[EncodingSpec, list[np.ndarray]]:
    parties = draw(st.integers(2, 16))
    spec = EncodingSpec(
        frac_bits=draw(st.integers(0, 40)),
        clip=draw(st.sampled_from([1.0, 0.3, 1000.5, 2.0**20])),
        max_summands=draw(st.integers(parties, 64)),
    )
    length = draw(st.integers(1, 70))  # a 1024-bit key holds ~12-20 slots per ciphertext
    edge = st.sampled_from([0.0, -0.0, spec.clip, -spec.clip])
    elements = st.one_of(st.floats(-spec.clip, spec.clip), edge)
    vectors = [draw(arrays(np.float64, length, elements=elements)) for _ in range(parties)]
    return spec, vectors


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_parties(), method=st.sampled_from(["djn", "crt"]))
def test_decrypted_sum_equals_plain_sum_within_bound(
    case: tuple[EncodingSpec, list[np.ndarray]],
    method: str,
    encryptor: Encryptor,
    crt_encryptor: Encryptor,
    decryptor: Decryptor,
) -> None:
    spec, vectors = case
    enc = encryptor if method == "djn" else crt_encryptor
    encrypted = [enc.encrypt(v, spec) for v in vectors]
    total = add_encrypted(encrypted, enc.public_key)
    assert total.summands == len(vectors) and total.length == len(vectors[0])
    assert len(total.ciphertexts) == num_ciphertexts(total.length, spec, enc.public_key)
    decoded = decryptor.decrypt(total)
    assert decoded.dtype == np.float64 and decoded.shape == (len(vectors[0]),)
    _assert_within_bound(decoded, vectors, spec)


def test_sums_of_sums_and_zero_vectors(encryptor: Encryptor, decryptor: Decryptor) -> None:
    rng = np.random.default_rng(1)
    vectors = [rng.uniform(-SPEC.clip, SPEC.clip, 97) for _ in range(6)] + [np.zeros(97)]
    parts = [encryptor.encrypt(v, SPEC) for v in vectors]
    total = add_encrypted(
        [add_encrypted(parts[:3], encryptor.public_key), *parts[3:]], encryptor.public_key
    )
    assert total.summands == 7
    _assert_within_bound(decryptor.decrypt(total), vectors, SPEC)


def test_ciphertexts_are_phe_compatible(
    small_private_key: PrivateKey,
    encryptor: Encryptor,
    crt_encryptor: Encryptor,
    decryptor: Decryptor,
) -> None:
    """An independent Paillier implementation decrypts our ciphertexts to our packed plaintexts."""
    pub = phe.PaillierPublicKey(small_private_key.public.n)
    priv = phe.PaillierPrivateKey(pub, small_private_key.p, small_private_key.q)
    values = np.linspace(-SPEC.clip, SPEC.clip, 45)
    slots = slots_per_plaintext(SPEC, small_private_key.public)
    plaintexts = pack_encoded(encode_values(values, SPEC), SPEC, slots)
    for enc in (encryptor, crt_encryptor):
        vector = enc.encrypt(values, SPEC)
        assert [priv.raw_decrypt(c) for c in vector.ciphertexts] == plaintexts
    foreign = [pub.raw_encrypt(m) for m in plaintexts]
    assert decryptor.decrypt_plaintexts(foreign) == plaintexts


def test_encryption_is_fresh_and_rng_reproducible(
    small_private_key: PrivateKey, encryptor: Encryptor
) -> None:
    values = np.arange(30, dtype=np.float64)
    a, b = encryptor.encrypt(values, SPEC), encryptor.encrypt(values, SPEC)
    assert set(a.ciphertexts).isdisjoint(b.ciphertexts)
    for method in ("djn", "crt"):
        runs = []
        for _ in range(2):
            with Encryptor(
                small_private_key.public,
                private_key=small_private_key,
                method=method,
                rng=np.random.default_rng(7),
            ) as enc:
                runs.append(enc.encrypt(values, SPEC).ciphertexts)
        assert runs[0] == runs[1]


def test_encrypt_rejects_bad_values_naming_the_position(encryptor: Encryptor) -> None:
    values = np.zeros(50)
    values[33] = np.nan
    with pytest.raises(EncodingError, match="position 33"):
        encryptor.encrypt(values, SPEC)
    values[33] = 2.0**21
    with pytest.raises(EncodingError, match="position 33"):
        encryptor.encrypt(values, SPEC)


def test_encryptor_configuration_errors(small_private_key: PrivateKey) -> None:
    public = small_private_key.public
    with pytest.raises(ConfigError):
        Encryptor(public, method="rsa")
    with pytest.raises(ConfigError):
        Encryptor(public, workers=0)
    with pytest.raises(KeyMaterialError):
        Encryptor(public, method="crt")
    other = generate_keypair(512, allow_small_for_tests=True)
    with pytest.raises(KeyMaterialError):
        Encryptor(public, private_key=other, method="crt")
    enc = Encryptor(public)
    enc.close()
    with pytest.raises(ConfigError, match="closed"):
        enc.encrypt(np.zeros(3), SPEC)


def test_overflow_is_detected_after_a_real_sum(
    small_private_key: PrivateKey, encryptor: Encryptor, decryptor: Decryptor
) -> None:
    spec = EncodingSpec(frac_bits=10, clip=1.0, max_summands=3)
    parts = [encryptor.encrypt(np.array([1.0, -0.5, 1.0]), spec) for _ in range(4)]
    with pytest.raises(CiphertextError, match="max_summands"):
        add_encrypted(parts, small_private_key.public)
    # A party that bypasses add_encrypted and multiplies in an undeclared summand:
    three = add_encrypted(parts[:3], small_private_key.public)
    n2 = small_private_key.public.nsquare
    smuggled = tuple(
        a * b % n2 for a, b in zip(parts[0].ciphertexts, parts[3].ciphertexts, strict=True)
    )
    hidden = replace(parts[0], ciphertexts=smuggled)  # claims 1 summand, holds 2
    with pytest.raises(EncodingError, match="overflow"):
        decryptor.decrypt(hidden)
    assert decryptor.decrypt(three)[0] == 3.0


def test_mismatched_vectors_are_rejected(
    small_private_key: PrivateKey, encryptor: Encryptor
) -> None:
    public = small_private_key.public
    a = encryptor.encrypt(np.zeros(25), SPEC)
    with pytest.raises(CiphertextError, match="length"):
        add_encrypted([a, encryptor.encrypt(np.zeros(24), SPEC)], public)
    with pytest.raises(CiphertextError, match="encoding"):
        add_encrypted([a, encryptor.encrypt(np.zeros(25), replace(SPEC, frac_bits=23))], public)
    with pytest.raises(CiphertextError, match="no vectors"):
        add_encrypted([], public)
    with pytest.raises(CiphertextError, match="ciphertexts"):
        add_encrypted([a, replace(a, ciphertexts=a.ciphertexts[:-1])], public)


def test_foreign_key_vectors_are_rejected(
    small_private_key: PrivateKey, encryptor: Encryptor, decryptor: Decryptor
) -> None:
    other = generate_keypair(1024, allow_small_for_tests=True)
    with Encryptor(other.public) as foreign_enc:
        foreign = foreign_enc.encrypt(np.ones(25), SPEC)
    mine = encryptor.encrypt(np.ones(25), SPEC)
    with pytest.raises(CiphertextError, match="key"):
        add_encrypted([mine, foreign], small_private_key.public)
    with pytest.raises(CiphertextError, match="key"):
        decryptor.decrypt(foreign)
    # Foreign ciphertexts relabelled with our fingerprint: invalid elements or garbage
    # plaintexts, never a silent wrong sum.
    relabelled = replace(foreign, fingerprint=mine.fingerprint)
    with pytest.raises((CiphertextError, EncodingError)):
        decryptor.decrypt(add_encrypted([mine, relabelled], small_private_key.public))


def test_invalid_ciphertexts_are_rejected(
    small_private_key: PrivateKey, encryptor: Encryptor, decryptor: Decryptor
) -> None:
    public = small_private_key.public
    good = encryptor.encrypt(np.ones(25), SPEC)
    bad_values = {
        "outside": [0, public.nsquare, public.nsquare + 5, -good.ciphertexts[0]],
        "coprime": [small_private_key.p, small_private_key.q * 7, public.n],
    }
    for why, candidates in bad_values.items():
        for c in candidates:
            tampered = replace(good, ciphertexts=(c, *good.ciphertexts[1:]))
            with pytest.raises(CiphertextError, match=f"ciphertext 0 .*{why}"):
                add_encrypted([encryptor.encrypt(np.ones(25), SPEC), tampered], public)
            with pytest.raises(CiphertextError, match=why):
                decryptor.decrypt(tampered)
            with pytest.raises(CiphertextError, match=why):
                decryptor.decrypt_plaintexts([c])


def test_tampered_ciphertexts_fail_decoding(
    small_private_key: PrivateKey, encryptor: Encryptor, decryptor: Decryptor
) -> None:
    public = small_private_key.public
    n, n2 = public.n, public.nsquare
    vector = encryptor.encrypt(np.full(25, -SPEC.clip), SPEC)  # every slot encodes to 0
    bits = slot_bits(SPEC)
    # Adding max_encoded + 1 to slot 3 (g^m = 1 + m n): a deterministic single-slot overflow.
    bump = (1 + ((max_encoded(SPEC) + 1) << (3 * bits)) * n) % n2
    tampered = replace(
        vector, ciphertexts=(vector.ciphertexts[0] * bump % n2, *vector.ciphertexts[1:])
    )
    with pytest.raises(EncodingError, match="overflow at position 3"):
        decryptor.decrypt(tampered)
    # A random valid unit in place of a ciphertext decrypts to a random plaintext mod n.
    rng = np.random.default_rng(3)
    for _ in range(5):
        r = int.from_bytes(rng.bytes(n2.bit_length() // 8), "big") % n2
        if gmpy2.gcd(r, n) != 1:
            continue
        forged = replace(vector, ciphertexts=(*vector.ciphertexts[:-1], r))
        with pytest.raises(EncodingError):
            decryptor.decrypt(forged)


def test_encrypted_vector_header_checks() -> None:
    with pytest.raises(CiphertextError):
        EncryptedVector("00", SPEC, length=-1, summands=1, ciphertexts=())
    with pytest.raises(CiphertextError):
        EncryptedVector("00", SPEC, length=1, summands=0, ciphertexts=(2,))
    with pytest.raises(CiphertextError, match="max_summands"):
        EncryptedVector("00", SPEC, length=1, summands=17, ciphertexts=(2,))


def test_worker_pools_give_the_same_results(small_private_key: PrivateKey) -> None:
    rng = np.random.default_rng(5)
    vectors = [rng.uniform(-1, 1, 300) for _ in range(3)]
    spec = EncodingSpec(frac_bits=30, clip=1.0, max_summands=3)
    with (
        Encryptor(small_private_key.public, workers=2) as enc,
        Decryptor(small_private_key, workers=2) as dec,
        Decryptor(small_private_key) as serial,
    ):
        total = add_encrypted([enc.encrypt(v, spec) for v in vectors], small_private_key.public)
        parallel = dec.decrypt(total)
        assert np.array_equal(parallel, serial.decrypt(total))
        assert dec.decrypt_plaintexts(total.ciphertexts) == serial.decrypt_plaintexts(
            total.ciphertexts
        )
    _assert_within_bound(parallel, vectors, spec)
    with Encryptor(
        small_private_key.public, workers=2, private_key=small_private_key, method="crt"
    ) as enc:
        vector = enc.encrypt(vectors[0], spec)
    with Decryptor(small_private_key) as serial:
        _assert_within_bound(serial.decrypt(vector), vectors[:1], spec)


def test_secure_sum_with_a_real_2048_bit_key(private_key_2048: PrivateKey) -> None:
    public = private_key_2048.public
    rng = np.random.default_rng(11)
    length = 40 * 3 + 7  # does not fill the last ciphertext
    vectors = [rng.uniform(-SPEC.clip, SPEC.clip, length) for _ in range(3)]
    vectors[0][:4] = [SPEC.clip, -SPEC.clip, 0.0, -0.0]
    with Encryptor(public) as enc, Decryptor(private_key_2048) as dec:
        assert slots_per_plaintext(SPEC, public) == 40
        parts = [enc.encrypt(v, SPEC) for v in vectors]
        assert all(len(p.ciphertexts) == 4 for p in parts)
        total = add_encrypted(parts, public)
        decoded = dec.decrypt(total)
    _assert_within_bound(decoded, vectors, SPEC)
    assert np.max(np.abs(decoded - sum(vectors))) <= 3 * quantisation_bound(SPEC) + 1e-9


def test_fixed_base_table_and_crt_randomness_match_plain_powmod(
    small_private_key: PrivateKey,
) -> None:
    n = small_private_key.public.n
    n2 = small_private_key.public.nsquare
    bits = djn_exponent_bits(n.bit_length())
    assert bits == 512  # |n| / 2
    hs = djn_base(n, 12345)
    assert hs == pow((-(12345**2)) % n, n, n2)
    table = FixedBaseTable(hs, n2, bits)
    rng = np.random.default_rng(9)
    exponents = [0, 1, 255, 256, 2**bits - 1] + [
        int.from_bytes(rng.bytes(bits // 8), "big") for _ in range(5)
    ]
    for a in exponents:
        assert table.pow(a) == pow(hs, a, n2)
    with pytest.raises(ValueError):
        table.pow(2**bits)
    crt = CrtEncryptCore(small_private_key.p, small_private_key.q)
    for r in (2, 3, n - 1, 987654321):
        assert crt.r_to_n(r) == pow(r, n, n2)
    with pytest.raises(KeyMaterialError):
        djn_base(n, small_private_key.p)
