"""Built-in dp plugins."""
