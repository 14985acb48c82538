"""The ``profile`` job kind, and the release check it shares with ``logreg``.

Both kinds start with the consortium-wide moments (:mod:`fedtab.moments`): row and label
counts, per-feature non-null counts, means and standard deviations, and per-category counts.
Each figure covers rows of the whole consortium, a number known only once summed, so the floor
is checked when the moments are proposed (:func:`check_moments`): a bank refuses to release
them when the rows behind a released count, mean or standard deviation are fewer than its own
privacy floor (``JobContext.privacy_floor``). Per-category counts have no floor yet (a category
held by one customer is counted as such; issue 11 adds one).
"""

from __future__ import annotations

from fedtab.errors import PrivacyError
from fedtab.jobs.constraints import Interval, Param, Schema
from fedtab.jobs.kind import EVERYONE, JobKind, Release
from fedtab.protocol.steps import JobContext, JsonDict, SumRequest

MOMENTS_STEP_ID = "moments"  # fedtab.moments.MOMENTS_STEP (that module loads the data code)
MAX_ROWS = Param((Interval(int, 1, 2**40),), 2**24)

PARAMETERS = Schema("profile", {"max_rows_per_bank": MAX_ROWS})

MOMENT_RELEASES = (
    Release("rows and positives; non-null count, mean and standard deviation of every feature",
            EVERYONE, "consortium-wide", consortium_rows=True),
    Release("count of every category of every categorical feature (no floor yet: issue 11)",
            EVERYONE, "consortium-wide, per category"),
)


def check_moments(ctx: JobContext, request: SumRequest, proposal: JsonDict) -> None:
    """Refuse to release moments behind fewer rows than this bank's privacy floor.

    Checks the total rows and the non-null count behind every released mean; raises
    :class:`PrivacyError` naming no figure.
    """
    if request.step_id != MOMENTS_STEP_ID or ctx.privacy_floor <= 1:
        return
    behind = [int(proposal.get("rows_total", 0))]
    for count, mean in zip(proposal.get("count", []), proposal.get("mean", []), strict=False):
        if mean is not None:
            behind.append(int(count))
    if min(behind) < ctx.privacy_floor:
        raise PrivacyError(
            f"bank {ctx.bank_name} refuses to release the consortium's moments: they cover "
            "fewer rows than its privacy floor"
        )


KIND = JobKind(
    name="profile",
    schema=PARAMETERS,
    trainer="fedtab.profiling:ProfileTrainer",
    releases=MOMENT_RELEASES,
    check_proposal=check_moments,
)
