"""A page and its translation found from their paths (docs/en/ and docs/zh_cn/, README.md and README_zh-CN.md)."""
from __future__ import annotations

from huixiangdou.primitive.page_language import page_key, path_language, translation_of


def test_the_path_says_the_language_with_or_without_an_anchor():
    assert [path_language(p) for p in ('mmpose/docs/zh_cn/faq.md#常见问题', 'lmdeploy/docs/en/faq.md',
                                       'HuixiangDou/README_zh.md#安装', 'mmyolo/README_zh-CN.md',
                                       'HuixiangDou/README.md', 'x/docs/encoder/a.md')] == ['zh', 'en', 'zh', 'zh', '', '']


def test_a_page_and_its_translation_share_a_key():
    assert page_key('mmpose/docs/zh_cn/faq.md#常见问题') == page_key('mmpose/docs/en/faq.md#FAQ')
    assert page_key('mmyolo/README_zh-CN.md') == page_key('mmyolo/README.md')
    assert page_key('mmpose/docs/zh_cn/faq.md') != page_key('mmcv/docs/zh_cn/faq.md')
    assert page_key('x/docs/encoder/a.md') != page_key('x/docs/a.md')


def test_the_translation_is_found_only_in_the_asked_language():
    sources = ['mmpose/docs/en/faq.md#FAQ/Training', 'mmcv/docs/zh_cn/faq.md#用法',
               'mmpose/docs/zh_cn/faq.md#常见问题/训练', 'HuixiangDou/README_zh.md#安装']
    assert translation_of(sources[0], sources, 'zh') == 2
    assert translation_of(sources[0], sources, 'en') == -1      # it is English already
    assert translation_of(sources[2], sources, 'zh') == -1      # Chinese already
    assert translation_of('HuixiangDou/README.md#Install', sources, 'zh') == 3
    assert translation_of('mmcv/docs/en/faq.md', sources, '') == -1
