"""Built-in plugin 'queue' (being written: registers no hooks yet)."""
