"""inrecon.recon."""
