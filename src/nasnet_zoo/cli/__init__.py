"""The command-line programs, importable from an installed package: ``nasnet-zoo <command>`` (see
``nasnet_zoo.__main__``) runs them, and ``tools/<name>.py`` in a checkout is a wrapper of ``cli.<name>``."""
