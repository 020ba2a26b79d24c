"""inrecon.recon.classical."""
