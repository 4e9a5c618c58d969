"""Lockstep: linked devices with phishing-resistant QR linking, on trusted time."""

__version__ = "0.1.0"
