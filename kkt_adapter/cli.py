"""The ``kkt-adapter`` command."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from kkt_adapter.errors import ConfigError
from kkt_adapter.settings import Settings, load_settings

app = typer.Typer(
    name="kkt-adapter",
    help="Offline-first fiscal receipt adapter for Russian POS terminals (54-FZ).",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Offline-first fiscal receipt adapter for Russian POS terminals (54-FZ)."""


HostOpt = Annotated[str | None, typer.Option(help="Address to bind [env KKT_HOST; 127.0.0.1].")]
PortOpt = Annotated[int | None, typer.Option(help="Port; 0 picks a free one [env KKT_PORT; 8000].")]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory [env KKT_DATA_DIR; ./data].")
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML settings file [env KKT_CONFIG_FILE].")
]


class _AnnouncingServer(uvicorn.Server):
    """Prints the URL it listens on once the socket is bound (tests wait for this line)."""

    def __init__(self, config: uvicorn.Config, name: str) -> None:
        super().__init__(config)
        self._name = name

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Handle SIGTERM/SIGINT as a graceful stop and exit 0 afterwards.

        uvicorn re-raises the signal after shutting down (exit status -15); a clean,
        requested stop of this service is a success, so we do not.
        """
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle_exit)
        yield

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.should_exit or not self.servers:
            return
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        print(f"{self._name} listening on http://{host}:{port}", flush=True)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _settings_or_exit(**flags: Any) -> Settings:
    try:
        return load_settings(**flags)
    except ConfigError as exc:
        typer.echo(f"kkt-adapter: {exc.message}", err=True)
        raise typer.Exit(2) from None


def run_server(asgi_app: Any, host: str, port: int, name: str, log_level: str) -> None:
    """Serve until SIGTERM/SIGINT, then shut down cleanly."""
    config = uvicorn.Config(
        asgi_app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = _AnnouncingServer(config, name)
    server.run()
    if not server.started:
        raise typer.Exit(1)


@app.command()
def serve(
    host: HostOpt = None,
    port: PortOpt = None,
    data_dir: DataDirOpt = None,
    ofd_url: Annotated[
        str | None, typer.Option("--ofd-url", help="OFD base URL [env KKT_OFD_URL].")
    ] = None,
    redis_url: Annotated[
        str | None, typer.Option("--redis-url", help="Redis for sync leadership [KKT_REDIS_URL].")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Run the adapter: HTTP API, SQLite buffer and the KKT (emulator by default)."""
    settings = _settings_or_exit(
        host=host,
        port=port,
        data_dir=data_dir,
        ofd_url=ofd_url,
        redis_url=redis_url,
        config_file=config,
    )
    _configure_logging(settings.log_level)
    from kkt_adapter.api import create_app

    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        typer.echo(f"kkt-adapter: cannot use data dir {settings.data_dir}: {exc}", err=True)
        raise typer.Exit(2) from None
    run_server(
        create_app(settings), settings.host, settings.port, "kkt-adapter", settings.log_level
    )


@app.command("mock-ofd")
def mock_ofd(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = 8080,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where mock-ofd.sqlite lives.")
    ] = Path("./ofd-data"),
    key: Annotated[
        str | None,
        typer.Option(
            envvar="KKT_EMULATOR_KEY",
            help="Key of the emulated fiscal sign, as the adapter's [default: the built-in one].",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="Log level.")] = "info",
) -> None:
    """Run the OFD EMULATOR (not a real OFD) for tests, demos and benchmarks."""
    from kkt_adapter.mock_ofd import create_mock_ofd_app
    from kkt_adapter.settings import DEFAULT_EMULATOR_KEY

    _configure_logging(log_level)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        typer.echo(f"kkt-adapter mock-ofd: cannot use data dir {data_dir}: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        "WARNING: this is an OFD EMULATOR for tests and demos, not a real OFD; "
        "nothing sent to it reaches the tax service.",
        err=True,
    )
    fiscal_key = (key or DEFAULT_EMULATOR_KEY).encode()
    asgi_app = create_mock_ofd_app(data_dir, key=fiscal_key)
    run_server(asgi_app, host, port, "kkt-adapter mock-ofd", log_level.lower())


UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url", help="Adapter URL [default: http://KKT_HOST:KKT_PORT].", show_default=False
    ),
]


def _client(url: str | None, config: Path | None) -> Any:
    import httpx

    settings = _settings_or_exit(config_file=config)
    base = url or f"http://{settings.host}:{settings.port}"
    token = settings.admin_token or settings.api_token
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
    return httpx.Client(base_url=base, headers=headers, timeout=660)


@app.command()
def status(url: UrlOpt = None, config: ConfigOpt = None) -> None:
    """Show the buffer, the OFD link and the alerts of a running adapter."""
    from kkt_adapter.client_cli import AdapterUnreachable, show_status

    with _client(url, config) as http:
        try:
            show_status(http)
        except AdapterUnreachable as exc:
            typer.echo(f"kkt-adapter: {exc}", err=True)
            raise typer.Exit(1) from None


@app.command()
def sync(
    url: UrlOpt = None,
    config: ConfigOpt = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the drain.")] = 600,
) -> None:
    """Deliver everything pending now, with a progress bar while the buffer drains."""
    from kkt_adapter.client_cli import AdapterUnreachable, run_sync

    with _client(url, config) as http:
        try:
            result = run_sync(http, timeout)
        except AdapterUnreachable as exc:
            typer.echo(f"kkt-adapter: {exc}", err=True)
            raise typer.Exit(1) from None
    typer.echo(
        f"synced {result['synced']}, failed {result['failed']}, "
        f"remaining {result['remaining']} ({result['duration_seconds']} s)"
    )


@app.command("config-reference")
def config_reference() -> None:
    """Print the configuration reference (Markdown), generated from the settings model."""
    from kkt_adapter.config_doc import render_reference

    typer.echo(render_reference(), nl=False)


def main() -> None:
    """Console-script entry point."""
    app()
