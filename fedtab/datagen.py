"""Entry point of the synthetic consortium generator (the code lives in :mod:`fedtab.synthetic`)."""

from fedtab.synthetic import Consortium, generate_consortium, write_consortium

__all__ = ["Consortium", "generate_consortium", "write_consortium"]
