"""Reports rendered from the store: prepared contexts, Jinja2 templates with autoescaping on."""

if __name__ != "auditor.reports":  # the folder installs as auditor.reports only (docs/architecture.md)
    raise ImportError(f"import auditor.reports, not {__name__}: one module under two names "
                      "would be loaded twice")
