"""The message model's shortcuts compute what the plain scikit-learn way computes: n-grams counted once for
every fold, a message's TF-IDF without the vectorizer, and the fits a calibration reuses."""
from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from huixiangdou.service.feature_store.message_model import MessageFits, MessageModel, NgramCounts

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
