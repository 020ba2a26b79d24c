"""inrecon.engine."""
