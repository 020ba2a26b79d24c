"""inrecon.recon.inr."""
