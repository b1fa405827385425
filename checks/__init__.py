"""Built-in checks: every module here declares one with ``@check``.

The package is a plugin (``auditor.hookspecs``): its ``register_checks`` hook
imports the modules and returns what they declared, the way a third-party plugin
returns its own.
"""

if __name__ != "auditor.checks":  # the folder installs as auditor.checks only (docs/architecture.md)
    raise ImportError(f"import auditor.checks, not {__name__}: one module under two names "
                      "would be loaded twice")

from auditor.hookspecs import hookimpl


@hookimpl
def register_checks():
    from auditor import plugins

    plugins.import_package_modules(__name__)
    return plugins.declared(__name__, "check")
