"""The detectors: NASNet backbones and heads, the registered builders, norms, stage freezing, and a detector
built from a run's config (for training, or back from its checkpoint for inference)."""
