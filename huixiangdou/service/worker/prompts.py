"""Prompt templates of the worker's LLM stages, in Chinese and English, chosen by the query's language.

Templates only; the stages fill and send them.
"""
from __future__ import annotations

PROMPTS: dict[str, dict[str, str]] = {
    'zh': {
        # Measured on the bundled SmolLM2-135M (docs/worker.md): the question before and after short
        # passages without paths, and a one-or-two-sentence instruction, echo and loop least.
        'system': '你是群聊助手“茴香豆”。只根据资料，用一两句话回答问题，在句末标注资料编号，例如 [1]。不要复述资料。',
        'generate': '{intro}问题：{query}\n\n资料：\n{context}\n\n请用一两句话回答：{query}',
        # A screenshot's text goes in a part of its own, so the model knows the user did not type it.
        'screenshot': '截图中的文字：\n{text}\n',
        # The question of a message that is only a picture.
        'screenshot_question': '截图中的报错或问题怎么解决？',
        # Names in the question that no document uses (retrieve.unmentioned): the material cannot answer them.
        'unmentioned': '注意：资料里没有提到 {words}；如果问题问的是它，请直说资料没有提到，不要编造。\n',
        'intention': (
            '判断下面这句群聊消息是不是一个需要回答的问题，并给出它的主题。\n'
            '只输出一行 JSON，例如 {{"is_question": true, "topic": "安装", "kind": "question"}}，'
            'kind 取值 question、greeting（打招呼、感谢、闲聊）或 identity（问你是谁）。\n消息：{query}'),
        'reject_judge': (
            '一个技术交流群里来了一条消息。它是不是一个需要回答、并且群里的文档能回答的问题'
            '（安装、使用、配置、报错）？闲聊、玩笑、感谢、和文档无关的话都不算。\n'
            '和它最接近的文档片段：{passage}\n消息：{query}\n'
            '只输出一行 JSON：{{"on_topic": true}} 或 {{"on_topic": false}}。'),
        'relevance': (
            '问题：{query}\n回答：{reply}\n'
            '这个回答和问题相关、有帮助吗？请只输出 0 到 10 之间的一个整数，10 表示非常相关。'),
        'security': (
            '下面这段将要发到群里的文字是否含有违法、暴力、色情、辱骂、政治敏感或泄露隐私（如密码、密钥）的内容？'
            '只输出 yes 或 no。\n文字：{reply}'),
    },
    'en': {
        'system': 'You are HuixiangDou, a group-chat assistant. Answer from the material in one or two '
                  'sentences and cite it as [1]. Do not repeat the material.',
        'generate': '{intro}Question: {query}\n\nMaterial:\n{context}\n\nAnswer in one or two sentences: {query}',
        'screenshot': 'Text in the screenshot:\n{text}\n',
        'screenshot_question': 'How is the error or problem in the screenshot solved?',
        'unmentioned': 'Note: the material does not mention {words}; if the question is about it, say the '
                       'material does not mention it instead of making something up.\n',
        'intention': (
            'Decide whether this group-chat message is a question that needs an answer, and its topic.\n'
            'Output one line of JSON only, e.g. {{"is_question": true, "topic": "install", '
            '"kind": "question"}}; kind is question, greeting (hello, thanks, small talk) or identity '
            '(asking who you are).\nMessage: {query}'),
        'reject_judge': (
            'A message arrived in a technical group chat. Is it a question that needs an answer and that the '
            "group's documents could answer (installing, using, configuring, an error)? Chatter, jokes, thanks "
            'and anything unrelated to the documents are not.\nThe closest passage of the documents: {passage}\n'
            'Message: {query}\nOutput one line of JSON only: {{"on_topic": true}} or {{"on_topic": false}}.'),
        'relevance': (
            'Question: {query}\nAnswer: {reply}\n'
            'Is the answer relevant and helpful for the question? Output one integer from 0 to 10 only, '
            '10 meaning fully relevant.'),
        'security': (
            'Does the following text, about to be posted in a group, contain illegal, violent, sexual, '
            'abusive or politically sensitive content, or leak private data (passwords, keys)? '
            'Output yes or no only.\nText: {reply}'),
    },
}


def prompt(language: str, name: str, **values: str) -> str:
    return PROMPTS['zh' if language == 'zh' else 'en'][name].format(**values)
