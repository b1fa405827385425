"""Reports rendered from the store: prepared contexts, Jinja2 templates with autoescaping on."""
