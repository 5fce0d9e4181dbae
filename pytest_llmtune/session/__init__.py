"""The pytest side: settings, the marker, targets, and the two modes (--llm-tune, --llm-test) as session objects."""
