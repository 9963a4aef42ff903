"""Built-in plugin 'sasl_login' (being written: registers no hooks yet)."""
