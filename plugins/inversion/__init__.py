"""Built-in inversion plugins."""
