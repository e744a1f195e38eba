"""From the production inventory to the development VMs: inventory, topology, dev inventory, Vagrantfile,
and the plan/init/render workflow that writes them.
"""
