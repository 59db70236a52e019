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
    PACKAGE / "_crc.py",
    PACKAGE / "_skipped.py",
    PACKAGE / "capture" / "_index.py",
    PACKAGE / "capture" / "_layout.py",
    PACKAGE / "capture" / "_stream.py",
    PACKAGE / "capture" / "_writer.py",
    PACKAGE / "records" / "_log.py",
    PACKAGE / "archive" / "_format.py",
    PACKAGE / "archive" / "_stream.py",
    PACKAGE / "archive" / "_walk.py",
    PACKAGE / "tfrecord" / "_frame.py",
    PACKAGE / "tfrecord" / "_index.py",
    PACKAGE / "tfrecord" / "_stream.py",
]
#: Each format's package: its cores, its facade and its worker-thread steps.
FORMATS = ("archive", "capture", "records", "tfrecord")
FORBIDDEN_IN_CORE = {
    "asyncio",
    "os",
    "io",
    "fcntl",
    "aiofiles",
    "anyio",
    "threading",
    "concurrent",
}
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
    import aiorecords.dask

    names = [(name, getattr(aiorecords, name)) for name in aiorecords.__all__]
    return names + [
        (f"dask.{name}", getattr(aiorecords.dask, name))
        for name in aiorecords.dask.__all__
    ]


def own_members(thing: type) -> dict[str, object]:
    """A class's members, with those it inherits from aiorecords' classes
    (a reader's methods are its machinery's)."""
    found: dict[str, object] = {}
    for klass in reversed(thing.__mro__):
        if klass.__module__.startswith("aiorecords"):
            found.update(vars(klass))
    return found


@pytest.mark.parametrize(("name", "thing"), public_names())
def test_every_public_name_has_a_docstring(name: str, thing: object) -> None:
    assert inspect.getdoc(thing), name
    if inspect.isclass(thing):
        for attribute, member in own_members(thing).items():
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
    for attribute, member in own_members(thing).items():
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
    public = {"__init__", "errors", "dask"}
    for path in PACKAGE.glob("*.py"):
        assert path.stem in public or path.stem.startswith("_"), path.name
    for package in FORMATS:
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
    command line's are in its extra. Issue 16: fsspec, imported only for a
    URL, is in its own extra."""
    cli = {PACKAGE / "_cli.py"}
    engine = PACKAGE / "dask.py"
    library = [p for p in PACKAGE.rglob("*.py") if p not in cli and p != engine]
    assert declared(None) == {"zstandard", "crc32c"}
    assert declared("fsspec") == {"fsspec"}
    # aiobotocore is s3fs's own dependency, imported (to make an S3
    # client's session off the loop) only where an s3fs file system is in
    # use: s3fs, and so it, are the user's choice, like gcsfs or adlfs.
    with_s3fs = {"aiobotocore"}
    imported = third_party_imports(library)
    assert imported - with_s3fs == declared(None) | declared("fsspec")
    for name in ("fsspec", *with_s3fs):
        optional = [p for p in library if name in third_party_imports([p])]
        assert optional == [PACKAGE / "_remote.py"], f"{name} only behind the seam"
    # Issue 17: Dask, distributed and pandas only in aiorecords.dask.
    assert third_party_imports([engine]) <= declared("dask") | declared(None)
    assert {"dask", "distributed", "pandas"} <= declared("dask")
    assert third_party_imports(list(cli)) <= declared("cli") | declared(None)
    assert declared("cli") == {"click", "rich"}


# Names a read callback goes by, as a parameter of a core function.
READ_CALLBACKS = {"pread", "read", "reader", "block_at", "node_at", "fetch", "load"}


def test_no_core_is_given_a_read_function() -> None:
    """Issue 15: every core is push-style. It yields what it wants and is
    sent it; no core function takes a function to read with, or calls one
    of the I/O layer's read methods."""
    for path in CORES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                arguments = (
                    node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                )
                for argument in arguments:
                    assert argument.arg not in READ_CALLBACKS, (
                        f"{path.name}: {node.name}() takes {argument.arg}"
                    )
                    annotation = ast.unparse(argument.annotation or ast.Constant(""))
                    assert "Callable" not in annotation or argument.arg == "stop", (
                        f"{path.name}: {node.name}() takes a function ({argument.arg})"
                    )
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in ("pread", "read_cached", "size"), (
                    f"{path.name} calls .{node.func.attr}()"
                )


def _defined_private_names(tree: ast.AST) -> set[str]:
    """The private names a module defines: its functions, classes and
    globals, and the attributes its classes give themselves."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__
    return {name for name in names if name.startswith("_")}


def test_no_module_uses_another_modules_private_names() -> None:
    """A private name (``_x``) is used only in the module that defines it:
    parts talk through names without an underscore. Private modules may be
    imported; private names from them may not."""
    everything = {p: ast.parse(p.read_text()) for p in PACKAGE.rglob("*.py")}
    private_everywhere: set[str] = set()
    for tree in everything.values():
        private_everywhere |= _defined_private_names(tree)
    for path, tree in everything.items():
        own = _defined_private_names(tree)
        where = path.relative_to(PACKAGE)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = path.parent
                for _ in range(node.level - 1):
                    base = base.parent
                source = base.joinpath(*(node.module or "").split("."))
                for alias in node.names:
                    name = alias.name
                    if name.startswith("_") and not name.startswith("__"):
                        is_module = (source / f"{name}.py").exists() or (
                            source / name
                        ).is_dir()
                        assert is_module, f"{where} imports {name} from {node.module}"
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (
                    isinstance(node.value, ast.Name)
                    and node.value.id in ("self", "cls")
                )
                and node.attr in private_everywhere
                and node.attr not in own
            ):
                pytest.fail(f"{where}:{node.lineno} uses {ast.unparse(node)}")


def test_one_package_per_format() -> None:
    for name in FORMATS:
        package = PACKAGE / name
        assert (package / "__init__.py").exists(), name
        # One flat level of modules inside.
        assert not [
            p for p in package.iterdir() if p.is_dir() and p.name != "__pycache__"
        ]
    assert not (PACKAGE / "_core").exists()


@pytest.mark.parametrize(("name", "thing"), public_names())
def test_public_objects_name_a_public_module(name: str, thing: object) -> None:
    module = getattr(thing, "__module__", None)
    if module is None or not module.startswith("aiorecords"):
        return  # an alias such as Record (a union of builtins)
    assert not any(part.startswith("_") for part in module.split(".")), (
        f"{name}.__module__ is {module}"
    )


def test_no_class_is_over_450_lines() -> None:
    """Issue 15: no class grows into several jobs again."""
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                assert size <= 450, f"{path.name}: {node.name} is {size} lines"


def test_the_public_import_paths_keep_working() -> None:
    """Issue 15: the packages moved; what users import did not."""
    import aiorecords.archive
    import aiorecords.capture
    import aiorecords.errors
    import aiorecords.records

    assert aiorecords.capture.CaptureFile is aiorecords.CaptureFile
    assert aiorecords.records.RecordsWriter is aiorecords.RecordsWriter
    assert aiorecords.records.RecordsReader is aiorecords.RecordsReader
    assert callable(aiorecords.records.split)
    assert aiorecords.archive.Archive is aiorecords.Archive
    assert aiorecords.archive.EntryReader is aiorecords.EntryReader
    assert aiorecords.errors.CorruptionError is aiorecords.CorruptionError
