"""Simulated acquisitions: multi-coil MRI, sparse-view CT, real-time MRI series."""
