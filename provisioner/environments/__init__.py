"""Named environments (staging...): the safety rails, pinned host keys, revision stamps, the runs.
"""
