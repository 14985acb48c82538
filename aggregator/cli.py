"""``fedtab aggregator serve``: run the coordinator service for a consortium.

Threat model: loads the aggregator bundle only (public key, TLS identity, contract); refuses a
folder that holds private key material (``load_aggregator_bundle``) and a consortium key under
2048 bits (tests opt in with ``FEDTAB_ALLOW_SMALL_KEYS=1``).
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from aggregator.sessions import ATTACH_WINDOW_SECONDS
from fedtab.cli.edge import reports_errors
from fedtab.cli.logfmt import LOG_FORMATS, announce, set_fields, setup_logging
from fedtab.errors import ConfigError
from fedtab.transport.options import DEFAULT_BANK_TIMEOUT_SECONDS

log = logging.getLogger("fedtab.aggregator")


def check_listen(text: str, option: str = "--listen") -> str:
    """Validate ``HOST:PORT`` to bind (port 0 = any free port); raises ConfigError."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{option} must be HOST:PORT (PORT 0-65535), got {text!r}")
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
@click.option("--metrics", default=None, metavar="HOST:PORT",
              help="Serve Prometheus metrics over plain HTTP at http://HOST:PORT/metrics.")
@click.option("--health-listen", default=None, metavar="HOST:PORT",
              help="Also serve the gRPC health service alone, in plaintext, on HOST:PORT "
              "(for load balancers and Kubernetes probes; the mTLS port always serves it).")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text",
              show_default=True, help="Log lines as text, or one JSON object per line.")
@click.option("--attach-window", type=click.FloatRange(min=0, min_open=True),
              default=ATTACH_WINDOW_SECONDS, show_default=True, metavar="SECONDS",
              help="A bank silent this long counts as detached; another process may then "
              "register in its name.")
@click.option("--insecure-small-key-for-tests", "allow_small", is_flag=True, hidden=True,
              envvar="FEDTAB_ALLOW_SMALL_KEYS")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@reports_errors
def serve(bundle_dir: Path, listen: str | None, state_dir: Path | None,
          port_file: Path | None, bank_timeout: float, verbose: bool,
          metrics: str | None = None, health_listen: str | None = None,
          log_format: str = "text", attach_window: float = ATTACH_WINDOW_SECONDS,
          allow_small: bool = False) -> None:
    """Serve the consortium in BUNDLE_DIR (e.g. DIR/aggregator) until interrupted."""
    setup_logging(log_format, verbose)
    metrics_at = check_listen(metrics, "--metrics") if metrics else None
    health_at = check_listen(health_listen, "--health-listen") if health_listen else None
    from aggregator.ops import OpsEndpoints
    from aggregator.service import build_coordinator, create_server
    from fedtab.consortium import load_aggregator_bundle, parse_address
    from fedtab.crypto.keys import require_full_size

    bundle = load_aggregator_bundle(bundle_dir)
    require_full_size(bundle.public_key, allow_small_for_tests=allow_small)
    set_fields(consortium=bundle.config.consortium_id)
    if listen is None:
        _, port = parse_address(bundle.config.aggregator_address)
        listen = f"0.0.0.0:{port}"
    coordinator = build_coordinator(bundle, state_dir=state_dir, bank_timeout=bank_timeout,
                                    attach_window=attach_window)
    ops = OpsEndpoints(coordinator, metrics_at, health_at)
    try:
        server, port = create_server(bundle, check_listen(listen), coordinator=coordinator,
                                     health=ops.health)
    except ConfigError:
        ops.close()
        raise
    stopped = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    ops.health.serving()  # state loaded, server accepting
    if port_file is not None:
        write_port_file(port_file, port)
    announce(log, log_format, f"aggregator of consortium {bundle.config.consortium_id} "
             f"listening on port {port} (banks: {', '.join(bundle.config.banks)})"
             + ops.describe(), port=port, **ops.ports())
    stopped.wait()
    ops.health.shutting_down()  # NOT_SERVING while the server drains
    server.stop(grace=2.0).wait()
    ops.close()
    announce(log, log_format, "aggregator stopped")

