"""Hostile requests found by an outside test of the console: each got past the first hardening. An upload
whose file name is not UTF-8 is refused (it was stored under a name no later request or build could handle)."""
from __future__ import annotations

import aiohttp

from tests.web.conftest import ADMIN_TOKEN

AUTH = {'Authorization': f'Bearer {ADMIN_TOKEN}'}


async def test_an_upload_whose_file_name_is_not_utf8_is_a_400_and_stores_nothing(bare_console):
    url = await bare_console()
    # Bytes as a client may send them: \xff\xfe is no UTF-8 (aiohttp keeps it as lone surrogates).
    body = (b'--abc\r\nContent-Disposition: form-data; name="file"; filename="\xff\xfe.md"\r\n\r\n# hello\r\n'
            b'--abc--\r\n')
    async with aiohttp.ClientSession() as http:
        async with http.post(f'{url}/api/files', data=body,
                             headers={**AUTH, 'Content-Type': 'multipart/form-data; boundary=abc'}) as r:
            answer = await r.json()
            assert r.status == 400, answer
            assert 'UTF-8' in answer['error']['message']
        async with http.get(f'{url}/api/kb') as r:
            assert (await r.json())['files'] == []  # nothing stored that the console could not delete
        # The same upload with a UTF-8 name is stored.
        async with http.post(f'{url}/api/files', data=body.replace(b'\xff\xfe', 'é'.encode()),
                             headers={**AUTH, 'Content-Type': 'multipart/form-data; boundary=abc'}) as r:
            assert r.status == 201, await r.text()
