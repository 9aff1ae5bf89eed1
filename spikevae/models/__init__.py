"""The models, in torch: the Poisson sampler and KL, the P-VAE family, the iterative P-VAE, training, checkpoints and
:class:`~spikevae.models.trained.TrainedModel` (a checkpoint seen from a notebook: preprocess, rates, dictionary).

Nothing here imports Brian2; what leaves a model for the spike layer is a numpy array of expected counts per window.
"""
