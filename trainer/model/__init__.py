"""The model: loading, one adapter per family, what trains, the reference, log-prob prefixes, weights."""
