"""INR methods fitted to one scan: NGP (:mod:`.ngp`), IMJENSE (:mod:`.imjense`), bilevel tuning (:mod:`.bilevel`)."""
