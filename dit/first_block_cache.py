"""First-block cache (ParaAttention; diffusers' ``FirstBlockCacheConfig``, docs/first_block_cache.md): at each DiT
call the first layer always runs; when its residual barely changed since the last call that ran every layer, the
other layers are skipped and their cached residual is added instead.

The rule, as diffusers' ``hooks/first_block_cache.py`` (0.42): ``change = mean|r - r_prev| / mean|r_prev|`` over the
video tokens of layer 0's residual, ``r_prev`` that of the last full call; every layer runs when ``change >
threshold`` (and on the first call), else the call returns ``layer 0 out + tail residual`` (``last layer out - layer
0 out`` of the last full call, for the whole ``[text | video]`` sequence). One state per sampling run and DiT call
site; the guided batch of 2 takes one decision, as diffusers' ``"cond_uncond"`` context. Several processes on one
call all-reduce the two sums (accumulated in fp32) before the ratio, so they decide as one process.
"""

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
import torch.distributed as dist
from sat.model.base_model import BaseMixin, non_conflict

from input_errors import InputError

MIXIN_NAME = "first_block_cache"
# Mixins whose layer_forward hook must wrap the cache's: sequence parallel slices the sequence before layer 0 and
# gathers it after the last layer, and the cache works on the slice a rank holds.
OUTER_MIXINS = ("sequence_parallel",)


def first_block_cache_threshold(value, paths: Sequence[str] = ()) -> float:
    """The threshold from the command line or a config file's ``args:``: a number >= 0 (0 = off), else InputError."""
    try:
        threshold = None if isinstance(value, bool) else float(value)  # a YAML `true` is no threshold
    except (TypeError, ValueError):
        threshold = None
    if threshold is None or not 0 <= threshold < float("inf"):
        where = f" (or args.first_block_cache in {list(paths)})" if paths else ""
        raise InputError(f"--first-block-cache{where} must be a number >= 0 (0 = off; e.g. 0.05 or 0.1), got {value!r}")
    return threshold


@dataclass(frozen=True)
class FirstBlockCacheSettings:
    threshold: float  # > 0; skip the layers after the first while the relative change is <= threshold
    groups: tuple = ()  # process groups sharing each DiT call (guidance, sequence parallel); () for one process


@dataclass
class FirstBlockCacheRecord:
    """What one sampling run's cache did: per DiT call, True when its layers after the first were skipped."""

    num_layers: int
    skipped: list[bool] = field(default_factory=list)

    @property
    def skipped_block_share(self) -> float:
        """Skipped transformer blocks over all blocks of the run's calls."""
        return sum(self.skipped) * (self.num_layers - 1) / (len(self.skipped) * self.num_layers)

    def summary(self, threshold: float) -> str:
        return (f"first-block cache {threshold:g}: skipped {sum(self.skipped)} of {len(self.skipped)} DiT calls "
                f"({100 * self.skipped_block_share:.1f}% of the transformer blocks)")


class FirstBlockCacheMixin(BaseMixin):
    """SAT ``layer_forward`` hook around the DiT's layers (no parameters: the state dict is unchanged)."""

    def __init__(self, settings: FirstBlockCacheSettings, num_layers: int):
        super().__init__()
        self.settings = settings
        self.record = FirstBlockCacheRecord(num_layers)
        self.compute = True  # whether this call runs every layer
        self.head_output: torch.Tensor | None = None  # (b, n, d) layer 0's output of the last full call
        self.head_residual: torch.Tensor | None = None  # (b, n_video, d) its video-token residual
        self.tail_residual: torch.Tensor | None = None  # (b, n, d) last layer out - layer 0 out, same call

    @non_conflict
    def layer_forward(self, hidden_states: torch.Tensor, mask: torch.Tensor, old_impl=None, **kw_args) -> torch.Tensor:
        """hidden_states: (b, n_text + n_video, d) (this rank's slice under sequence parallel) -> the same shape."""
        layer_id = int(kw_args["layer_id"])
        if layer_id == 0:
            return self._head(hidden_states, old_impl(hidden_states, mask, **kw_args), kw_args["text_length"])
        if not self.compute:
            return hidden_states  # a skipped layer passes its input on
        out = old_impl(hidden_states, mask, **kw_args)
        if layer_id == self.record.num_layers - 1:
            self.tail_residual = out - self.head_output
        return out

    def _head(self, before: torch.Tensor, out: torch.Tensor, text_length: int) -> torch.Tensor:
        residual = out[:, text_length:] - before[:, text_length:]  # (b, n_video, d)
        self.compute = self.head_residual is None or self._change(residual) > self.settings.threshold
        self.record.skipped.append(not self.compute)
        if not self.compute:
            return self.tail_residual + out  # matches diffusers: layer 0's output plus the cached tail residual
        self.head_output, self.head_residual = out, residual
        return out

    def _change(self, residual: torch.Tensor) -> float:
        """mean|r - r_prev| / mean|r_prev| over every rank's part of the call (sums all-reduced, then the ratio)."""
        sums = torch.stack(((residual - self.head_residual).abs().sum(dtype=torch.float32),
                            self.head_residual.abs().sum(dtype=torch.float32)))  # (2,)
        for group in self.settings.groups:
            dist.all_reduce(sums, group=group)
        return float(sums[0] / sums[1])


def report(record: FirstBlockCacheRecord, settings: FirstBlockCacheSettings) -> None:
    """Print the run's summary line once per DiT call group (on its first rank)."""
    if all(dist.get_rank(group) == 0 for group in settings.groups):
        print(record.summary(settings.threshold), flush=True)


@contextmanager
def first_block_cache(dit, settings: FirstBlockCacheSettings | None) -> Iterator[FirstBlockCacheRecord | None]:
    """Within the block the DiT caches as above, with a fresh state; yields the run's record (None: no cache)."""
    if settings is None:
        yield None
        return
    num_layers = len(dit.transformer.layers)
    if num_layers < 2:
        raise ValueError(f"first-block cache: the DiT has {num_layers} layer; it needs a first and a last one")
    outer = [(name, dit.get_mixin(name)) for name in OUTER_MIXINS if name in dit.mixins]
    for name, _ in outer:
        dit.del_mixin(name)
    mixin = FirstBlockCacheMixin(settings, num_layers)
    dit.add_mixin(MIXIN_NAME, mixin)
    for name, outer_mixin in outer:
        dit.add_mixin(name, outer_mixin)
    try:
        yield mixin.record
    finally:
        dit.del_mixin(MIXIN_NAME)
