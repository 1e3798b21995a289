"""Shared code for the Intune sync functions.

Modules are imported by name (``from shared import run``) so that each function loads only what it uses.
"""
