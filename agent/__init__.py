"""selfheal: issue management as a property of the system."""

__version__ = "0.1.0"
