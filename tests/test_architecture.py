"""House rules that keep the architecture what it is meant to be."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import aiorecords
from aiorecords import errors

PACKAGE = Path(aiorecords.__file__).parent
# The sans-IO cores: pure code over bytes, one set per format.
CORES = [
    PACKAGE / "_codecs.py",
    PACKAGE / "_skipped.py",
    PACKAGE / "capture" / "_index.py",
    PACKAGE / "capture" / "_layout.py",
    PACKAGE / "capture" / "_writer.py",
    PACKAGE / "records" / "_log.py",
    PACKAGE / "archive" / "_format.py",
    PACKAGE / "archive" / "_stream.py",
    PACKAGE / "archive" / "_walk.py",
]
FORBIDDEN_IN_CORE = {"asyncio", "os", "io", "fcntl", "aiofiles", "anyio"}
# Modules that talk to the operating system; only the I/O layer may.
SYSTEM_MODULES = {"os", "fcntl", "aiofiles", "shutil", "tempfile", "mmap", "io"}


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(module, relative level) for every import statement in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


def resolve(path: Path, module: str, level: int) -> Path | None:
    """The file of a relative import inside the package, if it is one."""
    if level == 0:
        if not module.startswith("aiorecords"):
            return None
        base = PACKAGE.parent
        parts = module.split(".")
    else:
        base = path.parent
        for _ in range(level - 1):
            base = base.parent
        parts = module.split(".") if module else []
    target = base.joinpath(*parts)
    if target.with_suffix(".py").exists():
        return target.with_suffix(".py")
    if (target / "__init__.py").exists():
        return target / "__init__.py"
    return None


def test_format_cores_never_import_asyncio_or_os() -> None:
    """Walk every import reachable from the cores, inside the package too."""
    todo = list(CORES)
    seen: set[Path] = set()
    assert all(path.exists() for path in todo)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module, level in imports_of(path):
            top = module.split(".")[0]
            if level == 0:
                assert top not in FORBIDDEN_IN_CORE, f"{path.name} imports {module}"
            target = resolve(path, module, level)
            if target is not None:
                todo.append(target)
    assert PACKAGE / "errors.py" in seen


def test_only_the_io_layer_touches_the_operating_system() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "_io.py":
            continue
        for module, level in imports_of(path):
            if level == 0:
                assert module.split(".")[0] not in SYSTEM_MODULES, (
                    f"{path.relative_to(PACKAGE)} imports {module}"
                )
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "open", f"{path.name} calls open()"


def test_package_is_typed() -> None:
    assert (PACKAGE / "py.typed").exists()


def public_names() -> list[tuple[str, object]]:
    return [(name, getattr(aiorecords, name)) for name in aiorecords.__all__]


@pytest.mark.parametrize(("name", "thing"), public_names())
def test_every_public_name_has_a_docstring(name: str, thing: object) -> None:
    assert inspect.getdoc(thing), name
    if inspect.isclass(thing):
        for attribute, member in vars(thing).items():
            if attribute.startswith("_") and attribute not in (
                "__aenter__",
                "__aexit__",
                "__aiter__",
                "__await__",
                "__getitem__",
            ):
                continue
            if callable(member) or isinstance(member, property):
                assert inspect.getdoc(member), f"{name}.{attribute}"


@pytest.mark.parametrize(("name", "thing"), public_names())
def test_every_public_async_method_says_what_cancellation_does(
    name: str, thing: object
) -> None:
    if not inspect.isclass(thing):
        return
    for attribute, member in vars(thing).items():
        if attribute.startswith("_") or not inspect.iscoroutinefunction(member):
            continue
        doc = inspect.getdoc(member) or ""
        assert "Cancellation" in doc, f"{name}.{attribute} does not say"


def test_errors_form_one_hierarchy() -> None:
    for name in errors.__all__:
        error = getattr(errors, name)
        assert issubclass(error, errors.AiorecordsError), name
        assert getattr(aiorecords, name) is error
    assert issubclass(errors.StorageError, OSError)
    assert issubclass(errors.RecordIndexError, IndexError)
    assert issubclass(errors.InvalidCaptureFile, errors.CorruptionError)
    for seed_name in (
        "InvalidCaptureFile",
        "CaptureFileNotOpen",
        "CaptureFileNotOpenForWrite",
        "CaptureFileAlreadyOpen",
    ):
        assert hasattr(aiorecords, seed_name)


def test_private_modules_start_with_an_underscore() -> None:
    public = {"__init__", "errors"}
    for path in PACKAGE.glob("*.py"):
        assert path.stem in public or path.stem.startswith("_"), path.name
    for package in ("archive", "capture", "records"):
        for path in (PACKAGE / package).glob("*.py"):
            assert path.stem.startswith("_"), path


def third_party_imports(paths: list[Path]) -> set[str]:
    """The top-level names of the non-standard-library modules imported."""
    import sys

    names = set()
    for path in paths:
        for module, level in imports_of(path):
            top = module.split(".")[0]
            if (
                level == 0
                and top not in ("", "aiorecords", "__future__")
                and top not in sys.stdlib_module_names
            ):
                names.add(top)
    return names


def declared(extra: str | None) -> set[str]:
    """The packages pyproject.toml declares (as import names), for the
    library (``extra=None``) or for one extra."""
    import re

    import tomllib

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    wanted = (
        project["dependencies"]
        if extra is None
        else project["optional-dependencies"][extra]
    )
    return {re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].lower() for spec in wanted}


@pytest.mark.skipif(
    not hasattr(__import__("sys"), "stdlib_module_names")
    or __import__("sys").version_info < (3, 11),
    reason="tomllib and sys.stdlib_module_names (Python 3.11)",
)
def test_runtime_dependencies_are_what_the_library_imports() -> None:
    """Issue 14: a runtime dependency is one the library imports; the
    command line's are in its extra."""
    cli = {PACKAGE / "_cli.py"}
    library = [p for p in PACKAGE.rglob("*.py") if p not in cli]
    assert third_party_imports(library) == declared(None) == {"zstandard", "crc32c"}
    assert third_party_imports(list(cli)) <= declared("cli") | declared(None)
    assert declared("cli") == {"click", "rich"}
