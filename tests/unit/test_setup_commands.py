"""The README's two set-up commands do all the set-up on a fresh machine, and CI runs exactly
the second one: the test command is one script that installs the Debian packages the tests
need (issue 14: chromium and redis-server were installed only by `.ci/run`)."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"
SCRIPT = ROOT / "scripts" / "test"

# Each Debian package the tests need, and a test file that runs what it installs.
NEEDED = {
    "redis-server": "tests/conftest.py",
    "chromium": "tests/acceptance/test_status_page.py",
    "prometheus": "tests/api/test_deploy_monitoring.py",
}


def setup_commands() -> list[str]:
    """The shell blocks of the README's "Set-up: two commands" section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL)]


def commands_of(path: Path) -> list[str]:
    """The lines of a shell script that run something (no comments, no blank lines)."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def packages_of_the_test_script() -> list[str]:
    """The one list of Debian packages in ``scripts/test``: ``PACKAGES=(``, one a line, ``)``."""
    found = re.search(r"^PACKAGES=\($(.*?)^\)", SCRIPT.read_text(encoding="utf-8"), re.M | re.S)
    assert found, "scripts/test keeps its Debian packages in one array, PACKAGES=( ... )"
    words = (line.split("#", 1)[0] for line in found.group(1).splitlines())
    return [word for line in words for word in line.split()]


def test_the_readme_has_two_commands_the_second_the_test_script() -> None:
    commands = setup_commands()
    assert len(commands) == 2
    assert commands[1] == "./scripts/test"


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    assert commands_of(CI) == [
        "set -euo pipefail",
        'cd "$(dirname "$0")/.."',
        "exec ./scripts/test",
    ]
    assert setup_commands()[1] == "./scripts/test"


def test_the_test_script_is_executable_and_installs_each_package_the_tests_need() -> None:
    assert os.access(SCRIPT, os.X_OK)
    packages = packages_of_the_test_script()
    for package, user in NEEDED.items():
        assert package in (ROOT / user).read_text(encoding="utf-8")  # the tests still run it
        assert package in packages, f"scripts/test does not install {package}"


def test_the_test_script_runs_lint_types_layers_tests_and_the_mutation_check() -> None:
    text = SCRIPT.read_text(encoding="utf-8")
    steps = [
        "apt-get install",
        "pip install -q -e '.[test]'",
        ".venv/bin/ruff check .",
        ".venv/bin/mypy",
        ".venv/bin/lint-imports",
        ".venv/bin/pytest",
        ".venv/bin/python scripts/mutants.py",
    ]
    where = [text.find(step) for step in steps]
    assert -1 not in where, dict(zip(steps, where, strict=True))
    assert where == sorted(where)  # in this order: set-up, then the cheap checks first


def test_the_readme_says_what_the_test_script_installs() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    for package in NEEDED:
        assert f"`{package}`" in section
    assert "apt-get" in section
    assert "sudo" in section


def test_the_installed_package_carries_every_file_it_reads() -> None:
    # The first set-up command installs with `pip install .` (not editable): a file beside
    # the modules that package-data does not name would be missing there, e.g. /ui's page.
    import tomllib

    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = package_data["tool"]["setuptools"]["package-data"]
    package_root = ROOT / "kkt_adapter"
    data_files = [
        path for path in package_root.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    ]  # fmt: skip
    assert data_files, "the package reads at least its status page"
    for path in data_files:
        package = ".".join(path.parent.relative_to(ROOT).parts)
        owners = [(name, pattern) for name, patterns in globs.items() for pattern in patterns]
        shipped = any(
            path.relative_to(ROOT / name.replace(".", "/")).match(pattern)
            for name, pattern in owners
            if path.is_relative_to(ROOT / name.replace(".", "/"))
        )
        assert shipped, f"{path.relative_to(ROOT)} (package {package}) is not in package-data"
