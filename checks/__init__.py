"""Built-in checks: every module here registers one with ``@check``."""
