"""The test lab (libvirt in a network namespace), the base box, and `devbox integration`.
"""
