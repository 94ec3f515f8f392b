"""Cloister: confidential multi-party function-as-a-service, wire-compatible with Apache Teaclave."""

__version__ = "0.1.0"
