"""Consortium evaluation: the ``evaluate`` job kind (per-bank and consortium-wide metrics of a
model on the banks' own holdouts, released through secure sums; no score leaves a bank)."""
