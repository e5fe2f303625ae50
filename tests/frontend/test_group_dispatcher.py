"""GroupDispatcher: per-group queues, merge policy, rate limit, worker failures, history."""
from __future__ import annotations

import asyncio

from huixiangdou.frontend.group_dispatcher import GroupDispatcher
from huixiangdou.frontend.group_message import GroupMessage, OutcomeStatus
from huixiangdou.frontend.history_store import HistoryStore
from tests.frontend.conftest import ScriptedResponder


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def collecting():
    outcomes = []

    async def on_outcome(outcome):
        outcomes.append(outcome)
    return outcomes, on_outcome


async def _until(predicate):
    while not predicate():
        await asyncio.sleep(0.01)


def msg(text, group='g1', sender='u1', mid=None):
    return GroupMessage(group_id=group, text=text, sender_id=sender, message_id=mid or text)


async def test_answers_on_topic_and_stays_silent_on_chatter(responder):
    outcomes, on_outcome = collecting()
    dispatcher = GroupDispatcher(responder, on_outcome)
    dispatcher.submit(msg('how to install huixiangdou?'))
    dispatcher.submit(msg('nice weather today'))
    await dispatcher.close()
    assert [o.status for o in outcomes] == [OutcomeStatus.ANSWERED, OutcomeStatus.SILENT]
    assert outcomes[0].reply == 'Answer to: how to install huixiangdou?'
    assert outcomes[0].references == ['docs/install.md#Installation']
    assert outcomes[1].reply == ''


async def test_full_queue_drops_and_reports_without_blocking():
    gate = asyncio.Event()
    responder = ScriptedResponder(gate=gate)
    outcomes, on_outcome = collecting()
    dispatcher = GroupDispatcher(responder, on_outcome, queue_size=2)
    accepted = [dispatcher.submit(msg(f'install {i}', mid=str(i))) for i in range(5)]
    await asyncio.sleep(0)  # let the consumer take the first message
    accepted.append(dispatcher.submit(msg('install 5', mid='5')))
    gate.set()
    await dispatcher.close()
    statuses = {o.message.message_id: o.status for o in outcomes}
    assert accepted.count(False) >= 2
    assert sum(s is OutcomeStatus.QUEUE_FULL for s in statuses.values()) == accepted.count(False)
    assert sum(s is OutcomeStatus.ANSWERED for s in statuses.values()) == accepted.count(True)


async def test_one_slow_group_does_not_hold_up_another():
    gate = asyncio.Event()

    class SlowForOneGroup(ScriptedResponder):
        async def run(self, session):
            if session.group_id == 'slow':
                await gate.wait()
            return await super().run(session)

    outcomes, on_outcome = collecting()
    dispatcher = GroupDispatcher(SlowForOneGroup(), on_outcome)
    dispatcher.submit(msg('install a', group='slow'))
    dispatcher.submit(msg('install b', group='fast'))
    await asyncio.wait_for(_until(lambda: outcomes), 10)
    assert outcomes[0].message.group_id == 'fast'
    gate.set()
    await dispatcher.close()
    assert len(outcomes) == 2


async def test_rate_limit_skips_the_worker_until_the_minute_passes(responder):
    clock = Clock()
    outcomes, on_outcome = collecting()
    dispatcher = GroupDispatcher(responder, on_outcome, reply_rate_per_minute=2, clock=clock)
    for i in range(3):
        dispatcher.submit(msg(f'install {i}', mid=str(i)))
    dispatcher.submit(msg('install other group', group='g2'))
    await dispatcher.wait_idle()
    by_id = {o.message.message_id: o.status for o in outcomes}
    assert [by_id['0'], by_id['1'], by_id['2']] == [OutcomeStatus.ANSWERED] * 2 + [OutcomeStatus.RATE_LIMITED]
    assert by_id['install other group'] is OutcomeStatus.ANSWERED  # limits are per group
    assert 'install 2' not in responder.queries  # no LLM time spent on a reply that cannot be sent
    clock.now += 61
    dispatcher.submit(msg('install 3', mid='3'))
    await dispatcher.close()
    assert outcomes[-1].status is OutcomeStatus.ANSWERED


async def test_silent_answers_do_not_use_up_the_rate_limit(responder):
    outcomes, on_outcome = collecting()
    dispatcher = GroupDispatcher(responder, on_outcome, reply_rate_per_minute=1, clock=Clock())
    dispatcher.submit(msg('chatter one'))
    dispatcher.submit(msg('chatter two'))
    dispatcher.submit(msg('install please'))
    await dispatcher.close()
    assert outcomes[-1].status is OutcomeStatus.ANSWERED


async def test_merge_policy_joins_one_senders_burst(responder):
    outcomes, on_outcome = collecting()
    dispatcher = GroupDispatcher(responder, on_outcome, policy='merge', merge_seconds=0.05)
    dispatcher.submit(msg('请问', sender='alice', mid='a1'))
    dispatcher.submit(msg('怎么安装？', sender='alice', mid='a2'))
    dispatcher.submit(msg('install from bob', sender='bob', mid='b1'))
    await dispatcher.wait_idle()
    await dispatcher.close()
    by_id = {o.message.message_id: o for o in outcomes}
    assert by_id['a1'].status is OutcomeStatus.MERGED
    assert by_id['a2'].status is OutcomeStatus.ANSWERED
    assert by_id['a2'].message.text == '请问\n怎么安装？'
    assert by_id['a2'].message.merged_message_ids == ['a1']
    assert by_id['b1'].status is OutcomeStatus.ANSWERED
    assert sorted(responder.queries) == sorted(['请问\n怎么安装？', 'install from bob'])


async def test_worker_crash_is_reported_and_the_group_keeps_working():
    responder = ScriptedResponder(fail_on='boom')
    outcomes, on_outcome = collecting()
    dispatcher = GroupDispatcher(responder, on_outcome)
    dispatcher.submit(msg('install boom'))
    dispatcher.submit(msg('install again'))
    await dispatcher.close()
    assert [o.status for o in outcomes] == [OutcomeStatus.FAILED, OutcomeStatus.ANSWERED]


async def test_delivery_failure_does_not_stop_the_group(responder):
    delivered = []

    async def flaky(outcome):
        if not delivered:
            delivered.append(None)
            raise ConnectionError('platform down')
        delivered.append(outcome)

    dispatcher = GroupDispatcher(responder, flaky)
    dispatcher.submit(msg('install 1'))
    dispatcher.submit(msg('install 2'))
    await dispatcher.close()
    assert delivered[1].message.text == 'install 2'


async def test_history_of_answered_questions_reaches_the_worker(responder):
    store = HistoryStore(':memory:', size=10)
    store.warm_up()
    outcomes, on_outcome = collecting()
    dispatcher = GroupDispatcher(responder, on_outcome, history=store)
    dispatcher.submit(msg('how to install?', mid='m1'))
    dispatcher.submit(msg('chatter', mid='m2'))
    dispatcher.submit(msg('and install on windows?', mid='m3'))
    await dispatcher.close()
    assert responder.seen[0].history == []
    assert responder.seen[2].history == [('how to install?', 'Answer to: how to install?')]


async def test_closed_dispatcher_refuses_new_messages(responder):
    outcomes, on_outcome = collecting()
    dispatcher = GroupDispatcher(responder, on_outcome)
    await dispatcher.close()
    assert dispatcher.submit(msg('install')) is False


async def test_abort_drops_queued_work_without_waiting_for_the_worker():
    gate = asyncio.Event()  # never opened: the worker would hang forever
    outcomes, on_outcome = collecting()
    dispatcher = GroupDispatcher(ScriptedResponder(gate=gate), on_outcome)
    dispatcher.submit(msg('install 1'))
    dispatcher.submit(msg('install 2'))
    await asyncio.sleep(0)
    # Bounded: an abort that waited for the worker would hang here; it must fail the test instead.
    await asyncio.wait_for(dispatcher.abort(), 5)
    assert outcomes == []


class CancelRecorder(ScriptedResponder):
    """Holds each answer at the gate; records the queries whose run was cancelled."""

    def __init__(self, gate):
        super().__init__(gate=gate)
        self.cancelled: list[str] = []

    async def run(self, session):
        try:
            return await super().run(session)
        except asyncio.CancelledError:
            self.cancelled.append(session.query)
            raise


async def test_cancel_stops_the_running_answer_and_drops_the_queued_one():
    gate = asyncio.Event()
    responder = CancelRecorder(gate)
    outcomes, on_outcome = collecting()
    dispatcher = GroupDispatcher(responder, on_outcome)
    for i in range(3):
        dispatcher.submit(msg(f'install {i}', mid=str(i)))
    await asyncio.wait_for(_until(lambda: responder.seen), 10)   # the worker holds message 0
    assert dispatcher.cancel('1') is True   # still queued: dropped when its turn comes
    assert dispatcher.cancel('0') is True   # running: its worker call is cancelled
    await asyncio.wait_for(_until(lambda: len(outcomes) == 2), 10)
    gate.set()
    await dispatcher.close()
    by_id = {o.message.message_id: o.status for o in outcomes}
    assert by_id == {'0': OutcomeStatus.CANCELLED, '1': OutcomeStatus.CANCELLED, '2': OutcomeStatus.ANSWERED}
    assert responder.cancelled == ['install 0']
    assert responder.queries == ['install 0', 'install 2']   # message 1 never reached the worker


async def test_cancel_of_an_answered_or_unknown_message_changes_nothing(responder):
    outcomes, on_outcome = collecting()
    dispatcher = GroupDispatcher(responder, on_outcome)
    dispatcher.submit(msg('install 1', mid='1'))
    await dispatcher.wait_idle()
    assert dispatcher.cancel('1') is False and dispatcher.cancel('nope') is False
    dispatcher.submit(msg('install 2', mid='2'))
    await dispatcher.close()
    assert [o.status for o in outcomes] == [OutcomeStatus.ANSWERED, OutcomeStatus.ANSWERED]
