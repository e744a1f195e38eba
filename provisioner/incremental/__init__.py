"""Re-provision only what changed: content digests, the ledger, the subset playbook.
"""
