"""The generated world: a catalog, its channels and labelled drift, from a seed."""
