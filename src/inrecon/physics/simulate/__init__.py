"""inrecon.physics.simulate."""
