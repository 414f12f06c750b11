"""Applications on top of every layer: the ``edgevlm`` command line and the demo."""
