"""Shared by tests/, bench/ and tools/: real node processes (``harness``), real Redis and Celery
workers (``services``) and network-namespace hosts (``netns``). Production code never imports it
(an import-linter contract in pyproject.toml)."""
