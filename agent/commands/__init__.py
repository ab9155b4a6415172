"""CLI commands, one module per area; each module defines `register(app)`.

Shared helpers for commands live in `_common.py`.
"""
