"""The web UI of `auditor serve`: the findings inbox and one product on every channel."""
