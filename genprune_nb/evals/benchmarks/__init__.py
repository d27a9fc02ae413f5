"""The registered benchmarks, one module per family; each module calls ``registry.register`` when imported.

The registry imports every module here on first use, so a new benchmark is one new file in this folder.
"""
