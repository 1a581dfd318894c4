"""The weights manifest (installed as ``nasnet_zoo.pretrained``)."""
