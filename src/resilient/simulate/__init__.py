"""Simulate traffic and failures through candidate guard settings, on virtual time."""
