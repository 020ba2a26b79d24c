"""Population methods: DisINR, STRAINER and Meta, and what they share (:mod:`.common`)."""
