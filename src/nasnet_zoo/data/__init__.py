"""Datasets: CIFAR-10 (official pickle layout) and ImageNet-style folders."""
