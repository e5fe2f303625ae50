"""HistoryStore: context survives a restart, each group keeps only its last N messages."""
from __future__ import annotations

from huixiangdou.frontend.history_store import HistoryStore, StoredMessage


def test_messages_survive_reopening_the_file(tmp_path):
    path = tmp_path / 'workdir' / 'wkteam.sqlite'
    store = HistoryStore(path, size=10)
    store.warm_up()
    store.append(StoredMessage('g1', 'user', '怎么安装茴香豆？', sender_id='wxid_a', message_id='m1'))
    store.append(StoredMessage('g1', 'bot', '用 pip 安装。', reply_to='m1'))
    store.close()

    reopened = HistoryStore(path, size=10)
    reopened.warm_up()
    assert reopened.pairs('g1') == [('怎么安装茴香豆？', '用 pip 安装。')]
    assert [m.sender_id for m in reopened.recent('g1')] == ['wxid_a', '']
    reopened.close()


def test_each_group_keeps_only_its_last_messages():
    store = HistoryStore(':memory:', size=3)
    store.warm_up()
    for i in range(5):
        store.append(StoredMessage('g1', 'user', f'q{i}'))
    store.append(StoredMessage('g2', 'user', 'other group'))
    assert [m.content for m in store.recent('g1')] == ['q2', 'q3', 'q4']
    assert [m.content for m in store.recent('g2')] == ['other group']


def test_pairs_match_the_answered_question_not_the_latest_chatter():
    store = HistoryStore(':memory:', size=10)
    store.warm_up()
    store.append(StoredMessage('g', 'user', 'how to install?', message_id='q'))
    store.append(StoredMessage('g', 'user', 'lol', message_id='c'))
    store.append(StoredMessage('g', 'bot', 'pip install', reply_to='q'))
    assert store.pairs('g') == [('how to install?', 'pip install')]


def test_size_zero_keeps_nothing():
    store = HistoryStore(':memory:', size=0)
    store.warm_up()
    store.append(StoredMessage('g', 'user', 'hello'))
    assert store.recent('g') == []


def test_lone_surrogates_are_stored_as_replacement_characters(tmp_path):
    store = HistoryStore(tmp_path / 'wkteam.sqlite', size=10)
    store.warm_up()
    store.append(StoredMessage('g\udc80', 'user', 'install \ud800?', sender_id='wxid_\udfff', message_id='m\ud801'))
    store.append(StoredMessage('g\udc80', 'bot', 'pip install \udbff', reply_to='m\ud801'))
    assert store.pairs('g\udc80') == [('install \ufffd?', 'pip install \ufffd')]
    assert store.recent('g\ufffd')[0].sender_id == 'wxid_\ufffd'
    for message in store.recent('g\ufffd'):
        message.content.encode('utf-8')
    store.close()


def test_text_that_is_not_utf8_in_the_file_is_read_as_replacement_characters(tmp_path):
    import sqlite3
    path = tmp_path / 'wkteam.sqlite'
    store = HistoryStore(path, size=10)
    store.warm_up()
    store.close()
    with sqlite3.connect(path) as db:  # another tool wrote raw bytes as TEXT
        db.execute("INSERT INTO messages (group_id, role, content, created_at) VALUES ('g', 'user', "
                   "CAST(X'696E7374616C6CFF' AS TEXT), 0)")
    store.warm_up()
    assert [m.content for m in store.recent('g')] == ['install\ufffd']
    store.close()
