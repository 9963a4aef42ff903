"""Fixtures for the whole suite; they live in :mod:`support` so that test modules can import its helpers by a
name that no other conftest shadows."""

from support import auth_server, run, scripted_server, smtp_server

__all__ = ["auth_server", "run", "scripted_server", "smtp_server"]
