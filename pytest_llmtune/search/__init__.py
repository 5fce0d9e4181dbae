"""The search core, pure Python on plain data: space, domains, sampler, successive halving, the tuner, statistics,
budgets. No pytest, openai or vcrpy import here (a ruff rule in search/ruff.toml enforces it)."""
