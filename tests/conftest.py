"""Shared pytest fixtures: Paillier keys generated once per test session (never committed)."""

from __future__ import annotations

import os

import pytest

from fedtab.crypto.keys import PrivateKey, generate_keypair

SMALL_KEY_BITS = 1024


def pytest_configure(config: pytest.Config) -> None:
    """Tests use small keys for speed: opt in for every ``bank join`` / ``aggregator serve``
    they run, in process or as a child process (tests of the refusal unset it)."""
    os.environ["FEDTAB_ALLOW_SMALL_KEYS"] = "1"


@pytest.fixture(scope="session")
def small_private_key() -> PrivateKey:
    """A fast 1024-bit key for unit tests (allowed only with ``allow_small_for_tests``)."""
    return generate_keypair(SMALL_KEY_BITS, allow_small_for_tests=True)


@pytest.fixture(scope="session")
def private_key_2048() -> PrivateKey:
    """A real 2048-bit consortium key, generated lazily once per session when first requested."""
    return generate_keypair(2048)
