"""Multi-process sampling of one video: guidance parallel, Ulysses sequence parallel DiT (and the layout)."""
