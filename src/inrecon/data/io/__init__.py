"""inrecon.data.io."""
