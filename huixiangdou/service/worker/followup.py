"""Follow-up stage: a reply that asks something about the message it quotes ("这个怎么解决？" under an error,
"还是不行" under the bot's answer) is judged, retrieved and answered with that message as its context.

It only decides the context (`Session.follow_up`); whether the thread is on-topic is still the reject
stage's call, on the reply and its context together. Acknowledgements, jokes and "+1" keep no context.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from huixiangdou.primitive.tokenizer import tokenize
from huixiangdou.service.worker.session import Session

# A reply asks something when it holds one of these: a question mark, a question word, a request, or a
# report that the answer did not help. Short replies count ("为啥", "同问", "然后呢"); "+1" does not.
_ASKING = re.compile(
    r'[?？]|怎么|怎样|咋|如何|为啥|为什么|为何|啥|什么|哪|吗|嘛|呢|是不是|能不能|可不可以|有没有|要不要|是否|多少'
    r'|同问|同求|求(解|助|教|问|链接|文档|教程|大佬|指导|分享)|请问|请教|想知道|想问|不行|没用|不管用|不好使|报错|出错'
    r'|失败|没反应|解决不了'
    r'|^\s*(how|what|why|where|which|when|who|can|could|does|do|is|are|any)\b'
    r'|\b(same (here|issue|problem|question|error)|me too|help|error|fails?|failed|doesn\'?t work|not working)\b', re.I)
# Thanks, agreement, laughter, praise: never a question, whatever it quotes.
_ACKNOWLEDGING = re.compile(
    r'谢|感谢|好的|收到|明白|懂了|了解|学到|学习了|原来如此|哈哈|嘿嘿|233|666|牛|厉害|赞|\+1|^1$'
    r'|\b(thx|thanks?|thank you|ok|okay|lol|nice|great|cool|got it|hh+)\b', re.I)
# Words a follow-up is made of, whatever the subject: asking, pointing at the quote, saying it failed.
# What remains of a reply without them is its own subject ("中午吃什么" → 中午, 吃).
FOLLOW_UP_WORDS = frozenset("""
同 问 求 问下 解答 解决 遇到 遇到了 想 想问 知道 想知道 具体 用 设 设成 成 多少 合适 还 照样 为啥 咋 办 行 就行 只
改 那 然后 报错 错 出错 失败 问题 方法 教程 文档 大佬 请教 有人 一样 也 同样 其他 别的 情况 原因 意思 区别 版本
不行 没用 不够 时候 现在 需要 弄 搞 试 试了 试过 这样 那样 装 装完 装好 用完 之后 以后 后 前
again still same issue problem question error fails failed work works working doesn didn help then else
""".split())
# How much of a quote becomes context: enough to name the error or the topic, short enough that the
# reply's own words are not cut off by the embedding model's token limit.
CONTEXT_CHARS = 500
# A quoted bot answer is recognised in the history only when it is at least this long (a short one,
# "好的", could be anyone's).
_MIN_ANSWER_CHARS = 10
# A word at least e times more frequent in the documents than in everyday text ties a reply to them.
_TIED_SPECIFICITY = 1.0
# A reply names a subject of its own with at least this many words that nothing ties to the thread.
_SUBJECT_WORDS = 2
_SPACE = re.compile(r'\s+')


class ReplyKind(Enum):
    ASKING = 'asking'                # a question or request, however short
    ACKNOWLEDGING = 'acknowledging'  # thanks, agreement, laughter, "+1", emoji
    OTHER = 'other'                  # a statement: judged by its own words, as before


def reply_kind(reply: str) -> ReplyKind:
    """What a reply to a quoted message does. Asking wins: "谢谢，那 windows 上呢？" asks."""
    if _ASKING.search(reply):
        return ReplyKind.ASKING
    if _ACKNOWLEDGING.search(reply) or not re.search(r'[\w\u4e00-\u9fff]', reply):
        return ReplyKind.ACKNOWLEDGING
    return ReplyKind.OTHER


@dataclass
class Thread:
    """What a reply is judged with: `context` ('' for none) and where it came from."""
    context: str
    source: str          # 'quote' | 'bot_question' | 'bot_answer' | '' (no context)


def _norm(text: str) -> str:
    return _SPACE.sub(' ', text).strip()


def bot_turn(session: Session) -> tuple[bool, str]:
    """(is the quote the bot's own answer, the question it answered or ''): from the frontend's fields, or
    found in the session's history, where each bot answer sits beside the question it answered. A quoted
    answer may carry more than the bot's words (WeChat quotes the posted text, references included)."""
    if session.quote_from_bot:
        return True, session.quoted_question
    quote = _norm(session.quote)
    for question, answer in reversed(session.history):
        answer = _norm(answer)
        if len(answer) >= _MIN_ANSWER_CHARS and (answer in quote or (len(quote) >= _MIN_ANSWER_CHARS
                                                                     and quote in answer)):
            return True, question
    return False, ''


class FollowUp:
    """Give a reply that asks about its quote the quote as context; leave every other message alone.

    `specificity(word)` (the store's `sparse.specificity`) tells a reply's own subject from the
    documents' vocabulary: "中午吃什么？" under an on-topic quote is a new, off-topic subject and is judged
    alone; "那 windows 上呢？" (windows: a word of the documents) is a follow-up. Without it every asking
    reply is a follow-up. Costs no embedding: the reject stage featurizes the reply with its context
    instead of the reply alone.

    Usage:
        stage = FollowUp(store.sparse.specificity)
        await stage.run(session)     # before preprocess: "同问" with a quote is not too short
        session.text, session.debug['follow_up']
    """

    name = 'follow_up'

    def __init__(self, specificity=None, context_chars: int = CONTEXT_CHARS):
        if context_chars < 50:
            raise ValueError(f'context_chars must be >= 50 characters, got {context_chars}')
        self.specificity = specificity
        self.context_chars = context_chars

    def new_subject(self, reply: str, context: str) -> list[str]:
        """The reply's own words that tie it neither to its context nor to the documents; all of its
        subject words when it has a subject of its own, else []."""
        own = [w for w in dict.fromkeys(tokenize(reply)) if w not in FOLLOW_UP_WORDS]
        if not own:
            return []
        in_context = set(tokenize(context))
        tied = [w for w in own if w in in_context or (self.specificity is not None and
                                                      self.specificity(w) >= _TIED_SPECIFICITY)]
        # One loose word ("装完", a name) is not a subject of its own; two that nothing ties are.
        return own if not tied and len(own) >= _SUBJECT_WORDS else []

    def thread(self, session: Session) -> Thread:
        from_bot, question = bot_turn(session)
        if from_bot and question:
            return Thread(question[:self.context_chars], 'bot_question')
        return Thread(session.quote[:self.context_chars], 'bot_answer' if from_bot else 'quote')

    async def run(self, session: Session) -> None:
        if not session.quote or not session.query:
            return
        kind = reply_kind(session.query)
        thread = self.thread(session)
        debug: dict[str, object] = {'reply': kind.value, 'quote_from': 'bot' if thread.source.startswith('bot')
                                    else 'user'}
        session.debug[self.name] = debug
        if kind is not ReplyKind.ASKING:
            return
        subject = self.new_subject(session.query, thread.context)
        if subject:
            debug['new_subject'] = subject
            return
        debug['context'] = thread.source
        session.follow_up(thread.context)
