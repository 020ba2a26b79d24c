"""Bilevel tuning: the Bayesian optimiser (:mod:`.bo`), the plumbing between a method and its tuned
hyperparameters (:mod:`.objective`), tuned-hyperparameter files (:mod:`.hparams`) and the driver
(:mod:`.run`). Nothing here knows a particular method: a method declares a :class:`~.objective.Tunable`."""
