"""Registered model families (importing this package fills the registry)."""
from . import nasnet_a  # noqa: F401
