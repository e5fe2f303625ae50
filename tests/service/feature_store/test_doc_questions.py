"""The documents' own questions are found in the chunks a build makes: FAQ entries (asked or quoting an error),
question-like headings anywhere, and nothing from ordinary headings or prose."""
from __future__ import annotations

from huixiangdou.primitive.documents.dispatch import parse_file
from huixiangdou.primitive.splitter import CharCounter, TextSplitter
from huixiangdou.service.feature_store.doc_questions import clean, harvest_questions, is_question

FAQ = """# 常见问题

## 安装

### No module named '\\_turbomind'

可能是因为您没有安装预编译包。

### 如何使用本地已下好的 Huggingface 模型?

把路径传给 `--hf-path`。

## 推理

- "RuntimeError: nms is not compiled with GPU support"

  这个错误是由于您的 CUDA 环境没有正确安装。

- 这里是一段说明，不是问题

Q: Can I run it on CPU?

Yes, slowly.
"""

GUIDE = """# Quick start

## Installation

Run `pip install x`.

## How to write a config

Copy the sample.

## 为什么要写 docstring

因为…

## Benchmarks

| a | b |

# 🛠️ FAQ

1. 机器人太高冷/太嘴碎怎么办？

   把问题填入 good_questions.json。

2. 调整阈值

   改 config.ini。
"""


def _chunks(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding='utf-8')
    return TextSplitter(CharCounter(), chunk_size=80, chunk_overlap=0).split(parse_file(path, name))


def test_an_faq_pages_entries_are_questions_and_its_categories_are_not(tmp_path):
    found = [q.text for q in harvest_questions(_chunks(tmp_path, 'docs/zh_cn/faq.md', FAQ))]
    assert "No module named '_turbomind'" in found            # an entry quoting an error, Markdown removed
    assert '如何使用本地已下好的 Huggingface 模型?' in found
    assert 'RuntimeError: nms is not compiled with GPU support' in found
    assert 'Can I run it on CPU?' in found
    assert not {'常见问题', '安装', '推理', '这里是一段说明，不是问题'} & set(found)


def test_question_headings_anywhere_and_a_readmes_faq_section(tmp_path):
    found = [q.text for q in harvest_questions(_chunks(tmp_path, 'README.md', GUIDE))]
    assert found[:2] == ['How to write a config', '为什么要写 docstring']
    assert '机器人太高冷/太嘴碎怎么办？' in found
    assert not {'Quick start', 'Installation', 'Benchmarks', '调整阈值'} & set(found)


def test_each_question_once_and_a_large_harvest_is_capped(tmp_path):
    chunks = _chunks(tmp_path, 'a/faq.md', FAQ) + _chunks(tmp_path, 'b/faq.md', FAQ)
    texts = [q.text for q in harvest_questions(chunks)]
    assert len(texts) == len(set(texts)) and texts
    assert len(harvest_questions(chunks, limit=2)) == 2


def test_question_shapes():
    assert is_question('OpenCompass 如何分配 GPU？') and is_question('茴香豆没有 gpu 能跑吗')
    assert is_question('Why quantization ?') and is_question('What is the projects folder used for?')
    assert not is_question('What the model is') and not is_question('Installation')
    assert clean('Q5: How to debug a project with a [debugger](https://x.y)?') == 'How to debug a project with a debugger?'
