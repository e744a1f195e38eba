"""Adapters: the only way out to Vagrant, ansible-runner/Ansible, SSH (paramiko), Mitogen and external commands.

Each sits behind a small interface (``VagrantDriver``, ``PlaybookRunner``, ``SshProbe``); the rest of devbox
never imports ``vagrant``, ``ansible_runner`` or ``paramiko`` itself. They import nothing of devbox but
``errors`` and ``fsutil``.
"""
