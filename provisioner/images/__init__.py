"""Converged images: a VM's provisioned disk published as a Vagrant box, so others start from it (issue 19).

* ``catalog`` (pure): what an image is for (the VM's definition and its digest), Vagrant's box-catalog JSON,
  devbox's own record per image (commit, definition, ledger) and the choice of image per VM.
* ``boxfile`` (runs qemu-img and vagrant): a standalone libvirt box from a VM's disk, sha256 verification and
  ``vagrant box add`` of a catalog entry with nothing left behind when it fails.
* ``identity``: the reset a guest gets before its disk is exported (a script tested on a folder, not a VM).

The VM flow that uses them (export from a running topology, ``up --from-images``) sits above this package.
"""
