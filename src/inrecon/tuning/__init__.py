"""inrecon.tuning."""
