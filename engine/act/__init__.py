"""Acting on systems of record: the action catalog as typed models (connectors arrive later)."""
