"""One module per layer of the twin; each defines ``LAYER``. A new layer is a new file here."""
