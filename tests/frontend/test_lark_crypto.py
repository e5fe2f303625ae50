"""Lark payload decryption, request signatures and custom-bot signing."""
from __future__ import annotations

import pytest

from huixiangdou.frontend.lark_crypto import (LarkCryptoError, decrypt_payload, decrypt_text, encrypt_payload,
                                              event_signature, verify_event_signature)


def test_decrypts_the_example_from_the_lark_docs():
    # Example published in the Lark event-subscription docs (Encrypt Key "test key").
    assert decrypt_text('test key', 'P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=') == 'hello world'


def test_round_trip_keeps_chinese_text():
    payload = {'schema': '2.0', 'event': {'text': '如何安装茴香豆？'}}
    assert decrypt_payload('我的密钥', encrypt_payload('我的密钥', payload)) == payload


def test_wrong_key_says_which_setting_to_check():
    encrypted = encrypt_payload('right key', {'a': 1})
    with pytest.raises(LarkCryptoError, match='encrypt_key'):
        decrypt_payload('wrong key', encrypted)


@pytest.mark.parametrize('bad', ['not base64 !!', 'AAAA', ''])
def test_malformed_ciphertext_is_rejected(bad):
    with pytest.raises(LarkCryptoError):
        decrypt_payload('k', bad)


def test_signature_covers_body_timestamp_and_nonce():
    body = b'{"encrypt":"abc"}'
    signature = event_signature('1700000000', 'nonce', 'key', body)
    assert verify_event_signature('1700000000', 'nonce', 'key', body, signature)
    assert not verify_event_signature('1700000000', 'nonce', 'key', body + b' ', signature)
    assert not verify_event_signature('1700000001', 'nonce', 'key', body, signature)
    assert not verify_event_signature('1700000000', 'nonce', 'other', body, signature)
    assert not verify_event_signature('1700000000', 'nonce', 'key', body, '')
