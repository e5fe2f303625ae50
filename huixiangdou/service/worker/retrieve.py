"""Retrieve stage: dense + BM25 search of the feature store, scores fused with [worker] retrieve_dense_weight
(0.3: on a real 16k-chunk knowledge base BM25 finds pasted errors and names the dense model misses); of a
wider pool, a chunk whose path names the question's language (docs/zh_cn/ for a Chinese question) or a word of
the question (the project "mmcv") goes first among near-equals. Each passage carries the next chunk of its file.

It searches with the features the reject stage left on the session (computed only if it ran alone).
"""
from __future__ import annotations

import re

from huixiangdou.primitive.chunk_table import chunks_at
from huixiangdou.primitive.page_language import path_language
from huixiangdou.primitive.tokenizer import general_frequency
from huixiangdou.service.feature_store import FeatureStore
from huixiangdou.service.worker.session import Passage, Session
from huixiangdou.service.worker.stage import query_features, run_cpu

def prefer_language(found: list, language: str, factor: float) -> list:
    """`found` (ScoredChunks, best first) re-sorted with the fused score of chunks whose path names
    `language` multiplied by `factor`; the others keep theirs."""
    return preferred(found, language, factor, set(), 1.0)


# Path parts too common to say which project or page a chunk is from.
_PATH_COMMON = frozenset({'docs', 'doc', 'zh', 'cn', 'zh_cn', 'en', 'md', 'txt', 'rst', 'readme', 'src', 'index',
                          'get', 'started', 'user', 'guides', 'guide', 'the', 'and', 'api'})
_PATH_SPLIT = re.compile(r'[/_.\-]+')


def path_words(source: str) -> set[str]:
    """The words of a chunk's path that can name what a question is about: project, folder, file."""
    return {w for w in _PATH_SPLIT.split(source.lower()) if len(w) >= 3 and w not in _PATH_COMMON}


_LATIN_NAME = re.compile(r'[a-z]{3,}')
_ERROR_NAMES = ('error', 'exception', 'warning', 'fault', 'failure')
_CJK_NAME = re.compile(r'[\u3400-\u4dbf\u4e00-\u9fff]{2,}')


def unmentioned(tokens: list[str], knows, query: str, language: str) -> list[str]:
    """The names among the question's words (`tokens`, lowercased) that no document uses, spelled as in
    `query`: a word of letters standing alone ("Slack", "WebGPU"; in an English question only a capitalised
    one not starting a sentence, since "class" or "chatty" are not names), or a Chinese one that everyday
    Chinese does not use either ("钉钉"). Identifiers, numbers, parts of compounds ("per-class") and
    colloquial words the documents happen not to use ("咋办", "装完") are never named."""
    found = []
    for word in tokens:
        latin = _LATIN_NAME.fullmatch(word)
        if latin and word.endswith(_ERROR_NAMES):
            continue   # "ConnectionError" in a pasted error names the problem, not a thing to document
        if knows(word) or not (latin or (_CJK_NAME.fullmatch(word) and general_frequency(word) == 0.0)):
            continue
        if not latin:
            found += [word] if word in query and word not in found else []
            continue
        for spelled in re.finditer(rf'(?<![\w\-./]){re.escape(word)}(?![\w\-./])', query, re.I):
            name = spelled.group()
            sentence_start = not query[:spelled.start()].strip() or query[:spelled.start()].rstrip()[-1] in '.?!'
            if language == 'en' and (name.islower() or sentence_start):
                continue
            if name not in found:
                found.append(name)
            break
    return found


def preferred(found: list, language: str, language_factor: float, words: set[str], path_factor: float) -> list:
    """`found` re-sorted: the fused score times `language_factor` when the path names the question's language,
    and times `path_factor` when the path names a word of the question (the project "mmcv" in "装完 mmcv 报错")."""
    if language_factor == 1.0 and path_factor == 1.0:
        return list(found)
    lang = language if language in ('zh', 'en') else ''

    def score(s) -> float:
        value = s.fused
        if lang and path_language(s.chunk.source) == lang:
            value *= language_factor
        if words and path_words(s.chunk.source) & words:
            value *= path_factor
        return value
    return sorted(found, key=score, reverse=True)


class Retrieve:
    name = 'retrieve'

    def __init__(self, store: FeatureStore, top_k: int = 5, candidates: int = 20, language_factor: float = 1.3,
                 path_factor: float = 1.5, dense_weight: float | None = 0.3, graph_weight: float = 0.0):
        if top_k < 1:
            raise ValueError(f'top_k must be >= 1, got {top_k}')
        if language_factor < 1.0 or path_factor < 1.0:
            raise ValueError(f'language_factor and path_factor must be >= 1, got {language_factor}, {path_factor}')
        self.path_factor = path_factor
        self.dense_weight = dense_weight
        self.graph_weight = graph_weight   # passages sharing the message's entities (FeatureStore.search)
        self.store = store
        self.top_k = top_k
        self.candidates = max(candidates, top_k)
        self.language_factor = language_factor

    def _following(self, found: list) -> dict[int, str]:
        """The text of the chunk after each found one, where it continues the same file."""
        rows = [s.row + 1 for s in found if s.row + 1 < len(self.store.chunks)]
        after = dict(zip(rows, chunks_at(self.store.chunks, rows)))
        return {s.row: after[s.row + 1].text for s in found
                if s.row + 1 in after and after[s.row + 1].source == s.chunk.source}

    async def run(self, session: Session) -> None:
        features = await query_features(self.store, session)
        pool = await run_cpu(self.store.search, features, self.candidates, self.candidates, self.dense_weight,
                             self.graph_weight)
        words = {w.lower() for w in features.tokens}
        found = preferred(pool, session.language, self.language_factor, words, self.path_factor)
        found = found[:self.top_k]
        following = self._following(found)
        sparse = getattr(self.store, 'sparse', None)
        if sparse is not None:
            session.unmentioned = unmentioned(features.tokens, sparse.knows, session.text, session.language)
        session.passages = [Passage(s.chunk.text, s.chunk.reference, s.fused, s.cosine, following.get(s.row, ''))
                            for s in found]
        session.debug[self.name] = [{'reference': s.chunk.reference, 'cosine': round(s.cosine, 4),
                                     'bm25': round(s.bm25, 3), 'fused': round(s.fused, 4)} for s in found]
        if session.unmentioned:
            session.debug['unmentioned'] = session.unmentioned
