"""Built-in connectors: every module here declares one with ``@register_connector``.

The package is a plugin (``auditor.hookspecs``): its ``register_connectors`` hook
imports the modules and returns what they declared, the way a third-party plugin
returns its own.
"""

if __name__ != "auditor.connectors":  # the folder installs as auditor.connectors only (docs/architecture.md)
    raise ImportError(f"import auditor.connectors, not {__name__}: one module under two names "
                      "would be loaded twice")

from auditor.hookspecs import hookimpl


@hookimpl
def register_connectors():
    from auditor import plugins

    plugins.import_package_modules(__name__)
    return plugins.declared(__name__, "connector")
