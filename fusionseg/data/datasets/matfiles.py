"""Reading the MATLAB files of the official dataset downloads (torch-free).

Two formats occur: v7.3 files are HDF5 (`nyu_depth_v2_labeled.mat`, `SUNRGBD2Dseg.mat`), read with
h5py; older v5 files (`splits.mat`, the NYU class mappings, `allsplit.mat`, `SUNRGBDMeta.mat`) are read
with scipy.io. Both come with the `fusionseg[datasets]` extra. HDF5 stores MATLAB's column-major arrays
with the axes reversed: a MATLAB (H, W, 3, N) image stack reads as (N, 3, W, H).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fusionseg.errors import DataError

_EXTRA = "install the `datasets` extra: pip install 'fusionseg[datasets]'"


def open_mat73(path: Path) -> Any:
    """Open a MATLAB v7.3 (HDF5) file read-only.

    Returns:
        An open `h5py.File` (use it as a context manager).

    Raises:
        DataError: h5py missing, the file missing, or not an HDF5 (v7.3) file.
    """
    try:
        import h5py
    except ImportError:
        raise DataError(f"{path}: reading MATLAB v7.3 files needs h5py; {_EXTRA}") from None
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{path}: not a MATLAB v7.3 (HDF5) file ({err})") from None


def mat73_dataset(mat: Any, key: str, path: Path) -> Any:
    """The HDF5 dataset or group at `key` ("labels", "SUNRGBD2Dseg/seglabel") of an open v7.3 file.

    Raises:
        DataError: the key is missing (the message lists what the file holds).
    """
    try:
        return mat[key]
    except KeyError:
        raise DataError(
            f"{path}: no `{key}` in the file (it holds {', '.join(sorted(mat.keys()))})"
        ) from None


def load_mat5(path: Path, names: Sequence[str]) -> dict[str, Any]:
    """Load variables of a MATLAB v5/v7 file (scipy.io, `squeeze_me`, structs as objects).

    Args:
        path: The .mat file.
        names: The variables to load; each must be present.

    Returns:
        name -> value (numpy arrays; structs as `mat_struct` objects with attributes).

    Raises:
        DataError: scipy missing, file missing or unreadable (e.g. a v7.3 file), or a variable missing.
    """
    try:
        import scipy.io
    except ImportError:
        raise DataError(f"{path}: reading MATLAB files needs scipy; {_EXTRA}") from None
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        content = scipy.io.loadmat(
            path, variable_names=list(names), squeeze_me=True, struct_as_record=False, chars_as_strings=True
        )
    except (ValueError, NotImplementedError, OSError, TypeError) as err:
        raise DataError(f"{path}: not a readable MATLAB v5 file ({err})") from None
    missing = [name for name in names if name not in content]
    if missing:
        raise DataError(f"{path}: no `{missing[0]}` in the file")
    return {name: content[name] for name in names}


def mat_strings(value: Any, path: Path, what: str) -> list[str]:
    """A MATLAB cell array of strings (as `load_mat5` returns it) as a list of str.

    Raises:
        DataError: an element is not a string.
    """
    items = np.atleast_1d(np.asarray(value, dtype=object)).ravel()
    out = []
    for item in items:
        if isinstance(item, np.ndarray) and item.size == 1:
            item = item.item()
        if not isinstance(item, str):
            raise DataError(f"{path}: `{what}` must be a cell array of strings, found {type(item).__name__}")
        out.append(item)
    return out


def mat_indices(value: Any, path: Path, what: str, *, count: int) -> list[int]:
    """A MATLAB vector of 1-based indices into `count` items, as 0-based ints.

    Raises:
        DataError: non-integer values or an index outside 1..count.
    """
    array = np.atleast_1d(np.asarray(value)).ravel()
    if array.size and not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{path}: `{what}` must hold numbers, found {array.dtype}")
    if array.size and not np.all(np.equal(np.mod(array, 1), 0)):
        raise DataError(f"{path}: `{what}` must hold whole 1-based indices")
    ints = array.astype(np.int64)
    bad = ints[(ints < 1) | (ints > count)]
    if bad.size:
        raise DataError(f"{path}: `{what}` holds index {int(bad[0])}, outside 1..{count}")
    return [int(i) - 1 for i in ints]
