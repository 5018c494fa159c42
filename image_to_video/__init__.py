"""Image-to-video: the image condition at sampling (`conditioning`: the given image, resized and encoded) and in
training (`noised_image`: the clip's first frame, lightly noised, with dropout)."""
