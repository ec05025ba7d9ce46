"""Fixtures of this folder; they live in pg_support.py, which the tests import by its
unique name (several folders have a conftest.py, so "from conftest import" is ambiguous)."""

from pg_support import *  # noqa: F401,F403
