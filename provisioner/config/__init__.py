"""devbox.yml: its schema, with each section's validator beside it (environments, smoke, parity).

Imports nothing of devbox but ``errors``.
"""
