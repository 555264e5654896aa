"""``movecar serve``: the engine over HTTP (:mod:`movecar_adapters.http`, docs/http.md).

The engine comes from the composition root (``--db``/``$MOVECAR_DB_URL``/``movecar.toml``,
the embedded SQLite file by default); the tokens from ``$MOVECAR_API_TOKENS`` or
``[api] tokens_file``; the webhook secret from ``$MOVECAR_WEBHOOK_SECRET`` or
``[api] webhook_secret_file``. uvicorn serves it. SIGTERM or SIGINT stops it gracefully:
no new connection is taken, the requests in flight are answered, then the engine is
closed and the exit code is 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from movecar_adapters.cli_common import CliError, Exit, scrub
from movecar_adapters.config import ENV_API_TOKENS, mask_url

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8114


def _line(text: str) -> None:
    print(scrub(text), file=sys.stderr, flush=True)


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text[:20]!r}: a port from 0 to 65535")
    return int(text)


def cmd_serve(args: argparse.Namespace) -> int:
    from movecar_adapters.config import load_settings

    if args.new_token:
        from movecar_adapters.http.auth import new_token

        print(new_token())
        return Exit.OK
    try:
        import uvicorn

        from movecar_adapters.http import create_app, parse_tokens
    except ModuleNotFoundError as exc:
        raise CliError(
            f"needs the http extra (pip install 'movecar[http]'): {exc.name} is missing",
            Exit.ENVIRONMENT,
        ) from None
    from movecar_adapters.connect import connect

    settings = load_settings(args.config)
    tokens = parse_tokens(settings.api_tokens_spec, settings.api_tokens_source or ENV_API_TOKENS)
    host = args.host or settings.api_host or DEFAULT_HOST
    port = args.port if args.port is not None else settings.api_port or DEFAULT_PORT
    url = args.db or settings.url
    engine = connect(url, config=args.config)
    try:
        app = create_app(engine, tokens=tokens, webhook_secret=settings.webhook_secret)

        class Server(uvicorn.Server):
            async def startup(self, sockets: Any = None) -> None:
                await super().startup(sockets)
                bound = [s.getsockname() for srv in self.servers for s in srv.sockets]
                if bound:  # the port really bound (--port 0 picks a free one)
                    _line(
                        f"movecar serve: listening on http://{host}:{bound[0][1]} "
                        f"({mask_url(url)}, {len(tokens.entries)} token(s), webhook "
                        f"{'on' if settings.webhook_secret else 'off'})"
                    )

        config = uvicorn.Config(
            app, host=host, port=port, lifespan="off", log_level="info",
            timeout_graceful_shutdown=30,
        )  # fmt: skip
        server = Server(config)
        # uvicorn handles SIGTERM/SIGINT while it serves, then raises the signal again for
        # the handler it found: ours, so the process lives on to close the engine and
        # exit with 0 (the default handler would kill it there).
        stopped: list[int] = []
        previous = {
            which: signal.signal(which, lambda signum, frame: stopped.append(signum))
            for which in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            server.run()
        finally:
            for which, handler in previous.items():
                signal.signal(which, handler)
        if not server.started:
            raise CliError(f"cannot listen on {host}:{port}", Exit.ENVIRONMENT)
    finally:
        engine.close()
    _line("movecar serve: stopped; engine closed")
    return Exit.OK


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "serve",
        help="serve the engine over HTTP (docs/http.md)",
        description="Serve the engine over HTTP: /v1 resources, bearer tokens per role, "
        "signed telephony callbacks, /openapi.json. SIGTERM stops it gracefully.",
    )
    parser.add_argument("--host", help=f"address to bind (default [api] host or {DEFAULT_HOST})")
    parser.add_argument(
        "--port", type=_port, help=f"port (default [api] port or {DEFAULT_PORT}; 0: any free)"
    )
    parser.add_argument("--db", default=argparse.SUPPRESS, metavar="URL", help="database URL")
    parser.add_argument(
        "--new-token", action="store_true", help="print a new random token and exit"
    )
    parser.set_defaults(func=cmd_serve)
