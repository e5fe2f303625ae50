"""The technical entities a text names: code identifiers, CLI commands and flags, config keys, error names,
model and package names, file names. Patterns only (no model): the same text always gives the same entities.

    entities('pip install mmcv-full 报 ModuleNotFoundError，`max_batch_size` 要改吗')
    -> ['mmcv-full', 'modulenotfounderror', 'max_batch_size']

Entities are lowercased; everyday words ("install", "the", "模型") are never entities, whatever their case.
It does not weigh or link entities (primitive/entity_graph.py does).
"""
from __future__ import annotations

import re

# One pattern per kind, tried in this order; a span taken by an earlier kind is not matched again.
_KINDS = (
    # `inline code` up to 48 characters: whatever the author marked as code
    ('code', re.compile(r'`([^`\n]{2,48})`')),
    # what is installed or imported: pip install mmcv-full, import mmdet, from lmdeploy import pipeline
    ('package', re.compile(r'\b(?:[Pp]ip3?|[Cc]onda|mim|apt(?:-get)?) install(?: -[a-zA-Z-]+)*[ \t]+[\'"]?'
                           r'([a-z][\w.-]{1,40})')),
    ('package', re.compile(r'^[ \t]*(?:import[ \t]+([a-z_][\w.]{1,40})(?=[ \t]*(?:$|,|#|as\b))|'
                           r'from[ \t]+([a-z_][\w.]{1,40})[ \t]+import\b)', re.M)),
    # a command line's command: the first word after a shell prompt
    ('command', re.compile(r'^[ \t]*\$[ \t]+([a-z][\w-]{2,30})\b', re.M)),
    # --flags and -f style options of a CLI
    ('flag', re.compile(r'(?<![\w-])(--[a-z][\w-]{1,40})', re.I)),
    # key = value / key: value at a line start (config files, YAML)
    ('key', re.compile(r'^[ \t]*([a-z_][\w.]{2,40})[ \t]*[=:](?![=:/])', re.I | re.M)),
    # file names with a known extension
    ('file', re.compile(r'(?<![\w/.-])([\w-]{2,40}\.(?:py|sh|md|yaml|yml|json|toml|ini|txt|cpp|cu|h|onnx|pth|'
                        r'pt|bin|gguf|safetensors|csv|xlsx|pdf|so|whl))(?![\w])', re.I)),
    # Error and exception class names
    ('error', re.compile(r'(?<![\w.])([A-Z]\w{2,40}(?:Error|Exception|Warning|Exit))\b')),
    # dotted or underscored identifiers: mmdet.apis, max_new_tokens, torch.cuda.is_available
    ('identifier', re.compile(r'(?<![\w.-])([a-z_][a-z0-9]*(?:[._][a-z0-9]+){1,6})(?![\w-])', re.I)),
    # CamelCase names with two capitals or more: XLMRobertaModel, OpenCompass, InternLM
    ('camel', re.compile(r'(?<![\w.-])([A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+|[A-Z]{2,}[a-z][A-Za-z0-9]*)(?![\w-])')),
    # names with letters and digits, or hyphenated ones with a digit: yolov8, fp16, Qwen2-7B, bge-m3, cuda11.8
    ('versioned', re.compile(r'(?<![\w.-])([a-z][a-z0-9]*\d[a-z0-9]*(?:[-.][a-z0-9]+)*|'
                             r'[a-z][a-z0-9]*(?:-[a-z0-9]+)*-[a-z]*\d[a-z0-9.]*)(?![\w-])', re.I)),
    # hyphenated lowercase names: mmcv-full, opencv-python-headless, api-server
    ('hyphenated', re.compile(r'(?<![\w.-])([a-z][a-z0-9]+(?:-[a-z0-9]+){1,4})(?![\w-])')),
)

# Spans that match a pattern but name nothing specific.
_STOP = frozenset('''
e.g i.e etc. a.k.a vs. v1 v2 v3 1st 2nd 3rd 4th 5th 1080p 720p 4k 8k utf-8 utf8 gbk ascii http https www
step1 step2 step3 top1 top5 top-1 top-5 covid-19 u.s mp4 mp3 jpg png gif h264 h265 x86 x64 arm64 win10 win11
'''.split())
_MAX_ENTITY = 48
_URL = re.compile(r'(?:https?|ftp)://\S+|www\.\S+', re.I)


# Bumped whenever a pattern changes: a graph built by other patterns is extracted afresh, not reused.
VERSION = 2

# Kinds that name a package, so that the same word in plain prose names it too ("lmdeploy 怎么装"). Not
# commands: `$ make`, `$ file` would make "make" and "file" entities of every English message.
NAMING_KINDS = frozenset({'package'})


def entities(text: str) -> list[str]:
    """The entities `text` names, lowercased, in order of first appearance, each once."""
    return list(entity_kinds(text))


def entity_kinds(text: str) -> dict[str, str]:
    """{entity: the kind of its first match} for the entities `text` names, in order of first appearance."""
    found: dict[str, tuple[int, str]] = {}
    taken: list[tuple[int, int]] = []
    text = _URL.sub(lambda m: ' ' * len(m.group()), text)   # a URL's parts name nothing; offsets kept
    for kind, pattern in _KINDS:
        for match in pattern.finditer(text):
            group = next(i for i in range(1, (pattern.groups or 0) + 1) if match.group(i) is not None)
            start, end = match.span(group)
            if any(a <= start < b or start <= a < end for a, b in taken):
                continue
            name = _normalise(match.group(group), kind)
            if name:
                taken.append((start, end))
                if name not in found or start < found[name][0]:
                    found[name] = (start, kind)
    return {name: kind for name, (_, kind) in sorted(found.items(), key=lambda item: item[1][0])}


def _normalise(span: str, kind: str) -> str:
    name = span.strip().strip('.,;:()[]{}<>"\'').lower()
    if kind == 'code':
        name = name.strip()
        if ' ' in name and not name.startswith(('pip ', 'python ', 'conda ', 'git ', 'bash ')):
            return ''   # prose in backticks, or a whole command line: its words are matched one by one
    if len(name) < 3 or len(name) > _MAX_ENTITY or name in _STOP or name.isdigit():
        return ''
    if re.fullmatch(r'[\d._-]+', name):   # version numbers and dates
        return ''
    return name
