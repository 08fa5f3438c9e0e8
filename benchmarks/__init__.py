"""Benchmarks of watchtower-refresh against watchtower and the stdlib handlers: make bench."""
