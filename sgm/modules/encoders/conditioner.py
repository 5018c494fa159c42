"""GeneralConditioner: runs the condition embedders on a batch and sorts their outputs by rank.

Config entry of one embedder (``model.conditioner_config.params.emb_models[i]``)::

    - is_trainable: false      # frozen: requires_grad False, kept in eval mode, run under no_grad
      input_key: txt           # batch[input_key] is what the embedder receives
      ucg_rate: 0.1            # probability of dropping the condition per sample (classifier-free guidance)
      target: sgm.modules.encoders.modules.FrozenT5Embedder
      params: {...}

Outputs are keyed by the embedding's rank: 2 -> "vector", 3 -> "crossattn", 4/5 -> "concat";
several embeddings of one key are concatenated (vector: dim 1, crossattn: dim 2, concat: dim 1).
"""

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from image_to_video.batch_keys import CONCAT_COND_KEY
from sgm.modules.encoders.precomputed import PrecomputedEmbedding, embedding_key
from sgm.util import ConfigError, instantiate_from_config

OUTPUT_DIM2KEYS = {2: "vector", 3: "crossattn", 4: CONCAT_COND_KEY, 5: CONCAT_COND_KEY}
KEY2CATDIM = {"vector": 1, "crossattn": 2, CONCAT_COND_KEY: 1}


@dataclass(frozen=True)
class EmbedderSpec:
    """How the conditioner drives one embedder (the non-``target``/``params`` fields of its entry)."""

    input_key: str  # batch key fed to the embedder
    is_trainable: bool = False  # matches the reference default
    ucg_rate: float = 0.0  # matches the reference default: no condition dropout


def parse_embedder_entry(entry: Any, index: int) -> tuple[EmbedderSpec, dict]:
    """Split one ``emb_models`` entry into its EmbedderSpec and its ``{target, params}`` node.

    Raises ConfigError naming ``emb_models[index]`` and the field for unknown or ill-typed fields.
    """
    where = f"conditioner emb_models[{index}]"
    if isinstance(entry, DictConfig):
        entry = OmegaConf.to_container(entry, resolve=True)
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping with 'target', 'params', 'input_key', got {entry!r}")
    spec_fields = set(EmbedderSpec.__dataclass_fields__)
    unknown = sorted(set(entry) - spec_fields - {"target", "params"})
    if unknown:
        allowed = sorted(spec_fields | {"target", "params"})
        raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed: {allowed}")
    if "input_key" not in entry:
        raise ConfigError(f"{where}: missing field 'input_key' (the batch key the embedder reads, e.g. 'txt')")
    spec = EmbedderSpec(**{k: entry[k] for k in spec_fields if k in entry})
    if not isinstance(spec.input_key, str):
        raise ConfigError(f"{where}: input_key must be a string, got {spec.input_key!r}")
    if not isinstance(spec.is_trainable, bool):
        raise ConfigError(f"{where}: is_trainable must be true or false, got {spec.is_trainable!r}")
    rate = spec.ucg_rate
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
        raise ConfigError(f"{where}: ucg_rate must be a number in [0, 1], got {spec.ucg_rate!r}")
    model_node = {k: entry[k] for k in ("target", "params") if k in entry}
    return spec, model_node


class GeneralConditioner(nn.Module):
    """Condition embedders (here the frozen T5) with per-sample condition dropout for training."""

    def __init__(self, emb_models: Sequence[Mapping[str, Any]]):
        super().__init__()
        specs, embedders = [], []
        for index, entry in enumerate(emb_models):
            spec, model_node = parse_embedder_entry(entry, index)
            try:
                embedder = instantiate_from_config(model_node)
            except ConfigError as err:
                raise ConfigError(f"conditioner emb_models[{index}]: {err}") from err
            if not spec.is_trainable:
                embedder.requires_grad_(False)
                embedder.eval()
            specs.append(spec)
            embedders.append(embedder)
        if not embedders:
            raise ConfigError("conditioner emb_models: expected at least one embedder entry, got none")
        self.specs = tuple(specs)
        self.embedders = nn.ModuleList(embedders)

    def train(self, mode: bool = True) -> "GeneralConditioner":
        """Switch mode; frozen embedders stay in eval mode (matches the reference's ``disabled_train``)."""
        super().train(mode)
        for spec, embedder in zip(self.specs, self.embedders):
            if not spec.is_trainable:
                embedder.eval()
        return self

    def forward(self, batch: Mapping[str, Any], force_zero_embeddings: Optional[Sequence[str]] = None) -> dict:
        """Embed ``batch``, dropping each sample's condition with probability ``ucg_rate``: e.g. ``{"crossattn": (b, L,
        D)}``; embeddings whose ``input_key`` is in ``force_zero_embeddings`` are zeros.

        Matches the reference: the dropout is drawn whenever ``ucg_rate > 0``, in eval mode too, as one
        ``torch.bernoulli((1 - ucg_rate) * ones(b))`` per embedder on the embedding's device, multiplied into the
        computed embedding (an fp32 mask, so a half-precision embedding comes out fp32). Sampling goes through
        ``get_unconditional_conditioning``, which never drops.
        """
        return self._embed(batch, force_zero_embeddings, drop=True)

    def get_unconditional_conditioning(
        self,
        batch_c: Mapping[str, Any],
        batch_uc: Optional[Mapping[str, Any]] = None,
        force_uc_zero_embeddings: Optional[Sequence[str]] = None,
        force_cond_zero_embeddings: Optional[Sequence[str]] = None,
    ) -> tuple[dict, dict]:
        """``(c, uc)`` for guidance, without condition dropout and without touching any state.

        ``uc`` embeds ``batch_uc`` (default ``batch_c``); with ``force_uc_zero_embeddings=["txt"]`` its
        text embedding is all zeros, as the 2B sampler uses it.
        """
        c = self._embed(batch_c, force_cond_zero_embeddings, drop=False)
        uc = self._embed(batch_c if batch_uc is None else batch_uc, force_uc_zero_embeddings, drop=False)
        return c, uc

    def _embed(self, batch: Mapping[str, Any], force_zero: Optional[Sequence[str]], drop: bool) -> dict:
        """Run every embedder on its batch entry; optional dropout, forced zeros, concat by output key."""
        force_zero = self._check_force_zero(force_zero)
        output: dict[str, torch.Tensor] = {}
        for spec, embedder in zip(self.specs, self.embedders):
            source = embedding_key(spec.input_key) if isinstance(embedder, PrecomputedEmbedding) else spec.input_key
            if source not in batch:
                raise KeyError(f"conditioner: batch has no key {source!r} (keys: {sorted(batch)})")
            with nullcontext() if spec.is_trainable else torch.no_grad():
                emb = embedder(batch[source])  # e.g. (b, L, D)
            if not isinstance(emb, torch.Tensor) or emb.dim() not in OUTPUT_DIM2KEYS:
                raise ValueError(
                    f"conditioner: embedder {type(embedder).__name__} returned {type(emb).__name__} "
                    f"{tuple(getattr(emb, 'shape', ()))}; expected a tensor of {sorted(OUTPUT_DIM2KEYS)} dims"
                )
            out_key = OUTPUT_DIM2KEYS[emb.dim()]
            if drop and spec.ucg_rate > 0.0:
                keep = torch.bernoulli((1.0 - spec.ucg_rate) * torch.ones(emb.shape[0], device=emb.device))  # (b,)
                emb = keep.view(-1, *([1] * (emb.dim() - 1))) * emb  # (b, 1, ..) broadcast over the embedding
            if spec.input_key in force_zero:
                emb = torch.zeros_like(emb)
            if out_key in output:
                output[out_key] = torch.cat((output[out_key], emb), KEY2CATDIM[out_key])
            else:
                output[out_key] = emb
        return output

    def _check_force_zero(self, force_zero: Optional[Sequence[str]]) -> frozenset:
        """The set of input keys to zero; each must be some embedder's ``input_key``."""
        if isinstance(force_zero, str):
            raise TypeError(f"conditioner: force-zero keys must be a list of input keys, got the string {force_zero!r}")
        keys = frozenset(force_zero or ())
        known = {spec.input_key for spec in self.specs}
        unknown = sorted(keys - known)
        if unknown:
            raise ValueError(f"conditioner: cannot zero embeddings of {unknown}; embedder input keys: {sorted(known)}")
        return keys
