"""Which knowledge base a request is about (`?kb=<name>`, default "default"), checked against who sent it: an
operator reaches only their own (403), a name the config does not know is a 404.

Every knowledge-base page's handler starts here; it does not decide about credentials (auth.py does).
"""
from __future__ import annotations

from aiohttp import web

from huixiangdou.config import DEFAULT_KNOWLEDGE_BASE
from huixiangdou.web.api_error import ApiError
from huixiangdou.web.auth import principal_of
from huixiangdou.web.console import KnowledgeBaseState, console_of

KB_PARAM = 'kb'


def allowed(request: web.Request, name: str) -> bool:
    """Whether the request's sender may see knowledge base `name` (anyone but another knowledge base's operator)."""
    principal = principal_of(request)
    return principal is None or principal.kb is None or principal.kb == name


def check_name(request: web.Request, name: str) -> str:
    """`name` when the sender may reach it and it exists: 403 first, so an operator cannot probe for names."""
    if not allowed(request, name):
        raise ApiError(403, 'forbidden_knowledge_base', f'you are the operator of "{principal_of(request).kb}" '
                                                        'and may reach only that knowledge base')
    if name not in console_of(request).config.knowledge_bases():
        raise ApiError(404, 'unknown_knowledge_base', f'no knowledge base named {name[:64]!r}: GET '
                                                      '/api/knowledge-bases lists them')
    return name


def kb_scope(request: web.Request, fallback: str = DEFAULT_KNOWLEDGE_BASE) -> KnowledgeBaseState:
    """The state of the knowledge base `?kb=` names, else `fallback` (its worker perhaps not loaded: see
    kb_ready)."""
    name = check_name(request, request.query.get(KB_PARAM) or fallback)
    return console_of(request).kb(name)


async def kb_ready(request: web.Request, fallback: str = DEFAULT_KNOWLEDGE_BASE) -> KnowledgeBaseState:
    """kb_scope with the knowledge base's worker loaded when its store can be (for asking and reading chunks)."""
    return await console_of(request).ready(kb_scope(request, fallback))
