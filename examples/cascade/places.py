"""Countries and capitals from the countryinfo package's data, the exact check, and the check without ground truth
that a cascade runs in the application."""

import importlib.util
import json
import unicodedata
from pathlib import Path


def _rows() -> list[dict]:
    spec = importlib.util.find_spec("countryinfo")
    assert spec is not None and spec.submodule_search_locations, "pip install countryinfo==1.0.1"
    data_dir = Path(next(iter(spec.submodule_search_locations))) / "data"
    rows = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(data_dir.glob("*.json"))]
    return [r for r in rows if isinstance(r.get("capital"), str) and r["capital"] and r.get("population")]


def plain(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().strip().rstrip(".")


ROWS = sorted(_rows(), key=lambda r: (-r["population"], r["name"]))
COUNTRIES = [{"country": r["name"], "capital": r["capital"]} for r in ROWS[:150]]  # the most populous 150
CAPITALS = {plain(r["capital"]) for r in ROWS}  # every capital city the data knows, of any country


def names_capital(text: str, capital: str) -> bool:
    """The exact check: the answer's first line names this country's capital."""
    return plain(capital.split(" D.C.")[0]) in plain(text.split("\n")[0])


def is_a_capital(text: str) -> bool:
    """The check without ground truth: the answer is the name of some capital city, of any country. A model that
    echoes the country, names another city or rambles is caught; a wrong capital is not."""
    return plain(text.split("\n")[0]) in CAPITALS
