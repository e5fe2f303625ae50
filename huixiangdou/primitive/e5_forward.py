"""The XLM-R encoder's forward pass written out over multilingual-e5-small's weight tensors (as e5_weights.py
reads them), with each layer's Q, K and V in one product. It gives the numbers transformers' XLMRobertaModel
gives for the same weights (tests/primitive/test_e5_torch.py), ~4 ms less per message, and needs no
transformers import (2.4 s of every process's start).

bfloat16 weights are also reordered once, at load, into oneDNN's blocked layout (`prepack`): a plain bf16
product reorders its weight on every call, which for one short message costs as much as the product itself
(one 24-token message: 14.0 -> 9.6 ms on one thread, the same vector to cosine 1 - 1e-7).

It does not read weights, tokenize or pool (e5_weights.py and e5_torch.py do).
"""
from __future__ import annotations

from loguru import logger

# The row count the blocked layout is tuned for (a short message); any batch size still works with it.
PACK_ROWS = 32
# The per-layer products: E5Weights' short names (query, key, value, attention out, FFN in, FFN out).
_DENSE = ('q', 'k', 'v', 'ao', 'fi', 'fo')
# The transformers XLMRobertaModel state-dict names of the same tensors (for from_model).
_HF = {'q': 'attention.self.query', 'k': 'attention.self.key', 'v': 'attention.self.value',
       'ao': 'attention.output.dense', 'aln': 'attention.output.LayerNorm', 'fi': 'intermediate.dense',
       'fo': 'output.dense', 'oln': 'output.LayerNorm'}


class EncoderForward:
    """Usage:
        forward = EncoderForward(tensors, heads=12, eps=1e-12, precision='bf16')   # E5Weights.tensors
        hidden = forward(inputs_embeds, position_ids, mask)   # (batch, length, hidden); mask 1 = token, 0 = pad

    precision: "fp32", or "bf16" = the products in bfloat16 (3x faster where the CPU multiplies it natively),
    their bias, the residual stream and the layer norms in float32.
    """

    def __init__(self, tensors: dict, heads: int, eps: float, precision: str = 'fp32', prepack: bool = True):
        import numpy as np
        import torch

        if precision not in ('fp32', 'bf16'):
            raise ValueError(f'precision must be fp32 or bf16, got {precision!r}')

        def t(name):
            value = tensors[name]
            return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)) if isinstance(value, np.ndarray) \
                else value.detach().float().contiguous()

        dtype = torch.bfloat16 if precision == 'bf16' else torch.float32
        self.heads, self.eps = heads, eps
        self.position, self.token_type = t('emb.pos'), t('emb.type')[0]
        self.embed_norm = (t('emb.ln.w'), t('emb.ln.b'))
        self.hidden = self.position.shape[1]
        self.layers = []   # per layer: products {name: (weight, fp32 bias, packed weight or None)}, norms
        layer = 0
        while f'l{layer}.q.w' in tensors:
            w = {name: t(f'l{layer}.{name}.w') for name in _DENSE}
            b = {name: t(f'l{layer}.{name}.b') for name in _DENSE}
            products = {'qkv': (torch.cat([w['q'], w['k'], w['v']]).to(dtype).contiguous(),
                                torch.cat([b['q'], b['k'], b['v']]), None)}
            products.update({name: (w[name].to(dtype).contiguous(), b[name], None) for name in ('ao', 'fi', 'fo')})
            norms = {name: (t(f'l{layer}.{name}.w'), t(f'l{layer}.{name}.b')) for name in ('aln', 'oln')}
            self.layers.append((products, norms))
            layer += 1
        if not self.layers:
            raise ValueError('no encoder layers in the weights (expected l0.q.w, ...)')
        self.prepacked = prepack and dtype == torch.bfloat16 and self._prepack()

    @classmethod
    def from_model(cls, model, precision: str = 'fp32', prepack: bool = True) -> 'EncoderForward':
        """The same forward over a transformers XLMRobertaModel's weights (to compare with its own forward)."""
        state = model.state_dict()
        tensors = {'emb.pos': state['embeddings.position_embeddings.weight'],
                   'emb.type': state['embeddings.token_type_embeddings.weight'],
                   'emb.ln.w': state['embeddings.LayerNorm.weight'], 'emb.ln.b': state['embeddings.LayerNorm.bias']}
        for layer in range(model.config.num_hidden_layers):
            for short, long in _HF.items():
                for suffix, kind in (('w', 'weight'), ('b', 'bias')):
                    tensors[f'l{layer}.{short}.{suffix}'] = state[f'encoder.layer.{layer}.{long}.{kind}']
        return cls(tensors, model.config.num_attention_heads, model.config.layer_norm_eps, precision, prepack)

    def _prepack(self) -> bool:
        """Reorder bf16 weights for oneDNN once; False (plain products) where this torch build cannot."""
        import torch

        if not torch.backends.mkldnn.is_available():
            return False
        try:
            packed = [({name: (w, b, torch.ops.mkldnn._reorder_linear_weight(w, PACK_ROWS))
                        for name, (w, b, _) in products.items()}, norms) for products, norms in self.layers]
            weight, _, pack = packed[0][0]['qkv']
            probe = torch.ones(1, weight.shape[1], dtype=torch.bfloat16)
            same = torch.allclose(self._packed_product(probe, pack).float(), (probe @ weight.t()).float(),
                                  rtol=1e-2, atol=1e-2)
        except (RuntimeError, AttributeError) as exc:   # an op missing from this build: plain products
            logger.info('embedding: bf16 weights not prepacked ({}); plain products', exc)
            return False
        if not same:
            logger.warning('embedding: prepacked bf16 product disagrees with the plain one; plain products')
            return False
        self.layers = packed
        return True

    @staticmethod
    def _packed_product(x, pack):
        import torch
        return torch.ops.mkldnn._linear_pointwise(x, pack, None, 'none', [], '')

    def _linear(self, x, dense):
        """x @ W.T + b: the product in the weight's dtype, the bias and the result in float32."""
        weight, bias, pack = dense
        if pack is not None:
            return self._packed_product(x.to(weight.dtype), pack).to(x.dtype) + bias
        import torch
        return torch.nn.functional.linear(x.to(weight.dtype), weight).to(x.dtype) + bias

    def __call__(self, embeds, positions, mask=None):
        """`mask` (batch, length) of 0/1, or None when no row is padded."""
        import torch
        functional = torch.nn.functional

        h, eps = self.hidden, self.eps
        x = embeds + self.position[positions] + self.token_type
        x = functional.layer_norm(x, (h,), *self.embed_norm, eps)
        batch, length, _ = x.shape
        # A padded key is never attended to; a padded query row is computed and dropped by the pooling.
        attend = None if mask is None else mask[:, None, None, :].bool()
        for products, norms in self.layers:
            qkv = self._linear(x, products['qkv'])
            q, k, v = qkv.view(batch, length, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
            attention = functional.scaled_dot_product_attention(q, k, v, attn_mask=attend)
            attention = attention.transpose(1, 2).reshape(batch, length, h)
            x = functional.layer_norm(self._linear(attention, products['ao']) + x, (h,), *norms['aln'], eps)
            inner = functional.gelu(self._linear(x, products['fi']))
            x = functional.layer_norm(self._linear(inner, products['fo']) + x, (h,), *norms['oln'], eps)
        return x
