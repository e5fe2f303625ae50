"""refuse_malformed_bodies and read_body on a real aiohttp app: a body whose Content-Encoding does not decode
is a 400 {"error"}, the connection is closed, nothing is logged as an error, and the server goes on."""
from __future__ import annotations

import gzip
import logging

import aiohttp
from aiohttp import web

from huixiangdou.primitive.request_body import read_body, refuse_malformed_bodies
from tests.service.test_llm_server import serve


async def echo(request: web.Request) -> web.Response:
    return web.Response(body=await read_body(request, max_size=64))


async def plain(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())  # aiohttp's own reading: the middleware catches it too


async def test_an_undecodable_body_is_a_400_and_the_server_goes_on(caplog):
    app = web.Application(middlewares=[refuse_malformed_bodies])
    app.router.add_post('/echo', echo)
    app.router.add_post('/plain', plain)
    caplog.set_level(logging.ERROR, logger='aiohttp')
    async with serve(app) as url, aiohttp.ClientSession() as http:
        for path in ('/echo', '/plain'):
            async with http.post(url + path, data=b'not gzip', headers={'Content-Encoding': 'gzip'}) as r:
                assert r.status == 400 and r.headers['Connection'] == 'close'
                assert 'gzip' in (await r.json())['error']
            async with http.post(url + path, data=gzip.compress(b'hello'), headers={'Content-Encoding': 'gzip'}) as r:
                assert r.status == 200 and await r.read() == b'hello'
        # Far more than one read: what aiohttp has not read yet must not be drained into a logged traceback.
        async with http.post(f'{url}/plain', data=b'not gzip' * 50_000, headers={'Content-Encoding': 'gzip'}) as r:
            assert r.status == 400
        async with http.post(f'{url}/echo', data=b'x' * 65) as r:
            assert r.status == 413
        async with http.post(f'{url}/echo', data=gzip.compress(b'x' * 10_000), headers={'Content-Encoding': 'gzip'}) as r:
            assert r.status == 413  # the limit counts decoded bytes
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
