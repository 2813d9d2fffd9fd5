"""gpo-ray: GPO prompt optimization as an async actor system on Ray."""

__version__ = "0.1.0"
