"""The search core, pure Python on plain data: space, domains, sampler, successive halving, a tune's whole sequence
(tune.py), the gate's judgement (judge.py), statistics, budgets. No pytest, openai or vcrpy import here (a ruff
rule in search/ruff.toml enforces it)."""
