from auditor import plugins


def test_builtins_register():
    assert "google_merchant" in plugins.connectors()
    assert {"title", "price"} <= set(plugins.checks())
