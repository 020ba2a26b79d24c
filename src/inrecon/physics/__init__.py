"""Forward models and their algebra: linear operators, MRI (SENSE, NUFFT), CT (projector, FBP), coils,
the one measurement model of a scan (:mod:`.measurement`), and acquisition simulation (:mod:`.simulate`)."""
