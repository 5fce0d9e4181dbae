"""The 40 most populous countries in the countryinfo package's data, with their capitals, and the check."""

import importlib.util
import json
import unicodedata
from pathlib import Path


def load_countries(count: int = 40) -> list[dict[str, str]]:
    spec = importlib.util.find_spec("countryinfo")
    assert spec is not None and spec.submodule_search_locations, "pip install countryinfo==1.0.1"
    data_dir = Path(next(iter(spec.submodule_search_locations))) / "data"
    rows = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(data_dir.glob("*.json"))]
    rows = [r for r in rows if r.get("capital") and r.get("population")]
    rows.sort(key=lambda r: (-r["population"], r["name"]))
    return [{"country": r["name"], "capital": r["capital"]} for r in rows[:count]]


COUNTRIES = load_countries()


def plain(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def names_capital(text: str, capital: str) -> bool:
    first_line = text.strip().split("\n")[0]
    return plain(capital.split(" D.C.")[0]) in plain(first_line)
