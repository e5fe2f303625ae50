"""Command line: `python -m huixiangdou.web [--config config.ini] [--standalone] [--host H] [--port P]`.

Serves the web console and the assistant's OpenAI-compatible API at [web] host:port with the worker in
the same process. Thin: it checks, builds the store if missing, starts the LLM server with --standalone.
"""
from __future__ import annotations

import argparse
import sys

from loguru import logger

from huixiangdou.config import Config, ConfigError
from huixiangdou.primitive.host_allowlist import is_loopback


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m huixiangdou.web',
        description='Serve the web console (knowledge base, examples, try it, group messages, integrations) '
                    'and the assistant as an OpenAI-compatible API (/v1/chat/completions, model "huixiangdou").')
    parser.add_argument('--config', '--config_path', dest='config', default='config.ini',
                        help='config file (TOML), default: %(default)s')
    parser.add_argument('--standalone', action='store_true',
                        help='also start the hybrid LLM server as a subprocess (stopped on exit)')
    parser.add_argument('--host', help='address to bind (default: [web] host)')
    parser.add_argument('--port', type=int, help='port to bind (default: [web] port)')
    parser.add_argument('--verbose', action='store_true', help='debug logs')
    return parser.parse_args(argv)


def check_bind(config: Config, host: str) -> None:
    """Anyone who can reach a non-loopback address could change the knowledge base: demand a token."""
    if not is_loopback(host) and not config.web.resolved_admin_token:
        raise ConfigError(f'refusing to serve the web console on {host} without an admin token: set [web] '
                          'admin_token in config.ini or the environment variable HUIXIANGDOU_ADMIN_TOKEN, or '
                          'bind 127.0.0.1 ([web] host)')


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from huixiangdou.main import run_command

    def check(config: Config) -> None:
        host, port = args.host or config.web.host, args.port or config.web.port
        if not 0 < port < 65536:
            raise ConfigError(f'--port must be in 1..65535, got {port}')
        check_bind(config, host)

    return run_command(args, lambda config: serve(config, args.host or config.web.host,
                                                  args.port or config.web.port), check)


def serve(config: Config, host: str, port: int) -> None:
    from aiohttp import web

    from huixiangdou.web.app import create_app

    shown = f'[{host}]' if ':' in host else host
    app = create_app(config, bind_host=host)
    logger.info('web console on http://{}:{}/ (assistant API: http://{}:{}/v1)', shown, port, shown, port)
    web.run_app(app, host=host, port=port, print=None, handle_signals=False)
    # run_app returns only when interrupted, and swallows the interruption: say which, so SIGTERM exits
    # 143 and Ctrl-C 130, as main does.
    from huixiangdou.main import received_stop

    raise received_stop() or KeyboardInterrupt()


if __name__ == '__main__':
    sys.exit(main())
