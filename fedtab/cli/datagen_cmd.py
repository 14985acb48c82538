"""`fedtab datagen`: write a synthetic bank consortium (tables, holdouts, contract) to a folder.

Options can be set from ``FEDTAB_DATAGEN_*`` variables (``FEDTAB_DATAGEN_ROWS``, ...). Every
file is written atomically and ``contract.json`` last, so an interrupted run leaves no
half-written file, and no contract unless every table is complete.
"""

from __future__ import annotations

from pathlib import Path

import click

from fedtab.cli.edge import reports_errors
from fedtab.errors import ConfigError
from fedtab.synthetic import generate_consortium, write_consortium
from fedtab.synthetic.profiles import MAX_BANKS


@click.command()
@click.option("--banks", type=click.IntRange(1, MAX_BANKS), default=3, show_default=True,
              show_envvar=True, help="Number of banks.")
@click.option("--rows", type=click.IntRange(min=1), default=100_000, show_default=True,
              show_envvar=True, help="Transactions over all banks (train + holdout).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              show_envvar=True, help="Output folder: <bank>/train.csv, <bank>/holdout.csv, "
              "contract.json, manifest.json.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              show_envvar=True, help="Seed; the same seed writes byte-identical files.")
@click.option("--holdout-fraction", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
              default=0.2, show_default=True, show_envvar=True,
              help="Share of each bank's rows kept for its holdout (stratified).")
@reports_errors
def datagen(banks: int, rows: int, out: Path, seed: int, holdout_fraction: float) -> None:
    """Generate a synthetic consortium of BANKS banks with card-fraud patterns that differ.

    metro_bank (large) mostly sees card testing, rural_bank (small) account takeover, and
    young_bank ATM cash-out; each also sees a little of the others' fraud.
    """
    consortium = generate_consortium(banks, rows, seed, holdout_fraction)
    try:
        write_consortium(consortium, out)
    except OSError as exc:
        raise ConfigError(f"cannot write to {out}: {exc.strerror or exc}") from exc
    label = consortium.contract.label
    click.echo(f"wrote {len(consortium.banks)} banks to {out} (seed {seed})")
    click.echo(f"{'bank':<14}{'train':>9}{'holdout':>9}{'frauds':>8}{'rate':>8}  main pattern")
    for bank in consortium.banks:
        frauds = int(bank.train[label].sum() + bank.holdout[label].sum())
        total = len(bank.train) + len(bank.holdout)
        click.echo(
            f"{bank.name:<14}{len(bank.train):>9}{len(bank.holdout):>9}{frauds:>8}"
            f"{frauds / total:>8.2%}  {bank.profile.primary_pattern}"
        )
    click.echo(f"contract: {out / 'contract.json'}")
