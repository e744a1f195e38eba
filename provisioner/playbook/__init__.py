"""Reading the team's playbook statically: shared by the change planner and the parity scan.
"""
