"""The console-managed file beside config.ini (knowledge_bases.console.toml): load_config reads its knowledge
bases, operators and group bindings with config.ini's own checks, and names the file and the key when it
holds something wrong."""
from __future__ import annotations

import pytest

from huixiangdou.config import CONSOLE_FILE, ConfigError, load_config
from huixiangdou.web.operator_password import hash_password
from tests.conftest import write_config

COFFEE = '''
[knowledge_base.coffee]
repo_dir = "knowledge_bases/coffee/repodir"
work_dir = "knowledge_bases/coffee/workdir"
'''


def config_with(tmp_path, console: str, **sections):
    path = write_config(tmp_path / 'config.ini', feature_store={'embedding_model_path': ''}, **sections)
    (tmp_path / CONSOLE_FILE).write_text(console, encoding='utf-8')
    return path


def test_knowledge_bases_operators_and_bindings_made_in_the_console_are_loaded(tmp_path):
    stored = hash_password('a long enough password')
    path = config_with(tmp_path, COFFEE + f'''
[operators]
coffee = "{stored}"
default = "{stored}"

[groups."oc_42"]
knowledge_base = "coffee"
frontend = "lark_group"

[groups."1234"]
knowledge_base = "coffee"
frontend = "wechat_wkteam"
''', frontend={'type': 'none'}, **{'frontend.lark_group.oc_42': {'knowledge_base': ''}})
    config = load_config(path)
    assert list(config.knowledge_bases()) == ['default', 'coffee']
    assert config.console_knowledge_bases == ['coffee']
    assert config.path(config.for_knowledge_base('coffee').feature_store.repo_dir) == \
        tmp_path / 'knowledge_bases/coffee/repodir'
    assert set(config.operators) == {'coffee', 'default'}
    # A binding made in the console wins over config.ini's group section; a WeChat id may carry @chatroom.
    assert config.knowledge_base_for('oc_42') == 'coffee'
    assert config.knowledge_base_for('1234@chatroom') == 'coffee'
    assert config.knowledge_base_for('oc_other') == 'default'
    assert config.groups_of('coffee') == ['1234', 'oc_42']


@pytest.mark.parametrize('console, message', [
    ('[knowledge_base.coffee]\nrepo_dir = "x"\n', r'\[knowledge_base.coffee\] needs its own work_dir'),
    (COFFEE + 'chunk_size = 12\n', r'\[knowledge_base.coffee\] chunk_size: shared by every knowledge base'),
    (COFFEE + 'reject_target = "recall"\n', r'knowledge_base.coffee.*reject_target'),
    ('[knowledge_base.default]\nwork_dir = "w"\n', r'"default" is the knowledge base of \[feature_store\]'),
    ('[knowledge_bases.coffee]\nwork_dir = "w"\n', r"unknown section \[knowledge_bases\].*did you mean \[knowledge_base\]"),
    (COFFEE + '[operators]\ncoffee = "hunter22"\n', r'\[operators\] coffee must be a password hash'),
    (COFFEE + '[operators]\ntea = "x"\n', r'\[operators\] tea: no knowledge base of that name'),
    (COFFEE + '[groups."oc_1"]\nknowledge_base = "tea"\nfrontend = "lark_group"\n',
     r'\[groups."oc_1"\] knowledge_base = "tea" is not a knowledge base'),
    (COFFEE + '[groups."oc_1"]\nknowledge_base = "coffee"\nfrontend = "telegram"\n',
     r'\[groups."oc_1"\] frontend must be one of'),
    (COFFEE + '[groups."oc_1"]\nknowledge_base = "coffee"\nfrontend = "lark_group"\nname = "x"\n',
     r"unknown key 'name' in \[groups.\"oc_1\"\]"),
    ('[knowledge_base.docs]\nwork_dir = "workdir"\n', r'share work_dir'),
    ('not toml at all = = =', r'not valid TOML'),
])
def test_bad_content_is_an_error_naming_the_file_and_the_key(tmp_path, console, message):
    path = config_with(tmp_path, console)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(path)
    assert CONSOLE_FILE in str(caught.value)


def test_a_name_in_both_files_is_an_error(tmp_path):
    path = config_with(tmp_path, COFFEE, **{'knowledge_base.coffee': {'work_dir': 'workdir_coffee'}})
    with pytest.raises(ConfigError, match=r'\[knowledge_base.coffee\] is defined in config.ini too'):
        load_config(path)


def test_without_the_file_the_config_is_as_before(tmp_path):
    path = write_config(tmp_path / 'config.ini', feature_store={'embedding_model_path': ''})
    config = load_config(path)
    assert list(config.knowledge_bases()) == ['default'] and not config.operators and not config.group_bindings
    assert config.web.knowledge_base_root == 'knowledge_bases'
