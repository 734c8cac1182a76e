"""One TOML file per layer of the twin (read by twin.layerspec); a new layer is a new file here."""
