"""The server side of SMTP: the dialogue, its input (lines, DATA, limits) and the relay of each message into the
pipeline (``sendmail -bs``)."""
