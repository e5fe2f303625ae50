"""Inbox on a real SQLite file: accepted messages survive a reopen, redeliveries are recognised, stale and
crash-looping messages are given up, settled ones pruned; polled answers settle their message atomically."""
from __future__ import annotations

import asyncio
import sqlite3

import pytest

from huixiangdou.frontend.errors import InboxError
from huixiangdou.frontend.inbox import ANSWERED, PENDING, SKIPPED, Acceptance, Inbox
from huixiangdou.frontend.polled_answers import PolledAnswers
from huixiangdou.frontend.wechat_app_protocol import AppAnswer, AppRequest, PolledItem


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


async def opened(path, **settings) -> Inbox:
    inbox = Inbox(path, **settings)
    await inbox.open()
    return inbox


async def test_pending_message_is_replayed_after_reopen_and_redeliveries_are_recognised(tmp_path):
    path = tmp_path / 'inbox.sqlite'
    inbox = await opened(path)
    assert await inbox.accept('om_1', {'text': 'how to install?', 'ids': ['a']}) is Acceptance.NEW
    assert await inbox.accept('om_2', {'text': 'answered one'}) is Acceptance.NEW
    assert await inbox.accept('om_1', {'text': 'how to install?'}) is Acceptance.PENDING
    await inbox.answered(['om_2'], reply='pip install', reply_id='om_r2')
    assert await inbox.accept('om_2', {'text': 'answered one'}) is Acceptance.SETTLED
    await inbox.close()

    reopened = await opened(path)
    entries = await reopened.replay()
    assert [(e.message_id, e.payload, e.attempts) for e in entries] == [('om_1', {'text': 'how to install?',
                                                                                   'ids': ['a']}, 2)]
    assert await reopened.accept('om_1', {}) is Acceptance.PENDING    # being answered again: not twice
    assert await reopened.accept('om_2', {}) is Acceptance.SETTLED
    await reopened.skipped(['om_1'], 'silent')
    assert (await reopened.state('om_1'), await reopened.state('om_2')) == (SKIPPED, ANSWERED)
    assert await reopened.replay() == []
    await reopened.close()


async def test_answered_row_keeps_the_reply(tmp_path):
    inbox = await opened(tmp_path / 'inbox.sqlite')
    await inbox.accept('om_1', {})
    await inbox.accept('om_0', {})
    await inbox.answered(['om_1', 'om_0'], reply='答案', reply_id='om_r1')   # a merged pair settles together
    await inbox.close()
    with sqlite3.connect(tmp_path / 'inbox.sqlite') as db:
        rows = db.execute('SELECT message_id, state, reply, reply_id FROM inbox ORDER BY message_id').fetchall()
    assert rows == [('om_0', ANSWERED, '答案', 'om_r1'), ('om_1', ANSWERED, '答案', 'om_r1')]


async def test_settling_does_not_reopen_or_overwrite_a_settled_message(tmp_path):
    inbox = await opened(tmp_path / 'inbox.sqlite')
    await inbox.accept('om_1', {})
    await inbox.answered(['om_1'], reply='first')
    await inbox.skipped(['om_1'], 'late')
    assert await inbox.state('om_1') == ANSWERED
    await inbox.close()


async def test_a_message_without_an_id_is_answered_once_and_never_replayed(tmp_path):
    # Its reply could not settle it (the reply names no id): stored, it would be answered at every start.
    path = tmp_path / 'inbox.sqlite'
    inbox = await opened(path)
    assert await inbox.accept('', {'n': 1}) is Acceptance.NEW
    assert await inbox.accept('', {'n': 2}) is Acceptance.NEW
    await inbox.answered([''])
    await inbox.close()
    reopened = await opened(path)
    assert await reopened.replay() == []
    await reopened.close()


async def test_stale_messages_are_skipped_not_answered_a_day_late(tmp_path):
    clock = Clock()
    path = tmp_path / 'inbox.sqlite'
    inbox = await opened(path, replay_seconds=3600, clock=clock)
    await inbox.accept('old', {})
    clock.now += 1800
    await inbox.accept('recent', {})
    await inbox.close()
    clock.now += 2000   # old: 3800 s, recent: 2000 s
    reopened = await opened(path, replay_seconds=3600, clock=clock)
    assert [e.message_id for e in await reopened.replay()] == ['recent']
    assert await reopened.state('old') == SKIPPED
    await reopened.close()


async def test_a_message_pending_at_every_start_is_given_up(tmp_path):
    """A message whose answering kills the process must not crash-loop it for ever."""
    path = tmp_path / 'inbox.sqlite'
    inbox = await opened(path, max_attempts=3)
    await inbox.accept('poison', {})
    await inbox.close()
    attempts = []
    for _ in range(3):
        restarted = await opened(path, max_attempts=3)
        attempts.append([e.attempts for e in await restarted.replay()])
        await restarted.close()   # "crashed" again without settling it
    assert attempts == [[2], [3], []]
    final = await opened(path)
    assert await final.state('poison') == SKIPPED
    await final.close()


async def test_settled_rows_are_pruned_after_keep_seconds_pending_ones_are_not(tmp_path):
    clock = Clock()
    path = tmp_path / 'inbox.sqlite'
    inbox = await opened(path, keep_seconds=100, replay_seconds=1000, clock=clock)
    await inbox.accept('done', {})
    await inbox.accept('open', {})
    await inbox.answered(['done'])
    clock.now += 150
    assert [e.message_id for e in await inbox.replay()] == ['open']
    assert await inbox.state('done') is None
    assert await inbox.accept('done', {}) is Acceptance.NEW   # forgotten: a redelivery this late is new
    assert await inbox.state('open') == PENDING
    await inbox.close()


async def test_an_unwritable_workdir_is_an_inbox_error_that_says_where(tmp_path):
    blocker = tmp_path / 'not-a-dir'
    blocker.write_text('a file where the workdir should be')
    inbox = Inbox(blocker / 'inbox.sqlite')
    with pytest.raises(InboxError, match='not-a-dir'):
        await inbox.open()
    await inbox.close()


async def test_a_polled_answer_and_its_message_settle_together_and_survive_a_reopen(tmp_path):
    path = tmp_path / 'inbox.sqlite'
    inbox = await opened(path)
    answers = PolledAnswers(inbox, keep_seconds=600, per_group=10)
    await answers.open()
    request = AppRequest('群', '群', 'alice', 'text', '怎么安装？')
    await inbox.accept('m1', request.to_json())
    await inbox.accept('m2', request.to_json())
    await answers.put('群', PolledItem(request, AppAnswer(0, 'success', 'pip install', ['README.md'])), settles='m1')
    await answers.put('群', PolledItem(request, AppAnswer(3, 'unrelated')), settles='m2')
    await inbox.close()

    reopened = await opened(path)
    assert await reopened.replay() == []    # both settled in the same transaction as their answers
    assert (await reopened.state('m1'), await reopened.state('m2')) == (ANSWERED, SKIPPED)
    answers = PolledAnswers(reopened, keep_seconds=600, per_group=10)
    await answers.open()
    taken = await answers.take('群')
    assert [item.answer for item in taken] == [AppAnswer(0, 'success', 'pip install', ['README.md']),
                                               AppAnswer(3, 'unrelated')]
    assert taken[0].request == request
    await reopened.close()


async def test_a_payload_that_cannot_be_read_back_is_skipped_not_fatal(tmp_path):
    """A message stored by another version (a field renamed) must not stop the frontend from starting."""
    path = tmp_path / 'inbox.sqlite'
    inbox = await opened(path)
    await inbox.accept('om_old', {'old_field': 1})
    await inbox.accept('om_ok', {'text': 'hi'})
    await inbox.close()

    def build(payload: dict) -> str:
        return payload['text']

    reopened = await opened(path)
    assert await reopened.replay_as(build) == [('om_ok', 'hi')]
    assert await reopened.state('om_old') == SKIPPED
    await reopened.close()


async def test_concurrent_deliveries_are_committed_together_and_each_is_on_disk_when_accepted(tmp_path):
    """Group commit: 200 deliveries at once (with 20 redelivered inside the same burst) share commits, yet
    each accept() returns only once its row can be read by another connection."""
    path = tmp_path / 'inbox.sqlite'
    inbox = await opened(path)
    other = sqlite3.connect(path)
    seen_on_disk = []

    async def deliver(message_id: str) -> Acceptance:
        result = await inbox.accept(message_id, {'text': message_id})
        row = other.execute('SELECT state FROM inbox WHERE message_id = ?', (message_id,)).fetchone()
        seen_on_disk.append(row is not None and row[0] == PENDING)
        return result

    ids = [f'om_{i}' for i in range(200)]
    results = await asyncio.gather(*(deliver(m) for m in ids + ids[:20]))
    assert results[:200] == [Acceptance.NEW] * 200
    assert results[200:] == [Acceptance.PENDING] * 20  # the burst's redeliveries are not dispatched twice
    assert all(seen_on_disk)
    assert other.execute('SELECT count(*) FROM inbox').fetchone()[0] == 200
    await inbox.close()
    other.close()
    reopened = await opened(path)
    assert sorted(e.message_id for e in await reopened.replay()) == sorted(ids)
    await reopened.close()
