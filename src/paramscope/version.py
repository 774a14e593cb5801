"""The package's version, in a module of its own: the Hub reader names it in its user agent, and a reader
must not import the package root (which sits above every layer)."""

__version__ = "0.1.0"
