"""Shared code for the Exchange connector sync functions.

Modules are imported by name (``from shared import run``) so that each function loads only what it uses.
"""
