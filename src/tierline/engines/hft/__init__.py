"""Tier 3: hftbacktest L2 queue and latency simulation.

Modules: ``events`` (catalog L2 book + trades -> hftbacktest event arrays, cached per
partition), ``synthetic``, ``config``, ``execution`` and ``report``. Nothing here imports
hftbacktest at package import time; each module imports it inside the functions that need it.
"""
