"""Parity: do the development VMs match the hosts they stand for? Static scan, facts, comparison, report.
"""
