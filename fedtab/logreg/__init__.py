"""Federated L2 logistic regression (the ``logreg`` job kind).

- :mod:`fedtab.logreg.params` — ``LogRegParams`` (scikit-learn names, validation);
- :mod:`fedtab.logreg.design` — imputation and one-hot encoding, StandardScaler moments;
- :mod:`fedtab.logreg.newton` — deterministic damped Newton updates of the shared state;
- :mod:`fedtab.logreg.trainer` — ``LogRegTrainer``, the bank-side step machine;
- :mod:`fedtab.logreg.model` — ``LogRegModel``: ``model.json``, predictions, sklearn pipeline.

Import from the submodules (this package imports nothing heavy on its own).
"""
