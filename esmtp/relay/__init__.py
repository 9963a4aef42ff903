"""The warm relay: the resident process that runs commands for the front end (:mod:`esmtp.front`)."""
