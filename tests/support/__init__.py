"""Test helpers that run real components: a redis-server each test starts and stops itself."""
