"""Full (unmasked) attention over the joint text + video sequence."""

import torch
import torch.nn.functional as F


def full_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_dropout: torch.nn.Dropout | None = None
) -> torch.Tensor:
    """q, k, v: (b, heads, n, head) -> (b, heads, n, head) via ``scaled_dot_product_attention``.

    Scale ``1 / sqrt(head)``, no mask (the DiT attends over every token). SAT's default
    ``attention_fn`` computes the same, after copying k and v for multi-query support we do not use.
    """
    dropout_p = attention_dropout.p if attention_dropout is not None and attention_dropout.training else 0.0
    return F.scaled_dot_product_attention(query, key, value, dropout_p=dropout_p)
