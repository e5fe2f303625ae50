"""Several knowledge bases: each built on its own, each group answered from the one its settings name.

Two tiny knowledge bases are built once for the module with the real CLI and the fast MiniLM model: the
default one holds huixiangdou's install guides, "coffee" an espresso machine's manual.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from huixiangdou.config import ConfigError, load_config
from huixiangdou.main import ensure_feature_store
from huixiangdou.service.feature_store.__main__ import main as feature_store_main
from huixiangdou.service.feature_store.store import CURRENT
from huixiangdou.service.worker.pipeline import Worker
from huixiangdou.service.worker.session import ErrorCode, Session
from huixiangdou.web.app import create_app
from tests.conftest import REPO_ROOT, free_port, write_config
from tests.web.test_api import parse_sse

INSTALL_QUESTION = 'how do I install huixiangdou on ubuntu? does install.sh create the .venv?'
COFFEE_QUESTION = '咖啡机的除垢程序怎么启动？多久需要除垢一次？'
COFFEE_GROUP, WECHAT_COFFEE_GROUP, DOCS_GROUP = 'oc_coffee_lovers', '43925126702', 'oc_huixiangdou_users'

COFFEE_DOCS = {
    '除垢与清洁.md': """# 除垢与清洁

Aurora 3 咖啡机每冲煮约 200 杯，或者控制面板上的水滴指示灯变成橙色时，需要运行一次除垢程序。
除垢程序的启动方法：先取下滤水器，在水箱中倒入 500 毫升除垢液和 500 毫升清水，然后同时按住
「蒸汽」和「热水」两个按键 5 秒，直到电源灯开始闪烁。整个除垢程序大约需要 25 分钟，期间不要关机。
程序结束后，把水箱洗净，装满清水，再按一次「热水」键冲洗管路，直到水箱里的清水用完。

每天使用结束后，请拆下冲煮头下方的分水网，用软毛刷清洗咖啡油脂；每周把冲泡手柄放入清洁片溶液中浸泡
20 分钟。奶泡管在每次打奶后都要立即空喷 2 秒蒸汽，并用湿布擦干净，否则残留的牛奶会堵塞蒸汽孔。
""",
    'brewing_guide.md': """# Brewing espresso with the Aurora 3

Grind 18 grams of coffee for a double shot and tamp it with about 15 kilograms of force. The Aurora 3
pre-infuses the puck at 3 bar for 4 seconds and then brews at 9 bar; a good double shot yields 36 grams
of espresso in 25 to 30 seconds. If the shot runs faster than 20 seconds, grind finer; if it runs slower
than 35 seconds, grind coarser. The boiler temperature can be set from 90 to 96 degrees Celsius in the
settings menu: hold the cup button for three seconds and turn the dial.

To steam milk, purge the steam wand for two seconds, put the tip just under the surface of cold milk and
open the steam knob fully. Stop at 60 to 65 degrees Celsius: hotter milk tastes burnt and loses its foam.
""",
    '故障排查.md': """# 故障排查

咖啡机出水很慢或者不出水：多半是水垢堵塞或者咖啡粉磨得太细。先运行除垢程序，再把研磨度调粗两格。
压力表达不到 9 bar：检查冲泡手柄是否锁紧，粉量是否少于 16 克，分水网是否被咖啡油脂堵住。
机器显示错误代码 E03：水箱没有放到位或者水位过低，请把水箱装满水后重新压紧。
错误代码 E07：锅炉温度传感器异常，请关机 30 分钟后重启；如果仍然出现，请联系售后维修。
""",
}

COFFEE_GOOD = [
    '咖啡机怎么除垢？', '除垢液要加多少？', '多久除垢一次比较好', '水滴指示灯变橙色是什么意思',
    '冲煮头的分水网怎么拆下来清洗', '奶泡管堵了怎么办', '出水很慢是什么原因', '压力表到不了 9 bar 怎么回事',
    '机器显示 E03 怎么处理', 'E07 错误代码是什么', '双份浓缩用多少克粉', '一杯 shot 应该萃取多少秒',
    '研磨度应该调粗还是调细', '锅炉温度在哪里设置', '打奶泡温度多少合适', '清洁片多久用一次',
    'how do I descale the Aurora 3?', 'how long should a double shot take?', 'what does error E07 mean',
    'the steam wand is blocked, how to clean it', 'how many grams of coffee for a double espresso',
    'what brew temperature should I set', 'why is my espresso running too fast', 'how hard should I tamp',
]


def copy_install_docs(repo: Path) -> None:
    repo.mkdir(parents=True)
    for name in ('en/install.md', 'zh/安装.md'):
        shutil.copy(REPO_ROOT / 'repodir' / name, repo / Path(name).name)


def write_coffee_docs(repo: Path) -> None:
    repo.mkdir(parents=True)
    for name, text in COFFEE_DOCS.items():
        (repo / name).write_text(text, encoding='utf-8')


def cli(*args: str) -> tuple[int, str, str]:
    """Run the feature store command in process; its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = feature_store_main(list(args))
    return code, out.getvalue(), err.getvalue()


def write_questions(root: Path) -> dict[str, str]:
    """Every fourth shipped example (45 on-topic, 48 chatter: enough to learn, quick to calibrate), and
    the coffee group's own on-topic questions."""
    files = {'good_questions': 'good.json', 'bad_questions': 'bad.json', 'coffee_good': 'coffee_good.json'}
    for key, source in (('good_questions', 'good_questions.json'), ('bad_questions', 'bad_questions.json')):
        examples = json.loads((REPO_ROOT / 'resource' / source).read_text(encoding='utf-8'))[::4]
        (root / files[key]).write_text(json.dumps(examples, ensure_ascii=False), encoding='utf-8')
    (root / files['coffee_good']).write_text(json.dumps(COFFEE_GOOD, ensure_ascii=False), encoding='utf-8')
    return files


@pytest.fixture(scope='module')
def two_bases(tmp_path_factory):
    """A config with the default knowledge base (install guides) and "coffee", both built by the CLI."""
    root = tmp_path_factory.mktemp('knowledge_bases')
    copy_install_docs(root / 'repo_docs')
    write_coffee_docs(root / 'repo_coffee')
    questions = write_questions(root)
    config = write_config(
        root / 'config.ini',
        feature_store={'repo_dir': 'repo_docs', 'work_dir': 'work_docs', 'embedding_model_path': '', 'ocr': 0,
                       'good_questions': questions['good_questions'], 'bad_questions': questions['bad_questions']},
        **{'knowledge_base.coffee': {'repo_dir': 'repo_coffee', 'work_dir': 'work_coffee',
                                     'good_questions': questions['coffee_good']},
           'worker': {'answer_mode': 'extract', 'save_path': 'work.jsonl', 'ocr': 0},
           f'frontend.lark_group."{COFFEE_GROUP}"': {'name': '咖啡爱好者', 'knowledge_base': 'coffee'},
           f'frontend.lark_group."{DOCS_GROUP}"': {'name': 'huixiangdou users'},
           f'frontend.wechat_wkteam."{WECHAT_COFFEE_GROUP}"': {'knowledge_base': 'coffee'}})
    return {'config': config, 'root': root, 'every': cli('--config', str(config))}


@pytest.fixture(scope='module')
def old_config(two_bases):
    """Today's config shape: one [feature_store] section, no knowledge bases, no per-group choice."""
    return write_config(two_bases['root'] / 'old.ini',
                        feature_store={'repo_dir': 'repo_docs', 'work_dir': 'work_docs', 'embedding_model_path': '',
                                       'ocr': 0, 'good_questions': 'good.json', 'bad_questions': 'bad.json'},
                        worker={'answer_mode': 'extract', 'save_path': '', 'ocr': 0})


def test_kb_flag_builds_only_that_knowledge_base_and_main_builds_the_missing_ones(tmp_path):
    copy_install_docs(tmp_path / 'repo_docs')
    write_coffee_docs(tmp_path / 'repo_coffee')
    config = write_config(
        tmp_path / 'config.ini',
        feature_store={'repo_dir': 'repo_docs', 'work_dir': 'work_docs', 'embedding_model_path': '', 'ocr': 0},
        **{'knowledge_base.coffee': {'repo_dir': 'repo_coffee', 'work_dir': 'work_coffee'}})
    code, out, err = cli('--config', str(config), '--kb', 'coffee')
    assert code == 0, err
    assert (tmp_path / 'work_coffee' / CURRENT).exists() and not (tmp_path / 'work_docs').exists()
    assert 'work_coffee' in out and '== knowledge base' not in out

    # At start, main builds what is missing (the default knowledge base) and leaves the built one alone.
    coffee_version = (tmp_path / 'work_coffee' / CURRENT).read_text(encoding='utf-8')
    with contextlib.redirect_stdout(io.StringIO()):
        ensure_feature_store(load_config(config), config)
    assert (tmp_path / 'work_docs' / CURRENT).exists()
    assert (tmp_path / 'work_coffee' / CURRENT).read_text(encoding='utf-8') == coffee_version


def test_without_kb_every_knowledge_base_is_built_with_its_own_summary(two_bases):
    code, out, err = two_bases['every']
    assert code == 0, err
    assert '== knowledge base "default" ==' in out and '== knowledge base "coffee" ==' in out
    docs, coffee = out.split('== knowledge base "coffee" ==')
    assert 'work_docs' in docs and 'files indexed: 2' in docs and '45 on-topic / 48 chatter' in docs
    assert 'work_coffee' in coffee and 'files indexed: 3' in coffee and '24 on-topic / 48 chatter' in coffee


async def test_each_group_is_answered_from_its_own_knowledge_base(two_bases):
    config = load_config(two_bases['config'])
    worker = Worker.from_config(config)
    try:
        # One model in memory for both: they name the same embedding model.
        assert worker.knowledge_bases['coffee'].store.embedder is worker.store.embedder

        install_here = await worker.run(Session(query=INSTALL_QUESTION, group_id=DOCS_GROUP))
        assert install_here.code is ErrorCode.SUCCESS, install_here.debug
        assert any(ref.startswith('install.md') for ref in install_here.references), install_here.references

        coffee_there = await worker.run(Session(query=COFFEE_QUESTION, group_id=COFFEE_GROUP))
        assert coffee_there.code is ErrorCode.SUCCESS, coffee_there.debug
        assert any('除垢与清洁.md' in ref for ref in coffee_there.references), coffee_there.references

        # Each question in the other group: never answered from the other group's documents.
        install_there = await worker.run(Session(query=INSTALL_QUESTION, group_id=COFFEE_GROUP))
        assert not any('install' in ref or '安装' in ref for ref in install_there.references)
        assert install_there.code is ErrorCode.UNRELATED, install_there.debug
        coffee_here = await worker.run(Session(query=COFFEE_QUESTION, group_id=DOCS_GROUP))
        assert coffee_here.references and not any(ref.split('#')[0] in COFFEE_DOCS for ref in coffee_here.references)

        # A WeChat group id arrives with its "@chatroom" suffix; its section is keyed without it.
        wechat = await worker.run(Session(query=COFFEE_QUESTION, group_id=WECHAT_COFFEE_GROUP + '@chatroom'))
        assert wechat.code is ErrorCode.SUCCESS and wechat.references == coffee_there.references
        # A group with no section at all gets the default knowledge base.
        stranger = await worker.run(Session(query=INSTALL_QUESTION, group_id='oc_not_configured'))
        assert stranger.references == install_here.references
    finally:
        await worker.close()
    saved = [json.loads(line) for line in (two_bases['root'] / 'work.jsonl').read_text(encoding='utf-8').splitlines()]
    assert [r['knowledge_base'] for r in saved[-6:]] == ['default', 'coffee', 'coffee', 'default', 'coffee',
                                                         'default']


async def test_reject_throttle_is_overridden_per_knowledge_base(two_bases):
    root = two_bases['root']
    text = two_bases['config'].read_text(encoding='utf-8').replace(
        "good_questions = \"coffee_good.json\"", "good_questions = \"coffee_good.json\"\nreject_throttle = 0.999")
    config = load_config(write_text(root / 'strict.ini', text))
    worker = Worker.from_config(config)
    try:
        coffee = await worker.run(Session(query=COFFEE_QUESTION, group_id=COFFEE_GROUP))
        docs = await worker.run(Session(query=INSTALL_QUESTION, group_id=DOCS_GROUP))
    finally:
        await worker.close()
    # The coffee group's section sets its threshold; the other group keeps the calibrated one.
    assert coffee.debug['reject']['threshold'] == 0.999
    strict = ErrorCode.SUCCESS if coffee.debug['reject']['reject_score'] >= 0.999 else ErrorCode.UNRELATED
    assert coffee.code is strict
    assert worker.knowledge_bases['coffee'].store.calibrated_threshold < 0.99
    assert docs.debug['reject']['threshold'] == round(worker.store.calibrated_threshold, 4)
    assert docs.code is ErrorCode.SUCCESS


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding='utf-8')
    return path


async def test_a_single_feature_store_config_works_as_before(two_bases, old_config):
    config = load_config(old_config)
    assert list(config.knowledge_bases()) == ['default']
    # The command's output keeps its one-store shape: one JSON object, no per-knowledge-base headings.
    code, out, err = cli('--config', str(old_config), '--explain', INSTALL_QUESTION, '--json')
    assert code == 0, err
    why = json.loads(out)
    assert why['answer'] is True and why['best_chunk']['reference'].startswith(('install.md', '安装.md'))
    worker = Worker.from_config(config)
    try:
        for group in ('', COFFEE_GROUP):  # no group chooses: every group gets the one store
            session = await worker.run(Session(query=INSTALL_QUESTION, group_id=group))
            assert session.code is ErrorCode.SUCCESS, session.debug
            assert any(ref.startswith('install.md') for ref in session.references)
        assert list(worker.pipelines) == ['default']
    finally:
        await worker.close()


def test_a_failing_knowledge_base_is_reported_and_the_others_still_build(tmp_path):
    write_coffee_docs(tmp_path / 'repo_coffee')
    config = write_config(
        tmp_path / 'config.ini',
        feature_store={'repo_dir': 'no_such_folder', 'work_dir': 'work_docs', 'embedding_model_path': '', 'ocr': 0},
        **{'knowledge_base.coffee': {'repo_dir': 'repo_coffee', 'work_dir': 'work_coffee'}})
    code, out, err = cli('--config', str(config), '--quiet')
    assert code == 1
    assert 'knowledge base "default"' in err and 'no_such_folder' in err
    assert '1 of 2 knowledge bases failed: default' in err
    assert (tmp_path / 'work_coffee' / CURRENT).exists()


def test_an_unknown_knowledge_base_is_named_with_the_known_ones(tmp_path):
    config = write_config(
        tmp_path / 'config.ini',
        **{'knowledge_base.coffee': {'repo_dir': 'repo_coffee', 'work_dir': 'work_coffee'},
           'frontend.lark_group."oc_tea"': {'knowledge_base': 'tea'}})
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert 'oc_tea' in str(raised.value) and '"tea"' in str(raised.value)
    assert 'known: default, coffee' in str(raised.value)
    code, _, err = cli('--config', str(tmp_path / 'config.ini'), '--kb', 'tea')
    assert code == 1 and 'oc_tea' in err


@pytest.mark.parametrize('section, message', [
    ({'repo_dir': 'r'}, 'needs its own work_dir'),
    ({'work_dir': 'workdir'}, 'share work_dir'),
    ({'work_dir': 'w', 'chunk_size': 128}, 'shared by every knowledge base'),
    ({'work_dir': 'w', 'reject_target': 'recall'}, 'reject_target'),
])
def test_a_bad_knowledge_base_section_is_refused_with_what_to_do(tmp_path, section, message):
    config = write_config(tmp_path / 'config.ini', **{'knowledge_base.coffee': section})
    with pytest.raises(ConfigError, match=message):
        load_config(config)


def test_kb_names_an_unknown_knowledge_base(tmp_path):
    config = write_config(tmp_path / 'config.ini', **{'knowledge_base.coffee': {'work_dir': 'w'}})
    code, _, err = cli('--config', str(config), '--kb', 'tea')
    assert code == 1 and 'no knowledge base named "tea"; known: default, coffee' in err


CONSOLE_TOKEN = 'console-admin-token-0123456789'
# Each question in each group: the configured groups, a WeChat id with its suffix, a group with no section.
ROUTES = [(group, question) for group in (DOCS_GROUP, COFFEE_GROUP, WECHAT_COFFEE_GROUP + '@chatroom', 'oc_stranger')
          for question in (INSTALL_QUESTION, COFFEE_QUESTION)]


@pytest.fixture
async def console(two_bases, embedder, tmp_path):
    """The web console on a copy of the two knowledge bases (a rebuild must not touch the module's), with the
    already loaded embedder as `python -m huixiangdou.web` shares it; yields (config, base URL)."""
    shutil.copytree(two_bases['root'], tmp_path / 'kb', ignore=shutil.ignore_patterns('.build.lock', '*.jsonl'))
    port = free_port()
    text = two_bases['config'].read_text(encoding='utf-8')
    config = load_config(write_text(tmp_path / 'kb' / 'console.ini',
                                    f'{text}\n[web]\nport = {port}\nadmin_token = "{CONSOLE_TOKEN}"\n'))
    runner = web.AppRunner(create_app(config, embedder=embedder))
    await runner.setup()
    await web.TCPSite(runner, '127.0.0.1', port).start()
    try:
        yield config, f'http://127.0.0.1:{port}'
    finally:
        await runner.cleanup()


async def console_answer(http, base: str, question: str, group: str) -> dict:
    async with http.post(f'{base}/api/ask', json={'query': question, 'group_id': group}) as response:
        assert response.status == 200
        events = parse_sse(await response.text())
    assert events[-1][0] == 'done', events
    return events[-1][1]


async def rebuild(http, base: str) -> dict:
    async with http.post(f'{base}/api/rebuild', json={}) as response:
        assert response.status in (200, 202), await response.text()
    deadline = time.monotonic() + 300
    while True:
        async with http.get(f'{base}/api/rebuild') as response:
            status = await response.json()
        if status['state'] != 'running' or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.2)


async def test_the_consoles_worker_routes_every_group_as_mains_does(console):
    config, base = console
    main_worker = Worker.from_config(config)   # what main and the frontends answer with
    try:
        async with aiohttp.ClientSession(headers={'Authorization': f'Bearer {CONSOLE_TOKEN}'}) as http:
            for group, question in ROUTES:
                shown = await console_answer(http, base, question, group)
                main = await main_worker.run(Session(query=question, group_id=group))
                assert (shown['code'], shown['references']) == (main.code.name, main.references), (group, question)
    finally:
        await main_worker.close()


async def test_after_a_console_rebuild_each_group_is_still_answered_from_its_own_documents(console):
    config, base = console
    async with aiohttp.ClientSession(headers={'Authorization': f'Bearer {CONSOLE_TOKEN}'}) as http:
        before = {route: await console_answer(http, base, *reversed(route)) for route in ROUTES}
        status = await rebuild(http, base)
        assert status['state'] == 'done', status
        after = {route: await console_answer(http, base, *reversed(route)) for route in ROUTES}

    coffee = after[(COFFEE_GROUP, COFFEE_QUESTION)]
    assert coffee['code'] == 'SUCCESS' and any('除垢与清洁.md' in ref for ref in coffee['references']), coffee
    install = after[(DOCS_GROUP, INSTALL_QUESTION)]
    assert install['code'] == 'SUCCESS' and any(ref.startswith('install.md') for ref in install['references'])
    # The coffee group never sees the install guides, nor the docs group the coffee machine's manual.
    for (group, _), shown in after.items():
        sources = {ref.split('#')[0] for ref in shown['references']} | {p['reference'].split('#')[0]
                                                                       for p in shown['passages']}
        coffee_group = group.split('@')[0] in (COFFEE_GROUP, WECHAT_COFFEE_GROUP)
        assert not sources & ({'install.md', '安装.md'} if coffee_group else set(COFFEE_DOCS)), (group, sources)
    # Unchanged documents: a rebuild changes no group's answer.
    assert {route: (s['code'], s['references']) for route, s in after.items()} == \
        {route: (s['code'], s['references']) for route, s in before.items()}


async def test_a_knowledge_base_without_documents_leaves_the_others_answering(two_bases):
    # Made in the console and still empty: main does not fail on it, the worker loads the others, and its
    # groups stay silent with the reason recorded.
    root = two_bases['root']
    (root / 'repo_empty').mkdir(exist_ok=True)
    config_path = write_config(
        root / 'with_empty.ini',
        feature_store={'repo_dir': 'repo_docs', 'work_dir': 'work_docs', 'embedding_model_path': '', 'ocr': 0},
        **{'knowledge_base.empty': {'repo_dir': 'repo_empty', 'work_dir': 'work_empty'},
           'worker': {'answer_mode': 'extract', 'save_path': '', 'ocr': 0},
           'frontend.lark_group."oc_empty"': {'knowledge_base': 'empty'}})
    config = load_config(config_path)
    with contextlib.redirect_stdout(io.StringIO()):
        ensure_feature_store(config, config_path)
    assert not (root / 'work_empty' / CURRENT).exists()
    worker = await asyncio.to_thread(Worker.from_config, config)
    silent = await worker.run(Session(query=INSTALL_QUESTION, group_id='oc_empty'))
    assert silent.code == ErrorCode.NO_SEARCH_RESULT and 'empty' in silent.debug['reason']
    answered = await worker.run(Session(query=INSTALL_QUESTION, group_id=DOCS_GROUP))
    assert answered.code == ErrorCode.SUCCESS, answered.debug
