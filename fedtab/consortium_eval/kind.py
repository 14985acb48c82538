"""The ``evaluate`` job kind: every bank scores a model on its own holdout; only metrics leave.

The operator's job file names the model file (``model = PATH``, in the job file's folder or
below); ``fedtab run`` embeds it (:func:`fedtab.consortium_eval.model_param.embed_model`) as
``model_json`` only once it loads as a model trained under the consortium's contract. The
aggregator checks its size and shape at submission (``scored_model``); the banks' policy checks
it against the models they trained or approved, and each bank loads it and checks its contract
before scoring. Each bank's metrics are released to everyone and cover its whole holdout, at
least ``min_rows`` rows.
"""

from __future__ import annotations

from fedtab.consortium_eval.binned import DEFAULT_BINS
from fedtab.jobs.constraints import Interval, NoneValue, Param, Schema, String
from fedtab.jobs.kind import EVERYONE, JobKind, Party, Release
from fedtab.profile_kind import MAX_ROWS

DEFAULT_MIN_ROWS = 50
MIN_ROWS_FLOOR = 20
_TEXT = (String(), NoneValue())

PARAMETERS = Schema("evaluate", {
    "model": Param(_TEXT),  # a path, replaced by model_json before submission
    "model_json": Param(_TEXT),
    "model_name": Param((String(),), "model.json"),
    "model_sha256": Param(_TEXT),
    "score_bins": Param((Interval(int, 16, 1 << 16),), DEFAULT_BINS),
    "min_rows": Param((Interval(int, MIN_ROWS_FLOOR, 1 << 40),), DEFAULT_MIN_ROWS),
    "max_rows_per_bank": MAX_ROWS,
})

KIND = JobKind(
    name="evaluate",
    schema=PARAMETERS,
    trainer="fedtab.consortium_eval.trainer:EvaluateTrainer",
    needs_holdout=True,
    releases=(
        Release("each bank's holdout metrics (ROC-AUC, PR-AUC, recalls, precisions, F1, Brier, "
                "rows, frauds)", EVERYONE, "per bank", floor="min_rows"),
        Release("the consortium's score histogram by label", (Party.BANKS,),
                "consortium-wide, per score bin and label", floor="min_rows"),
        Release("consortium metrics derived from that histogram", EVERYONE, "consortium-wide",
                floor="min_rows"),
    ),
    prepare="fedtab.consortium_eval.model_param:embed_model",
    scored_model="model_json",
)
