"""esmtp's built-in plugins. Each module is one plugin with its own entry point in the ``esmtp.plugins`` group."""
