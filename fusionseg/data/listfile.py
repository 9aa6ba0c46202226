"""Sample lists: DeepScene-style list files and the per-modality folder layout.

A list file holds one sample per line: the path of each modality column, then the label, separated by
whitespace and relative to the list file's folder. Lines whose first non-blank character is `#` are
comments; an optional header comment `# columns: rgb depth label` names the columns (our extension of
the DeepScene format, which has none). Paths cannot contain whitespace.

The folder layout `<root>/<split>/<column>/<id>.png` is the alternative: samples are the ids present in
every column folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fusionseg.errors import DataError
from fusionseg.fsutil import atomic_write_text

LABEL_COLUMN = "label"
# File suffixes `scan_folder_layout` takes for samples (anything else in a column folder is ignored).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr")
# How many offending entries an error message lists before summarising the rest.
MAX_LISTED = 5

_HEADER = re.compile(r"#\s*columns\s*:(.*)$", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    """One sample of a list.

    Attributes:
        id: Name unique within the list (the first column's file stem; see `read_list`).
        files: Column name -> path as it can be opened (the list's root joined with the listed path).
        line: 1-based line of the list file the sample came from (None for folder layouts).
    """

    id: str
    files: dict[str, Path]
    line: int | None = None


@dataclass(frozen=True)
class ListFile:
    """The samples of a list file or folder layout.

    Attributes:
        columns: Column names in file order (modalities, then usually `label`).
        samples: One entry per sample, in list order.
        source: The list file (or split folder) the samples were read from.
    """

    columns: tuple[str, ...]
    samples: list[Sample]
    source: Path | None = None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The columns other than the label."""
        return tuple(c for c in self.columns if c != LABEL_COLUMN)

    def require_columns(self, names: Iterable[str]) -> None:
        """Raise `DataError` naming the source when any of `names` is not a column."""
        missing = [n for n in names if n not in self.columns]
        if missing:
            raise DataError(
                f"{self.source}: no column {', '.join(map(repr, missing))} "
                f"(columns: {' '.join(self.columns)})"
            )


def _check_column_names(columns: Sequence[str], where: str) -> tuple[str, ...]:
    columns = tuple(columns)
    if not columns:
        raise DataError(f"{where}: no column names")
    for name in columns:
        if not isinstance(name, str) or not name or any(ch.isspace() for ch in name) or "#" in name:
            raise DataError(f"{where}: invalid column name {name!r}")
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise DataError(f"{where}: duplicate column {', '.join(map(repr, duplicates))}")
    return columns


def _resolve_entry(token: str, root: Path, *, allow_absolute: bool, where: str) -> Path:
    """Join a listed path to the root, refusing absolute paths and `..` escapes unless allowed."""
    if "\x00" in token:
        raise DataError(f"{where}: path {token!r} contains a NUL character")
    if os.path.basename(os.path.normpath(token)) in ("", ".", ".."):  # "/", "a/..", "../..": folders
        raise DataError(f"{where}: path {token!r} names a folder, not a file")
    if os.path.isabs(token):
        if not allow_absolute:
            raise DataError(
                f"{where}: absolute path {token!r} refused (paths are relative to the list's folder; "
                "set data.allow_absolute_paths=true to allow them)"
            )
        return Path(os.path.normpath(token))
    norm = os.path.normpath(token)
    if (norm == ".." or norm.startswith("../")) and not allow_absolute:
        raise DataError(
            f"{where}: path {token!r} leaves the list's folder {root} "
            "(set data.allow_absolute_paths=true to allow it)"
        )
    return root / norm


def _unique_ids(samples_files: list[tuple[int, dict[str, Path]]], first: str, root: Path) -> list[str]:
    """First-column stems; relative paths without suffix when stems repeat; line numbers when paths do."""
    stems = [files[first].stem for _, files in samples_files]
    if len(set(stems)) == len(stems):
        return stems
    ids = []
    for _, files in samples_files:
        path = files[first]
        try:
            rel = path.relative_to(root)
        except ValueError:
            rel = path
        ids.append(rel.with_suffix("").as_posix().lstrip("/"))
    if len(set(ids)) == len(ids):
        return ids
    seen: dict[str, int] = {}
    for idx in ids:
        seen[idx] = seen.get(idx, 0) + 1
    return [f"{idx}@{line}" if seen[idx] > 1 else idx for idx, (line, _) in zip(ids, samples_files)]


def _missing_error(source: Path, missing: list[tuple[int | None, str, Path]], total: int) -> DataError:
    shown = "; ".join(
        f"{'line ' + str(line) + ' ' if line is not None else ''}{column} {path}"
        for line, column, path in missing[:MAX_LISTED]
    )
    more = f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
    return DataError(f"{source}: {len(missing)} of {total} listed files are missing: {shown}{more}")


def parse_header(line: str) -> tuple[str, ...] | None:
    """Column names of a `# columns: a b c` header line (any case, spaces around `:`), else None.

    The names are not checked here (`read_list` refuses empty, duplicate or odd ones).
    """
    match = _HEADER.match(line.strip())
    return None if match is None else tuple(match.group(1).split())


def read_header(path: str | Path) -> tuple[str, ...] | None:
    """The column names of a list file's `# columns:` header, None when it has none before its first
    sample (or cannot be read as UTF-8 text): tells a list file from other text files cheaply."""
    try:
        with Path(path).open(encoding="utf-8-sig") as fh:
            for line in fh:
                stripped = line.strip()
                if stripped and not stripped.startswith("#"):
                    return None  # a sample came first
                if (names := parse_header(stripped)) is not None:
                    return names
    except (OSError, UnicodeDecodeError):
        return None
    return None


def _scan_lines(text: str, path: Path) -> tuple[tuple[str, ...] | None, list[tuple[int, list[str]]]]:
    """(checked header names or None, (line number, tokens) per sample line) of a list file's text."""
    header: tuple[str, ...] | None = None
    rows: list[tuple[int, list[str]]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            names = parse_header(stripped)
            if names is None:
                continue
            if header is not None or rows:
                raise DataError(
                    f"{path}:{number}: '# columns:' header must come once, before the first sample"
                )
            header = _check_column_names(names, f"{path}:{number}")
            continue
        rows.append((number, stripped.split()))
    return header, rows


def read_list(
    path: str | Path,
    *,
    columns: Sequence[str] | None = None,
    root: str | Path | None = None,
    allow_absolute: bool = False,
    check_files: bool = True,
) -> ListFile:
    """Read a DeepScene-style list file.

    Args:
        path: The list file (UTF-8 text).
        columns: Column names for a list without a `# columns:` header (every row must have exactly
            this many paths). For a list with a header, the names that must appear in it.
        root: Folder the listed paths are relative to; defaults to the list file's folder.
        allow_absolute: Accept absolute paths and paths leaving `root` through `..`.
        check_files: Check that every listed file exists.

    Returns:
        The columns and samples. Sample ids are the first column's file stems; when stems repeat they are
        the first column's paths relative to `root` without suffix.

    Raises:
        DataError: unreadable or empty list, missing or bad header, wrong number of paths on a line
            (naming `file:line`), refused paths, or missing files (all of them counted, the first few
            listed).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read list file ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: list file is not UTF-8 text (byte {exc.start})") from None
    root = path.parent if root is None else Path(root)

    header, rows = _scan_lines(text, path)

    if header is None:
        if columns is None:
            raise DataError(f"{path}: no '# columns: ...' header and no column names given")
        names = _check_column_names(columns, str(path))
    else:
        names = header
        if columns is not None:
            ListFile(header, [], path).require_columns(columns)
    if not rows:
        raise DataError(f"{path}: list has no samples")

    parsed: list[tuple[int, dict[str, Path]]] = []
    for number, tokens in rows:
        if len(tokens) != len(names):
            raise DataError(
                f"{path}:{number}: {len(tokens)} paths but {len(names)} columns ({' '.join(names)})"
                + ("" if header else "; add a '# columns: ...' header naming them")
            )
        where = f"{path}:{number}"
        files = {
            name: _resolve_entry(token, root, allow_absolute=allow_absolute, where=where)
            for name, token in zip(names, tokens)
        }
        parsed.append((number, files))

    if check_files:
        missing = [
            (number, name, file)
            for number, files in parsed
            for name, file in files.items()
            if not os.path.isfile(file)
        ]
        if missing:
            raise _missing_error(path, missing, len(parsed) * len(names))

    ids = _unique_ids(parsed, names[0], root)
    samples = [Sample(id=i, files=files, line=number) for i, (number, files) in zip(ids, parsed)]
    return ListFile(columns=names, samples=samples, source=path)


def _list_entry(file: str | Path, root: Path, *, allow_absolute: bool, where: str) -> str:
    text = os.fspath(file)
    if not text or any(ch.isspace() for ch in text) or "\x00" in text:
        raise DataError(f"{where}: path {text!r} is empty or contains whitespace (not allowed in lists)")
    absolute = os.path.abspath(text)
    rel = os.path.relpath(absolute, os.path.abspath(root))
    if rel == ".." or rel.startswith(".." + os.sep):
        if not allow_absolute:
            raise DataError(f"{where}: {text} lies outside the list's folder {root}")
        return Path(absolute).as_posix()
    rel = Path(rel).as_posix()
    return f"./{rel}" if rel.startswith("#") else rel


def write_list(
    path: str | Path,
    columns: Sequence[str],
    rows: Iterable[Mapping[str, str | Path]],
    *,
    root: str | Path | None = None,
    allow_absolute: bool = False,
) -> Path:
    """Write a list file with a `# columns:` header, atomically.

    Args:
        path: The list file to write.
        columns: Column names, in the order they are written.
        rows: Per sample, column -> path as it can be opened now (absolute or relative to the current
            directory), e.g. `Sample.files` of a list read with `read_list`. Each row must hold every
            one of `columns`; other keys are not written.
        root: Folder the written paths are relative to; defaults to the list file's folder.
        allow_absolute: Write files outside `root` as absolute paths instead of refusing them.

    Returns:
        `path`.

    Raises:
        DataError: bad column names, a row lacking a column, a path with whitespace or outside `root`,
            or an unwritable file.
    """
    path = Path(path)
    names = _check_column_names(columns, str(path))
    root = path.parent if root is None else Path(root)
    lines = [f"# columns: {' '.join(names)}"]
    for index, row in enumerate(rows):
        where = f"{path}: row {index}"
        absent = [n for n in names if n not in row]
        if absent:
            raise DataError(f"{where}: lacks column {', '.join(map(repr, absent))} (has {', '.join(row)})")
        lines.append(
            " ".join(_list_entry(row[n], root, allow_absolute=allow_absolute, where=where) for n in names)
        )
    return atomic_write_text(path, "\n".join(lines) + "\n")


def scan_folder_layout(root: str | Path, split: str, columns: Sequence[str]) -> ListFile:
    """Collect the samples of the folder layout `<root>/<split>/<column>/<id>.<image suffix>`.

    Args:
        root: Dataset folder.
        split: Split folder name, e.g. "train" or "val".
        columns: Column folders to read (modalities and usually `label`).

    Returns:
        Samples for the ids present in every column folder, sorted by id.

    Raises:
        DataError: a missing column folder, an id with two files in one folder, ids missing from some
            column folders (listed per column), or no samples.
    """
    base = Path(root) / split
    names = _check_column_names(columns, str(base))
    found: dict[str, dict[str, Path]] = {}
    for name in names:
        folder = base / name
        if not folder.is_dir():
            raise DataError(f"{folder}: column folder missing (expected <root>/<split>/<column>/<id>.png)")
        files: dict[str, Path] = {}
        for file in sorted(folder.iterdir()):
            if file.name.startswith(".") or file.suffix.lower() not in IMAGE_SUFFIXES or not file.is_file():
                continue
            if file.stem in files:
                raise DataError(
                    f"{folder}: two files for id {file.stem!r}: {files[file.stem].name}, {file.name}"
                )
            files[file.stem] = file
        found[name] = files
    all_ids = set().union(*(set(f) for f in found.values()))
    gaps = []
    for name in names:
        absent = sorted(all_ids - set(found[name]))
        if absent:
            shown = ", ".join(absent[:MAX_LISTED]) + (
                f" and {len(absent) - MAX_LISTED} more" if len(absent) > MAX_LISTED else ""
            )
            gaps.append(f"{name}/ lacks {len(absent)} ids ({shown})")
    if gaps:
        raise DataError(f"{base}: ids missing in some column folders: {'; '.join(gaps)}")
    if not all_ids:
        raise DataError(f"{base}: no samples (no image files in {', '.join(names)})")
    samples = [Sample(id=i, files={n: found[n][i] for n in names}) for i in sorted(all_ids)]
    return ListFile(columns=names, samples=samples, source=base)
