"""inrecon.recon.population."""
