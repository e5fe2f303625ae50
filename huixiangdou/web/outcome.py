"""What the bot did with a message, in the console's words: answered, ignored (and why) or failed.

Shared by Try it, Group messages and the assistant API; it reads a session or a saved outcome record.
"""
from __future__ import annotations

FAILED_CODES = frozenset({'LLM_ERROR', 'INTERNAL_ERROR'})

_REASONS = {
    'SUCCESS': 'answered from the documents',
    'NOT_A_QUESTION': 'ignored: not a question',
    'QUESTION_TOO_SHORT': 'ignored: too short to be a question ([worker] min_query_length)',
    'UNRELATED': 'ignored: not about the documents',
    'NO_SEARCH_RESULT': 'ignored: nothing relevant was found in the documents',
    'BAD_ANSWER': 'ignored: the answer did not pass the check, so none was sent',
    'SECURITY': 'ignored: refused for safety',
    'LLM_ERROR': 'failed: the LLM did not answer (see Integrations for its health)',
    'NOT_WORK_TIME': 'ignored: outside working hours ([worker.time])',
    'INTERNAL_ERROR': 'failed: an internal error (see the server log)',
}


def outcome_of(code: str) -> str:
    if code == 'SUCCESS':
        return 'answered'
    return 'failed' if code in FAILED_CODES else 'ignored'


def reason_of(code: str, reject: dict | None = None) -> str:
    """One sentence; the reject score against the threshold when the record carries them."""
    reason = _REASONS.get(code, f'ignored: {code}')
    if isinstance(reject, dict) and isinstance(reject.get('reject_score'), (int, float)) \
            and isinstance(reject.get('threshold'), (int, float)):
        relation = 'below' if reject['reject_score'] < reject['threshold'] else 'at or above'
        reason += (f' (P(on-topic) {reject["reject_score"]:.2f} {relation} the threshold '
                   f'{reject["threshold"]:.2f})')
    return reason


def numbered_passages(passages, references: list[str]) -> list[dict]:
    """The passages under the numbers the reply cites: [n] is `references[n - 1]`, and its passages (two
    chunks of one source share the number) are joined under it; sources given but not cited follow."""
    order = list(references)
    texts: dict[str, list[str]] = {reference: [] for reference in order}
    for passage in passages:
        if passage.reference not in texts:
            order.append(passage.reference)
            texts[passage.reference] = []
        texts[passage.reference].append(passage.text)
    return [{'n': n, 'reference': reference, 'text': '\n\n'.join(texts[reference])}
            for n, reference in enumerate(order, 1)]


def session_summary(session) -> dict:
    """The end of a message's run, as Try it and the assistant API report it."""
    code = session.code.name if session.code is not None else 'INTERNAL_ERROR'
    reject = session.debug.get('reject') if isinstance(session.debug.get('reject'), dict) else None
    answered = code == 'SUCCESS'
    references = list(session.references) if answered else []
    return {'code': code, 'outcome': outcome_of(code), 'reason': reason_of(code, reject),
            'reply': session.reply if answered else '', 'references': references,
            'passages': numbered_passages(session.passages, references),
            'reject': reject}
