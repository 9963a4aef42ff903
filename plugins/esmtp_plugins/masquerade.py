"""Built-in plugin 'masquerade' (being written: registers no hooks yet)."""
