"""The ``kkt-adapter`` command."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from kkt_adapter.errors import ConfigError
from kkt_adapter.settings import Settings, default_of, load_settings

GIL_SWITCH_SECONDS = 0.0005

# Exit codes, the same for every command; the table in docs/operations.md says what each means.
EXIT_OK = 0
EXIT_FAILED = 1
"""It ran and failed: a backup not written, a running adapter not reached, a failed start."""
EXIT_REFUSED = 2
"""Refused before doing anything: bad usage or configuration, a damaged file, a destination
that cannot be written. Starting it again unchanged fails the same way."""
EXIT_CANNOT_LISTEN = 3
"""A server command could not bind its address (the port is taken: another instance runs?);
nothing was opened. Unlike 2, it may work once the port is free."""

# Help text is plain text: as console markup, "[env var: KKT_HOST; default: 127.0.0.1]" was
# taken for a style tag and dropped from every option's help.
app = typer.Typer(
    name="kkt-adapter",
    help="Offline-first fiscal receipt adapter for Russian POS terminals (54-FZ).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """Offline-first fiscal receipt adapter for Russian POS terminals (54-FZ)."""


def setting_option(name: str, text: str, *flags: str) -> Any:
    """The flag of setting ``name``: its help names the environment variable and the default,
    both from the settings model. The flag is ``None`` when not given and click reads no
    environment variable, so that the settings model alone applies the precedence (flag >
    environment > file > default) and the validation."""
    default = default_of(name)
    if default is None:
        shown = ""
    elif isinstance(default, bool):
        shown = f"; default: {str(default).lower()}"
    else:
        shown = f"; default: {default}"
    return typer.Option(*flags, help=f"{text} [env var: KKT_{name.upper()}{shown}]")


HostOpt = Annotated[str | None, setting_option("host", "Address to bind.")]
PortOpt = Annotated[int | None, setting_option("port", "Port; 0 picks a free one.")]
DataDirOpt = Annotated[Path | None, setting_option("data_dir", "Data directory.", "--data-dir")]
ConfigOpt = Annotated[Path | None, setting_option("config_file", "TOML settings file.", "--config")]


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
        # One write with its newline: ``print`` writes the text and the newline apart, and on
        # an unbuffered stdout sharing a pipe with the log a log line landed between the two
        # (a supervisor read the port as "52115{...").
        sys.stdout.write(f"{self._name} listening on http://{host}:{port}\n")
        sys.stdout.flush()


def _configure_logging(level: str, fmt: str = "json") -> None:
    from kkt_adapter.logs import configure_logging

    configure_logging(level, fmt)


def _settings_or_exit(**flags: Any) -> Settings:
    try:
        return load_settings(**flags)
    except ConfigError as exc:
        typer.echo(f"kkt-adapter: {exc.message}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None


class _OneLineRefusal:
    """Says a refused start-up (``StartupRefused``, e.g. the KKT contradicts the buffer) in
    one line instead of uvicorn's traceback of the lifespan."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def reworded(message: Any) -> None:
            refusal = getattr(getattr(self.app, "state", None), "refusal", None)
            if message["type"] == "lifespan.startup.failed" and refusal:
                message = {**message, "message": f"refusing to start: {refusal}"}
            await send(message)

        await self.app(scope, receive, reworded)


def run_server(
    asgi_app: Any,
    host: str,
    port: int,
    name: str,
    log_level: str,
    *,
    keep_alive_seconds: int = 5,
    max_connections: int | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then shut down cleanly.

    Idle keep-alive connections close after ``keep_alive_seconds``; beyond
    ``max_connections`` connections (or requests) at once uvicorn answers 503.
    """
    config = uvicorn.Config(
        _OneLineRefusal(asgi_app),
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,  # our handlers on the root logger format uvicorn's lines too
        access_log=False,
        proxy_headers=False,  # no proxy is trusted: the client address is the peer's
        lifespan="on",
        timeout_graceful_shutdown=10,
        timeout_keep_alive=keep_alive_seconds,
        limit_concurrency=max_connections,
    )
    server = _AnnouncingServer(config, name)
    listener = _bind_or_exit(host, port, name)
    try:
        server.run(sockets=[listener])
    except SystemExit:  # uvicorn exits 3 on a failed start-up: say why below instead
        if server.started:
            raise
    if not server.started:
        refusal = getattr(getattr(asgi_app, "state", None), "refusal", None)
        if refusal:
            typer.echo(f"{name}: refusing to start: {refusal}", err=True)
            raise typer.Exit(EXIT_REFUSED)
        raise typer.Exit(EXIT_FAILED)


def _bind_or_exit(host: str, port: int, name: str) -> socket.socket:
    """The server's socket, bound before the application starts: a taken port is said in one
    line (exit 3) before the buffer and the KKT are opened, where uvicorn would open them,
    run the start-up reconciliation, then fail to bind and close them again. Not listening
    yet (uvicorn listens once it serves), so a client is refused until then, not queued."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        typer.echo(f"{name}: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_CANNOT_LISTEN) from None
    return sock


@app.command()
def serve(
    host: HostOpt = None,
    port: PortOpt = None,
    data_dir: DataDirOpt = None,
    ofd_url: Annotated[
        str | None,
        setting_option("ofd_url", "OFD base URL; unset: the embedded OFD emulator.", "--ofd-url"),
    ] = None,
    redis_url: Annotated[
        str | None, setting_option("redis_url", "Redis for sync leadership.", "--redis-url")
    ] = None,
    config: ConfigOpt = None,
    insecure: Annotated[
        bool,
        setting_option("insecure", "Serve on a network address without tokens.", "--insecure"),
    ] = False,
) -> None:
    """Run the adapter: HTTP API, SQLite buffer and the KKT (emulator by default)."""
    settings = _settings_or_exit(
        host=host,
        port=port,
        data_dir=data_dir,
        ofd_url=ofd_url,
        redis_url=redis_url,
        config_file=config,
        insecure=insecure or None,
    )
    _check_binding_or_exit(settings)
    _configure_logging(settings.log_level, settings.log_format)
    # The KKT's thread and the buffer's writer wait on fsync and then on the GIL; a shorter
    # switch interval hands it back sooner. bench/intake, three alternating pairs: 1,188 vs
    # 971 receipts/s at the default 5 ms.
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    _warn_if_open(settings)
    from kkt_adapter.api import create_app

    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        typer.echo(f"kkt-adapter: cannot use data dir {settings.data_dir}: {exc}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    _check_buffer_or_exit(settings.data_dir)
    if settings.device == "emulator":
        _check_kkt_state_or_exit(settings.data_dir)
    else:
        _check_device_or_exit(settings)
    run_server(
        create_app(settings),
        settings.host,
        settings.port,
        "kkt-adapter",
        settings.log_level,
        keep_alive_seconds=settings.keep_alive_seconds,
        max_connections=settings.max_connections,
    )


def _check_binding_or_exit(settings: Settings) -> None:
    from kkt_adapter.api.guard import binding_problem

    problem = binding_problem(settings)
    if problem is not None:
        typer.echo(f"kkt-adapter: {problem}", err=True)
        raise typer.Exit(EXIT_REFUSED)


def _warn_if_open(settings: Settings) -> None:
    if settings.api_token is None and settings.admin_token is None:
        logging.getLogger("kkt_adapter").warning(
            "no KKT_API_TOKEN or KKT_ADMIN_TOKEN set: the API is open to every client that "
            "reaches %s%s",
            settings.host,
            " (--insecure)" if settings.insecure else " (loopback only)",
        )


def _check_buffer_or_exit(data_dir: Path) -> None:
    """Refuse to start on a damaged buffer (``PRAGMA quick_check``), saying how to recover."""
    from kkt_adapter.buffer.retention import quick_check
    from kkt_adapter.buffer.store import BUFFER_FILE

    path = data_dir / BUFFER_FILE
    if not path.exists():
        return
    problem = quick_check(path)
    if problem is not None:
        typer.echo(
            f"kkt-adapter: the buffer {path} is damaged ({problem.splitlines()[0]}); restore a "
            "copy made by `kkt-adapter backup` to that path, or move the file and its -wal and "
            "-shm aside to start with an empty buffer (unsent receipts stay in the moved file)",
            err=True,
        )
        raise typer.Exit(EXIT_REFUSED)


def _check_device_or_exit(settings: Settings) -> None:
    """A device that cannot be built (``atol-lib`` without the vendor's binding) is refused
    in one line before the server starts."""
    from kkt_adapter.errors import ConfigError
    from kkt_adapter.runtime import build_device

    if settings.device != "atol-lib":
        return
    try:
        build_device(settings).close()
    except ConfigError as exc:
        typer.echo(f"kkt-adapter: {exc.message}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None


def _check_kkt_state_or_exit(data_dir: Path) -> None:
    """Refuse to start on a damaged KKT emulator state file, in one line rather than the
    traceback of a failed start-up: the file is the emulated device, its FN and FD history."""
    from kkt_adapter.device.emulator import STATE_FILE
    from kkt_adapter.device.emulator_store import check_state_file

    path = data_dir / STATE_FILE
    problem = check_state_file(path)
    if problem is not None:
        typer.echo(
            f"kkt-adapter: the KKT emulator's state file {path} is damaged "
            f"({problem.splitlines()[0]}); restore it from a copy (moving it aside makes a new "
            "emulated device with a new FN, whose journal lacks this one's documents)",
            err=True,
        )
        raise typer.Exit(EXIT_REFUSED)


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
            help="Key of the emulated fiscal sign, as the adapter's.",
            show_default="the built-in one",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="Log level.")] = "info",
    log_format: Annotated[
        str, typer.Option("--log-format", envvar="KKT_LOG_FORMAT", help="json or text.")
    ] = "json",
) -> None:
    """Run the OFD EMULATOR (not a real OFD) for tests, demos and benchmarks."""
    from kkt_adapter.mock_ofd import create_mock_ofd_app
    from kkt_adapter.settings import DEFAULT_EMULATOR_KEY

    _configure_logging(log_level, log_format)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        typer.echo(f"kkt-adapter mock-ofd: cannot use data dir {data_dir}: {exc}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    typer.echo(
        "WARNING: this is an OFD EMULATOR for tests and demos, not a real OFD; "
        "nothing sent to it reaches the tax service.",
        err=True,
    )
    fiscal_key = (key or DEFAULT_EMULATOR_KEY).encode()
    asgi_app = create_mock_ofd_app(data_dir, key=fiscal_key)
    run_server(asgi_app, host, port, "kkt-adapter mock-ofd", log_level.lower())


@app.command("mock-atol")
def mock_atol(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = 16732,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the emulated register keeps its state.")
    ] = Path("./atol-data"),
    ofd_url: Annotated[
        str | None,
        typer.Option("--ofd-url", help="The OFD the emulated FN sends its documents to."),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            envvar="KKT_EMULATOR_KEY",
            help="Key of the emulated fiscal sign.",
            show_default="the built-in one",
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            envvar="KKT_EMULATOR_STRICT",
            help="Refuse a print request for a receipt fiscalized already (counted either way),"
            " as serve's KKT_EMULATOR_STRICT.",
            show_default="false",
        ),
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="Log level.")] = "info",
    log_format: Annotated[
        str, typer.Option("--log-format", envvar="KKT_LOG_FORMAT", help="json or text.")
    ] = "json",
) -> None:
    """Run an EMULATOR of the ATOL driver's web server (not a real register) for tests."""
    from kkt_adapter.mock_atol import create_mock_atol_app
    from kkt_adapter.settings import DEFAULT_EMULATOR_KEY

    _configure_logging(log_level, log_format)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        typer.echo(f"kkt-adapter mock-atol: cannot use data dir {data_dir}: {exc}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    typer.echo(
        "WARNING: this is an EMULATOR of the ATOL driver's web server, not a real cash"
        " register; its documents are not fiscal.",
        err=True,
    )
    fiscal_key = (key or DEFAULT_EMULATOR_KEY).encode()
    asgi_app = create_mock_atol_app(data_dir, key=fiscal_key, ofd_url=ofd_url, strict=strict)
    run_server(asgi_app, host, port, "kkt-adapter mock-atol", log_level.lower())


UrlOpt = Annotated[
    str | None,
    typer.Option("--url", help="Adapter URL.", show_default="http://KKT_HOST:KKT_PORT"),
]


def _client(url: str | None, config: Path | None) -> Any:
    """The package's client on the configured adapter, with its admin token (or the POS
    token): one attempt per request, as the operator at the console sees at once what failed."""
    from kkt_adapter.client import KktClient, RetryPolicy

    settings = _settings_or_exit(config_file=config)
    base = url or f"http://{settings.host}:{settings.port}"
    token = settings.admin_token or settings.api_token
    secret = token.get_secret_value() if token else None
    return KktClient(base, token=secret, timeout=660, retry=RetryPolicy(max_retries=0))


def _client_error(client: Any, error: Exception) -> str:
    from kkt_adapter.client import Unreachable

    if isinstance(error, Unreachable):
        return f"cannot reach the adapter at {client.base_url}: {error}"
    return str(error)


@app.command()
def status(url: UrlOpt = None, config: ConfigOpt = None) -> None:
    """Show the buffer, the OFD link and the alerts of a running adapter."""
    from kkt_adapter.client import KktError
    from kkt_adapter.client_cli import show_status

    with _client(url, config) as client:
        try:
            show_status(client)
        except KktError as exc:
            typer.echo(f"kkt-adapter: {_client_error(client, exc)}", err=True)
            raise typer.Exit(EXIT_FAILED) from None


@app.command()
def sync(
    url: UrlOpt = None,
    config: ConfigOpt = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the drain.")] = 600,
) -> None:
    """Deliver everything pending now, with a progress bar while the buffer drains."""
    from kkt_adapter.client import KktError
    from kkt_adapter.client_cli import run_sync

    with _client(url, config) as client:
        try:
            result = run_sync(client, timeout)
        except KktError as exc:
            typer.echo(f"kkt-adapter: {_client_error(client, exc)}", err=True)
            raise typer.Exit(EXIT_FAILED) from None
    typer.echo(
        f"synced {result['synced']}, failed {result['failed']}, "
        f"remaining {result['remaining']} ({result['duration_seconds']} s)"
    )


@app.command()
def backup(
    dest: Annotated[
        Path, typer.Argument(help="File to write, or a directory to write a dated copy into.")
    ],
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Copy the buffer with SQLite's online backup, also while the adapter runs."""
    from datetime import UTC, datetime

    from kkt_adapter.buffer.restore import overwrites
    from kkt_adapter.buffer.retention import backup as backup_buffer
    from kkt_adapter.buffer.store import BUFFER_FILE

    settings = _settings_or_exit(data_dir=data_dir, config_file=config)
    source = settings.data_dir / BUFFER_FILE
    if dest.is_dir():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        dest = dest / f"buffer-{stamp}.sqlite"
    _check_backup_dest_or_exit(dest)
    own = overwrites(dest, settings.data_dir)
    if own is not None:
        typer.echo(
            f"kkt-adapter: refusing to write the backup onto {own}: the adapter's own file"
            " (to put a backup in place, use `kkt-adapter restore`)",
            err=True,
        )
        raise typer.Exit(EXIT_REFUSED)
    try:
        receipts = backup_buffer(source, dest)
    except (OSError, sqlite3.Error) as exc:
        typer.echo(f"kkt-adapter: backup of {source} to {dest} failed: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    size = dest.stat().st_size
    typer.echo(f"backed up {receipts} receipts from {source} to {dest} ({size} bytes)")


def _check_backup_dest_or_exit(dest: Path) -> None:
    """A destination whose directory is missing or not writable is refused naming it: SQLite
    would only say "unable to open database file", which read as the source's fault."""
    directory = dest.parent
    if not directory.is_dir():
        problem = "no such directory"
    elif not os.access(directory, os.W_OK | os.X_OK):
        problem = "directory not writable"
    else:
        return
    typer.echo(f"kkt-adapter: cannot write the backup to {dest}: {problem}: {directory}", err=True)
    raise typer.Exit(EXIT_REFUSED)


@app.command()
def restore(
    backup_file: Annotated[
        Path, typer.Argument(help="A copy made by `kkt-adapter backup`.", metavar="BACKUP")
    ],
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Put a backup in place of the buffer (the adapter stopped) and reconcile it with the
    KKT's journal: what the KKT printed after the backup is recovered, never printed again."""
    import asyncio

    from kkt_adapter.errors import StartupRefused
    from kkt_adapter.runtime import restore_buffer

    settings = _settings_or_exit(data_dir=data_dir, config_file=config)
    _configure_logging("warning", "text")
    try:
        report = asyncio.run(restore_buffer(settings, backup_file))
    except (RuntimeError, StartupRefused, OSError, sqlite3.Error) as exc:
        typer.echo(f"kkt-adapter: restore refused: {exc}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    kept = f"; the replaced buffer is kept as {report.kept}" if report.kept else ""
    typer.echo(
        f"restored {report.receipts} receipts from {backup_file};"
        f" {report.recovered} more recovered from the KKT's journal{kept}."
        " Start the adapter to deliver them."
    )


@app.command("config-reference")
def config_reference() -> None:
    """Print the configuration reference (Markdown), generated from the settings model."""
    from kkt_adapter.config_doc import render_reference

    typer.echo(render_reference(), nl=False)


def main() -> None:
    """Console-script entry point."""
    app()
