"""Tests of ``watchtower_refresh._process``: the process around the handlers."""
