"""Small shared utilities: atomic files, configs, metrics logging, distributed setup."""
