"""Who may do what: the admin token (Bearer, for scripts), operators of one knowledge base (their password),
cookie sessions with a CSRF token (for the pages), and the middleware that applies [web] admin_token and
protect_api to every request. Wrong tokens and passwords are throttled per client address
(primitive/failure_throttle.py).

Reading is open unless protect_api = 1 or some knowledge base has an operator; every change needs credentials.
An operator reaches only the knowledge-base pages' endpoints (OPERATOR_PATHS), and scope.py keeps them to their
own knowledge base. It does not serve the pages.
"""
from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field

from aiohttp import web
from loguru import logger

from huixiangdou.primitive.failure_throttle import FailureThrottle, client_address, retry_after_header
from huixiangdou.web.api_error import ApiError, read_json
from huixiangdou.web.console import console_of
from huixiangdou.web.operator_password import verify_password

COOKIE = 'hxd_session'
CSRF_HEADER = 'X-CSRF-Token'
SESSION_SECONDS = 12 * 3600
CHANGING_METHODS = frozenset({'POST', 'PUT', 'DELETE', 'PATCH'})
# Login and logout carry their own checks; asking is reading (it changes nothing but the outcome log).
NOT_A_CHANGE = frozenset({'/api/login', '/api/logout', '/api/ask'})
READ_ONLY_MESSAGE = ('the console is read-only: set [web] admin_token in config.ini or the environment '
                     'variable HUIXIANGDOU_ADMIN_TOKEN, then restart it')
# What an operator may reach (a path, or below it): the pages of one knowledge base. The rest is the admin's.
OPERATOR_PATHS = ('/api/session', '/api/login', '/api/logout', '/api/kb', '/api/chunks', '/api/rebuild',
                  '/api/files', '/api/examples', '/api/calibrate', '/api/calibration', '/api/ask', '/api/messages')
# And these, to read only (the list shows the operator's own knowledge base alone).
OPERATOR_READS = ('/api/knowledge-bases', '/api/integrations')
# scrypt of a wrong password for an unknown knowledge base too, so the time does not tell which names exist.
_NO_OPERATOR = 'scrypt$' + '0' * 32 + '$' + '0' * 64


@dataclass(frozen=True)
class Principal:
    """Who sent a request: the admin (kb None), or the operator of knowledge base `kb`."""
    kb: str | None = None

    @property
    def role(self) -> str:
        return 'admin' if self.kb is None else 'operator'


def _raw(text: str) -> bytes:
    # aiohttp keeps undecodable header bytes as lone surrogates, which plain UTF-8 refuses to encode.
    return text.encode('utf-8', 'surrogatepass')


@dataclass
class LoginSession:
    csrf: str
    expires: float
    kb: str | None = None  # None: the admin's session; else the knowledge base its operator logged in to


@dataclass
class Sessions:
    """The server-side session map: a random cookie id → its CSRF token and expiry (lost on restart)."""
    admin_token: str
    lifetime: float = SESSION_SECONDS
    _by_id: dict[str, LoginSession] = field(default_factory=dict)

    @property
    def token_configured(self) -> bool:
        return bool(self.admin_token)

    def token_matches(self, given: str) -> bool:
        # Constant time, so the token cannot be guessed byte by byte from response times.
        return self.token_configured and hmac.compare_digest(_raw(given), _raw(self.admin_token))

    def open(self, kb: str | None = None) -> tuple[str, LoginSession]:
        self._forget_expired()
        session_id = secrets.token_urlsafe(32)
        session = LoginSession(csrf=secrets.token_urlsafe(32), expires=time.time() + self.lifetime, kb=kb)
        self._by_id[session_id] = session
        return session_id, session

    def find(self, session_id: str | None) -> LoginSession | None:
        session = self._by_id.get(session_id or '')
        if session is not None and session.expires < time.time():
            del self._by_id[session_id]
            return None
        return session

    def close(self, session_id: str | None) -> None:
        self._by_id.pop(session_id or '', None)

    def close_operators(self, kb: str) -> None:
        """Log out every operator of `kb` (its password changed, or it was deleted)."""
        for key in [k for k, s in self._by_id.items() if s.kb == kb]:
            del self._by_id[key]

    def _forget_expired(self) -> None:
        now = time.time()
        for key in [k for k, s in self._by_id.items() if s.expires < now]:
            del self._by_id[key]


SESSIONS = web.AppKey('sessions', Sessions)
PROTECT_API = web.AppKey('protect_api', bool)
THROTTLE = web.AppKey('token_throttle', FailureThrottle)
PROXIES = web.AppKey('trusted_proxies', list)
# The Principal of a request that brought credentials (or a session cookie).
PRINCIPAL = web.RequestKey('principal', Principal)


def _throttled(request: web.Request, what: str, accepted) -> bool:
    """Whether `accepted()` holds, counting a failure against the client's address; a client locked out by
    earlier failures gets 429 with Retry-After whatever it sends (else the lockout would not slow the guessing
    down). Admin tokens and operator passwords share one count per address."""
    throttle = request.app[THROTTLE]
    address = client_address(request.remote, request.headers.get('X-Forwarded-For', ''), request.app[PROXIES])
    wait = throttle.retry_after(address)
    if wait:
        raise ApiError(429, 'too_many_attempts', f'too many wrong admin tokens or passwords from {address}: try '
                       f'again in {retry_after_header(wait)} s', headers={'Retry-After': retry_after_header(wait)})
    if accepted():
        throttle.succeeded(address)
        return True
    lockout = throttle.failed(address)
    # Never the token itself: a near miss in the log would help whoever reads it.
    # The raw (still percent-encoded) path: a decoded %0A would let a client forge log lines.
    logger.warning('web console: wrong {} from {} on {} {} ({} in a row{})', what, address, request.method,
                   request.raw_path[:200], throttle.failures(address),
                   f'; locked out for {lockout:g} s' if lockout else '')
    return False


def token_accepted(request: web.Request, given: str) -> bool:
    """Whether `given` is the admin token (throttled, see _throttled)."""
    sessions = request.app[SESSIONS]
    if not sessions.token_configured:
        return False  # nothing to guess
    return _throttled(request, 'admin token', lambda: sessions.token_matches(given))


def operator_accepted(request: web.Request, kb: str, password: str) -> bool:
    """Whether `password` is the operator password of knowledge base `kb` (throttled like the token)."""
    stored = console_of(request).config.operators.get(kb)
    return _throttled(request, f'operator password for "{kb[:64]}"',
                      lambda: verify_password(password, stored or _NO_OPERATOR) and stored is not None)


def bearer(request: web.Request) -> str | None:
    header = request.headers.get('Authorization', '')
    return header[7:].strip() if header[:7].lower() == 'bearer ' else None


def login_session(request: web.Request) -> LoginSession | None:
    return request.app[SESSIONS].find(request.cookies.get(COOKIE))


def reads_protected(request: web.Request) -> bool:
    """protect_api, or an operator anywhere: one knowledge base's group messages must not be one logged-out
    request away from another's operator."""
    return request.app[PROTECT_API] or bool(console_of(request).config.operators)


def needs_protection(request: web.Request) -> bool:
    """With protected reads, reads need credentials too: every /api/ call but the session probe, and /v1/."""
    if not reads_protected(request):
        return False
    path = request.path
    return path.startswith('/v1/') or (path.startswith('/api/') and path not in ('/api/session', '/api/login',
                                                                                 '/api/logout'))


def _below(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + '/') for p in prefixes)


def operator_may(request: web.Request) -> bool:
    if not request.path.startswith(('/api/', '/v1/')):
        return True  # the pages themselves
    return _below(request.path, OPERATOR_PATHS) or (request.method in ('GET', 'HEAD')
                                                   and _below(request.path, OPERATOR_READS))


def _admit(request: web.Request, principal: Principal) -> None:
    if principal.kb is not None and not operator_may(request):
        raise ApiError(403, 'admin_only', f'only the admin may do this; you are the operator of "{principal.kb}"')
    request[PRINCIPAL] = principal


@web.middleware
async def require_credentials(request: web.Request, handler):
    """Changes need the Bearer token, or the session cookie plus its CSRF header; reads may need either. An
    operator's session reaches only OPERATOR_PATHS, even where reading is open."""
    sessions = request.app[SESSIONS]
    changing = (request.method in CHANGING_METHODS and request.path.startswith('/api/')
                and request.path not in NOT_A_CHANGE)
    session = login_session(request) if sessions.token_configured else None
    if not (changing or needs_protection(request)):
        if session is not None:
            _admit(request, Principal(session.kb))
        return await handler(request)
    if not sessions.token_configured:
        if changing:
            raise ApiError(403, 'read_only', READ_ONLY_MESSAGE)
        return await handler(request)  # protect_api without a token would lock everyone out: reads stay open
    given = bearer(request)
    if given is not None:
        if not token_accepted(request, given):
            raise ApiError(401, 'unauthorized', 'wrong admin token in the Authorization header')
        _admit(request, Principal())
        return await handler(request)
    if session is None:
        raise ApiError(401, 'unauthorized', 'log in with the admin token ([web] admin_token) or a knowledge '
                                            'base\'s operator password, or send "Authorization: Bearer <token>"')
    if changing and not hmac.compare_digest(_raw(request.headers.get(CSRF_HEADER, '')), _raw(session.csrf)):
        raise ApiError(403, 'csrf', f'the {CSRF_HEADER} header is missing or wrong: reload the page and try again')
    _admit(request, Principal(session.kb))
    return await handler(request)


def principal_of(request: web.Request) -> Principal | None:
    """Who sent the request, when it brought credentials the middleware checked (or a session cookie)."""
    return request.get(PRINCIPAL)


def require_admin(request: web.Request) -> None:
    """For the admin's own endpoints: 403 for an operator (the middleware already keeps them out)."""
    principal = principal_of(request)
    if principal is not None and principal.kb is not None:
        raise ApiError(403, 'admin_only', f'only the admin may do this; you are the operator of "{principal.kb}"')


def is_admin(request: web.Request) -> bool:
    sessions = request.app[SESSIONS]
    given = bearer(request)
    if given is not None:
        return token_accepted(request, given)
    session = login_session(request) if sessions.token_configured else None
    return session is not None and session.kb is None


async def get_session(request: web.Request) -> web.Response:
    sessions = request.app[SESSIONS]
    session = login_session(request) if sessions.token_configured else None
    admin = is_admin(request)
    role = 'admin' if admin else ('operator' if session is not None else None)
    return web.json_response({'admin': admin, 'token_configured': sessions.token_configured,
                              'csrf': session.csrf if session else None,
                              'protect_api': reads_protected(request), 'role': role,
                              'kb': session.kb if session is not None else None})


async def login(request: web.Request) -> web.Response:
    """{"token": admin token} logs the admin in; {"kb": name, "password": ...} that knowledge base's operator."""
    sessions = request.app[SESSIONS]
    if not sessions.token_configured:
        raise ApiError(403, 'read_only', READ_ONLY_MESSAGE)
    body = await read_json(request)
    kb = None
    if 'kb' in body or 'password' in body:
        kb, password = body.get('kb'), body.get('password')
        if not isinstance(kb, str) or not isinstance(password, str) or not operator_accepted(request, kb, password):
            raise ApiError(401, 'unauthorized', 'wrong knowledge base or operator password: the admin sets it on '
                                                'the Knowledge bases page')
    else:
        token = body.get('token')
        if not isinstance(token, str) or not token_accepted(request, token):
            raise ApiError(401, 'unauthorized', 'wrong admin token: it is [web] admin_token in config.ini '
                                                '(or HUIXIANGDOU_ADMIN_TOKEN)')
    sessions.close(request.cookies.get(COOKIE))
    session_id, session = sessions.open(kb)
    response = web.json_response({'admin': kb is None, 'csrf': session.csrf,
                                  'role': 'admin' if kb is None else 'operator', 'kb': kb})
    response.set_cookie(COOKIE, session_id, max_age=int(sessions.lifetime), httponly=True, samesite='Strict',
                        path='/', secure=request.secure)
    return response


async def logout(request: web.Request) -> web.Response:
    request.app[SESSIONS].close(request.cookies.get(COOKIE))
    response = web.json_response({'admin': False})
    response.del_cookie(COOKIE, path='/')
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get('/api/session', get_session)
    app.router.add_post('/api/login', login)
    app.router.add_post('/api/logout', logout)
