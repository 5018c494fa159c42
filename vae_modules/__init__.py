"""CogVideoX's 3D causal VAE: 4x temporal and 8x spatial compression into 16-channel latents.

Layout: ``causal_conv`` (time-causal convolution and its chunk cache), ``spatial_norm`` (the
decoder's latent-conditioned GroupNorm), ``resnet_block``, ``resample`` (down/up sampling),
``cp_enc_dec`` (encoder and decoder), ``regularizers`` (the Gaussian posterior), ``chunking``
(the reference's decode chunk plan) and ``autoencoder`` (the wrapper the configs build).
"""
