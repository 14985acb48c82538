"""Key generation, fingerprints and key files (real keys, generated at run time)."""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gmpy2
import numpy as np
import pytest

from fedtab.crypto import (
    EncodingSpec,
    Encryptor,
    PublicKey,
    add_encrypted,
    load_public_key,
    save_public_key,
)
from fedtab.crypto.decryptor import Decryptor
from fedtab.crypto.keys import PrivateKey, generate_keypair, load_private_key, save_private_key
from fedtab.errors import KeyMaterialError


def test_small_key_is_a_real_paillier_key(small_private_key: PrivateKey) -> None:
    key = small_private_key
    assert key.public.bits == 1024
    assert key.p * key.q == key.public.n
    assert gmpy2.is_prime(key.p) and gmpy2.is_prime(key.q) and key.p != key.q
    assert key.public.nsquare == key.public.n**2


def test_fingerprint_is_sha256_of_n_big_endian(small_private_key: PrivateKey) -> None:
    n = small_private_key.public.n
    expected = hashlib.sha256(n.to_bytes((n.bit_length() + 7) // 8, "big")).hexdigest()
    assert small_private_key.public.fingerprint == expected
    assert PublicKey(n).fingerprint == expected


@pytest.mark.parametrize("bits", [512, 1024, 1536, 2047, 4096])
def test_sizes_outside_2048_3072_are_refused(bits: int) -> None:
    with pytest.raises(KeyMaterialError, match="refused"):
        generate_keypair(bits)


def test_small_keys_only_with_the_test_flag() -> None:
    key = generate_keypair(512, allow_small_for_tests=True)
    assert key.public.bits == 512
    with pytest.raises(KeyMaterialError):
        generate_keypair(128, allow_small_for_tests=True)


def test_generated_keys_differ() -> None:
    a = generate_keypair(512, allow_small_for_tests=True)
    b = generate_keypair(512, allow_small_for_tests=True)
    assert a.public.n != b.public.n


def test_real_2048_bit_key(private_key_2048: PrivateKey) -> None:
    assert private_key_2048.public.bits == 2048
    assert private_key_2048.p.bit_length() == private_key_2048.q.bit_length() == 1024


def test_repr_hides_the_factors(small_private_key: PrivateKey) -> None:
    text = repr(small_private_key) + str(small_private_key)
    for secret in (small_private_key.p, small_private_key.q):
        assert str(secret) not in text
        assert format(secret, "x") not in text
    assert small_private_key.fingerprint[:16] in text


def test_private_key_must_match_n(small_private_key: PrivateKey) -> None:
    with pytest.raises(KeyMaterialError):
        PrivateKey(public=small_private_key.public, p=small_private_key.p, q=small_private_key.p)


def test_round_trip_and_file_modes(small_private_key: PrivateKey, tmp_path: Path) -> None:
    pub_path, priv_path = tmp_path / "pub.json", tmp_path / "priv.json"
    save_public_key(small_private_key.public, pub_path)
    save_private_key(small_private_key, priv_path)
    assert stat.S_IMODE(priv_path.stat().st_mode) == 0o600
    fp = small_private_key.fingerprint
    assert load_public_key(pub_path, expected_fingerprint=fp) == small_private_key.public
    assert load_private_key(priv_path, expected_fingerprint=fp) == small_private_key
    pub = json.loads(pub_path.read_text())
    assert pub["kind"] == "fedtab-paillier-public-key" and pub["fingerprint"] == fp
    assert int(pub["n"], 16) == small_private_key.public.n
    assert "p" not in pub and "q" not in pub
    priv = json.loads(priv_path.read_text())
    assert priv["kind"] == "fedtab-paillier-private-key"
    assert int(priv["p"], 16) * int(priv["q"], 16) == small_private_key.public.n


def test_private_file_where_public_expected_and_vice_versa(
    small_private_key: PrivateKey, tmp_path: Path
) -> None:
    pub_path, priv_path = tmp_path / "pub.json", tmp_path / "priv.json"
    save_public_key(small_private_key.public, pub_path)
    save_private_key(small_private_key, priv_path)
    with pytest.raises(KeyMaterialError, match="PRIVATE key where a public key was expected"):
        load_public_key(priv_path)
    with pytest.raises(KeyMaterialError, match="public key where a private key was expected"):
        load_private_key(pub_path)


def test_fingerprint_mismatch(small_private_key: PrivateKey, tmp_path: Path) -> None:
    other = generate_keypair(512, allow_small_for_tests=True)
    path = tmp_path / "pub.json"
    save_public_key(other.public, path)
    with pytest.raises(KeyMaterialError, match="does not match the expected") as info:
        load_public_key(path, expected_fingerprint=small_private_key.fingerprint)
    assert "\n" not in info.value.one_line()
    save_private_key(other, tmp_path / "priv.json")
    with pytest.raises(KeyMaterialError, match="does not match the expected"):
        load_private_key(tmp_path / "priv.json", small_private_key.fingerprint)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(n=format(int(d["n"], 16) + 2, "x")),  # n changed: fingerprint stale
        lambda d: d.update(p=format(int(d["p"], 16) + 2, "x")),  # factors no longer match n
        lambda d: d.update(q="zz"),
        lambda d: d.pop("fingerprint"),
        lambda d: d.update(version=99),
        lambda d: d.update(kind="something-else"),
    ],
)
def test_corrupt_private_files(
    small_private_key: PrivateKey, tmp_path: Path, mutate: Callable[[dict[str, Any]], object]
) -> None:
    path = tmp_path / "priv.json"
    save_private_key(small_private_key, path)
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    with pytest.raises(KeyMaterialError):
        load_private_key(path)


@pytest.mark.parametrize("content", ["", "{", "[1, 2]", "\x00\x01binary", '{"kind": 3}'])
def test_unreadable_public_files(tmp_path: Path, content: str) -> None:
    path = tmp_path / "pub.json"
    path.write_text(content)
    with pytest.raises(KeyMaterialError):
        load_public_key(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match="does not exist"):
        load_public_key(tmp_path / "nope.json")


def test_3072_bit_keys_are_allowed_and_work(tmp_path: Path) -> None:
    key = generate_keypair(3072)
    assert key.public.bits == 3072
    save_private_key(key, tmp_path / "k.json")
    key = load_private_key(tmp_path / "k.json", key.fingerprint)
    spec = EncodingSpec(frac_bits=16, clip=100.0, max_summands=4)
    values = np.array([-100.0, 0.5, 99.25])
    with Encryptor(key.public) as enc, Decryptor(key) as dec:
        total = add_encrypted([enc.encrypt(values, spec) for _ in range(3)], key.public)
        assert np.array_equal(dec.decrypt(total), 3 * values)
