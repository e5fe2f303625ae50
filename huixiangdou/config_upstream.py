"""Upstream HuixiangDou's config.ini keys as data, and the pass that turns an upstream-shaped table into ours.

It renames, drops (with the reason) or maps values before config.py builds the typed Config; it does not
validate our own keys. docs/upstream_config.md is the user-facing copy of these tables.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from loguru import logger


class UpstreamConfigError(ValueError):
    """An upstream key or value that has no meaning here and cannot be ignored safely."""


@dataclass(frozen=True)
class Renamed:
    """Upstream's name for one of our keys in the same section."""
    ours: str


@dataclass(frozen=True)
class Ignored:
    """An upstream key or section for a feature we do not have; the reason is logged."""
    reason: str


# Sections upstream has and we do not. Their sub-sections ([sg_search.opencompass] …) go with them.
UPSTREAM_SECTIONS: dict[str, Ignored] = {
    'sg_search': Ignored('Sourcegraph code search (src CLI and the repositories it searches) is not part '
                         'of huixiangdou'),
    'coreference_resolution': Ignored('coreference resolution of a question with its chat history is not '
                                      'part of huixiangdou; the worker answers each message on its own'),
}

# (section, key) -> what that upstream key becomes here. Sections are dotted as in config.ini.
UPSTREAM_KEYS: dict[tuple[str, str], Renamed | Ignored] = {
    # January 2024: the text2vec model was `model_path`.
    ('feature_store', 'model_path'): Renamed('embedding_model_path'),
    # Until mid-2024 the Serper key was `x_api_key` (Serper was the only engine).
    ('web_search', 'x_api_key'): Renamed('serper_x_api_key'),
    # Upstream's LLM backend reads an optional `base_url` beside remote_type.
    ('llm.server', 'base_url'): Renamed('remote_base_url'),
    ('worker', 'enable_sg_search'): Ignored('Sourcegraph code search is not part of huixiangdou'),
    ('worker', 'enable_cr'): Ignored('coreference resolution is not part of huixiangdou'),
    ('frontend.wechat_wkteam', 'callback_ip'): Ignored(
        'huixiangdou does not register the callback with wkteam: set http://<public ip>:<callback_port>'
        '<callback_path> in the wkteam console (docs/frontend_wechat_wkteam.md)'),
    ('frontend.wechat_wkteam', 'redis_host'): Ignored('we keep queues in process; not used'),
    ('frontend.wechat_wkteam', 'redis_port'): Ignored('we keep queues in process; not used'),
    ('frontend.wechat_wkteam', 'redis_passwd'): Ignored('we keep queues in process; not used'),
    ('frontend.wechat_wkteam', 'proxy'): Ignored(
        "upstream passes it as the region of a new wkteam login; huixiangdou uses the instance's api_token "
        '(or account/password) and does not choose a region'),
    ('frontend.wechat_wkteam', 'dir'): Ignored(
        "upstream's folder for wkteam message logs; the message history is kept in workdir/wkteam.sqlite"),
}

# Values upstream accepts under another name: (section, key) -> {upstream value: our value}.
UPSTREAM_VALUES: dict[tuple[str, str], dict[str, str]] = {
    # Upstream names DuckDuckGo after the duckduckgo-search package (`ddgs`).
    ('web_search', 'engine'): {'ddgs': 'duckduckgo'},
    # puyu was InternLM's API before its OpenAI-compatible one; upstream's `local` is vLLM's default port.
    ('llm.server', 'remote_type'): {'puyu': 'internlm', 'local': 'vllm'},
}

# remote_type values upstream supports that have no public OpenAI-compatible endpoint.
UNSUPPORTED_REMOTE_TYPES: dict[str, str] = {
    'alles-apin': 'alles-apin is a private gateway (its own token header and response envelope), not an '
                  'OpenAI-compatible API',
}

# Keys whose upstream sample value is a placeholder such as "YOUR-API-KEY-HERE" or "${YOUR-API-KEY}".
_SECRET_KEYS = (('web_search', 'serper_x_api_key'), ('llm.server', 'remote_api_key'),
                ('feature_store', 'api_token'))
_PLACEHOLDER = re.compile(r'^\$?\{?YOUR-[A-Z-]+\}?$')


@dataclass
class Translation:
    table: dict
    # Upstream-only keys that were mapped or ignored, as "section.key" (a section alone for a whole section).
    upstream_keys: list[str] = field(default_factory=list)
    # An upstream-shaped file's reject_throttle, taken out of the table (None when absent or -1).
    upstream_reject_throttle: float | None = None


def upstream_names(section: str) -> list[str]:
    """Upstream-only keys of a section (sections too, for the top level): candidates for "did you mean"."""
    if not section:
        return sorted(UPSTREAM_SECTIONS)
    return sorted(key for sec, key in UPSTREAM_KEYS if sec == section)


def _table_at(table: dict, section: str) -> dict | None:
    node = table
    for part in section.split('.'):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def translate(raw: dict) -> Translation:
    """Rename, drop and re-value upstream keys of a parsed config.ini; log one line for each.

    Raises UpstreamConfigError for an upstream key that cannot be carried over (both names of one key
    set, a remote_type with no OpenAI-compatible endpoint).
    """
    table = copy.deepcopy(raw)
    out = Translation(table)

    for name, rule in UPSTREAM_SECTIONS.items():
        if isinstance(table.get(name), dict):
            del table[name]
            logger.warning('[{}] is an upstream section, ignored: {}', name, rule.reason)
            out.upstream_keys.append(name)

    for (section, key), rule in UPSTREAM_KEYS.items():
        node = _table_at(table, section)
        if node is None or key not in node:
            continue
        value = node.pop(key)
        out.upstream_keys.append(f'{section}.{key}')
        if isinstance(rule, Ignored):
            logger.warning('[{}] {} is an upstream key, ignored: {}', section, key, rule.reason)
            continue
        if rule.ours in node:
            raise UpstreamConfigError(f'[{section}] sets both {key} (upstream\'s name) and {rule.ours}: '
                                      f'keep {rule.ours} only')
        node[rule.ours] = value
        logger.info("[{}] {} is upstream's name for {}; using it", section, key, rule.ours)

    for (section, key), mapping in UPSTREAM_VALUES.items():
        node = _table_at(table, section)
        value = node.get(key) if node else None
        if isinstance(value, str) and value in mapping:
            node[key] = mapping[value]
            out.upstream_keys.append(f'{section}.{key}')
            logger.info('[{}] {} = "{}" is upstream\'s name for "{}"; using it', section, key, value,
                        mapping[value])
            if (section, key) == ('llm.server', 'remote_type') and value == 'puyu':
                _forget_puyu_model(node)

    server = _table_at(table, 'llm.server')
    remote_type = server.get('remote_type') if server else None
    if remote_type in UNSUPPORTED_REMOTE_TYPES:
        raise UpstreamConfigError(
            f'[llm.server] remote_type = "{remote_type}" is not supported: '
            f'{UNSUPPORTED_REMOTE_TYPES[remote_type]}. Use remote_type = "gpt" with remote_base_url set to an '
            'OpenAI-compatible endpoint (…/v1) and its key in remote_api_key, or another preset')

    for section, key in _SECRET_KEYS:
        node = _table_at(table, section)
        value = node.get(key) if node else None
        if isinstance(value, str) and _PLACEHOLDER.match(value.strip()):
            node[key] = ''
            logger.warning('[{}] {} = "{}" is a placeholder from the sample config, not a key; treated as '
                           'empty (set the real key, or leave it empty and use the environment variable)',
                           section, key, value)

    _default_remote_for_remote_only_llm(table)

    if out.upstream_keys:
        _take_upstream_reject_throttle(table, out)
    return out


def _forget_puyu_model(server: dict) -> None:
    # Upstream's puyu backend always asked for its own model and ignored remote_llm_model.
    model = server.get('remote_llm_model')
    if isinstance(model, str) and model not in ('', 'auto'):
        server['remote_llm_model'] = 'auto'
        logger.info('[llm.server] remote_llm_model = "{}" was ignored by upstream\'s puyu backend; using the '
                    'internlm preset\'s model ("auto")', model)


def _default_remote_for_remote_only_llm(table: dict) -> None:
    """Current upstream configs have an [llm] without enable_local / enable_remote: their LLM is always
    the remote one. Without this, such a file would quietly answer with our small local model."""
    llm = table.get('llm')
    server = _table_at(table, 'llm.server')
    if not isinstance(llm, dict) or server is None:
        return
    if 'enable_local' in llm or 'enable_remote' in llm or 'local_llm_path' in server:
        return
    if 'remote_type' not in server:
        return
    llm['enable_local'], llm['enable_remote'] = 0, 1
    logger.info('[llm] has no enable_local / enable_remote and [llm.server] names only a remote_type '
                '(upstream\'s remote-only shape): using enable_remote = 1, enable_local = 0')


def _take_upstream_reject_throttle(table: dict, out: Translation) -> None:
    node = _table_at(table, 'feature_store')
    if node is None or 'reject_throttle' not in node:
        return
    value = node['reject_throttle']
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return  # config.py reports the wrong type with the usual message
    if value == -1:
        return
    del node['reject_throttle']
    out.upstream_reject_throttle = float(value)
    out.upstream_keys.append('feature_store.reject_throttle')
    logger.warning(
        '[feature_store] reject_throttle = {} comes with an upstream config ({} upstream keys): upstream\'s '
        'value is a similarity cut for its own embedding model, ours is a P(on-topic) cut of the calibrated '
        'reject model, so it is ignored and the threshold calibrated at build time is used. To override on '
        'purpose, remove the upstream keys and set reject_throttle to -1 or a P(on-topic) in [0, 1]',
        value, len(out.upstream_keys) - 1)
