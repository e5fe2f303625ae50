"""Citation numbers as the reader sees them: [n] is references[n - 1], every reference is cited, streamed
pieces and the whole answer agree; and the generate stage gives every answer (LLM or quoted) that shape."""
from __future__ import annotations

import re

import pytest

from huixiangdou.service.worker.citation import CitationNumbering, number_citations, numbered
from huixiangdou.service.worker.generate import Generate
from huixiangdou.service.worker.session import Passage, Session

CITE = re.compile(r'\[(\d+)\]')
PASSAGES = [Passage('t1', 'install.md'), Passage('t2', 'faq.md#port'), Passage('t3', 'install.md'),
            Passage('t4', 'lark.md')]


def assert_numbered_as_cited(reply: str, references: list[str]) -> None:
    """Every [n] in the reply names a listed reference, and every listed reference is cited."""
    cited = {int(n) for n in CITE.findall(reply)}
    assert cited == set(range(1, len(references) + 1)), (reply, references)
    assert len(set(references)) == len(references), references


@pytest.mark.parametrize('answer,reply,references', [
    # The case: [2] and [4] cited, two references listed — now [1] and [2].
    ('Use port 8888 [2]; configure Lark in config.ini [4].', 'Use port 8888 [1]; configure Lark in config.ini [2].',
     ['faq.md#port', 'lark.md']),
    # [1] and [3] are one document: one number, listed once.
    ('Run install.sh [1], then activate .venv [3].', 'Run install.sh [1], then activate .venv [1].',
     ['install.md']),
    ('A [3][1] and B [2].', 'A [1] and B [2].', ['install.md', 'faq.md#port']),
    # A number that points at no passage is dropped rather than shown as a dead citation.
    ('See [9] and [0], or [2].', 'See  and , or [1].', ['faq.md#port']),
    # Brackets in code are code.
    ('Call `sys.argv[1]` [2].', 'Call `sys.argv[1]` [1].', ['faq.md#port']),
    # An answer that cites nothing is followed by the numbers of the passages it was given.
    ('Just run it.', 'Just run it. [1] [2] [3]', ['install.md', 'faq.md#port', 'lark.md']),
])
def test_citations_are_renumbered_in_the_order_they_are_cited(answer, reply, references):
    assert number_citations(answer, PASSAGES) == (reply, references)
    assert_numbered_as_cited(reply, references)


@pytest.mark.parametrize('size', [1, 2, 3, 5])
def test_streamed_pieces_read_the_same_as_the_whole_answer(size):
    answer = 'Port [4] and [2], install [3][1], `a[1]` [12] end [2]'
    numbering = CitationNumbering(PASSAGES)
    sent = ''.join(numbering.feed(answer[i:i + size]) for i in range(0, len(answer), size)) + numbering.finish()
    assert sent == numbering.text
    assert (sent, numbering.references) == number_citations(answer, PASSAGES)
    assert_numbered_as_cited(sent, numbering.references)


def test_a_closing_code_fence_stays_a_fence():
    reply, references = number_citations('Run:\n```\npip install huixiangdou\n```', PASSAGES[:2])
    assert reply.endswith('```\n[1] [2]') and references == ['install.md', 'faq.md#port']


def test_references_are_listed_with_their_numbers():
    assert numbered(['install.md', 'faq.md#port']) == ['[1] install.md', '[2] faq.md#port']


def retrieved(store, query: str) -> Session:
    session = Session(query=query, language='zh')
    session.passages = [Passage(s.chunk.text, s.chunk.reference, s.fused, s.cosine) for s in store.search(query, k=5)]
    return session


async def test_quoted_answers_are_numbered_as_cited(sample_feature_store):
    # Quotes carry the retrieval rank of their passage ([1] [3] …); the reader sees 1, 2, ….
    for query in ('chunk_size 默认是多少？', '端口被占用怎么办', '飞书的 encrypt_key 在哪里配置', 'how do I install huixiangdou?'):
        session = retrieved(sample_feature_store, query)
        await Generate(None, answer_mode='extract', embedder=sample_feature_store.embedder).run(session)
        assert session.reply, query
        assert_numbered_as_cited(session.reply, session.references)
        assert set(session.references) <= {p.reference for p in session.passages}


async def test_a_streamed_llm_answer_is_numbered_as_cited_in_its_pieces(sample_feature_store, llm, fake_openai):
    fake_openai.responder = lambda messages: 'chunk_size 默认是 256 [2]，可以在 config.ini 修改 [1][2]，见 [5]。'
    session = retrieved(sample_feature_store, 'chunk_size 默认是多少？')
    pieces = [piece async for piece in Generate(llm, embedder=sample_feature_store.embedder).stream(session)]
    assert session.code is None and ''.join(pieces).strip() == session.reply
    assert_numbered_as_cited(session.reply, session.references)
    # [2] was cited first, so its source is the first reference.
    assert session.references[0] == session.passages[1].reference and '[5]' not in session.reply


def test_an_index_in_code_outside_backticks_is_not_a_citation():
    # `arr[0]` and `f(x)[1]` are code an LLM may write without backticks: neither dropped nor renumbered.
    reply, references = number_citations('Index it with arr[0] or f(x)[1], see the guide [2].', PASSAGES)
    assert reply == 'Index it with arr[0] or f(x)[1], see the guide [1].'
    assert references == ['faq.md#port']


def test_a_citation_starting_the_next_paragraph_is_kept():
    reply, references = number_citations('1. Install first [1]\n\n[1] says why.', PASSAGES)
    assert reply == '1. Install first [1]\n\n[1] says why.'
    assert references == ['install.md']


def test_a_quote_whose_document_text_holds_brackets_cites_only_its_own_passage():
    # The extractive answer marks each quote at its line end; "[1]" and "[3]" inside the quoted sentences are
    # the documents' own text (a footnote, a list index) and must not add references or vanish.
    quoted = '> 安装方法见文献[1]的第二节 [2]\n> 第 [3] 步之后重启服务 [4]'
    reply, references = number_citations(quoted, PASSAGES, markers_at_line_end=True)
    assert reply == '> 安装方法见文献[1]的第二节 [1]\n> 第 [3] 步之后重启服务 [2]'
    assert references == ['faq.md#port', 'lark.md']
