"""Readers and writers: the inrecon HDF5 contract (:mod:`.hdf5`), fastMRI, BART, DICOM, NIfTI/PNG/npy
(:mod:`.images`), CT imports, and :func:`~.load.load_scan`, which reads any of them."""
