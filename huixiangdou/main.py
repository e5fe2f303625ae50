"""Entry point: `python -m huixiangdou.main [--standalone] [--query Q]`.

Builds the feature store if it is missing, starts the hybrid LLM server (with --standalone, when something
in the config calls it), then runs the configured frontend or answers the sample queries. Nothing else lives here.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from loguru import logger

from huixiangdou.config import DEFAULT_KNOWLEDGE_BASE, Config, ConfigError, load_config


SAMPLE_QUERIES = 'resource/sample_queries.json'


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m huixiangdou.main',
        description='Run the huixiangdou assistant. Without --query it runs the frontend set in [frontend] '
                    'type of config.ini; the default, "none", has no group to serve: it answers the sample '
                    'queries (resource/sample_queries.json) and exits. A missing feature store is built first.',
        epilog='Where things go: answers print on stdout and are appended as JSON lines to [worker] save_path '
               '(default logs/work.txt); logs, progress and errors go to stderr.')
    # --config_path: upstream HuixiangDou's spelling, accepted so its users' scripts keep working.
    parser.add_argument('--config', '--config_path', dest='config', default='config.ini',
                        help='config file (TOML), default: %(default)s')
    parser.add_argument('--standalone', action='store_true',
                        help='also start the hybrid LLM server as a subprocess (stopped on exit) when something '
                             'in the config calls it: [worker] answer_mode "generate", or "auto" with a remote '
                             'model or [llm.server] local_llm_path, or enable_intention / enable_check. The '
                             'default config quotes from the documents and never calls it, so it is not started')
    parser.add_argument('--query', action='append',
                        help='a question to answer (repeatable); default: resource/sample_queries.json')
    parser.add_argument('--verbose', action='store_true', help='debug logs, with per-stage details')
    return parser.parse_args(argv)


def ensure_feature_store(config: Config, config_path: Path) -> None:
    """Build first every knowledge base whose work_dir has no store, with the builder's own progress output."""
    from huixiangdou.service.feature_store.store import CURRENT

    missing = [name for name, fs in config.knowledge_bases().items()
               if not (config.path(fs.work_dir) / CURRENT).exists()]
    if not missing:
        return
    from huixiangdou.service.feature_store.__main__ import main as build_main

    for name in missing:
        repo_dir = config.path(config.knowledge_bases()[name].repo_dir)
        if name != DEFAULT_KNOWLEDGE_BASE and not any(p.is_file() for p in repo_dir.rglob('*')):
            # Made in the console and still empty: nothing to build; the other knowledge bases start.
            logger.warning('knowledge base "{}" has no documents in {} yet: not built, its groups get no answers '
                           'until documents are added and it is built', name, repo_dir)
            continue
        logger.info('no feature store for knowledge base "{}" in {}: building it first', name,
                    config.path(config.knowledge_bases()[name].work_dir))
        code = build_main(['--config', str(config_path), '--kb', name])
        if code != 0:
            raise SystemExit(code)


def sample_queries(config: Config) -> list[str]:
    path = config.path(SAMPLE_QUERIES)
    if path.is_file():
        try:
            return [q for q in json.loads(path.read_text(encoding='utf-8')) if isinstance(q, str)]
        except ValueError as exc:
            raise ConfigError(f'{path} is not a JSON list of questions: {exc}') from exc
    return ['How do I rebuild the feature store?', '今天中午吃什么？']


def format_session(session) -> str:
    """One line per answer; the references carry the numbers the reply cites them by."""
    from huixiangdou.service.worker.citation import numbered

    refs = ', '.join(numbered(session.references))
    reply = session.reply.replace('\n', ' ')
    return f'{session.code} | Query: {session.query} | Reply: {reply} | References: {refs}'


async def answer(config: Config, queries: list[str]) -> None:
    from huixiangdou.service.worker.pipeline import Worker
    from huixiangdou.service.worker.session import Session

    # Loading models takes seconds: off the event loop, so Ctrl-C is not held up.
    worker = await asyncio.to_thread(Worker.from_config, config)
    try:
        for query in queries:
            session = await worker.run(Session(query=query))
            print(format_session(session), flush=True)
    finally:
        await worker.close()


async def serve_frontend(config: Config) -> None:
    from huixiangdou.frontend import run_frontend
    from huixiangdou.frontend.runner import check_frontend
    from huixiangdou.service.worker.pipeline import Worker

    check_frontend(config)

    worker = await asyncio.to_thread(Worker.from_config, config)
    try:
        await run_frontend(config, worker)
    finally:
        await worker.close()


async def post_to_webhook(config: Config, queries: list[str]) -> None:
    """The send-only Lark bot: answer the queries and post the answers to the group's webhook."""
    from huixiangdou.frontend.lark import run_lark_webhook
    from huixiangdou.service.worker.pipeline import Worker

    async def questions():
        for query in queries:
            yield query

    worker = await asyncio.to_thread(Worker.from_config, config)
    try:
        await run_lark_webhook(config.frontend, worker, questions=questions())
    finally:
        await worker.close()


def run(config: Config, args: argparse.Namespace) -> None:
    saved = (f'appended to {config.path(config.worker.save_path)} ([worker] save_path)'
             if config.worker.save_path else 'not saved ([worker] save_path = "")')
    if config.frontend.type == 'lark' and args.standalone:
        # As upstream: with a webhook bot, --standalone posts the answers to the group.
        logger.info('[frontend] type = "lark" with --standalone: answering the queries and posting the answers '
                    'to the webhook; answers are also {}', saved)
        asyncio.run(post_to_webhook(config, args.query or sample_queries(config)))
    elif config.frontend.type != 'none' and not args.query:
        logger.info('serving the frontend [frontend] type = "{}"; answers are {}', config.frontend.type, saved)
        asyncio.run(serve_frontend(config))
    else:
        queries = args.query or sample_queries(config)
        path = config.path(SAMPLE_QUERIES)
        what = ('question(s) from --query' if args.query else
                f'sample queries from {path}' if path.is_file() else f'built-in sample queries ({path} not found)')
        why = '' if args.query else ': [frontend] type = "none" serves no group; set it to a frontend to serve one'
        logger.info('answering {} {}{}. Answers print on stdout and are {}; logs go to stderr', len(queries), what,
                    why, saved)
        asyncio.run(answer(config, queries))


def llm_callers(config: Config) -> list[str]:
    """What in `config` would send a request to the LLM server, in words; empty when nothing would (the
    default: answer_mode "auto" with only the bundled model quotes from the documents)."""
    from huixiangdou.service.worker.pipeline import has_capable_llm

    worker = config.worker
    callers = []
    if worker.answer_mode == 'generate':
        callers.append('[worker] answer_mode = "generate"')
    elif worker.answer_mode == 'auto' and has_capable_llm(config):
        callers.append('[worker] answer_mode = "auto" with '
                       + ('a remote model ([llm] enable_remote = 1)' if config.llm.enable_remote
                          else '[llm.server] local_llm_path'))
    if worker.enable_intention:
        callers.append('[worker] enable_intention = 1')
    if worker.enable_check:
        callers.append('[worker] enable_check = 1')
    return callers


def setup_logging(verbose: bool) -> None:
    logger.remove()
    logger.add(sys.stderr, level='DEBUG' if verbose else 'INFO')


def check_standalone(config: Config) -> None:
    """The worker must reach the server that --standalone starts."""
    port = urlparse(config.llm.client_url).port
    if port != config.llm.server.local_llm_bind_port:
        raise ConfigError(f'[llm] client_url ({config.llm.client_url}) does not point at the port the '
                          f'server listens on ([llm.server] local_llm_bind_port = '
                          f'{config.llm.server.local_llm_bind_port}): make them agree')


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwind exactly as for Ctrl-C, so the LLM server child is stopped too."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: list[Stopped] = []


def received_stop() -> Stopped | None:
    """The Stopped a termination signal raised, for a caller whose library swallowed it (aiohttp's run_app
    treats every KeyboardInterrupt as a normal end)."""
    return _received[-1] if _received else None


def stop_on_termination_signals() -> None:
    """What systemd, docker and process managers send must stop the process tree, not orphan the child."""

    def handler(signum, _frame):
        _received.append(Stopped(signum))
        raise _received[-1]

    for name in ('SIGTERM', 'SIGHUP'):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)


def user_errors() -> tuple[type[Exception], ...]:
    """Our own error types: each means the user must change something, and its message says what.

    Anything else (a plain ValueError, KeyError, ...) is a bug and keeps its traceback.
    """
    from huixiangdou.config_upstream import UpstreamConfigError
    from huixiangdou.frontend.errors import FrontendError
    from huixiangdou.frontend.lark_crypto import LarkCryptoError
    from huixiangdou.primitive.documents.walker import RepoDirError
    from huixiangdou.primitive.embedder import EmbedderError
    from huixiangdou.service.feature_store import StoreError
    from huixiangdou.service.feature_store.builder import BuildError
    from huixiangdou.service.feature_store.calibration import QuestionFileError
    from huixiangdou.service.feature_store.reject_model import RejectModelError
    from huixiangdou.service.llm_client import LLMClientError
    from huixiangdou.service.reranker import RerankError
    from huixiangdou.service.web_search import WebSearchError

    return (ConfigError, UpstreamConfigError, StoreError, BuildError, RepoDirError, QuestionFileError,
            RejectModelError, EmbedderError, LLMClientError, RerankError, WebSearchError, FrontendError,
            LarkCryptoError)


def run_command(args: argparse.Namespace, body: Callable[[Config], None],
                check: Callable[[Config], None] | None = None) -> int:
    """What `main` and `python -m huixiangdou.web` share: load the config, check it, build the store if it
    is missing, start the LLM server with --standalone when something calls it (llm_callers), run
    `body(config)`; our own errors print their message (no traceback) and exit 1, SIGTERM/SIGHUP exit
    128 + signal, Ctrl-C 130."""
    stop_on_termination_signals()
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    setup_logging(args.verbose)
    try:
        config = load_config(args.config)
        if check is not None:
            check(config)
        if args.standalone:
            check_standalone(config)
        ensure_feature_store(config, Path(args.config))
        setup_logging(args.verbose)  # the builder's CLI set its own log level
        callers = llm_callers(config) if args.standalone else []
        if args.standalone and not callers:
            # 30-90 s and ~1 GB for a server nothing would call.
            logger.info('--standalone: not starting the LLM server, nothing in this config calls it ([worker] '
                        'answer_mode "{}" quotes from the documents with only the bundled model; intention and '
                        'check are off). It starts with answer_mode "generate", a remote model or [llm.server] '
                        'local_llm_path, or enable_intention / enable_check', config.worker.answer_mode)
        if callers:
            from huixiangdou.service.llm_server_process import start_server

            logger.info('--standalone: starting the LLM server for {}', ', '.join(callers))
            with start_server(Path(args.config), config):
                body(config)
        else:
            body(config)
        return 0
    except user_errors() as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    except Stopped as exc:
        print(f'stopped by {exc}', file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print('stopped', file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command(args, lambda config: run(config, args))

if __name__ == '__main__':
    sys.exit(main())
