"""Named training configs as JSON data files (``load_config(NAME)``)."""
