"""Despeckler backends; each module imports its heavy dependency itself."""
