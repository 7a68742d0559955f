"""The media-publish workflow: its definition (TOML, YAML, Python) and its executors."""
