"""Built-in defenses plugins."""
