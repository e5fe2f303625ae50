"""Who may do what: the admin token (Bearer, for scripts), cookie sessions with a CSRF token (for the
pages), and the middleware that applies [web] admin_token and protect_api to every request. Wrong tokens
are throttled per client address (primitive/failure_throttle.py).

Reading is open unless protect_api = 1; every change needs the token. It does not serve the pages.
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

COOKIE = 'hxd_session'
CSRF_HEADER = 'X-CSRF-Token'
SESSION_SECONDS = 12 * 3600
CHANGING_METHODS = frozenset({'POST', 'PUT', 'DELETE', 'PATCH'})
# Login and logout carry their own checks; asking is reading (it changes nothing but the outcome log).
NOT_A_CHANGE = frozenset({'/api/login', '/api/logout', '/api/ask'})
READ_ONLY_MESSAGE = ('the console is read-only: set [web] admin_token in config.ini or the environment '
                     'variable HUIXIANGDOU_ADMIN_TOKEN, then restart it')


def _raw(text: str) -> bytes:
    # aiohttp keeps undecodable header bytes as lone surrogates, which plain UTF-8 refuses to encode.
    return text.encode('utf-8', 'surrogatepass')


@dataclass
class LoginSession:
    csrf: str
    expires: float


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

    def open(self) -> tuple[str, LoginSession]:
        self._forget_expired()
        session_id = secrets.token_urlsafe(32)
        session = LoginSession(csrf=secrets.token_urlsafe(32), expires=time.time() + self.lifetime)
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

    def _forget_expired(self) -> None:
        now = time.time()
        for key in [k for k, s in self._by_id.items() if s.expires < now]:
            del self._by_id[key]


SESSIONS = web.AppKey('sessions', Sessions)
PROTECT_API = web.AppKey('protect_api', bool)
THROTTLE = web.AppKey('token_throttle', FailureThrottle)
PROXIES = web.AppKey('trusted_proxies', list)


def token_accepted(request: web.Request, given: str) -> bool:
    """Whether `given` is the admin token, counting a wrong one against the client's address; a client
    locked out by earlier failures gets 429 with Retry-After whatever it sends (else the lockout would not
    slow the guessing down)."""
    sessions, throttle = request.app[SESSIONS], request.app[THROTTLE]
    address = client_address(request.remote, request.headers.get('X-Forwarded-For', ''), request.app[PROXIES])
    if not sessions.token_configured:
        return False  # nothing to guess
    wait = throttle.retry_after(address)
    if wait:
        raise ApiError(429, 'too_many_attempts', f'too many wrong admin tokens from {address}: try again in '
                       f'{retry_after_header(wait)} s', headers={'Retry-After': retry_after_header(wait)})
    if sessions.token_matches(given):
        throttle.succeeded(address)
        return True
    lockout = throttle.failed(address)
    # Never the token itself: a near miss in the log would help whoever reads it.
    # The raw (still percent-encoded) path: a decoded %0A would let a client forge log lines.
    logger.warning('web console: wrong admin token from {} on {} {} ({} in a row{})', address, request.method,
                   request.raw_path[:200], throttle.failures(address),
                   f'; locked out for {lockout:g} s' if lockout else '')
    return False


def bearer(request: web.Request) -> str | None:
    header = request.headers.get('Authorization', '')
    return header[7:].strip() if header[:7].lower() == 'bearer ' else None


def login_session(request: web.Request) -> LoginSession | None:
    return request.app[SESSIONS].find(request.cookies.get(COOKIE))


def needs_protection(request: web.Request) -> bool:
    """With protect_api, reads need credentials too: every /api/ call but the session probe, and /v1/."""
    if not request.app[PROTECT_API]:
        return False
    path = request.path
    return path.startswith('/v1/') or (path.startswith('/api/') and path not in ('/api/session', '/api/login',
                                                                                 '/api/logout'))


@web.middleware
async def require_admin(request: web.Request, handler):
    """Changes need the Bearer token, or the session cookie plus its CSRF header; reads may need either."""
    sessions = request.app[SESSIONS]
    changing = (request.method in CHANGING_METHODS and request.path.startswith('/api/')
                and request.path not in NOT_A_CHANGE)
    if not (changing or needs_protection(request)):
        return await handler(request)
    if not sessions.token_configured:
        if changing:
            raise ApiError(403, 'read_only', READ_ONLY_MESSAGE)
        return await handler(request)  # protect_api without a token would lock everyone out: reads stay open
    given = bearer(request)
    if given is not None:
        if not token_accepted(request, given):
            raise ApiError(401, 'unauthorized', 'wrong admin token in the Authorization header')
        return await handler(request)
    session = login_session(request)
    if session is None:
        raise ApiError(401, 'unauthorized', 'log in with the admin token ([web] admin_token), or send '
                                            '"Authorization: Bearer <token>"')
    if changing and not hmac.compare_digest(_raw(request.headers.get(CSRF_HEADER, '')), _raw(session.csrf)):
        raise ApiError(403, 'csrf', f'the {CSRF_HEADER} header is missing or wrong: reload the page and try again')
    return await handler(request)


def is_admin(request: web.Request) -> bool:
    sessions = request.app[SESSIONS]
    given = bearer(request)
    if given is not None:
        return token_accepted(request, given)
    return sessions.token_configured and login_session(request) is not None


async def get_session(request: web.Request) -> web.Response:
    sessions = request.app[SESSIONS]
    session = login_session(request) if sessions.token_configured else None
    return web.json_response({'admin': is_admin(request), 'token_configured': sessions.token_configured,
                              'csrf': session.csrf if session else None,
                              'protect_api': request.app[PROTECT_API]})


async def login(request: web.Request) -> web.Response:
    sessions = request.app[SESSIONS]
    if not sessions.token_configured:
        raise ApiError(403, 'read_only', READ_ONLY_MESSAGE)
    token = (await read_json(request)).get('token')
    if not isinstance(token, str) or not token_accepted(request, token):
        raise ApiError(401, 'unauthorized', 'wrong admin token: it is [web] admin_token in config.ini '
                                            '(or HUIXIANGDOU_ADMIN_TOKEN)')
    sessions.close(request.cookies.get(COOKIE))
    session_id, session = sessions.open()
    response = web.json_response({'admin': True, 'csrf': session.csrf})
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
