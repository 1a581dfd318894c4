"""Detector evaluation: COCOeval over a dataset, and pictures of predictions beside the ground truth."""
