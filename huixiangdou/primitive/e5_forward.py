"""The XLM-R encoder's forward pass written out over an XLMRobertaModel's own weights (fp32 or bf16 Linear
layers from e5_torch.build_encoder), with each layer's Q, K and V in one product; the same numbers as calling
the model, ~4 ms less per message (one 24-token message: 18.7 -> 14.8 ms on one thread).

bfloat16 weights are also reordered once, at load, into oneDNN's blocked layout (`prepack`): a plain bf16
product reorders its weight on every call, which for one short message costs as much as the product itself
(one 24-token message: 14.0 -> 9.6 ms on one thread, the same vector to cosine 1 - 1e-7).

It does not load weights, tokenize or pool (e5_torch.py does); int8-quantised models keep the model's own forward.
"""
from __future__ import annotations

from loguru import logger

# The row count the blocked layout is tuned for (a short message); any batch size still works with it.
PACK_ROWS = 32


class EncoderForward:
    """Usage:
        forward = EncoderForward(model)          # model: XLMRobertaModel, eval mode
        hidden = forward(inputs_embeds, position_ids, mask)   # (batch, length, hidden); mask 1 = token, 0 = pad
    """

    def __init__(self, model, prepack: bool = True):
        import torch

        config = model.config
        self.model = model
        self.hidden = config.hidden_size
        self.heads = config.num_attention_heads
        self.eps = config.layer_norm_eps
        self.layers = []   # per layer: {name: (weight, fp32 bias, packed weight or None)}
        for layer in model.encoder.layer:
            sa = layer.attention.self
            weight = torch.cat([sa.query.weight, sa.key.weight, sa.value.weight]).contiguous()
            bias = torch.cat([sa.query.bias, sa.key.bias, sa.value.bias]).float()
            dense = {'qkv': (weight, bias), 'attention_out': self._pair(layer.attention.output.dense),
                     'inner': self._pair(layer.intermediate.dense), 'out': self._pair(layer.output.dense)}
            self.layers.append({name: (w, b, None) for name, (w, b) in dense.items()})
        self.prepacked = prepack and self._prepack()

    @staticmethod
    def _pair(linear):
        return linear.weight, linear.bias.float()

    def _prepack(self) -> bool:
        """Reorder bf16 weights for oneDNN once; False (plain products) where this torch build cannot."""
        import torch

        if self.layers[0]['qkv'][0].dtype != torch.bfloat16 or not torch.backends.mkldnn.is_available():
            return False
        try:
            packed = [{name: (w, b, torch.ops.mkldnn._reorder_linear_weight(w, PACK_ROWS))
                       for name, (w, b, _) in layer.items()} for layer in self.layers]
            probe = torch.ones(1, self.layers[0]['qkv'][0].shape[1], dtype=torch.bfloat16)
            weight, _, pack = packed[0]['qkv']
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
        emb = self.model.embeddings
        x = embeds + emb.position_embeddings(positions) + emb.token_type_embeddings.weight[0]
        x = functional.layer_norm(x, (h,), emb.LayerNorm.weight, emb.LayerNorm.bias, eps)
        batch, length, _ = x.shape
        # A padded key is never attended to; a padded query row is computed and dropped by the pooling.
        attend = None if mask is None else mask[:, None, None, :].bool()
        for layer, dense in zip(self.model.encoder.layer, self.layers):
            qkv = self._linear(x, dense['qkv'])
            q, k, v = qkv.view(batch, length, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
            attention = functional.scaled_dot_product_attention(q, k, v, attn_mask=attend)
            attention = attention.transpose(1, 2).reshape(batch, length, h)
            norm = layer.attention.output.LayerNorm
            x = functional.layer_norm(self._linear(attention, dense['attention_out']) + x, (h,), norm.weight,
                                      norm.bias, eps)
            inner = functional.gelu(self._linear(x, dense['inner']))
            norm = layer.output.LayerNorm
            x = functional.layer_norm(self._linear(inner, dense['out']) + x, (h,), norm.weight, norm.bias, eps)
        return x
