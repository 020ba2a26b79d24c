"""Reconstruction methods and the one registry of them.

- :mod:`.registry`: what a method is (:class:`~.registry.MethodSpec`, :class:`~.registry.ReconResult`, the run
  :class:`~.registry.Context`);
- :mod:`.methods`: the registry, one entry per method; :mod:`.api`: run, pre-train and tune methods by name;
- :mod:`.classical`: zero-filled, CG-SENSE, L1-wavelet, TV (MRI); FBP, SART, SIRT, TV (CT);
- :mod:`.inr`: the scan-specific INR (NGP), IMJENSE, the bilevel-tuned INR;
- :mod:`.population`: DisINR, STRAINER and Meta (pre-training and test-time adaptation);
- :mod:`.series`: residual learning of real-time series.
"""
