"""The message model's shortcuts compute what the plain scikit-learn way computes: n-grams counted once for
every fold, a message's TF-IDF without the vectorizer, and the fits a calibration reuses."""
from __future__ import annotations

import json

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from huixiangdou.service.feature_store.message_model import (ExtraExamples, MessageFits, MessageModel, NgramCounts,
                                                             near_duplicate_groups)

TEXTS = ['怎么重建索引？', 'How do I rebuild the FAISS index?', 'pizza tonight?', 'gn everyone', '',
         'config.ini 里 chunk_size 改多少', 'ModuleNotFoundError: tomllib', '周末爬山吗', 'MMPose 量化 怎么做',
         'lunch?', '午饭吃啥', 'reranker 不生效', 'happy birthday!', 'OCR 读不出截图', '下雨了']


def test_a_folds_tfidf_from_shared_counts_is_a_vectorizer_fitted_on_the_fold():
    counts = NgramCounts(TEXTS)
    train, test = np.array([0, 2, 3, 5, 8, 9, 13]), np.array([1, 4, 6, 7, 10, 11, 12, 14])
    cols, weighting = counts.fit(train)
    reference = TfidfVectorizer(analyzer='char_wb', ngram_range=(1, 3), sublinear_tf=True, lowercase=True)
    reference.fit([TEXTS[i] for i in train])
    assert list(counts.names[cols]) == list(reference.get_feature_names_out())
    for rows in (train, test):
        expected = reference.transform([TEXTS[i] for i in rows]).toarray()
        assert np.allclose(counts.tfidf(rows, cols, weighting).toarray(), expected, atol=1e-12)


def test_a_messages_tfidf_matches_the_vectorizer():
    rng = np.random.default_rng(0)
    labels = np.array([1, 1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1, 0])
    model = MessageModel.fit(TEXTS, rng.normal(size=(len(TEXTS), 8)).astype(np.float32), labels)
    messages = TEXTS + ['全新的消息 unseen words', '   ', 'ＦＡＩＳＳ 全角']
    assert np.allclose(model.tfidf(messages).toarray(), model.vectorizer.transform(messages).toarray(), atol=1e-12)


def test_fits_cover_every_fold_and_hold_no_example_in_its_own_model():
    rng = np.random.default_rng(1)
    texts = [f'{t} {i}' for i, t in enumerate(TEXTS * 3)]
    labels = np.array([1, 0] * 22 + [1])
    vectors = rng.normal(size=(len(texts), 8)).astype(np.float32)
    fits = MessageFits.fit(texts, vectors, labels)
    held_out = np.sort(np.concatenate([f.test for f in fits.folds]))
    assert list(held_out) == list(range(len(texts)))        # every example held out exactly once
    fold = fits.folds[0]
    train = np.setdiff1d(np.arange(len(texts)), fold.test)
    alone = MessageModel.fit([texts[i] for i in train], vectors[train], labels[train])
    assert np.allclose(fold.test_logits, alone.logits([texts[i] for i in fold.test], vectors[fold.test]))
    assert fold.train_logits.shape == (len(train),) and fits.cross_fitted.shape == (len(texts),)


def test_near_duplicate_messages_are_grouped():
    groups = near_duplicate_groups(['怎么部署到 TensorRT？', '请问怎么部署到TensorRT', '周末爬山吗', 'ok', 'OK '])
    assert groups[0] == groups[1] and len({groups[0], groups[2], groups[3]}) == 3
    assert groups[3] == groups[4]          # case and spaces do not make a different message


def test_a_question_asked_twice_never_straddles_a_fold():
    # The same questions reworded ("请问…", "…？") would otherwise sit in training and in the held-out fold,
    # and the cross-validated scores would promise what new messages never get.
    rng = np.random.default_rng(2)
    base = ['怎么重建 FAISS 索引', '午饭吃啥呀大家', 'MMPose 量化怎么做', '周末去爬山吗各位', 'reranker 不生效怎么办',
            '下雨了记得带伞', 'OCR 读不出截图的文字', '生日快乐呀朋友们', 'chunk_size 改多少合适', '今晚看球吗']
    texts = [t for t in base for _ in range(3)]
    texts = [t if i % 3 == 0 else ('请问' + t if i % 3 == 1 else t + '？') for i, t in enumerate(texts)]
    labels = np.array([1, 0] * 5).repeat(3)
    fits = MessageFits.fit(texts, rng.normal(size=(len(texts), 8)).astype(np.float32), labels)
    groups = near_duplicate_groups(texts)
    assert len(set(groups)) == len(base)
    for fold in fits.folds:
        held = set(groups[fold.test])
        train = np.setdiff1d(np.arange(len(texts)), fold.test)
        assert held.isdisjoint(groups[train])
        # the inner folds the fold's own threshold is chosen on keep duplicates together too
        for j in np.unique(fold.train_fold):
            assert set(groups[train][fold.train_fold == j]).isdisjoint(groups[train][fold.train_fold != j])


def test_extra_questions_train_every_fit_but_are_never_scored():
    rng = np.random.default_rng(3)
    texts = [f'{t} {i}' for i, t in enumerate(TEXTS * 2)]
    labels = np.array([1, 0] * 15)
    vectors = rng.normal(size=(len(texts), 8)).astype(np.float32)
    extra = ExtraExamples(['如何重建 FAISS 索引？', '量化后精度下降怎么办'], rng.normal(size=(2, 8)).astype(np.float32), 0.5)
    plain = MessageFits.fit(texts, vectors, labels)
    fits = MessageFits.fit(texts, vectors, labels, extra=extra)
    assert fits.cross_fitted.shape == (len(texts),)                        # scored: the examples alone
    assert sorted(np.concatenate([f.test for f in fits.folds])) == list(range(len(texts)))
    assert '精度' in fits.full.ngrams and '精度' not in plain.full.ngrams  # learnt from the extra texts
    # an on-topic extra text pulls a message like it towards on-topic
    probe = ['量化后精度下降怎么办'], extra.vectors[1:]
    assert fits.full.logits(*probe)[0] > plain.full.logits(*probe)[0]
    none = MessageFits.fit(texts, vectors, labels, extra=ExtraExamples([], np.zeros((0, 8)), 0.5))
    assert np.allclose(none.cross_fitted, plain.cross_fitted)          # no extra texts: the plain fits


def test_char_wb_ngrams_are_scikit_learns_on_real_text():
    from sklearn.feature_extraction.text import CountVectorizer

    from huixiangdou.service.feature_store.message_model import char_wb_ngrams
    from tests.conftest import REPO_ROOT

    analyze = CountVectorizer(analyzer='char_wb', ngram_range=(1, 3), lowercase=True).build_analyzer()
    real = (REPO_ROOT / 'README.md').read_text(encoding='utf-8').splitlines()
    odd = ['', ' ', 'a', 'ab', '  多  空格\t\tand\ttabs\n\nnew lines  ', 'ＦＡＩＳＳ 全角 İstanbul ß',
           '😀 emoji 𠀀', 'x' * 5, 'mmdet.apis.init_detector(--cfg)']
    for text in real + odd:
        assert char_wb_ngrams(text) == analyze(text), text


def test_scoring_a_message_imports_no_scikit_learn(tmp_path):
    """Fitting needs scikit-learn; loading a store and scoring a message does not (its import is 1.1 s)."""
    import subprocess
    import sys

    from huixiangdou.config import FeatureStoreConfig
    from huixiangdou.primitive.e5_torch import E5TorchEmbedder
    from huixiangdou.service.feature_store.builder import FeatureStoreBuilder
    from tests.conftest import REPO_ROOT

    repo = tmp_path / 'repo'
    repo.mkdir()
    (repo / '飞书.md').write_text('# 飞书群应用\n\n在开放平台填写 app_id、app_secret 和加密密钥 encrypt_key。\n', encoding='utf-8')
    good = ['飞书群应用的 encrypt_key 在哪里填', 'app_secret 填错了会怎样', '飞书机器人怎么配置', '加密密钥是什么']
    bad = ['今天中午吃什么', '哈哈哈', '周末去爬山吗', '晚安']
    for name, items in (('good.json', good), ('bad.json', bad)):
        (tmp_path / name).write_text(json.dumps(items, ensure_ascii=False), encoding='utf-8')
    FeatureStoreBuilder(FeatureStoreConfig(), E5TorchEmbedder(), progress=False).build(
        repo, tmp_path / 'work', good=tmp_path / 'good.json', bad=tmp_path / 'bad.json')
    script = ('import sys; from pathlib import Path; '
              'from huixiangdou.primitive.e5_torch import E5TorchEmbedder; '
              'from huixiangdou.service.feature_store.store import FeatureStore; '
              f'store = FeatureStore.load(Path({str(tmp_path / "work")!r}), E5TorchEmbedder()); '
              'store.explain("飞书群应用的加密密钥 encrypt_key 在哪里配置？"); '
              'print(sorted(m for m in ("sklearn", "transformers") if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == '[]'
