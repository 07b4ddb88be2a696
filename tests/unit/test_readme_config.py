"""The README's configuration table documents exactly the settings object.

The table is the one under "## Configuration" in README.md: `| variable | default | meaning |`.
A row names one variable (`UMS_X`), or several separated by " / ", where a piece such as
`_PORT` continues the first variable's prefix (`UMS_MYSQL_HOST` / `_PORT` -> UMS_MYSQL_PORT);
the default cell then has as many " / "-separated parts, or one for all of them. A default is a literal in backticks,
or a parenthesised text such as "(empty: `<topic>.dlq`)" or "(none)" for an empty default that
the code derives or leaves unset. docs/config-table.md has the table in its one-row-per-variable
form, generated from `Settings`.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from adapters.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\|(?P<variables>[^|]*)\|(?P<defaults>[^|]*)\|(?P<meaning>[^|]*)\|\s*$")


def configuration_section(text: str) -> str:
    match = re.search(r"^## Configuration\s*$(?P<body>.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, "README.md has no '## Configuration' section"
    return match.group("body")


def expand_variables(cell: str) -> list[str]:
    names: list[str] = []
    for piece in (p.strip() for p in cell.split(" / ")):
        token = piece.strip("`").strip()
        if token.startswith("UMS_"):
            names.append(token)
        elif token.startswith("_") and names:
            names.append(names[0].rsplit("_", 1)[0] + token)
        else:
            raise AssertionError(f"cannot read the variable {piece!r} in {cell!r}")
    return names


def parse_default(text: str) -> str | None:
    """The literal default, or None for an empty/derived default written in parentheses."""
    text = text.strip()
    if text.startswith("("):
        return None
    match = re.fullmatch(r"`([^`]*)`", text)
    assert match, f"a default is `literal` or (an explanation): {text!r}"
    literal = match.group(1)
    return None if literal.startswith("<") else literal


def parse_table(text: str) -> dict[str, str | None]:
    """variable -> documented default (None: empty or derived) from the configuration table."""
    documented: dict[str, str | None] = {}
    rows = [ROW.match(line.strip()) for line in configuration_section(text).splitlines()]
    for row in filter(None, rows):
        variables, defaults = row.group("variables").strip(), row.group("defaults").strip()
        if not variables.startswith("`"):
            continue  # the header and the separator line
        names = expand_variables(variables)
        parts = [d.strip() for d in defaults.split(" / ")] if len(names) > 1 else [defaults]
        if len(parts) == 1:
            parts *= len(names)  # one default for all of them, e.g. "(the read user)"
        assert len(parts) == len(names), f"{names}: {len(names)} variables but defaults {defaults!r}"
        for name, default in zip(names, parts, strict=True):
            assert name not in documented, f"{name} is documented twice"
            documented[name] = parse_default(default)
    assert documented, "no configuration table found"
    return documented


def same_default(documented: str | None, default: Any, type_name: str) -> bool:
    if documented is None:
        return default == ""
    if type_name == "bool":
        return documented.lower() == str(default).lower()
    if type_name == "int":
        return re.fullmatch(r"-?\d+", documented) is not None and int(documented) == default
    if type_name == "float":
        return float(documented) == default
    return documented == default


@pytest.fixture(scope="module")
def documented() -> dict[str, str | None]:
    return parse_table(README.read_text())


def test_readme_documents_every_setting_and_nothing_else(documented: dict[str, str | None]) -> None:
    expected = set(Settings.variables())
    missing, unknown = sorted(expected - set(documented)), sorted(set(documented) - expected)
    assert not missing and not unknown, f"README.md configuration table: missing {missing}, unknown {unknown}"


def test_readme_defaults_are_the_settings_defaults(documented: dict[str, str | None]) -> None:
    wrong = []
    for f in fields(Settings):
        name = "UMS_" + f.name.upper()
        if name in documented and not same_default(documented[name], f.default, str(f.type)):
            wrong.append(f"{name}: README says {documented[name]!r}, Settings says {f.default!r}")
    assert not wrong, "\n".join(wrong)


def test_the_parser_reads_combined_rows() -> None:
    table = "\n".join(
        [
            "## Configuration",
            "| variable | default | meaning |",
            "| --- | --- | --- |",
            "| `UMS_MYSQL_HOST` / `_PORT` / `_DATABASE` | `127.0.0.1` / `3306` / `glarimy` | MySQL |",
            "| `UMS_BATCH_SIZE` / `UMS_BATCH_TIMEOUT_S` | `2000` / `0.05` | batch |",
            "| `UMS_ADDSERVICE_MYSQL_USER` / `_PASSWORD` | (the read user) / (none) | writer |",
            "| `UMS_DLQ_TOPIC` | `<topic>.dlq` | dead letters |",
            "## Next",
            "| `UMS_NOT_HERE` | `x` | outside the section |",
        ]
    )
    assert parse_table(table) == {
        "UMS_MYSQL_HOST": "127.0.0.1",
        "UMS_MYSQL_PORT": "3306",
        "UMS_MYSQL_DATABASE": "glarimy",
        "UMS_BATCH_SIZE": "2000",
        "UMS_BATCH_TIMEOUT_S": "0.05",
        "UMS_ADDSERVICE_MYSQL_USER": None,
        "UMS_ADDSERVICE_MYSQL_PASSWORD": None,
        "UMS_DLQ_TOPIC": None,
    }
    assert same_default("65536", 64 * 1024, "int") and same_default("true", True, "bool")
    assert not same_default("1.5", 1.0, "float") and not same_default(None, "INFO", "str")
