"""Built-in plugin 'sasl_ntlm' (being written: registers no hooks yet)."""
