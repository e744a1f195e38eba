"""The VM lifecycle (up, provision, status, ssh, halt, destroy) and `devbox doctor`.
"""
