"""The seven services (layer 5), one package each, one process each.

Every package has the same shape: ``servicer.py`` (decode, call the logic, encode), modules for
its own concerns, and ``service.py`` whose ``serve(settings)`` runs the process. A service
reaches its peers only through their stubs; it never imports another service's package.
"""
