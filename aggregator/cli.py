"""``fedtab aggregator serve``: run the coordinator service for a consortium.

Threat model: loads the aggregator bundle only (public key, TLS identity, contract); refuses a
folder that holds private key material (``load_aggregator_bundle``).
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from fedtab.cli.edge import reports_errors
from fedtab.errors import ConfigError
from fedtab.transport.options import DEFAULT_BANK_TIMEOUT_SECONDS


def check_listen(text: str) -> str:
    """Validate ``HOST:PORT`` to bind (port 0 = any free port); raises ConfigError."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen must be HOST:PORT (PORT 0-65535), got {text!r}")
    return text.strip()


def write_port_file(path: Path, port: int) -> None:
    """Write the bound port atomically, so readers never see a partial number."""
    from aggregator.checkpoint import atomic_write

    atomic_write(path, f"{port}\n".encode())


@click.group()
def aggregator() -> None:
    """Run the aggregator (coordinator) service."""


@aggregator.command()
@click.argument("bundle_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--listen", default=None, metavar="HOST:PORT",
              help="Address to bind (default: the consortium's aggregator port on all hosts).")
@click.option("--state", "state_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Checkpoint folder; restarting with it resumes jobs.")
@click.option("--port-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the bound port here once listening.")
@click.option("--bank-timeout", type=float, default=DEFAULT_BANK_TIMEOUT_SECONDS,
              show_default=True, help="Seconds a bank may be absent before its job fails.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@reports_errors
def serve(bundle_dir: Path, listen: str | None, state_dir: Path | None,
          port_file: Path | None, bank_timeout: float, verbose: bool) -> None:
    """Serve the consortium in BUNDLE_DIR (e.g. DIR/aggregator) until interrupted."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from aggregator.service import create_server
    from fedtab.consortium import load_aggregator_bundle, parse_address

    bundle = load_aggregator_bundle(bundle_dir)
    if listen is None:
        _, port = parse_address(bundle.config.aggregator_address)
        listen = f"0.0.0.0:{port}"
    server, port = create_server(bundle, check_listen(listen), state_dir=state_dir,
                                 bank_timeout=bank_timeout)
    stopped = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    if port_file is not None:
        write_port_file(port_file, port)
    click.echo(f"aggregator of consortium {bundle.config.consortium_id} listening on port "
               f"{port} (banks: {', '.join(bundle.config.banks)})", err=True)
    stopped.wait()
    server.stop(grace=2.0).wait()
    click.echo("aggregator stopped", err=True)
