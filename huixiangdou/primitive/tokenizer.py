"""Word tokenizer for the sparse (BM25) index and the reject score: jieba for Chinese, words for English.

It lowercases, splits code identifiers (snake_case, camelCase) and drops punctuation and stopwords;
it does not count model tokens (the embedder's tokenizer does that).
"""
from __future__ import annotations

import logging
import re
import unicodedata
from functools import lru_cache

import jieba

jieba.setLogLevel(logging.WARNING)

_CJK = re.compile(r'[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]')
# A run of characters that are neither space nor CJK (ideographs, CJK and full-width punctuation) and hold a
# letter or digit: an English word, a path, an error line's token.
_OTHER = r'[^\s\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]'
_NON_CJK_RUN = re.compile(f'{_OTHER}*[A-Za-z0-9]{_OTHER}*')
# Runs of CJK text, runs of kana or Hangul, or words (letters, digits, dots and dashes inside,
# e.g. "v1.2", "utf-8"). Text is NFKC-normalised first, so full-width Ｈｅｌｌｏ reads as Hello.
_SEGMENT = re.compile(r'[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[\u3040-\u30ff\uac00-\ud7af]+'
                      r'|[A-Za-z0-9_]+(?:[.\-][A-Za-z0-9_]+)*')
_CAMEL = re.compile(r'[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+')

STOPWORDS = frozenset("""
a an the and or but if then else of to in on at by for with from as is are was were be been being am
do does did doing have has had having i me my we our you your he she it its they them their this that
these those what which who whom how why when where there here can could should would will shall may might
must not no yes so too very just also about into over under up down out off again once all any both each
few more most other some such only own same than s t don isn aren wasn weren hasn haven didn doesn
hi hello hey thanks thank please pls ok okay
的 了 是 在 我 有 和 就 不 人 都 一 一个 上 也 很 到 说 要 去 你 会 着 没有 看 好 自己 这 那 吗 呢 吧 啊 呀 哦 嗯
么 什么 怎么 怎么办 为什么 如何 请问 一下 大家 这个 那个 我们 你们 他们 她 他 它 还是 或者 但是 因为 所以
如果 然后 可以 能 能不能 可不可以 没 把 被 给 让 对 从 与 及 等 之 其 而 又 或 呀 啦 哈 哈哈 嘛 哇 喔
""".split())


# Words of chat-ops and LLM tooling that jieba's dictionary lacks and would otherwise split apart
# ("飞书" → "飞" "书"), which breaks matching between questions and documents.
DOMAIN_WORDS = ('飞书', '企业微信', '微信', '钉钉', '大模型', '特征库', '向量库', '知识库', '群聊', '拒答',
                '阈值', '显存', '回调', '嵌入', '重排', '提示词', '流式', '鉴权', '限流', '令牌', '网关',
                '虚拟环境', '报错', '本地模型', '远程模型', '端口', '加密密钥', '签名', '撤回', '增量')


# Dictionary counts of DOMAIN_WORDS before they were boosted for segmentation.
_GENERAL_COUNTS: dict[str, int] = {}


@lru_cache(maxsize=1)
def _warm() -> None:
    jieba.initialize()
    _GENERAL_COUNTS.update({w: jieba.dt.FREQ.get(w, 0) for w in DOMAIN_WORDS})
    for word in DOMAIN_WORDS:
        jieba.add_word(word, freq=20000)


def _split_word(word: str) -> list[str]:
    """Lowercase a word; also emit the parts of snake_case / camelCase identifiers."""
    lower = word.lower()
    parts = [p.lower() for piece in word.split('_') for p in _CAMEL.findall(piece)]
    if len(parts) > 1:
        return [lower] + parts
    return [lower]


def tokenize(text: str) -> list[str]:
    """Words of `text` for BM25: Chinese via jieba, English and code words lowercased, stopwords dropped."""
    _warm()
    tokens: list[str] = []
    for match in _SEGMENT.finditer(unicodedata.normalize('NFKC', text)):
        segment = match.group()
        if _CJK.match(segment):
            # Search mode also emits the short words inside long ones (知识库 → 知识, 知识库).
            words = jieba.lcut_for_search(segment, HMM=False) if len(segment) > 1 else [segment]
            tokens.extend(w for w in words if w not in STOPWORDS)
        elif segment[0].isascii():
            tokens.extend(w for w in _split_word(segment) if w not in STOPWORDS)
        else:
            tokens.append(segment)  # kana / Hangul: no segmenter here, the run is one word
    return tokens


def general_frequency(word: str) -> float:
    """How common `word` is in everyday text: its relative frequency in jieba's dictionary (a large
    general-Chinese word list that also holds common English words), 0.0 when it is not listed."""
    _warm()
    count = _GENERAL_COUNTS[word] if word in _GENERAL_COUNTS else jieba.dt.FREQ.get(word, 0)
    return count / jieba.dt.total


def is_chinese(text: str, min_ratio: float = 0.1) -> bool:
    """True when at least `min_ratio` of the text's units are CJK ideographs, where a unit is an ideograph or
    a run of other non-space characters: "服务器连不上 huggingface，urllib3…MaxRetryError: …(host='cdn…') 有镜像吗"
    is Chinese (nine ideographs, four runs), although its pasted error holds most of its letters."""
    ideographs = sum(1 for c in text if _CJK.match(c))
    if not ideographs:
        return False
    runs = len(_NON_CJK_RUN.findall(text))
    return ideographs / (ideographs + runs) >= min_ratio
