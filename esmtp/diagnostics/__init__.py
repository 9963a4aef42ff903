"""What esmtp can say about itself without sending: ``--pretend``, ``--check``, ``--serverinfo`` and the words they
share."""
