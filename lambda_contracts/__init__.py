"""Contracts shared by every layer: event schema, view declarations, the dedup rule, storage
layout, settings.

Layers import from here and never from each other, so a rule defined here (a validation, a view,
a path) is the only copy of that rule in the project.
"""
