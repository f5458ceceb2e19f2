"""Adapters to training frameworks (optional dependencies, imported only when used)."""
