"""The server side of SMTP: the dialogue, its input (lines, DATA, limits) and the relay of each message into the
pipeline, for ``sendmail -bs`` on a pipe and for the listener on sockets (``esmtp --listen``: the listener, its
settings and its clients' passwords)."""
