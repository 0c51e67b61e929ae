"""Built-in accountants plugins."""
