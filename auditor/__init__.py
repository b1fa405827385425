"""omni-auditor: keeps product data consistent across every sales channel."""

__version__ = "0.1.0"
