"""fedtab: secure federated gradient boosting and logistic regression for bank tables."""

__version__ = "0.1.0"
