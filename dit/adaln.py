"""adaLN conditioning of every transformer layer, plus the per-head q/k LayerNorms."""

import torch
import torch.nn.functional as F
from sat.model.base_model import BaseMixin, non_conflict
from sat.ops.layernorm import LayerNorm
from sat.transformer_defaults import attention_fn_default
from torch import nn

from dit.per_sample import per_sample


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x: (b, n, d); shift, scale: (b, d) -> ``x * (1 + scale) + shift`` (one fused op)."""
    return torch.addcmul(shift.unsqueeze(1), x, 1 + scale.unsqueeze(1))


def gated_residual(x: torch.Tensor, gate: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """x, update: (b, n, d); gate: (b, d) -> ``x + gate * update`` (one fused op)."""
    return torch.addcmul(x, gate.unsqueeze(1), update)


class AdaLNMixin(BaseMixin):
    """SAT ``layer_forward`` hook: a pre-norm layer whose norms are modulated by the time embedding.

    Per layer, ``SiLU -> Linear(time_embed_dim, 12 * hidden)`` gives, in this order: shift, scale,
    gate for video attention; shift, scale, gate for video MLP; the same six for text. Text and
    video tokens share the layer's weights (and its LayerNorms, eps 1e-5 from SAT) but get their
    own modulation. Matches the reference: the modulation Linear keeps its default init (no zero
    init). With ``qk_ln`` the ``attention_fn`` hook LayerNorms q and k per head (eps 1e-6).
    """

    def __init__(
        self,
        hidden_size: int,
        num_layers: int,
        time_embed_dim: int,
        hidden_size_head: int,
        qk_ln: bool = True,
        elementwise_affine: bool = True,
    ):
        super().__init__()
        self.adaLN_modulations = nn.ModuleList(
            [nn.Sequential(nn.SiLU(), nn.Linear(time_embed_dim, 12 * hidden_size)) for _ in range(num_layers)]
        )
        self.qk_ln = qk_ln
        if qk_ln:
            self.query_layernorm_list = nn.ModuleList(
                [LayerNorm(hidden_size_head, eps=1e-6, elementwise_affine=elementwise_affine) for _ in range(num_layers)]
            )
            self.key_layernorm_list = nn.ModuleList(
                [LayerNorm(hidden_size_head, eps=1e-6, elementwise_affine=elementwise_affine) for _ in range(num_layers)]
            )

    def layer_forward(self, hidden_states: torch.Tensor, mask: torch.Tensor, **kw_args) -> torch.Tensor:
        """hidden_states: (b, n_text + n_video, d) -> same shape."""
        layer_id, text_length, emb = kw_args["layer_id"], kw_args["text_length"], kw_args["emb"]
        layer = self.transformer.layers[layer_id]
        (
            shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp,
            text_shift_msa, text_scale_msa, text_gate_msa, text_shift_mlp, text_scale_mlp, text_gate_mlp,
        ) = per_sample(self.adaLN_modulations[layer_id], emb).chunk(12, dim=1)  # 12 x (b, d)

        # 1. attention over the joint sequence, modulated per modality
        sizes = [text_length, hidden_states.shape[1] - text_length]
        text_states, video_states = hidden_states.split(sizes, dim=1)  # (b, n_text, d), (b, n_video, d)
        text_normed, video_normed = layer.input_layernorm(hidden_states).split(sizes, dim=1)
        attention_input = torch.cat(
            (modulate(text_normed, text_shift_msa, text_scale_msa), modulate(video_normed, shift_msa, scale_msa)), dim=1
        )  # (b, n, d)
        text_attention, video_attention = layer.attention(attention_input, mask, **kw_args).split(sizes, dim=1)
        text_states = gated_residual(text_states, text_gate_msa, text_attention)
        video_states = gated_residual(video_states, gate_msa, video_attention)

        # 2. MLP, same pattern
        mlp_input = torch.cat(
            (
                modulate(layer.post_attention_layernorm(text_states), text_shift_mlp, text_scale_mlp),
                modulate(layer.post_attention_layernorm(video_states), shift_mlp, scale_mlp),
            ),
            dim=1,
        )  # (b, n, d)
        text_mlp, video_mlp = layer.mlp(mlp_input, **kw_args).split(sizes, dim=1)
        text_states = gated_residual(text_states, text_gate_mlp, text_mlp)
        video_states = gated_residual(video_states, gate_mlp, video_mlp)
        return torch.cat((text_states, video_states), dim=1)  # (b, n, d)

    def mlp_forward(self, hidden_states: torch.Tensor, **kw_args) -> torch.Tensor:
        """SAT's MLP (h -> 4h, GELU-tanh, 4h -> h) with each bias fused into its matmul: (b, n, d) -> (b, n, d).

        SAT's row-parallel output layer adds its bias in a separate pass; with model parallel size 1
        the result is the same up to rounding, one pass over the activations cheaper.
        """
        mlp = self.transformer.layers[kw_args["layer_id"]].mlp
        hidden = mlp.activation_func(F.linear(hidden_states, mlp.dense_h_to_4h.weight, mlp.dense_h_to_4h.bias))  # (b, n, 4d)
        return F.linear(hidden, mlp.dense_4h_to_h.weight, mlp.dense_4h_to_h.bias)  # (b, n, d)

    @non_conflict
    def attention_fn(
        self,
        query_layer: torch.Tensor,
        key_layer: torch.Tensor,
        value_layer: torch.Tensor,
        attention_mask: torch.Tensor,
        attention_dropout: nn.Dropout | None = None,
        log_attention_weights: torch.Tensor | None = None,
        scaling_attention_score: bool = True,
        old_impl=attention_fn_default,
        **kw_args,
    ) -> torch.Tensor:
        """q, k, v: (b, heads, n, head); LayerNorm q and k per head, then the wrapped attention."""
        if self.qk_ln:
            layer_id = kw_args["layer_id"]
            query_layer = self.query_layernorm_list[layer_id](query_layer)
            key_layer = self.key_layernorm_list[layer_id](key_layer)
        return old_impl(
            query_layer,
            key_layer,
            value_layer,
            attention_mask,
            attention_dropout=attention_dropout,
            log_attention_weights=log_attention_weights,
            scaling_attention_score=scaling_attention_score,
            **kw_args,
        )
