"""What is written to disk: atomic writes, the lockfile, the cassettes (the only vcrpy import)."""
