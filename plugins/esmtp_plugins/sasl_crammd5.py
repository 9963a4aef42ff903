"""Built-in plugin 'sasl_crammd5' (being written: registers no hooks yet)."""
