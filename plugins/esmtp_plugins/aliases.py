"""Built-in plugin 'aliases' (being written: registers no hooks yet)."""
