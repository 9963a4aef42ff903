"""Built-in plugin 'mda' (being written: registers no hooks yet)."""
