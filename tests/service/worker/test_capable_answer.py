"""With a capable model (answer_mode "auto", a remote API): the worker puts the retrieved passages into the
prompt numbered as retrieved, and the answer's citations are checked against them — end to end through the
real LLM server app and the fake OpenAI upstream, scripted to answer from the passages it is sent."""
from __future__ import annotations

import re

import pytest

from huixiangdou.config import WorkerConfig
from huixiangdou.service.feature_store import FeatureStore
from huixiangdou.service.worker.pipeline import Worker
from huixiangdou.service.worker.session import ErrorCode, Session

NUMBERED = re.compile(r'^\[(\d+)\] ', re.M)


@pytest.fixture(scope='module')
def store(sample_store, embedder):
    return FeatureStore.load(sample_store[0], embedder)


def numbered_passages(user_message: str) -> dict[int, str]:
    """The passages as the prompt numbers them: "[n] text" blocks."""
    marks = list(NUMBERED.finditer(user_message))
    out = {}
    for m, nxt in zip(marks, marks[1:] + [None]):
        out[int(m.group(1))] = user_message[m.end():nxt.start() if nxt else len(user_message)]
    return out


def answer_from_passages(word: str):
    """A model that answers with the sentence holding `word`, cited by the number its passage has in the
    prompt, plus a citation of a passage that was never sent."""
    def respond(messages: list[dict]) -> str:
        passages = numbered_passages(messages[-1]['content'])
        for n, text in passages.items():
            if word in text:
                line = next(x for x in text.splitlines() if word in x).strip()
                return f'{line} [{n}] 另见 [{len(passages) + 7}]。'
        return '资料里没有。'
    return respond


async def test_the_prompt_numbers_the_retrieved_passages_and_the_answer_cites_them(store, llm, fake_openai):
    fake_openai.responder = answer_from_passages('--rebuild')
    worker = Worker(WorkerConfig(answer_mode='auto'), store, llm, capable_llm=True)
    session = await worker.run(Session(query='改了文档以后怎么重建特征库？'))
    assert session.code == ErrorCode.SUCCESS, session.debug
    sent = numbered_passages([r for r in fake_openai.requests if r.path == '/v1/chat/completions'][-1]
                             .body['messages'][-1]['content'])
    # Every retrieved passage went in, in retrieval order, under the number the reader will see resolved.
    assert len(sent) == len(session.passages) == WorkerConfig().retrieve_top_k
    for n, passage in enumerate(session.passages, 1):
        assert sent[n].strip()[:60] == passage.text.strip()[:60]
    # The cited passage is the one that holds the quoted command; the invented [n] was dropped.
    cited = next(n for n, text in sent.items() if '--rebuild' in text)
    assert '--rebuild' in session.reply and re.findall(r'\[(\d+)\]', session.reply) == ['1']
    assert session.references == [session.passages[cited - 1].reference]
