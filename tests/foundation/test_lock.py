"""requirements/lock.txt agrees with pyproject.toml: every dependency locked inside its range, nothing
stale, and (in an environment made by scripts/setup_env.sh) installed exactly as locked."""

from __future__ import annotations

import os
import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 (the set-up's Python is 3.11)
ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "lock.txt"
HOLDS = ROOT / "requirements" / "holds.txt"
EXTRAS = ("dev", "export")  # what scripts/setup_env.sh installs: -e ".[dev,export]"
# `make test-newest` runs the suite in a venv resolved without the lock
UNLOCKED = os.environ.get("FUSIONSEG_UNLOCKED") == "1"


def _pins(path: Path) -> dict[str, Version]:
    """name -> version of the `name==version` lines of a requirements file (comments skipped)."""
    pins: dict[str, Version] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        assert match, f"{path.name}:{number}: not an exact pin: {raw!r}"
        name = canonicalize_name(match[1])
        assert name not in pins, f"{path.name}:{number}: {name} pinned twice"
        pins[name] = Version(match[2])
    return pins


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _roots() -> list[Requirement]:
    """What the set-up asks for: runtime deps, the installed extras and the build requirements."""
    project = _project()
    texts = list(project["project"]["dependencies"])
    for extra in EXTRAS:
        texts += project["project"]["optional-dependencies"][extra]
    texts += project["build-system"]["requires"]
    return [Requirement(t) for t in texts]


def test_lock_pins_every_dependency_inside_its_range() -> None:
    pins = _pins(LOCK)
    assert len(pins) > 20, "the lock holds the whole environment, not only the direct dependencies"
    for req in _roots():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} ({req}) is not in {LOCK.name}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{LOCK.name} pins {name}=={pins[name]}, outside pyproject's range {req}"
        )


def test_holds_are_in_the_lock_with_their_version() -> None:
    pins, holds = _pins(LOCK), _pins(HOLDS)
    assert holds, "holds.txt names the deliberate holds (at least the torch build on this disk)"
    for name, version in holds.items():
        assert pins.get(name) == version, f"holds.txt holds {name}=={version}, the lock has {pins.get(name)}"


def test_setup_script_uses_the_lock() -> None:
    text = (ROOT / "scripts" / "setup_env.sh").read_text(encoding="utf-8")
    assert "requirements/lock.txt" in text and "PIP_CONSTRAINT" in text
    torch_pin = re.search(r'DEFAULT_TORCH_PIN="([^"]+)"', text)
    assert torch_pin, "setup_env.sh names the default torch pin"
    pins = _pins(LOCK)
    for item in torch_pin[1].split():
        name, version = item.split("==")
        assert pins[canonicalize_name(name)] == Version(version), f"setup pins {item}, the lock differs"


def _closure(roots: list[Requirement]) -> set[str]:
    """Names of the installed distributions the roots need, following Requires-Dist and extras."""
    seen: set[str] = set()
    todo: list[tuple[Requirement, frozenset[str]]] = [(r, frozenset(r.extras)) for r in roots]
    done_extras: dict[str, set[str]] = {}
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        have = done_extras.setdefault(name, set())
        wanted = set(extras) | {""}
        if name in seen and wanted <= have:
            continue
        seen.add(name)
        new = wanted - have
        have |= new
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue  # not installed here (e.g. wheel of a build environment); the lock test names it
        for text in requires:
            child = Requirement(text)
            for extra in new:
                env = {"extra": extra}
                if child.marker is None or child.marker.evaluate(env):
                    todo.append((child, frozenset(child.extras)))
                    break
    return seen


@pytest.mark.skipif(UNLOCKED, reason="environment resolved without the lock (make test-newest)")
def test_lock_has_no_stale_entries() -> None:
    needed = _closure(_roots())
    stale = sorted(set(_pins(LOCK)) - needed)
    assert not stale, f"{LOCK.name} pins packages nothing needs: {stale} (run `make lock`)"


@pytest.mark.skipif(UNLOCKED, reason="environment resolved without the lock (make test-newest)")
def test_environment_is_installed_as_locked() -> None:
    wrong = []
    for name, version in _pins(LOCK).items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            if name == "setuptools":  # only needed in the isolated build environment
                continue
            wrong.append(f"{name} missing (lock {version})")
            continue
        if installed != version:
            wrong.append(f"{name} {installed} (lock {version})")
    assert not wrong, "the venv differs from the lock (rerun scripts/setup_env.sh): " + ", ".join(wrong)
