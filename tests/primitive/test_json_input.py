import json

import pytest

from huixiangdou.primitive.json_input import InvalidJson, clean_text, parse_json, parse_json_object


def test_deep_nesting_is_refused_not_crashed():
    with pytest.raises(InvalidJson, match='deeper'):
        parse_json(b'[' * 1000 + b']' * 1000)
    with pytest.raises(InvalidJson, match='deeper'):
        parse_json('{"a":' * 100 + '1' + '}' * 100)
    # Far beyond the interpreter's recursion limit: still a clean error.
    with pytest.raises(InvalidJson):
        parse_json(b'[' * 200000 + b']' * 200000)


def test_depth_within_the_bound_parses():
    value = parse_json('[' * 60 + ']' * 60)
    assert isinstance(value, list)


def test_lone_surrogates_become_replacement_characters_everywhere():
    body = parse_json_object(b'{"\\udc00k": ["\\ud800", {"x": "a\\udfffb"}], "ok": "\\ud83d\\ude00"}')
    assert body == {'\ufffdk': ['\ufffd', {'x': 'a\ufffdb'}], 'ok': '\U0001F600'}
    json.dumps(body, ensure_ascii=False).encode('utf-8')  # encodable now
    assert clean_text('plain') == 'plain'


@pytest.mark.parametrize('raw', [b'\xff\xfe', b'{', b'nul', b'', b'{"a": NaN}', b'[Infinity]'])
def test_garbage_is_invalid_json(raw):
    with pytest.raises(InvalidJson):
        parse_json(raw)


def test_object_required():
    with pytest.raises(InvalidJson, match='object'):
        parse_json_object(b'[1, 2]')
