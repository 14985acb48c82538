"""The data contract: what a bank's table must look like, and turning it into arrays.

- :mod:`fedtab.data.contract` — ``DataContract``, ``FeatureSpec``, ``LocalTable``;
- :mod:`fedtab.data.tables` — ``read_table`` (CSV/Parquet with one-line errors);
- :mod:`fedtab.data.sources` — ``TableSource``, ``read_source``, ``load_source`` (a file, or a
  database URL with a query or table, read in chunks; passwords masked);
- :mod:`fedtab.data.infer` — ``infer_contract`` (ranges rounded outward);
- :mod:`fedtab.data.validate` — ``validate_table``, ``load_table``, ``encode_features``.

Import from the submodules; this package does not import pandas on its own.
"""
