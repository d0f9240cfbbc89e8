"""Reusable ``@deploy`` functions composed from tfenv operations."""
