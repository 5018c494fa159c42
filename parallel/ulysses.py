"""Sequence-parallel DiT (DeepSpeed-Ulysses, Jacobs et al. 2023): each rank holds a slice of the token sequence.

Every rank of a sequence group calls the DiT with the whole input. Before the first layer the ``[text | video]``
sequence of n tokens is cut into contiguous slices (rank s takes ``n // N`` tokens, one more for the first ``n % N``
ranks), so the text prefix sits on the first rank(s); each layer's adaLN picks text or video modulation by a token's
global position. Around attention two all-to-alls trade the sequence split for a head split,
``(b, heads, n / N, head) -> (b, heads / N, n, head)``, so q/k LayerNorms, rotary and attention run unchanged on
``heads / N`` heads. After the last layer the slices are all-gathered, so the final layer sees the whole sequence.
The hooks wrap the model's own (SAT ``non_conflict``); the mixin has no parameters (state dict unchanged).
"""

import torch
import torch.distributed as dist
from sat.model.base_model import BaseMixin, non_conflict
from sat.transformer_defaults import attention_fn_default


def split_sizes(n: int, parts: int) -> list[int]:
    """Tokens per rank: ``n // parts``, one more on the first ``n % parts`` ranks."""
    return [n // parts + (rank < n % parts) for rank in range(parts)]


def seq_to_heads(x: torch.Tensor, sizes: list[int], group: dist.ProcessGroup) -> torch.Tensor:
    """(b, heads, n_local, head) sequence slice -> (b, heads / N, n, head): all heads' slices of this rank's heads."""
    parts = len(sizes)
    b, heads, n_local, head = x.shape
    send = x.reshape(b, parts, heads // parts, n_local, head).transpose(0, 1).contiguous()  # (N, b, heads/N, n_local, head)
    per_token = b * (heads // parts) * head
    received = torch.empty(per_token * sum(sizes), dtype=x.dtype, device=x.device)
    dist.all_to_all_single(received, send.reshape(-1), [per_token * s for s in sizes], [per_token * n_local] * parts, group=group)
    pieces = received.split([per_token * s for s in sizes])
    return torch.cat([piece.view(b, heads // parts, s, head) for piece, s in zip(pieces, sizes)], dim=2)  # (b, heads/N, n, head)


def heads_to_seq(x: torch.Tensor, sizes: list[int], rank: int, group: dist.ProcessGroup) -> torch.Tensor:
    """(b, heads / N, n, head) -> (b, heads, n_local, head): the inverse of ``seq_to_heads``."""
    parts = len(sizes)
    b, local_heads, _, head = x.shape
    send = torch.cat([piece.reshape(-1) for piece in x.split(sizes, dim=2)])  # slice j (b, heads/N, n_j, head) for rank j
    per_token = b * local_heads * head
    received = torch.empty(per_token * sizes[rank] * parts, dtype=x.dtype, device=x.device)
    dist.all_to_all_single(received, send, [per_token * sizes[rank]] * parts, [per_token * s for s in sizes], group=group)
    received = received.view(parts, b, local_heads, sizes[rank], head)  # (N, b, heads/N, n_local, head)
    return received.transpose(0, 1).reshape(b, parts * local_heads, sizes[rank], head)  # (b, heads, n_local, head)


def gather_sequence(x: torch.Tensor, sizes: list[int], group: dist.ProcessGroup) -> torch.Tensor:
    """(b, n_local, d) slices -> (b, n, d) on every rank (padded to the longest slice for the all-gather)."""
    longest = max(sizes)
    padded = torch.nn.functional.pad(x, (0, 0, 0, longest - x.shape[1])).contiguous()
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([part[:, :size] for part, size in zip(parts, sizes)], dim=1)


class SequenceParallelMixin(BaseMixin):
    """SAT hooks around the DiT's ``layer_forward`` and ``attention_fn`` (added last, so they wrap the others)."""

    def __init__(self, group: dist.ProcessGroup, size: int, rank: int):
        super().__init__()
        self.group, self.size, self.rank = group, size, rank

    def _sizes(self, kw_args: dict) -> list[int]:
        return split_sizes(kw_args["text_length"] + kw_args["seq_length"], self.size)

    @non_conflict
    def layer_forward(self, hidden_states: torch.Tensor, mask: torch.Tensor, old_impl=None, **kw_args) -> torch.Tensor:
        """Layer 0 takes (b, n, d) and keeps this rank's slice; the last layer returns the gathered (b, n, d)."""
        layer_id = int(kw_args["layer_id"])
        text_length = kw_args["text_length"]
        sizes = self._sizes(kw_args)
        start = sum(sizes[: self.rank])
        if layer_id == 0:
            if hidden_states.shape[1] != sum(sizes):
                raise ValueError(f"sequence parallel: {hidden_states.shape[1]} tokens, expected text + video = {sum(sizes)}")
            hidden_states = hidden_states[:, start : start + sizes[self.rank]]  # (b, n_local, d)
        local_text = min(max(text_length - start, 0), sizes[self.rank])  # this slice's text tokens (a prefix of it)
        out = old_impl(hidden_states, mask, **{**kw_args, "text_length": local_text, "sequence_text_length": text_length})
        if layer_id == len(self.transformer.layers) - 1:
            out = gather_sequence(out, sizes, self.group)  # (b, n, d)
        return out

    @non_conflict
    def attention_fn(
        self,
        query_layer: torch.Tensor,
        key_layer: torch.Tensor,
        value_layer: torch.Tensor,
        attention_mask: torch.Tensor,
        attention_dropout: torch.nn.Dropout | None = None,
        old_impl=attention_fn_default,
        **kw_args,
    ) -> torch.Tensor:
        """q, k, v: (b, heads, n_local, head) -> (b, heads, n_local, head); attention over all n tokens."""
        text_length = kw_args.pop("sequence_text_length")
        kw_args["text_length"] = text_length
        sizes = split_sizes(text_length + kw_args["seq_length"], self.size)
        query, key, value = (seq_to_heads(x, sizes, self.group) for x in (query_layer, key_layer, value_layer))
        out = old_impl(query, key, value, attention_mask, attention_dropout=attention_dropout, **kw_args)  # (b, heads/N, n, head)
        return heads_to_seq(out, sizes, self.rank, self.group)


def enable_sequence_parallel(dit, group: dist.ProcessGroup, size: int, rank: int) -> None:
    """Add the hooks to a built (and loaded) DiT; no parameters, so the state dict keeps its keys."""
    heads = dit.transformer.layers[0].attention.num_attention_heads
    if heads % size:
        raise ValueError(f"sequence parallel degree {size} does not divide the {heads} attention heads")
    dit.add_mixin("sequence_parallel", SequenceParallelMixin(group, size, rank))
