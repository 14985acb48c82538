"""The ``profile`` job kind, and the release check it shares with ``logreg``.

Both kinds start with the consortium-wide moments (:mod:`fedtab.moments`): row and label
counts, per-feature non-null counts, means and standard deviations, and per-category counts.

Floors: ``min_group_rows`` (default 50), agreed by every bank, is the fewest rows behind any
released non-null count, per-category count or mean; rarer categories (and rare missing rows)
are merged into one "other" group or withheld (:mod:`fedtab.rare`). It is the declared
``floor`` of those releases, so each bank's policy refuses a job asking less than its own
privacy floor. The consortium-wide figures (total rows and everything over them) have as many
rows as the consortium, a number known only once summed, so the bank's floor is also checked
when the moments are proposed (:func:`check_moments`): a bank refuses to release them when the
job's floor is below its own or any released figure covers fewer rows
(``JobContext.privacy_floor``).
"""

from __future__ import annotations

from fedtab.errors import PrivacyError
from fedtab.jobs.constraints import Interval, Param, Schema
from fedtab.jobs.kind import EVERYONE, JobKind, Release
from fedtab.protocol.steps import JobContext, JsonDict, SumRequest

MOMENTS_STEP_ID = "moments"  # fedtab.moments.MOMENTS_STEP (that module loads the data code)
MAX_ROWS = Param((Interval(int, 1, 2**40),), 2**24)
DEFAULT_MIN_GROUP_ROWS = 50
MIN_GROUP_ROWS = Param((Interval(int, 1, 2**40),), DEFAULT_MIN_GROUP_ROWS)

PARAMETERS = Schema("profile", {"max_rows_per_bank": MAX_ROWS, "min_group_rows": MIN_GROUP_ROWS})

MOMENT_RELEASES = (
    Release("rows and positives of the consortium", EVERYONE, "consortium-wide",
            consortium_rows=True),
    Release("non-null count of every feature (withheld when its present or missing rows are "
            "fewer than min_group_rows); mean and standard deviation of every numeric feature "
            "(withheld below min_group_rows present rows)", EVERYONE,
            "consortium-wide, per feature", floor="min_group_rows", consortium_rows=True),
    Release("count of every category of every categorical feature; categories and missing "
            "rows rarer than min_group_rows merged into one other group of at least "
            "min_group_rows rows", EVERYONE, "consortium-wide, per category",
            floor="min_group_rows", consortium_rows=True),
)


def check_moments(ctx: JobContext, request: SumRequest, proposal: JsonDict) -> None:
    """Refuse to release moments behind fewer rows than this bank's privacy floor.

    Checks the job's ``min_group_rows`` (the rows behind every figure withheld or merged under it),
    the total rows, and every released non-null or category count (0 is allowed: it covers no
    row); raises :class:`PrivacyError` naming no figure.
    """
    if request.step_id != MOMENTS_STEP_ID or ctx.privacy_floor <= 1:
        return
    floor = ctx.params.get("min_group_rows", DEFAULT_MIN_GROUP_ROWS)
    behind = [PARAMETERS.convert("min_group_rows", floor), int(proposal.get("rows_total", 0))]
    counts = [c for c in proposal.get("count", []) if c is not None]
    for categories in proposal.get("category_counts", []):
        counts.extend(c for c in categories if c is not None)
    behind.extend(int(c) for c in counts if int(c) > 0)
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
