"""One project on disk: its paths (``.devbox/``), state, lock, and the ``Project`` context the workflows receive.
"""
