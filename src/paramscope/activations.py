"""activations estimates from an :class:`paramscope.architecture.Architecture` (being built)."""
