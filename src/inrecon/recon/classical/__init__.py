"""The classical references: MRI (:mod:`.mri`), CT (:mod:`.ct`), their solvers and hold-out parameter choice."""
