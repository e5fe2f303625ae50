"""config.ini copied from upstream HuixiangDou: it loads, its keys land in ours, its leftovers are named once,
and a real typo still stops the program with the name that was meant."""
from __future__ import annotations

from pathlib import Path

import pytest
from loguru import logger

from huixiangdou.config import ConfigError, load_config, reject_throttle_override
from huixiangdou.service.llm.presets import PRESETS

# Shaped like upstream's config.ini of spring 2024 (web-deployed template era): Serper's key is still
# `x_api_key` (no `engine`), the remote is the puyu API, Sourcegraph search is configured, and
# reject_throttle holds the similarity upstream's feature store wrote back after its own calibration.
APRIL_2024 = '''\
[feature_store]
# written back by upstream's feature_store.py after it scored good/bad questions
reject_throttle = 0.4879115337609
embedding_model_path = "maidalun1020/bce-embedding-base_v1"
reranker_model_path = "maidalun1020/bce-reranker-base_v1"
work_dir = "workdir"

[web_search]
x_api_key = "d41d8cd98f00b204e9800998ecf8427e"
domain_partial_order = ["openai.com", "pytorch.org", "readthedocs.io", "nvidia.com", "stackoverflow.com"]
save_dir = "logs/web_search_result"

[llm]
enable_local = 0
enable_remote = 1
client_url = "http://127.0.0.1:8888/inference"

[llm.server]
local_llm_path = "internlm/internlm2-chat-7b"
local_llm_max_text_length = 3000
local_llm_bind_port = 8888
remote_type = "puyu"
remote_api_key = "eyJ0eXBlIjoiSldUIiwiYWxnIjoiSFM1MTIifQ"
remote_llm_max_text_length = 190000
remote_llm_model = "ChatPJLM-latest"
rpm = 30

[worker]
enable_sg_search = 1
save_path = "logs/work.txt"

[worker.time]
start = "00:00:00"
end = "23:59:59"
has_weekday = 1

[sg_search]
binary_src_path = "/usr/local/bin/src"
src_access_token = "sgp_0123456789abcdef"

[sg_search.mmdetection]
github_repo_id = "open-mmlab/mmdetection"
introduction = "目标检测工具箱"

[sg_search.lmdeploy]
github_repo_id = "internlm/lmdeploy"
introduction = "LLM 压缩、部署和服务工具"

[frontend]
type = "lark"
webhook_url = "https://open.feishu.cn/open-apis/bot/v2/hook/0a1b2c3d-4e5f"
message_process_policy = "immediate"

[frontend.lark_group]
app_id = "cli_a1b2c3d4e5f60718"
app_secret = "Zx8bq0sVh3TnK2mW9pLr4Y"
encrypt_key = "enc"
verification_token = "ver"

[frontend.wechat_personal]
bind_port = 9527
'''

# Shaped like upstream's current config.ini and its wkteam example: [llm] without enable_* (the LLM is
# always remote there), DuckDuckGo named `ddgs`, remote API embeddings, coreference resolution, and
# wkteam's redis / proxy / callback_ip keys with per-group sub-sections.
CURRENT = '''\
[feature_store]
reject_throttle = -1.0
embedding_model_path = "BAAI/bge-m3"
reranker_model_path = "BAAI/bge-reranker-v2-m3"
api_token = ""
api_rpm = 1000
api_tpm = 40000
work_dir = "workdir"

[web_search]
engine = "ddgs"
serper_x_api_key = "YOUR-API-KEY-HERE"
domain_partial_order = ["openai.com", "pytorch.org", "readthedocs.io"]
save_dir = "logs/web_search_result"

[llm]

[llm.server]
remote_type = "ppio"
remote_api_key = "YOUR-API-KEY-HERE"
remote_llm_max_text_length = 128000
remote_llm_model = "auto"
rpm = 500
tpm = 200000

[coreference_resolution]
base_url = 'http://127.0.0.1:9999/v1'
api_key = 'token-abc123'

[worker]
enable_web_search = 1
enable_sg_search = 0
enable_cr = 0
save_path = "logs/work.txt"

[worker.time]
enable = 0
start = "00:00:00"
end = "23:59:59"
has_weekday = 1

[sg_search]
binary_src_path = "/usr/local/bin/src"
src_access_token = "YOUR-SRC-ACCESS-TOKEN"

[frontend]
type = "wechat_wkteam"
webhook_url = "https://open.feishu.cn/open-apis/bot/v2/hook/xxxxxxxxxxxxxxx"
message_process_policy = "immediate"

[frontend.lark_group]
app_id = "cli_a1b2c3d4e5f60718"
app_secret = "Zx8bq0sVh3TnK2mW9pLr4Y"
encrypt_key = "enc"
verification_token = "ver"

[frontend.wechat_personal]
bind_port = 9527

[frontend.wechat_wkteam]
callback_ip = "203.0.113.7"
callback_port = 9528
redis_host = "203.0.113.7"
redis_port = "6380"
redis_passwd = "s3cret"
account = "13800000000"
password = "p4ss"
proxy = 3
dir = "wkteam"

[frontend.wechat_wkteam.18356748488]
name = "ncnn contributors"
introduction = "questions about ncnn"

[frontend.wechat_wkteam.44546611710]
name = "HuixiangDou users"
introduction = "github.com/InternLM/HuixiangDou"
'''


@pytest.fixture
def logs():
    """Every loguru record emitted during the test, as (level, message)."""
    records: list[tuple[str, str]] = []
    sink = logger.add(lambda m: records.append((m.record['level'].name, m.record['message'])), level='INFO')
    yield records
    logger.remove(sink)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / 'config.ini'
    path.write_text(text, encoding='utf-8')
    return path


def test_april_2024_upstream_config_loads_with_its_keys_in_ours(tmp_path, logs):
    config = load_config(write(tmp_path, APRIL_2024))

    assert config.web_search.serper_x_api_key == 'd41d8cd98f00b204e9800998ecf8427e'
    assert config.web_search.engine == 'serper'
    server = config.llm.server
    assert server.remote_type == 'internlm' and server.remote_llm_model == 'auto'
    assert PRESETS[server.remote_type].base_url == 'https://chat.intern-ai.org.cn/api/v1'
    assert server.remote_api_key == 'eyJ0eXBlIjoiSldUIiwiYWxnIjoiSFM1MTIifQ'
    assert (config.llm.enable_local, config.llm.enable_remote) == (0, 1)
    assert config.frontend.type == 'lark' and config.worker.time.end == '23:59:59'
    assert sorted(config.upstream_keys) == ['feature_store.reject_throttle', 'llm.server.remote_type', 'sg_search',
                                            'web_search.x_api_key', 'worker.enable_sg_search']


def test_current_upstream_config_loads_with_its_values_mapped(tmp_path, logs):
    config = load_config(write(tmp_path, CURRENT))

    assert config.web_search.engine == 'duckduckgo'
    # Upstream's current [llm] has no switches: its LLM is the remote one, so ours is too.
    assert (config.llm.enable_local, config.llm.enable_remote) == (0, 1)
    assert config.llm.server.remote_type == 'ppio'
    assert PRESETS['ppio'].base_url == 'https://api.ppinfra.com/v3/openai'
    # The sample's placeholders are not keys: empty, so the environment variables are read instead.
    assert config.llm.server.remote_api_key == '' and config.web_search.serper_x_api_key == ''
    wkteam = config.frontend.wechat_wkteam
    assert (wkteam.account, wkteam.callback_port) == ('13800000000', 9528)
    assert {gid: g.name for gid, g in wkteam.groups.items()} == {
        '18356748488': 'ncnn contributors', '44546611710': 'HuixiangDou users'}
    assert (config.feature_store.api_rpm, config.llm.server.tpm) == (1000, 200000)
    assert sorted(config.upstream_keys) == [
        'coreference_resolution', 'frontend.wechat_wkteam.callback_ip', 'frontend.wechat_wkteam.dir',
        'frontend.wechat_wkteam.proxy', 'frontend.wechat_wkteam.redis_host',
        'frontend.wechat_wkteam.redis_passwd', 'frontend.wechat_wkteam.redis_port', 'sg_search',
        'web_search.engine', 'worker.enable_cr', 'worker.enable_sg_search']
    assert config.upstream_reject_throttle is None  # -1 carries no upstream calibration


def test_each_upstream_key_is_named_once_with_what_happened_to_it(tmp_path, logs):
    load_config(write(tmp_path, CURRENT))

    def lines(*words):
        return [(level, m) for level, m in logs if all(w in m for w in words)]

    assert lines('[frontend.wechat_wkteam] redis_host') == [
        ('WARNING', '[frontend.wechat_wkteam] redis_host is an upstream key, ignored: we keep queues in '
                    'process; not used')]
    for key in ('redis_port', 'redis_passwd', 'proxy', 'dir', 'callback_ip'):
        assert len(lines(f'[frontend.wechat_wkteam] {key} ')) == 1, key
    assert [lv for lv, _ in lines('[sg_search]')] == ['WARNING']
    assert [lv for lv, _ in lines('[coreference_resolution]')] == ['WARNING']
    assert [lv for lv, _ in lines('enable_cr')] == ['WARNING']
    assert lines('engine = "ddgs"') == [
        ('INFO', '[web_search] engine = "ddgs" is upstream\'s name for "duckduckgo"; using it')]
    assert len(lines('remote_api_key = "YOUR-API-KEY-HERE"', 'placeholder')) == 1


def test_upstream_reject_throttle_is_set_aside_and_both_values_are_shown(tmp_path, logs):
    config = load_config(write(tmp_path, APRIL_2024))

    # Everything that reads feature_store.reject_throttle gets "use the calibrated one".
    assert config.feature_store.reject_throttle == -1
    assert config.upstream_reject_throttle == pytest.approx(0.4879115337609)
    assert len([m for _, m in logs if 'reject_throttle = 0.4879115337609' in m]) == 1

    logs.clear()
    assert reject_throttle_override(config, calibrated=0.62) is None
    [(level, message)] = [r for r in logs if 'reject_throttle' in r[1]]
    assert level == 'WARNING' and '0.4879115337609' in message and '0.620' in message


def test_january_2024_distance_throttle_loads_and_is_ignored(tmp_path):
    # text2vec-era configs carried a distance (767.0) and `model_path`; a native config may not hold that.
    text = APRIL_2024.replace('reject_throttle = 0.4879115337609', 'reject_throttle = 767.0').replace(
        'embedding_model_path = "maidalun1020/bce-embedding-base_v1"',
        'model_path = "GanymedeNil/text2vec-large-chinese"')
    config = load_config(write(tmp_path, text))
    assert config.feature_store.embedding_model_path == 'GanymedeNil/text2vec-large-chinese'
    assert config.upstream_reject_throttle == 767.0 and reject_throttle_override(config) is None

    native = write(tmp_path, '[feature_store]\nreject_throttle = 767.0\n')
    with pytest.raises(ConfigError, match=r'reject_throttle must be -1 .* or in \[0, 1\]'):
        load_config(native)


def test_our_own_sample_config_has_no_upstream_keys(repo_root, logs):
    config = load_config(repo_root / 'config.ini')
    assert config.upstream_keys == [] and config.upstream_reject_throttle is None
    assert not [m for level, m in logs if level == 'WARNING']


@pytest.mark.parametrize('text, meant', [
    ('[feature_store]\nreject_trottle = 0.5\n', "did you mean 'reject_throttle'?"),
    ('[frontend.wechat_wktem]\naccount = "x"\n', 'did you mean [frontend.wechat_wkteam]?'),
    ('[feature_stor]\nwork_dir = "w"\n', 'did you mean [feature_store]?'),
    ('[worker]\nenable_sg_serch = 0\n', "did you mean 'enable_sg_search'? (an upstream key, which we ignore)"),
])
def test_a_typo_is_an_error_that_names_the_intended_key(tmp_path, text, meant):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert meant in str(info.value) and str(path) in str(info.value)


def test_a_typo_far_from_any_key_lists_the_known_keys(tmp_path):
    with pytest.raises(ConfigError, match='known keys: .*serper_x_api_key') as info:
        load_config(write(tmp_path, '[web_search]\nzzz = 1\n'))
    assert 'did you mean' not in str(info.value)


def test_alles_apin_has_no_openai_compatible_endpoint_and_says_what_to_use(tmp_path):
    text = APRIL_2024.replace('remote_type = "puyu"', 'remote_type = "alles-apin"')
    with pytest.raises(ConfigError, match='alles-apin.*remote_type = "gpt" with remote_base_url'):
        load_config(write(tmp_path, text))


def test_both_names_of_one_key_is_an_error(tmp_path):
    text = APRIL_2024.replace('[web_search]\n', '[web_search]\nserper_x_api_key = "other"\n')
    with pytest.raises(ConfigError, match="both x_api_key .* keep serper_x_api_key only"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize('text, key', [
    ('[frontend.lark_group]\nmax_event_age = 0\n', 'max_event_age must be > 0'),
    ('[frontend.wechat_personal]\npoll_keep_seconds = -5\n', 'poll_keep_seconds must be > 0'),
    ('[llm.server]\napi_key = 12345\n', r'llm\.server\.api_key must be a string'),
])
def test_replay_window_poll_time_and_server_key_are_validated(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key):
        load_config(write(tmp_path, text))


def test_native_reject_throttle_overrides_and_says_so_with_both_values(tmp_path, logs):
    config = load_config(write(tmp_path, '[feature_store]\nreject_throttle = 0.3\n'))
    assert reject_throttle_override(config) == 0.3
    assert not [m for _, m in logs if 'overrides' in m]
    assert reject_throttle_override(config, calibrated=0.55) == 0.3
    [(level, message)] = [r for r in logs if 'overrides' in r[1]]
    assert level == 'WARNING' and '0.3' in message and '0.550' in message
    assert reject_throttle_override(load_config(write(tmp_path, '[feature_store]\nreject_throttle = -1\n'))) is None
