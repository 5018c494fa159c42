"""The DiT's patch size, read from the YAML's ``patch_size`` in either of its two released forms.

- ``patch_size: 2`` (CogVideoX-2B, 5B, 5B-I2V: reference v1.0 ``dit_video_concat.py``): square patches of each latent
  frame. The patch embedding is a strided Conv2d per frame and the rotary tables are persistent buffers.
- ``patch_size: [2, 2, 2]`` (CogVideoX1.5: reference e519ece ``dit_video_concat.py``): (t, h, w) blocks of latents.
  The patch embedding is one Linear over the flattened block, and the rotary tables are computed, not stored.

The form chooses the DiT's parts (see ``dit/patch_embed.py`` and ``dit/rotary.py``); the token grid and the
un-patching follow from the three sizes alone.
"""

from dataclasses import dataclass
from typing import Any

from sgm.util import ConfigError


@dataclass(frozen=True)
class PatchSize:
    t: int  # latent frames per token (1 for the per-frame form)
    h: int  # latent rows per token
    w: int  # latent columns per token
    temporal: bool  # given as [t, h, w]: the 1.5 layout (linear 3-D patch embedding, computed rotary tables)

    @classmethod
    def from_config(cls, value: Any) -> "PatchSize":
        """``2`` -> PatchSize(1, 2, 2, temporal=False); ``[2, 2, 2]`` -> PatchSize(2, 2, 2, temporal=True)."""
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return cls(1, value, value, temporal=False)
        if (
            isinstance(value, (list, tuple))
            and len(value) == 3
            and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value)
        ):
            return cls(*value, temporal=True)
        raise ConfigError(
            f"patch_size must be a positive int (CogVideoX 1.0, e.g. 2) or a list [t, h, w] (CogVideoX1.5, "
            f"e.g. [2, 2, 2]), got {value!r}"
        )

    @property
    def volume(self) -> int:
        """Latent values per channel in one token: t * h * w."""
        return self.t * self.h * self.w

    def grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """The token grid (T', H', W') of (frames, height, width) latents; ValueError unless each is divisible.

        An odd latent frame count at a temporally patched DiT is refused here: the reference crashes inside its patch
        rearrange, and the callers (sampling, training) pad the latents to a multiple of ``t`` in front.
        """
        if frames % self.t:
            raise ValueError(
                f"DiffusionTransformer: {frames} latent frames cannot be cut into temporal patches of {self.t} "
                f"(patch_size [{self.t}, {self.h}, {self.w}]); pass a multiple of {self.t} (callers pad in front)"
            )
        if height % self.h or width % self.w:
            raise ValueError(
                f"DiffusionTransformer: latent size ({height}, {width}) is not divisible by the patch ({self.h}, {self.w})"
            )
        return frames // self.t, height // self.h, width // self.w


def check_fixed_grid(table_grid: tuple[int, int, int], grid: tuple[int, int, int], patch: PatchSize) -> None:
    """A table sliced flat (1.0: sin-cos, stored rotary, learned) fits only the configured height and width, and at
    most its frame count. ValueError in latent units."""
    frames, height, width = table_grid
    if grid[1:] != (height, width):
        raise ValueError(
            f"DiffusionTransformer: latent size (h, w) must match the config ({height * patch.h}, {width * patch.w}), "
            f"got ({grid[1] * patch.h}, {grid[2] * patch.w})"
        )
    if grid[0] > frames:
        raise ValueError(
            f"DiffusionTransformer: at most {frames * patch.t} latent frames (the position table's length), "
            f"got {grid[0] * patch.t}"
        )
