"""The one training engine: :func:`~.trainer.train` drives a :class:`~.trainer.Task` with callbacks
(:mod:`.callbacks`); :mod:`.fit` fits a model's image to a measurement; :mod:`.holdout` is the one
reference-free stopping rule and the bilevel trial score; :mod:`.losses`, :mod:`.regularizers` and
:mod:`.checkpoint` are the data terms, image priors and resumable checkpoints."""
