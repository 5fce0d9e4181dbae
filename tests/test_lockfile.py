"""The lockfile: a sorted JSON table of targets, rewritten atomically and only when it changes."""

from __future__ import annotations

import dataclasses
import json
import re
import stat
from pathlib import Path

import pytest

from pytest_llmtune.store.lockfile import (
    LOCK_VERSION,
    LockEntry,
    LockfileError,
    read,
    staleness,
    write_target,
)

FINGERPRINTS = {"space": "sha256:aaa", "instances": "sha256:bbb", "body": "sha256:ccc",
                "module:helpers/text.py": "sha256:ddd"}
ENTRY = LockEntry(config={"temperature": 0.2, "prompt": "Review: {review}"}, score=0.875, interval=(0.5, 0.97),
                  metric="pass_rate", mode="max", agg="mean", threshold=0.8, instances=8, tokens_total=800,
                  cost_total=0.0012, seed=0, split_n=False, plugin_version="0.1.0", fingerprints=FINGERPRINTS)
HALF = dataclasses.replace(ENTRY, score=0.5)


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    return tmp_path / "llmtune.lock"


def test_a_missing_lockfile_has_no_targets(lock: Path) -> None:
    assert read(lock) == {}


def test_write_then_read_round_trips_an_entry(lock: Path) -> None:
    assert write_target(lock, "test_a.py::test_x", ENTRY) is True

    assert read(lock) == {"test_a.py::test_x": ENTRY.to_json()}
    assert LockEntry.from_json("test_a.py::test_x", read(lock)["test_a.py::test_x"], lock) == ENTRY


def test_writing_a_target_keeps_the_other_targets(lock: Path) -> None:
    write_target(lock, "test_a.py::test_x", ENTRY)
    write_target(lock, "test_b.py::test_y", HALF)

    assert read(lock) == {"test_a.py::test_x": ENTRY.to_json(), "test_b.py::test_y": HALF.to_json()}


def test_writing_a_target_again_replaces_its_entry(lock: Path) -> None:
    write_target(lock, "test_a.py::test_x", ENTRY)
    write_target(lock, "test_a.py::test_x", HALF)

    assert read(lock)["test_a.py::test_x"]["score"] == 0.5


def test_the_file_has_sorted_keys_and_a_version(lock: Path) -> None:
    write_target(lock, "test_b.py::test_y", ENTRY)
    write_target(lock, "test_a.py::test_x", ENTRY)
    text = lock.read_text()

    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    assert json.loads(text)["version"] == LOCK_VERSION
    assert list(json.loads(text)["targets"]) == ["test_a.py::test_x", "test_b.py::test_y"]


def test_unchanged_entry_is_not_rewritten(lock: Path) -> None:
    write_target(lock, "test_a.py::test_x", ENTRY)
    before = lock.stat()

    changed = write_target(lock, "test_a.py::test_x", dataclasses.replace(ENTRY))

    assert changed is False
    assert lock.stat().st_mtime_ns == before.st_mtime_ns
    assert lock.stat().st_ino == before.st_ino  # not replaced by a rename either


def test_writing_leaves_no_temporary_files(lock: Path) -> None:
    write_target(lock, "test_a.py::test_x", ENTRY)
    write_target(lock, "test_a.py::test_x", HALF)

    assert [p.name for p in lock.parent.iterdir()] == ["llmtune.lock"]


def test_rewriting_keeps_the_lockfile_permissions(lock: Path) -> None:
    write_target(lock, "test_a.py::test_x", ENTRY)
    lock.chmod(0o644)

    write_target(lock, "test_a.py::test_x", HALF)

    assert oct(stat.S_IMODE(lock.stat().st_mode)) == oct(0o644)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "is not a lockfile: not JSON: Expecting property name"),
        ('{"version": 1}', 'is not a lockfile: no "version": 1 and "targets" table'),
        ('["targets"]', 'is not a lockfile: no "version": 1 and "targets" table'),
        ('{"targets": {}}', 'is not a lockfile: no "version": 1 and "targets" table'),
        ('{"version": 1, "targets": {"t": 3}}', "is not a lockfile: a target's entry is not a table"),
        ("", "is not a lockfile: empty"),
    ],
)
def test_a_damaged_lockfile_is_refused_with_the_fix(lock: Path, text: str, problem: str) -> None:
    lock.write_text(text)

    with pytest.raises(LockfileError, match=re.escape(problem)) as raised:
        read(lock)

    assert str(raised.value).startswith(str(lock)) and raised.value.damaged
    assert ("Restore it with `git checkout -- llmtune.lock`, or run `pytest --llm-tune`, which keeps it as "
            "llmtune.lock.corrupt-<time> and writes a new one") in str(raised.value)


def test_a_lockfile_from_a_newer_version_says_to_upgrade(lock: Path) -> None:
    lock.write_text('{"version": 2, "targets": {}}')

    with pytest.raises(LockfileError, match=re.escape("was written by a newer pytest-llmtune (lock version 2; this "
                                                      "one reads version 1): upgrade with `pip install -U "
                                                      "pytest-llmtune`")) as raised:
        read(lock)

    assert not raised.value.damaged


def test_writing_into_a_corrupt_lockfile_raises_and_leaves_it_untouched(lock: Path) -> None:
    lock.write_text("{not json")

    with pytest.raises(LockfileError):
        write_target(lock, "test_a.py::test_x", ENTRY)

    assert lock.read_text() == "{not json"


def stale_reasons(entry: LockEntry, fingerprints: dict[str, str], metric: str = "pass_rate", mode: str = "max",
                  agg: str = "mean") -> list[str]:
    stale = staleness(entry, fingerprints, metric=metric, mode=mode, agg=agg)
    return [] if stale is None else stale.reasons


def test_a_lock_with_the_same_fingerprints_is_not_stale() -> None:
    assert staleness(ENTRY, FINGERPRINTS, metric="pass_rate", mode="max", agg="mean") is None


def test_stale_reasons_name_what_changed_in_words() -> None:
    now = {**FINGERPRINTS, "space": "sha256:new", "body": "sha256:new"}

    assert stale_reasons(ENTRY, now) == ["its search space changed",
                                         "its test body, or a definition of its module that it uses, changed"]


def test_a_changed_helper_module_is_named_and_so_is_one_added_or_dropped() -> None:
    changed = {**FINGERPRINTS, "module:helpers/text.py": "sha256:new"}
    swapped = {**{k: v for k, v in FINGERPRINTS.items() if not k.startswith("module:")},
               "module:helpers/other.py": "sha256:eee"}

    assert stale_reasons(ENTRY, changed) == ["helpers/text.py changed"]
    assert stale_reasons(ENTRY, swapped) == ["it now uses helpers/other.py", "it no longer uses helpers/text.py"]


def test_a_changed_instance_set_makes_the_lock_stale() -> None:
    assert stale_reasons(ENTRY, {**FINGERPRINTS, "instances": "sha256:new"}) == ["its instances changed"]


def test_code_and_data_changes_can_be_rescored_but_the_space_and_metric_need_a_new_search() -> None:
    code = staleness(ENTRY, {**FINGERPRINTS, "body": "x", "instances": "y"}, metric="pass_rate", mode="max",
                     agg="mean")
    metric = staleness(ENTRY, FINGERPRINTS, metric="accuracy", mode="max", agg="median")
    space = staleness(ENTRY, {**FINGERPRINTS, "space": "z"}, metric="pass_rate", mode="max", agg="mean")

    assert code is not None and not code.retune
    assert metric is not None and metric.retune
    assert metric.reasons == ["its metric changed (pass_rate -> accuracy)", "its agg changed (mean -> median)"]
    assert space is not None and space.retune


def test_an_entry_from_an_older_fingerprint_scheme_is_stale_and_says_so() -> None:
    old = dataclasses.replace(ENTRY, fingerprints={"space": "sha256:aaa", "instances": "sha256:bbb",
                                                   "source": "sha256:old"})

    assert stale_reasons(old, FINGERPRINTS) == ["its fingerprints are from an older pytest-llmtune"]


def test_an_entry_without_fingerprints_is_stale_for_every_reason() -> None:
    assert stale_reasons(dataclasses.replace(ENTRY, fingerprints={}), FINGERPRINTS) == [
        "its search space changed", "its fingerprints are from an older pytest-llmtune", "its instances changed"
    ]


def test_per_instance_results_are_kept_sorted_compact_and_round_trip(lock: Path) -> None:
    entry = dataclasses.replace(ENTRY, results={"b": 1.0, "a": 0.0, "c": 0.123456789})
    write_target(lock, "t", entry)

    text = lock.read_text()
    assert '"results": {\n        "a": 0,\n        "b": 1,\n        "c": 0.123457\n      }' in text
    assert LockEntry.from_json("t", read(lock)["t"], lock).results == {"a": 0.0, "b": 1.0, "c": 0.123457}


def test_the_other_metrics_of_a_metric_dict_are_kept_rounded_and_sorted(lock: Path) -> None:
    entry = dataclasses.replace(ENTRY, metrics={"latency": 1.23456789, "bleu": 0.5})
    write_target(lock, "t", entry)

    assert list(read(lock)["t"]["metrics"].items()) == [("bleu", 0.5), ("latency", 1.234568)]


@pytest.mark.parametrize("broken", [{"score": 0.5}, {**ENTRY.to_json(), "score": "high"},
                                    {**ENTRY.to_json(), "tokens": 12}, []])
def test_an_unreadable_entry_names_the_target_and_the_fix(lock: Path, broken: object) -> None:
    with pytest.raises(LockfileError, match=r"the lock of 't' is not readable .*run `pytest --llm-tune t`"):
        LockEntry.from_json("t", broken, lock)
