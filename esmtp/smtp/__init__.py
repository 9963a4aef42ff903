"""The SMTP client: opening and keeping sessions (connect, EHLO, STARTTLS or implicit TLS, AUTH), transactions,
pipelining, TLS policy, SASL, the wire format, time-outs, and the "smtp" delivery agent. The one package that
imports aiosmtplib."""
