"""Pipeline factories and their compiled specs (``pipelines/compiled/``)."""
