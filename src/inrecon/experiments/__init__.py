"""Experiment drivers on top of the methods: the comparison runner, `inrecon demo` and `inrecon bench`."""
