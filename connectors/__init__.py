"""Built-in connectors: every module here registers one with ``@register_connector``."""
