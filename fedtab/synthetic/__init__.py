"""The built-in synthetic bank consortium (card-transaction fraud with bank-specific patterns)."""

from fedtab.synthetic.consortium import (
    BankData,
    Consortium,
    consortium_contract,
    generate_consortium,
    write_consortium,
)
from fedtab.synthetic.profiles import PATTERNS, BankProfile, bank_profiles

__all__ = [
    "PATTERNS",
    "BankData",
    "BankProfile",
    "Consortium",
    "bank_profiles",
    "consortium_contract",
    "generate_consortium",
    "write_consortium",
]
