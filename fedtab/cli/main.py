"""The `fedtab` command: the composition root that wires every sub-command together.

Sub-commands are imported lazily, so `fedtab evaluate` never loads gRPC service code. Each
command module owns one command (or group); errors from the library are reported as one line
with the error's exit code.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

# command name -> "module:attribute" of a click command or group.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "schema": ("fedtab.cli.schema_cmd:schema", "Infer or check a data contract."),
    "datagen": ("fedtab.cli.datagen_cmd:datagen", "Generate a synthetic bank consortium."),
    "consortium": ("fedtab.cli.consortium_cmd:consortium", "Create a consortium (keys, CA)."),
    "aggregator": ("aggregator.cli:aggregator", "Run the aggregator service."),
    "bank": ("bank_node.cli:bank", "Join a consortium as a bank."),
    "run": ("fedtab.cli.run_cmd:run", "Submit a job as the operator and wait for it."),
    "simulate": ("fedtab.cli.simulate_cmd:simulate", "Simulate a whole consortium locally."),
    "evaluate": ("fedtab.cli.evaluate_cmd:evaluate", "Evaluate a model on a local holdout."),
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported only when invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(LAZY_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target[0].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            return _unavailable(cmd_name, target[1])
        command: click.Command = getattr(module, attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: Any) -> None:
        rows = [(name, LAZY_COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _unavailable(name: str, help_text: str) -> click.Command:
    @click.command(name=name, help=help_text)
    def placeholder() -> None:
        raise click.ClickException(f"'fedtab {name}' is not available in this build yet")

    return placeholder


@click.group(cls=LazyGroup, context_settings={"auto_envvar_prefix": "FEDTAB"})
@click.version_option(package_name="fedtab", prog_name="fedtab",
                      message="%(prog)s %(version)s")
def cli() -> None:
    """fedtab: train one fraud model across banks; the coordinator sees only ciphertexts."""


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="fedtab")


if __name__ == "__main__":
    main()
