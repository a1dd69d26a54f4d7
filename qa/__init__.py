"""Cited-passage Q&A over Chinese education policy documents."""

__version__ = "0.1.0"
