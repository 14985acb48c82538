"""The `fedtab` command root: lazy sub-commands, so local commands never load service code."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from fedtab.cli.main import LAZY_COMMANDS, cli


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in LAZY_COMMANDS:
        assert name in result.output


def test_local_commands_do_not_import_service_code() -> None:
    """Loading `evaluate`, `schema` and `datagen` imports no aggregator, bank or transport code."""
    probe = (
        "import sys\n"
        "from fedtab.cli.main import cli\n"
        "for name in ('evaluate', 'schema', 'datagen'):\n"
        "    cli.get_command(None, name)\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] in ('aggregator', 'bank_node')\n"
        "             or m.startswith('fedtab.transport')))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"
