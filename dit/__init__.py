"""Pieces of the CogVideoX DiT: SAT mixins (one per file) and the math they share.

`dit_video_concat.DiffusionTransformer` assembles them; configs name the mixins as
``dit_video_concat.<Mixin>``, which re-exports them.
"""
