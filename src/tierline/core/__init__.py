"""The pure core: execution conventions, results, metrics, the reference engine.

Nothing here imports an engine, reads files or sets up logging.
"""
