"""List files and folder layouts: parsing, error messages, path safety, round trips, fuzzing."""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusionseg.data.listfile import (
    ListFile,
    parse_header,
    read_header,
    read_list,
    scan_folder_layout,
    write_list,
)
from fusionseg.errors import DataError


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """Three samples of rgb/depth/label files under tmp_path/ds."""
    root = tmp_path / "ds"
    for i in range(3):
        for column in ("rgb", "depth", "label"):
            touch(root / column / f"{i:03d}.png")
    return root


def test_header_comments_and_blank_lines(tree: Path) -> None:
    (tree / "train.txt").write_text(
        "# a comment\n# columns: rgb depth label\n\n  rgb/000.png depth/000.png label/000.png\n"
        "   # indented comment\r\nrgb/001.png\tdepth/001.png   label/001.png\r\n\n"
    )
    lst = read_list(tree / "train.txt")
    assert lst.columns == ("rgb", "depth", "label")
    assert lst.modalities == ("rgb", "depth")
    assert [s.id for s in lst.samples] == ["000", "001"]
    assert [s.line for s in lst.samples] == [4, 6]
    assert lst.samples[1].files["depth"] == tree / "depth" / "001.png"
    assert all(Path(p).is_file() for s in lst.samples for p in s.files.values())


def test_without_header_needs_columns(tree: Path) -> None:
    (tree / "l.txt").write_text("rgb/000.png label/000.png\nrgb/002.png label/002.png\n")
    with pytest.raises(DataError, match="no '# columns"):
        read_list(tree / "l.txt")
    lst = read_list(tree / "l.txt", columns=("rgb", "label"))
    assert lst.columns == ("rgb", "label")
    assert [s.files["label"].name for s in lst.samples] == ["000.png", "002.png"]


def test_header_must_contain_requested_columns(tree: Path) -> None:
    (tree / "l.txt").write_text("# columns: rgb label\nrgb/000.png label/000.png\n")
    assert len(read_list(tree / "l.txt", columns=("rgb", "label"))) == 1
    with pytest.raises(DataError, match="no column 'depth'"):
        read_list(tree / "l.txt", columns=("rgb", "depth", "label"))


def test_wrong_column_count_names_file_and_line(tree: Path) -> None:
    path = tree / "l.txt"
    path.write_text(
        "# columns: rgb depth label\nrgb/000.png depth/000.png label/000.png\n\nrgb/001.png depth/001.png\n"
    )
    with pytest.raises(DataError, match=rf"{path}:4: 2 paths but 3 columns"):
        read_list(path)


def test_missing_files_are_all_reported(tree: Path) -> None:
    path = tree / "l.txt"
    lines = ["# columns: rgb label"] + [f"rgb/{i:03d}.png label/{i:03d}.png" for i in range(10)]
    path.write_text("\n".join(lines))
    with pytest.raises(DataError) as info:
        read_list(path)
    message = str(info.value)
    assert str(path) in message
    assert "14 of 20 listed files are missing" in message  # ids 003..009, both columns
    assert "line 5 rgb" in message and "003.png" in message
    assert "and 9 more" in message
    assert len(read_list(path, check_files=False)) == 10


def test_parent_escape_refused_unless_allowed(tmp_path: Path, tree: Path) -> None:
    outside = touch(tmp_path / "outside.png")
    path = tree / "l.txt"
    path.write_text("# columns: rgb label\nrgb/000.png ../outside.png\n")
    with pytest.raises(DataError, match=r"l.txt:2: path '../outside.png' leaves"):
        read_list(path)
    lst = read_list(path, allow_absolute=True)
    assert os.path.samefile(lst.samples[0].files["label"], outside)
    # '..' that stays inside the folder is fine
    path.write_text("# columns: rgb label\nrgb/../rgb/000.png label/000.png\n")
    assert read_list(path).samples[0].files["rgb"] == tree / "rgb" / "000.png"


def test_absolute_paths_refused_unless_allowed(tree: Path) -> None:
    path = tree / "l.txt"
    absolute = (tree / "rgb" / "000.png").resolve()
    path.write_text(f"# columns: rgb label\n{absolute} label/000.png\n")
    with pytest.raises(DataError, match="absolute path .* refused"):
        read_list(path)
    assert read_list(path, allow_absolute=True).samples[0].files["rgb"] == absolute


def test_root_argument_and_errors(tree: Path, tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "l.txt").write_text("# columns: rgb label\nrgb/000.png label/000.png\n")
    assert read_list(lists / "l.txt", root=tree).samples[0].files["rgb"] == tree / "rgb" / "000.png"
    with pytest.raises(DataError, match="cannot read list file"):
        read_list(tmp_path / "absent.txt")
    (lists / "empty.txt").write_text("# columns: rgb label\n# nothing\n")
    with pytest.raises(DataError, match="no samples"):
        read_list(lists / "empty.txt")
    (lists / "dup.txt").write_text("# columns: rgb rgb\nrgb/000.png rgb/000.png\n")
    with pytest.raises(DataError, match="duplicate column 'rgb'"):
        read_list(lists / "dup.txt", root=tree)
    (lists / "late.txt").write_text("rgb/000.png label/000.png\n# columns: rgb label\n")
    with pytest.raises(DataError, match="late.txt:2: '# columns:' header"):
        read_list(lists / "late.txt", root=tree)
    (lists / "bin.txt").write_bytes(b"\xff\xfe\x00rgb")
    with pytest.raises(DataError, match="not UTF-8"):
        read_list(lists / "bin.txt")


def test_ids_unique_when_stems_repeat(tmp_path: Path) -> None:
    for city in ("aachen", "bonn"):
        touch(tmp_path / "rgb" / city / "0.png")
        touch(tmp_path / "label" / city / "0.png")
    (tmp_path / "l.txt").write_text(
        "# columns: rgb label\nrgb/aachen/0.png label/aachen/0.png\nrgb/bonn/0.png label/bonn/0.png\n"
        "rgb/bonn/0.png label/bonn/0.png\n"
    )
    ids = [s.id for s in read_list(tmp_path / "l.txt").samples]
    assert ids == ["rgb/aachen/0", "rgb/bonn/0@3", "rgb/bonn/0@4"]


def test_write_read_round_trip(tree: Path, tmp_path: Path) -> None:
    rows = [{c: tree / c / f"{i:03d}.png" for c in ("rgb", "depth", "label")} for i in range(3)]
    out = write_list(tree / "all.txt", ("rgb", "depth", "label"), rows)
    text = out.read_text()
    assert text.splitlines()[0] == "# columns: rgb depth label"
    assert "rgb/000.png depth/000.png label/000.png" in text  # relative to the list's folder
    lst = read_list(out)
    assert lst.columns == ("rgb", "depth", "label")
    assert [{c: p.resolve() for c, p in s.files.items()} for s in lst.samples] == [
        {c: p.resolve() for c, p in r.items()} for r in rows
    ]
    # rows from a list read elsewhere, written into a subfolder list, with an added column
    touch(tree / "jet" / "000.png")
    sub = tree / "lists" / "jet.txt"
    first = lst.samples[0]
    with pytest.raises(DataError, match="outside the list's folder"):
        write_list(sub, ("rgb", "jet", "label"), [{**first.files, "jet": tree / "jet" / "000.png"}])
    write_list(tree / "jet.txt", ("rgb", "jet", "label"), [{**first.files, "jet": tree / "jet" / "000.png"}])
    jet = read_list(tree / "jet.txt")
    assert jet.columns == ("rgb", "jet", "label")  # the extra 'depth' key is not written
    assert jet.samples[0].files["jet"].resolve() == (tree / "jet" / "000.png").resolve()
    write_list(
        sub,
        ("rgb", "label"),
        [{"rgb": first.files["rgb"], "label": first.files["label"]}],
        allow_absolute=True,
    )
    assert (
        read_list(sub, allow_absolute=True).samples[0].files["rgb"].resolve() == first.files["rgb"].resolve()
    )


def test_write_list_refuses_bad_rows(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="row 0: lacks column 'label'"):
        write_list(tmp_path / "l.txt", ("rgb", "label"), [{"rgb": tmp_path / "a.png"}])
    with pytest.raises(DataError, match="whitespace"):
        write_list(tmp_path / "l.txt", ("rgb",), [{"rgb": tmp_path / "a b.png"}])
    with pytest.raises(DataError, match="invalid column name"):
        write_list(tmp_path / "l.txt", ("rgb x",), [])
    assert not (tmp_path / "l.txt").exists()
    # a path starting with '#' is written so that it is not read as a comment
    touch(tmp_path / "#1.png")
    write_list(tmp_path / "l.txt", ("rgb",), [{"rgb": tmp_path / "#1.png"}])
    assert read_list(tmp_path / "l.txt").samples[0].files["rgb"].name == "#1.png"


def test_scan_folder_layout(tmp_path: Path) -> None:
    for i in ("b", "a", "c"):
        touch(tmp_path / "train" / "rgb" / f"{i}.png")
        touch(tmp_path / "train" / "label" / f"{i}.png")
    touch(tmp_path / "train" / "rgb" / "notes.txt")
    touch(tmp_path / "train" / "rgb" / ".a.png.tmp-1")
    lst = scan_folder_layout(tmp_path, "train", ("rgb", "label"))
    assert isinstance(lst, ListFile)
    assert [s.id for s in lst.samples] == ["a", "b", "c"]
    assert lst.samples[0].files == {
        "rgb": tmp_path / "train/rgb/a.png",
        "label": tmp_path / "train/label/a.png",
    }
    touch(tmp_path / "train" / "rgb" / "d.png")
    touch(tmp_path / "train" / "label" / "e.png")
    with pytest.raises(DataError, match=r"rgb/ lacks 1 ids \(e\); label/ lacks 1 ids \(d\)"):
        scan_folder_layout(tmp_path, "train", ("rgb", "label"))
    with pytest.raises(DataError, match="column folder missing"):
        scan_folder_layout(tmp_path, "train", ("rgb", "depth"))


_ALPHABET = string.ascii_letters + string.digits + "#./ \t\n\r:-_~\x00\x0b\u2028\u00e9"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.one_of(st.text(alphabet=_ALPHABET, max_size=200), st.text(max_size=200), st.binary(max_size=200))
)
def test_fuzz_parser_raises_only_data_error(tmp_path: Path, text: str | bytes) -> None:
    touch(tmp_path / "a.png")
    path = tmp_path / "fuzz.txt"
    data = text if isinstance(text, bytes) else text.encode("utf-8", errors="surrogatepass")
    path.write_bytes(data)
    for columns in (None, ("a", "b")):
        try:
            lst = read_list(path, columns=columns)
        except DataError:
            continue
        assert lst.samples and all(set(s.files) == set(lst.columns) for s in lst.samples)
        assert len({s.id for s in lst.samples}) == len(lst.samples)


_TOKENS = [
    "a.png",
    "./a.png",
    "../a.png",
    "b.png",
    "/a.png",
    "#",
    "# columns: a b",
    "#columns:",
    "x/../a.png",
    "\t",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.lists(st.sampled_from(_TOKENS), max_size=4).map(" ".join), max_size=6))
def test_fuzz_structured_lines(tmp_path: Path, lines: list[str]) -> None:
    touch(tmp_path / "a.png")
    path = tmp_path / "fuzz.txt"
    path.write_text("\n".join(lines))
    try:
        lst = read_list(path, columns=("a", "b"))
    except DataError:
        return
    assert lst.samples and all(
        p.name == "a.png" and p.is_file() for s in lst.samples for p in s.files.values()
    )


def test_one_header_parser_for_lines_and_files(tmp_path: Path) -> None:
    assert parse_header("# columns: rgb depth label") == ("rgb", "depth", "label")
    assert parse_header("  #Columns :rgb  ") == ("rgb",)
    assert parse_header("# a comment") is None and parse_header("rgb/0.png") is None
    text = "\ufeff# made by hand\n\n# columns: rgb label\nrgb/0.png label/0.png\n"
    (tmp_path / "list.txt").write_text(text)
    (tmp_path / "late.txt").write_text("rgb/0.png label/0.png\n# columns: rgb label\n")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00")
    assert read_header(tmp_path / "list.txt") == ("rgb", "label")
    assert read_header(tmp_path / "late.txt") is None  # a sample came first
    assert read_header(tmp_path / "binary.txt") is None and read_header(tmp_path / "missing.txt") is None
