"""Root conftest: the test suite runs tests/; the examples/ are small projects that tests/test_examples.py runs."""

collect_ignore = ["examples"]
pytest_plugins = ["pytester"]
