"""Splitter invariants: token bound, no lost text, CJK sentence cuts, code at definitions, overlap."""
from __future__ import annotations

import re

import pytest

from huixiangdou.primitive.chunk import Document, Section
from huixiangdou.primitive.embedder import default_model_path
from huixiangdou.primitive.splitter import CharCounter, HFTokenCounter, TextSplitter, embedding_text


@pytest.fixture(scope='module')
def counter():
    from transformers import AutoTokenizer
    return HFTokenCounter(AutoTokenizer.from_pretrained(str(default_model_path())))


def _squash(text: str) -> str:
    return re.sub(r'\s+', '', text)


def _covered(original: str, chunks: list[str]) -> bool:
    """Every non-space character of the original appears, in order, in the chunks (overlap allowed)."""
    target = _squash(original)
    pos = 0
    for chunk in chunks:
        c = _squash(chunk)
        # The chunk must continue the text: its start lies at or before the covered position.
        start = target.find(c[:20], max(0, pos - len(c)))
        if start < 0 or start > pos:
            return False
        pos = max(pos, start + len(c))
    return pos == len(target)


ZH = ''.join(f'茴香豆第{i}号是一个群聊知识助手。它会先判断第{i}条消息是不是问题！如果是问题，就从文档里检索答案；'
             f'如果只是闲聊，它保持沉默{i}次。配置文件是 config{i}.ini，使用 TOML 语法…… ' for i in range(30))
EN = ''.join(f'HuixiangDou number {i} answers questions in group chats. It rejects chatter {i} times first! '
             f'Then it retrieves passage {i}, asks the LLM, and cites the sources. ' for i in range(30))


@pytest.mark.parametrize('text', [ZH, EN, ZH + '\n\n' + EN])
def test_chunks_respect_token_bound_and_lose_no_text(counter, text):
    splitter = TextSplitter(counter, chunk_size=64, chunk_overlap=8)
    chunks = splitter.split(Document('a.md', [Section(text, anchor='介绍', kind='text')]))
    assert len(chunks) > 3
    for c in chunks:
        assert counter.count([embedding_text(c)])[0] <= 64
        assert c.source == 'a.md' and c.anchor == '介绍'
    assert _covered(text, [c.text for c in chunks])


def test_chinese_is_cut_at_sentence_ends(counter):
    splitter = TextSplitter(counter, chunk_size=40, chunk_overlap=0)
    chunks = splitter.split(Document('zh.txt', [Section(ZH)]))
    ends = [c.text[-1] for c in chunks[:-1]]
    assert all(e in '。！？；…' for e in ends), ends


def test_overlap_repeats_the_previous_sentence(counter):
    splitter = TextSplitter(counter, chunk_size=40, chunk_overlap=20)
    chunks = splitter.split(Document('en.txt', [Section(EN)]))
    shared = [a.text.split('. ')[-1][:15] in b.text for a, b in zip(chunks, chunks[1:])]
    assert sum(shared) >= len(shared) // 2


def test_unbroken_text_longer_than_a_chunk_is_cut_by_tokens(counter):
    text = 'x' * 3000 + '中' * 500
    splitter = TextSplitter(counter, chunk_size=50, chunk_overlap=0)
    chunks = splitter.split(Document('blob.txt', [Section(text)]))
    assert all(counter.count([c.text])[0] <= 50 for c in chunks)
    assert ''.join(c.text for c in chunks) == text


def test_code_is_cut_at_definitions(counter):
    functions = [f'def handler_{i}(event):\n    value = event["x{i}"] * {i}\n    return value + {i}\n\n'
                 for i in range(40)]
    splitter = TextSplitter(counter, chunk_size=60, chunk_overlap=0)
    chunks = splitter.split(Document('app.py', [Section(''.join(functions), kind='code')]))
    assert len(chunks) > 1
    assert all(c.text.startswith('def handler_') for c in chunks)
    assert _covered(''.join(functions), [c.text for c in chunks])


def test_markdown_code_fence_stays_whole_when_it_fits(counter):
    text = 'Intro paragraph.\n\n```python\nimport os\n\nprint(os.getcwd())\n```\n\nAfter the fence.\n'
    splitter = TextSplitter(counter, chunk_size=20, chunk_overlap=0)
    chunks = splitter.split(Document('r.md', [Section(text, kind='markdown')]))
    fenced = [c.text for c in chunks if '```python' in c.text]
    assert fenced and fenced[0].rstrip().endswith('```')


def test_invalid_settings_raise():
    with pytest.raises(ValueError, match='chunk_overlap'):
        TextSplitter(CharCounter(), chunk_size=32, chunk_overlap=32)
    with pytest.raises(ValueError, match='chunk_size'):
        TextSplitter(CharCounter(), chunk_size=2)


def test_paragraphs_overlap_by_their_last_sentences():
    paragraphs = [f'Paragraph {i} opens here. It has a middle part. And it ends with number {i}.'
                  for i in range(5)]
    splitter = TextSplitter(CharCounter(), chunk_size=120, chunk_overlap=40)
    chunks = splitter.split(Document('p.md', [Section('\n\n'.join(paragraphs), kind='markdown')]))
    assert len(chunks) >= 3
    for a, b in zip(chunks, chunks[1:]):
        last_sentence = a.text.rsplit('. ', 1)[-1]
        assert last_sentence in b.text, (a.text, b.text)


def test_token_windows_overlap():
    text = 'x' * 350
    chunks = TextSplitter(CharCounter(), chunk_size=100, chunk_overlap=20).split(Document('x.txt', [Section(text)]))
    assert [len(c.text) for c in chunks] == [100, 100, 100, 100, 30]
    assert all(len(c.text) <= 100 for c in chunks)


def test_fragments_join_a_neighbour_and_keep_their_text():
    sections = [Section('# 安装\n先装 torch。', anchor='安装', kind='markdown'),
                Section('## 依赖\n' + '需要 Python 3.11 以上，以及 faiss-cpu 和 jieba 这两个包。' * 3,
                        anchor='安装/依赖', kind='markdown'),
                Section('## 备注\n见上。', anchor='安装/备注', kind='markdown'),
                Section('# 用法\n' + 'Run the feature store, then start the worker. ' * 40, anchor='用法',
                        kind='markdown')]
    doc = Document('guide.md', sections)
    apart = TextSplitter(CharCounter(), chunk_size=400, chunk_overlap=0).split(doc)
    merged = TextSplitter(CharCounter(), chunk_size=400, chunk_overlap=0, min_chunk_chars=100).split(doc)
    assert min(len(c.text) for c in apart) < 20
    assert len(merged) < len(apart)
    # The short sections now sit inside a chunk of the longer one, cited by the longer one's heading.
    holder = next(c for c in merged if '先装 torch' in c.text)
    assert holder.anchor == '安装/依赖'
    assert len(next(c for c in merged if '见上' in c.text).text) > 100
    assert all(CharCounter().count([embedding_text(c)])[0] <= 400 for c in merged)
    assert all(s.text.split('\n', 1)[1][:10] in ''.join(c.text for c in merged) for s in sections)
    with pytest.raises(ValueError, match='min_chunk_chars'):
        TextSplitter(CharCounter(), min_chunk_chars=-1)


def test_a_fragment_too_big_to_join_stays_alone():
    sections = [Section('x' * 396, anchor='a'), Section('短。', anchor='b'), Section('y' * 396, anchor='c')]
    chunks = TextSplitter(CharCounter(), chunk_size=400, chunk_overlap=0, min_chunk_chars=100).split(
        Document('f.txt', sections))
    assert [c.text for c in chunks] == ['x' * 396, '短。', 'y' * 396]
