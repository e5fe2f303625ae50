"""Degenerate-answer detection on real bad outputs (from the issue and from the bundled SmolLM2-135M
on the sample knowledge base) and on ordinary good answers, which must pass untouched."""
from __future__ import annotations

import pytest

from huixiangdou.service.worker.degenerate import (copied_share, detect_degeneration, loop_share, units,
                                                  unsupported_numbers)
from huixiangdou.service.worker.prompts import prompt

PASSAGE_ZH = ('特征库是茴香豆的“记忆”：把 `repodir/` 里的文档变成可以检索的向量索引和关键词索引，并记录拒答阈值。'
              '文档按嵌入模型分词器的 token 数切块，而不是按字符数：`chunk_size = 256`、`chunk_overlap = 32`'
              '（相邻块重叠 32 个 token）。切分时优先按结构断开：先按段落，再按句子，代码按函数/类定义，表格按行；'
              '只有单个句子比一块还长时才按 token 硬切。修改 `chunk_size` 或 `chunk_overlap` 之后需要 `--rebuild`。')
PASSAGE_EN = ('It listens on [llm.server] host and local_llm_bind_port, by default 127.0.0.1:8888. '
              'POST /inference takes {"prompt": ..., "history": [...], "backend": "auto"} and answers '
              '{"text": ..., "backend": ..., "model": ...}. GET /health answers {"status": "ok"} once the '
              'models are loaded, so a script can wait for it before sending the first question.')
PASSAGE_LIST = ('- Python 3.11 or newer (the config loader uses tomllib).\n'
                '| Part | Port |\n|---|---|\n| LLM server | 8888 |\n| Lark events | 6666 |\n| WeChat | 9527 |')
INSTRUCTIONS_ZH = prompt('zh', 'system') + '\n' + prompt('zh', 'generate', context='\n', query='\n', intro='')

# What the bundled model really wrote for sample questions before this change (issue #11 and our runs).
REAL_BAD = [
    ('# # 1. # # 2. # # 3. # # 4. # # 5. # # 6. # # 7. # # 8. # # 9. # # 10. # # 11.', '', 'loop'),
    ('资料： [1] (zh/特征库.md#特征库) # 特征库 特征库是茴香豆的“记忆”', PASSAGE_ZH, 'scaffold'),
    ('资料：\n[1] (zh/飞书接入.md#飞书（Lark）接入/方式二：企业自建应用（lark_group，双向）/4. 配置 config.ini) '
     '### 4. 配置 config.ini\n\n```\n\n```\n\n```\n\n```\n\n```\n\n```\n\n```', '', 'scaffold'),
    ('福制的问题：\n\n### 怎么重建索引\n\n```bash\npython -m huixiangdou.service.feature_store --rebuild\n```\n\n'
     '平时增删改文档只需要重新执行不带 `--rebuild` 的命令，会增量更新。', '', 'scaffold'),
    ('### 从编码文件中获取编码\n\n文本类文件可以通过 `getencoding`方法获取编码，但是不可以通过 `getencoding`方法获取编码。\n\n'
     '### 从编码文件中获取编码\n\n文本类文件可以通过 `getencoding`方法获取编码，但是不可以通过 `getencoding`方法获取编码。\n\n'
     '### 从编码文件中获取编码\n\n文本类文件可以通过 `get', '', 'loop'),
    ('特征库特征库特征库特征库特征库特征库特征库特征库特征库', '', 'loop'),
    ('The hybrid LLM server listens on port 8888. The hybrid LLM server listens on port 8888. The hybrid LLM '
     'server listens on port 8888. The hybrid LLM server listens on port 8888.', PASSAGE_EN, 'loop'),
    # SmolLM2-135M on the sample store, under the prompts we measured (docs/worker.md), first 260 characters.
    ('资料 [1]：\n# 特征库（feature store）\n\n资料 [1]：\n# 特征库（feature store）\n\n资料 [1]：\n# 特征库（feature store）\n\n资料 [1]：\n# 特征库（feature store）\n\n资料 [1]：\n# 特征库（feature store）\n\n资料 [1]：\n# 特征库（feature store）\n\n资料 [1]：\n# 特征库（feature store）\n\n资料 [1]：\n# 特征库（feature store）\n\n资料 [1]：\n# 特征库（featur',
     '', 'scaffold'),
    ('[1] 扫描版 PDF 里只有图片，解析后没有文字，也会被跳过；茴香豆不做 OCR。\n\n## 切分（chunking）\n\n文档按**嵌入模型分词器的 token 数**切分时优先按字符数：`chunk_size = 256`\n\n## 解析\n\n[2] ### 配置写错了启动就报 ConfigError\n\n报错会指出文件和键名，例如 `unknown key \'chunk_sise\' in [feature_store]`，并列出所有合法的键。数字不要加引号：写 `chunk_size = 256`，不要写 `"256',
     '', 'scaffold'),
    ('To switch the LLM from the local model to deepseek, you need to set the `remote_type` to `"deepseek"`.\n\n```\n#\n# 1.\n#\n# 2.\n#\n# 3.\n#\n# 4.\n#\n# 5.\n#\n# 6.\n#\n# 7.\n#\n# 8.\n#\n# 9.\n#\n# 10.\n#\n# 11.\n#\n# 12.\n#\n# 13.\n#\n# 14.\n#\n# 15.\n#\n# 16.\n#\n# 17.\n#\n# 18.\n#\n# 19.\n#\n# 20.\n#',
     '', 'loop'),
    ('The short way: install.sh\n\nThe answer: Python 3.11 or newer\n\nThe answer: Python 3.11\n\nThe answer: Python 3.11\n\nThe answer: Python 3.11\n\nThe answer: Python 3.11\n\nThe answer: Python 3.11\n\nThe answer: Python 3.11\n\nThe answer: Python 3.11\n\nThe answer: Python 3.11\n',
     '', 'loop'),
    ('[3] 256\n\n[4] 256\n\n[5] 256\n\n[6] 256\n\n[7] 256\n\n[8] 256\n\n[9] 256\n\n[10] 256\n\n[11] 256\n\n[12] 256\n\n[13] 256\n\n[14] 256\n\n[15] 256\n\n[16] 256\n\n[17] 256\n\n[18] 256\n\n[19] 256\n\n[20] 256\n\n[21] 256\n\n[22] 256\n\n[23] 256\n\n[24] 256\n\n[25] 256\n\n[26] 256\n\n[27] 256\n\n[28] 256\n\n[29',
     '', 'scaffold'),
    ('茴香豆不是一个真容的猪茴香豆，它是一个真容的猪茴香豆。茴香豆是一个真容的猪茴香豆，它是一个真容的猪茴香豆。\n\nThe answer is:\n\nPython 3.10 能跑茴香豆不\nPython 3.10 能跑茴香豆不\n\nThe answer is:\n\nPython 3.10 能跑茴香豆不\nPython 3.10 能跑茴香豆不\n\nThe answer is:\n\nPython 3.10 能跑茴香豆不\nPython 3.10 能跑茴香',
     '', 'loop'),
    ('1. 说明：飞书群应用的encrypt_key 加密密钥应说是在 config.ini 中配置的，不在其他的配置文件中。\n\n2. 说明：飞书群应用的encrypt_key 加密密钥应说是在 config.ini 中配置的，不在其他的配置文件中。\n\n3. 说明：飞书群应用的encrypt_key 加密密钥应说是在 config.ini 中配置的，不在其他的配置文件中。\n\n4. 说明：飞书群应用的encrypt_key 加密密钥应说是在 config.ini 中配置的，不在其他的',
     '', 'loop'),
    ('', '', 'empty'),
    ('  [1] 。', '', 'empty'),
    (PASSAGE_ZH[:200], PASSAGE_ZH, 'echo'),
    (PASSAGE_EN, PASSAGE_EN, 'echo'),
]


@pytest.mark.parametrize('answer,context,reason', REAL_BAD)
def test_real_bad_answers_are_caught_with_their_reason(answer, context, reason):
    problem = detect_degeneration(answer, context)
    assert problem is not None and problem.reason == reason, problem


def test_the_system_prompt_echoed_back_is_scaffolding():
    echoed = prompt('zh', 'system')   # the bundled model answered a Chinese question with exactly this
    assert detect_degeneration(echoed, PASSAGE_ZH, instructions=INSTRUCTIONS_ZH).reason == 'scaffold'


GOOD = [
    '重建索引请加 --rebuild 参数 [1]',
    '在 config.ini 的 [frontend.lark_group] 段填写 encrypt_key [1]。',
    'The hybrid LLM server listens on 127.0.0.1:8888 by default [1].',
    # One whole sentence taken from the passage is an answer, not an echo.
    '文档按嵌入模型分词器的 token 数切块，而不是按字符数：`chunk_size = 256`、`chunk_overlap = 32` [1]。',
    'Use `remote_type = "deepseek"` in [llm.server] and set enable_remote = 1 [2].',
    '1. Install: `bash install.sh`\n2. Test: `bash install.sh --test`\n3. Run: '
    '`python -m huixiangdou.main --standalone`\n4. Build: `python -m huixiangdou.service.feature_store`',
    '- step 1: build the store\n- step 2: start the server\n- step 3: connect a group\n- step 4: ask',
    '```bash\npython -m huixiangdou.service.feature_store --rebuild\npython -m huixiangdou.main --standalone\n```\n'
    'Rebuild after changing the embedding model [1].',
    '| 端口 | 用途 |\n|---|---|\n| 8888 | LLM 服务 |\n| 6666 | 飞书事件 |\n| 9527 | 个人微信 |',
    'Yes. Python 3.11 or newer is needed because the config loader uses tomllib [1].',
    '可以，GBK 文件会按 GB18030 读取，不会乱码 [1]。',
]


@pytest.mark.parametrize('answer', GOOD)
def test_good_answers_pass(answer):
    context = '\n'.join([PASSAGE_ZH, PASSAGE_EN, PASSAGE_LIST])
    assert detect_degeneration(answer, context, instructions=INSTRUCTIONS_ZH) is None


def test_cut_answers_are_caught_only_when_they_are_cut():
    open_fence = 'Run this:\n```bash\npython -m huixiangdou.service.feature_store --rebu'
    assert detect_degeneration(open_fence).reason == 'cut'
    mid_sentence = 'To rebuild the index you run the feature store with the'
    assert detect_degeneration(mid_sentence, finish_reason='length').reason == 'cut'
    assert detect_degeneration(mid_sentence, finish_reason='stop') is None
    # Cut at the limit, but on a sentence end: the answer is whole.
    assert detect_degeneration('Run it with --rebuild [1].', finish_reason='length') is None


def test_numbers_the_context_never_says_are_unsupported():
    # SmolLM2-135M on "Which port does the hybrid LLM server listen on?" with 8888 in its passages.
    problem = detect_degeneration('The hybrid LLM server listens on port 80.', PASSAGE_EN)
    assert problem.reason == 'unsupported' and '80' in problem.detail
    assert unsupported_numbers('Python 3.11 is needed, 3.10 is too old [12].', 'Python 3.11 or newer') == ['3.10']
    # Numbers the context (or question) says, list numbers and citations are fine.
    assert unsupported_numbers('It listens on 8888 [12]; 1. start 2. ask', PASSAGE_EN) == []
    assert detect_degeneration('The hybrid LLM server listens on port 80.') is None   # nothing to judge by


def test_units_fold_digits_and_split_chinese_by_character():
    assert units('第1步 Step 22.') == ['第', '0', '步', 'step', '0', '.']
    assert units('-----') == ['-']


def test_loop_share_measures_the_repeating_part():
    assert loop_share('a b c d e f g h i j k l m n o p') == 0.0
    looping = 'First an intro sentence here. ' + 'again and again we go round, ' * 5
    assert 0.6 < loop_share(looping) < 1.0


def test_copied_share_counts_the_answer_ngrams_found_in_the_context():
    share, run = copied_share(PASSAGE_EN[:120], PASSAGE_EN)
    assert share == 1.0 and run == len(units(PASSAGE_EN[:120]))
    assert copied_share('nothing like the passage at all here today', PASSAGE_EN) == (0.0, 0)
