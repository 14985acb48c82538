"""The row floor on what ``profile`` and ``logreg`` release: rare groups merged or withheld.

Both kinds release consortium counts (non-null counts, per-category counts) and, through them,
logreg's one-hot standardisation and coefficients. A count of one row would expose that row:
its category's count, and in logreg the sign of its one-hot coefficient (the sign of ``label -
p`` at the L2 optimum). Every such count is therefore released only over at least ``min_group_rows``
rows (the job's floor parameter, agreed by every bank and checked by each bank's policy against
its own privacy floor).

The rule, applied to one *partition* of the consortium's rows (a categorical feature: each
category, then the missing rows; a numeric feature: present rows, missing rows):

1. a group is released on its own when its count is 0 or at least ``min_group_rows``; the others
   (``0 < count < min_group_rows``) are **merged** into one "other" group;
2. since the other group's size follows from the released ones (``rows_total`` minus them), it
   must itself reach the floor: when ``0 < merged total < min_group_rows`` the smallest released
   non-empty group (first in order on ties) is merged too (secondary suppression).

So every released count, and every difference of released counts, is 0 or at least the floor.
The rule reads only the summed counts, in pure Python, so every bank merges identically. The
same rows are merged in logreg's encoding (one shared ``<other>`` one-hot column per feature),
so no coefficient and no released mean rests on fewer than ``min_group_rows`` rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedtab.data.contract import DataContract

OTHER = "<other>"  # the name of a feature's merged group (logreg column "<feature>=<other>")


def merged_groups(counts: Sequence[int], floor: int) -> list[bool]:
    """Per group of one partition, whether it is merged into the "other" group (rule above)."""
    merged = [0 < count < floor for count in counts]
    total = sum(count for count, m in zip(counts, merged, strict=True) if m)
    if 0 < total < floor:
        kept = [i for i, count in enumerate(counts) if count > 0 and not merged[i]]
        if kept:
            merged[min(kept, key=lambda i: (counts[i], i))] = True
    return merged


def withhold_rare(
    contract: DataContract,
    rows_total: int,
    count: Sequence[int | None],
    mean: Sequence[float | None],
    category_counts: Sequence[Sequence[int | None]],
    floor: int,
) -> tuple[list[int | None], list[float | None], list[list[int | None]]]:
    """The releasable ``(count, mean, category_counts)`` of exact consortium moments.

    ``None`` marks a withheld figure: a non-null count whose present or missing rows are
    merged; the mean of a numeric feature over fewer than ``floor`` present rows; the count of
    a merged category. A categorical feature's missing rows are merged exactly when its count
    is withheld.
    """
    out_count: list[int | None] = []
    out_mean: list[float | None] = []
    out_categories: list[list[int | None]] = []
    for j, spec in enumerate(contract.features):
        present = int(count[j] or 0)
        missing = rows_total - present
        if spec.kind == "numeric":
            withheld = any(merged_groups([present, missing], floor))
            out_mean.append(mean[j] if present >= floor else None)
            out_categories.append([])
        else:
            cats = [int(c or 0) for c in category_counts[j]]
            groups = merged_groups([*cats, missing], floor)
            withheld = groups[-1]
            out_mean.append(None)
            out_categories.append([None if m else c for c, m in zip(cats, groups, strict=False)])
        out_count.append(None if withheld else present)
    return out_count, out_mean, out_categories


def other_count(rows_total: int, count: int | None, categories: Sequence[int | None]) -> int:
    """Rows in a categorical feature's "other" group, from the released figures only.

    Every row is in a released category, in the other group, or missing and released as such
    (``rows_total - count`` when the non-null count is released), so the other group is what
    is left; by the rule it is 0 or at least the floor.
    """
    released = sum(c for c in categories if c is not None)
    return (rows_total if count is None else count) - released
