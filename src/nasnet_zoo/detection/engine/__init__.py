"""Training and running detectors: the train loop, the train-det runner, PreciseBN, the demo backbone pretraining,
the CPU speed note, prediction over image files, and what both engines share between processes."""
