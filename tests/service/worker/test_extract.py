"""Extractive answers: sentence splitting, and picking the sentence that holds the fact from what the
real sample store retrieves for real sample questions."""
from __future__ import annotations

import pytest

from huixiangdou.service.worker.citation import number_citations
from huixiangdou.service.worker.extract import Extract, near_duplicate, split_pieces, split_sentences
from huixiangdou.service.worker.session import Passage


def texts(text: str) -> list[str]:
    return [s for s, _ in split_sentences(text)]


def test_chinese_and_english_sentences_split_at_their_own_marks():
    assert texts('先装好全部依赖。然后再建特征库！这样就能用了吗？当然可以用；不过第一次要等一会') == \
        ['先装好全部依赖。', '然后再建特征库！', '这样就能用了吗？', '当然可以用；', '不过第一次要等一会']
    assert texts('Edit config.ini first. Then run v1.2 of the tool! Is it done?') == \
        ['Edit config.ini first.', 'Then run v1.2 of the tool!', 'Is it done?']


def test_fragments_too_short_to_quote_are_dropped():
    assert texts('好的。OK! 先装好全部依赖。') == ['先装好全部依赖。']


def test_wrapped_lines_join_and_headings_and_rules_drop():
    text = ('# Install\n\nIt sends prompts to the hybrid LLM server, a small aiohttp\nservice on one port.\n'
            '特征库是茴香豆的“记忆”：把文档变成\n可以检索的索引。\n\n| Part | Port |\n|---|---|\n| LLM server | 8888 |')
    assert texts(text) == ['It sends prompts to the hybrid LLM server, a small aiohttp service on one port.',
                           '特征库是茴香豆的“记忆”：把文档变成可以检索的索引。', '| LLM server | 8888 |']   # no header row


def test_code_stays_whole_by_line_and_joins_the_sentence_that_introduces_it():
    text = ('Rebuild with:\n\n```bash\npython -m huixiangdou.service.feature_store --rebuild  # re-embed. All!\n```\n'
            'Then restart.\n```\nbash install.sh --test\n```')
    assert split_sentences(text) == [
        ('Rebuild with: `python -m huixiangdou.service.feature_store --rebuild  # re-embed. All!`', False),
        ('Then restart.', False), ('bash install.sh --test', True)]


def test_a_sentence_ending_in_a_colon_keeps_the_items_it_introduces():
    text = '在“权限管理”中开通：\n\n- `im:message`（获取与发送消息）\n- `im:message.group_at_msg`\n\n然后发布版本。'
    assert texts(text) == ['在“权限管理”中开通： `im:message`（获取与发送消息）; `im:message.group_at_msg`', '然后发布版本。']


def test_spreadsheet_rows_stay_one_row_each():
    text = ('Preset (remote_type): deepseek | Service: DeepSeek | Default model: deepseek-chat\n'
            'Preset (remote_type): kimi | Service: Moonshot | Default model: moonshot-v1-128k')
    assert texts(text) == text.splitlines()
    answer = Extract().answer('what model does the kimi preset use by default?', [Passage(text, 'en/p.xlsx')])
    assert answer.text.startswith('> Preset (remote_type): kimi') and 'moonshot-v1-128k' in answer.text


def test_list_bullets_are_stripped():
    assert texts('- Python 3.11 or newer (see\n  tomllib).\n2. Two cores.') == \
        ['Python 3.11 or newer (see tomllib).', 'Two cores.']


def test_near_duplicates():
    assert near_duplicate('修改 chunk_size 之后需要 --rebuild。', '修改 chunk_size 之后需要 --rebuild')
    assert not near_duplicate('修改 chunk_size 之后需要 --rebuild。', 'GBK 文件可以直接放进来。')


def test_answer_quotes_each_sentence_with_its_citation():
    passages = [Passage('无关的开头。默认端口是 8888，可以在 [llm.server] 里改。', 'zh/a.md#端口'),
                Passage('默认端口是 8888，可以在 [llm.server] 里改。另外 6666 是飞书回调的端口。', 'zh/b.md'),
                Passage('今天天气很好。', 'zh/c.md')]
    answer = Extract().answer('LLM 服务默认端口是多少？', passages)
    lines = answer.text.splitlines()
    assert lines[0] == '> 默认端口是 8888，可以在 [llm.server] 里改。 [1]'
    # The same sentence in passage 2 is not quoted twice; every quote ends with its passage number.
    assert sum('默认端口是 8888' in line for line in lines) == 1
    assert all(line.startswith('> ') and line.rstrip().endswith(']') for line in lines)
    assert answer.references[0] == 'zh/a.md#端口' and 'zh/c.md' not in answer.references


def test_a_quote_from_the_other_language_points_to_the_page_in_the_askers():
    passages = [Passage('- **RuntimeError: Address already in use**\n\n  Another job holds the port: set a free one '
                        'with `--master_port 29501` or `PORT=29501 bash dist_train.sh`.', 'mmpose/docs/en/faq.md#FAQ'),
                Passage('- **训练时显存不够**\n\n  减小 batch size。', 'mmpose/docs/zh_cn/faq.md#常见问题'),
                Passage('今天天气很好。', 'mmpose/docs/zh_cn/other.md')]
    asked = 'mmpose 训练报 RuntimeError: Address already in use'
    answer = Extract().answer(asked, passages, language='zh')
    lines = answer.text.splitlines()
    assert 'master_port' in answer.text and lines[-1] == '同一页的中文版：[2]'
    assert answer.references[:2] == ['mmpose/docs/en/faq.md#FAQ', 'mmpose/docs/zh_cn/faq.md#常见问题']
    # The reader sees it numbered as a citation of its own.
    text, references = number_citations(answer.text, passages, markers_at_line_end=True)
    assert text.splitlines()[-1] == '同一页的中文版：[2]' and references[1] == 'mmpose/docs/zh_cn/faq.md#常见问题'
    # Asked in English, or without a language, the English page alone answers.
    for language in ('en', ''):
        assert '同一页' not in Extract().answer(asked, passages, language=language).text
    # The translation is not pointed to when it was not retrieved.
    assert '同一页' not in Extract().answer(asked, [passages[0], passages[2]], language='zh').text


def test_no_quotable_text_gives_an_empty_answer():
    assert Extract().answer('anything?', [Passage('# Title\n|---|', 'a.md')]).text == ''


def test_settings_are_validated():
    with pytest.raises(ValueError, match='max_sentences'):
        Extract(max_sentences=0)
    with pytest.raises(ValueError, match='lexical_weight'):
        Extract(lexical_weight=1.5)


# Sample questions, the words of the fact that answers them, and where that fact lives.
SAMPLE = [
    ('怎么重建索引？改了文档以后要全量重建吗', '--rebuild', '特征库'),
    ('GBK 编码的 txt 放进 repodir 会不会乱码', 'GB18030', '特征库'),
    ('chunk_size 默认是多少？', '256', '特征库'),
    ('python3.10 能跑茴香豆不', '3.11', ''),
    ('Which port does the hybrid LLM server listen on?', '8888', ''),
    ('How do I switch the LLM from the local model to deepseek?', 'deepseek', ''),
]


@pytest.mark.parametrize('query,fact,source', SAMPLE)
@pytest.mark.parametrize('with_embedder', [True, False], ids=['embedder', 'words-only'])
def test_the_quoted_sentences_hold_the_fact(sample_feature_store, query, fact, source, with_embedder):
    store = sample_feature_store
    passages = [Passage(s.chunk.text, s.chunk.reference, s.fused, s.cosine) for s in store.search(query, k=5)]
    answer = Extract(store.embedder if with_embedder else None).answer(query, passages)
    assert fact.lower() in answer.text.lower(), answer.text
    quoting = [s for s in answer.sentences if fact.lower() in s.text.lower()]
    assert passages[quoting[0].passage].reference in answer.references
    assert source in passages[quoting[0].passage].reference


# -- real-KB failure classes (issue 20): FAQ titles, noise lines, long lists -------------------------

FAQ = ('## 安装问题\n\n'
       '- "RuntimeError: frobnicate is not compiled with GPU support"\n'
       '  这个错误说明编译时没有找到 CUDA。\n'
       '  请先确认 nvcc 可用，然后删除 build 目录并执行 `FORCE_CUDA=1 pip install -e .` 重新编译。\n'
       '- **ImportError: libfoo.so.1: cannot open shared object file**\n'
       '  1. 卸载 foo-python，改装 foo-python-headless。\n'
       '  2. 或者用 apt 安装 libfoo1。\n')


def test_faq_titles_are_not_quoted_and_their_answers_are():
    pieces = split_pieces(FAQ)
    titles = [p.text for p in pieces if p.is_title]
    assert titles == ['安装问题', 'RuntimeError: frobnicate is not compiled with GPU support',
                      'ImportError: libfoo.so.1: cannot open shared object file']
    # The answer lines belong to the title above them.
    body = [p for p in pieces if 'foo-python-headless' in p.text][0]
    assert pieces[body.title].text.startswith('ImportError: libfoo.so.1')
    assert all('cannot open shared object file' not in s for s in texts(FAQ))


@pytest.mark.parametrize('query,fact', [
    ('RuntimeError: frobnicate is not compiled with GPU support 咋办', 'FORCE_CUDA=1'),
    ('ImportError: libfoo.so.1: cannot open shared object file 怎么解决', 'foo-python-headless'),
])
def test_the_error_question_gets_the_fix_under_its_faq_title_not_the_error(query, fact):
    # A second passage repeats the error string in prose, as a changelog or an issue excerpt would.
    noise = Passage(f'v2.1 修复了 {query.split(" 咋办")[0].split(" 怎么")[0]} 的问题。', 'changelog.md#v2.1')
    answer = Extract().answer(query, [Passage(FAQ, 'docs/faq.md#常见问题'), noise])
    assert fact in answer.text, answer.text
    assert answer.references[0] == 'docs/faq.md#常见问题'


def test_a_heading_that_names_the_error_lends_its_score_to_the_answer_below_it():
    text = ('### 找不到 `libfoo.so.1`\n\nfoo-python 依赖系统里的动态库，最简单的办法是卸载 foo-python 再安装 '
            'foo-python-headless。\n\n### 其他问题\n\n欢迎提 issue。')
    answer = Extract().answer('import 时报错找不到 libfoo.so.1', [Passage(text, 'docs/faq.md#常见问题')])
    assert 'foo-python-headless' in answer.text and '欢迎提 issue' not in answer.text


def test_a_passage_cut_below_its_heading_uses_its_anchor_as_the_title():
    passages = [Passage('卸载 foo-python 再安装 foo-python-headless 即可。', 'docs/faq.md#常见问题/找不到 libfoo.so.1'),
                Passage('本项目使用 Apache 2.0 协议发布。', 'README.md#协议')]
    answer = Extract().answer('报错找不到 libfoo.so.1', passages)
    assert 'foo-python-headless' in answer.text and 'Apache' not in answer.text


def test_navigation_lines_images_and_bare_tags_are_not_quoted():
    text = ('<div align="center">\n\n![logo](https://x.org/logo.png)\n\n'
            '[🛠️安装](https://x.org/install) | [👀模型库](https://x.org/zoo) | [🆕更新日志](https://x.org/log)\n\n'
            '</div>\n\n请先阅读[安装文档](https://x.org/install)再开始训练。')
    assert texts(text) == ['请先阅读[安装文档](https://x.org/install)再开始训练。']


def test_a_list_introduced_by_a_sentence_is_quoted_whole_past_300_characters():
    items = [f'- 第 {i} 步：设置环境变量 `FOO_OPTION_{i}=1` 并确认对应的依赖库已经正确安装在当前的 conda 环境里面' for i in range(6)]
    text = '按下面的步骤操作：\n\n' + '\n'.join(items)
    (quote,) = texts(text)
    assert len(quote) > 300 and 'FOO_OPTION_5=1' in quote and not quote.endswith('…')


def test_a_sentence_that_repeats_the_pasted_error_gives_way_to_the_fix_after_it():
    text = ('Error: similar like this `OSError: [WinError 1455] The paging file is too small for this operation`.\n'
            'Solution: enlarge the paging file, or run `python fixPage.py --input=torch/lib` once.')
    answer = Extract().answer('OSError: [WinError 1455] The paging file is too small for this operation',
                              [Passage(text, 'docs/faq.md#Windows')])
    assert 'fixPage.py' in answer.text and 'similar like this' not in answer.text, answer.text


def test_a_sentence_brings_the_code_block_after_it_without_its_options():
    text = '想体验 RL 功能需要执行下述命令安装依赖。\n\n```{code-block} shell\n:caption: 安装依赖\npip install -r requirements/rl.txt\n```'
    answer = Extract().answer('RL 功能要装什么依赖', [Passage(text, 'docs/install.md#安装')])
    assert 'pip install -r requirements/rl.txt' in answer.text and 'caption' not in answer.text, answer.text


def test_a_sentence_ending_its_chunk_is_quoted_with_the_command_that_starts_the_next():
    # The splitter keeps a fenced block whole, so "执行下述命令" often ends one chunk and the block starts the next.
    first = Passage('## 安装\n如果想抢先体验 RL 相关功能，则需要执行下述命令来安装 RL 部分依赖。',
                    'xtuner/docs/zh_cn/install.md#安装', following=
                    '则需要执行下述命令来安装 RL 部分依赖。\n\n```bash\npip install -r requirements/rl.txt\n```\n\n其余步骤同上。')
    other = Passage('XTuner 支持多种微调算法，例如 QLoRA 和全量微调。', 'xtuner/README.md#简介')
    answer = Extract().answer('xtuner 想试 RL 功能要装啥依赖', [first, other])
    assert 'requirements/rl.txt' in answer.text and answer.references[0] == first.reference


def test_the_next_chunk_is_not_quoted_when_it_starts_with_prose():
    first = Passage('如果想抢先体验 RL 相关功能，则需要执行下述命令来安装 RL 部分依赖。', 'a.md#安装',
                    following='另一节讲的是评测，与安装无关。\n\n```bash\nrm -rf /\n```')
    answer = Extract().answer('想试 RL 功能要装啥依赖', [first])
    assert 'rm -rf' not in answer.text


def test_a_docstring_is_never_quoted():
    code = Passage('"""Calls the hybrid LLM server\'s /inference endpoint with aiohttp and prints the answer.\n\n'
                   'The server listens on port 8888 by default."""\nimport aiohttp', 'examples/inference_client.py')
    guide = Passage('It listens on `[llm.server] host` and `local_llm_bind_port`, by default `127.0.0.1:8888`.',
                    'en/llm_server.md#Starting it')
    answer = Extract().answer('Which port does the hybrid LLM server listen on?', [guide, code])
    assert '"""' not in answer.text and 'Calls the hybrid' not in answer.text and '8888' in answer.text
