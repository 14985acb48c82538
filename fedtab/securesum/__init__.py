"""Secure-sum backends behind one interface (:mod:`fedtab.securesum.base`).

A backend has a bank side (make a contribution, decrypt this bank's share of an aggregate,
combine all shares) and an aggregator side (validate, add, check and relay shares), in separate
modules so the aggregator never imports decryption code. Today's backend, ``shared-key``: one
consortium Paillier key, each bank decrypts a contiguous shard of the aggregate and seals it
under the AES-GCM shard key (:mod:`.shards`, :mod:`.sealing`, :mod:`.shared_key_bank`,
:mod:`.shared_key_aggregator`).

Import the sides from their modules; this package imports neither.
"""
