"""Coordinate networks: positional encodings (hash grid, Fourier features), MLP and SIREN decoders, neural
fields on image grids, and the population networks of DisINR and STRAINER."""
