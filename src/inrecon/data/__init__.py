"""Scans and what they are made of: typed containers (:mod:`.scans`), sampling patterns, phantom populations,
real-data loaders, and readers/writers of the formats users have (:mod:`.io`). Nothing here imports physics."""
