"""gbdt."""
