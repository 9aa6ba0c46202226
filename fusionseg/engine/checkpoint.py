"""Checkpoints: plain-tensor payloads, written atomically, verified by a sha256 sidecar.

A checkpoint is a dict of tensors and plain Python values only (no pickled classes), so it loads with
`torch.load(weights_only=True)`; anything else - a pickle carrying code, say - is refused with
`CheckpointError`. Each file `<name>.pt` is written to a temporary file, fsynced and renamed
(`fusionseg.fsutil.atomic_write_bytes`), its sha256 going into `<name>.pt.sha256` the same way just
before. A reader that finds the digest missing or different treats the file as corrupt; resuming then
falls back to the previous checkpoint and says so.

Run folder layout (`CheckpointManager`):

    ckpt-00001000.pt (+ .sha256)   the last `keep_last` periodic checkpoints
    last.pt                        the newest checkpoint (hard link to the newest ckpt-*.pt when possible)
    best.pt                        the checkpoint with the best validation mIoU so far
"""

from __future__ import annotations

import io
import os
import random
import re
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fusionseg import __version__
from fusionseg.errors import CheckpointError, FusionsegError
from fusionseg.fsutil import atomic_write_bytes, atomic_write_text, sha256_bytes

FORMAT = "fusionseg-checkpoint"
FORMAT_VERSION = 1
SIDECAR_SUFFIX = ".sha256"
LAST_FILE = "last.pt"
BEST_FILE = "best.pt"
STEP_GLOB = "ckpt-*.pt"
_STEP_FILE = re.compile(r"^ckpt-(\d+)\.pt$")


# ---------------------------------------------------------------------------------------------------
# Bytes on disk
# ---------------------------------------------------------------------------------------------------


def sidecar_path(path: str | Path) -> Path:
    """`<file>.sha256` beside a checkpoint file."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def save_checkpoint(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Serialise `payload` and write it and its sha256 sidecar atomically.

    Args:
        path: Destination `.pt` file; its folder is created.
        payload: Tensors and plain containers/numbers/strings only.

    Returns:
        The path written.

    Raises:
        CheckpointError: the payload holds an object that a weights-only load would refuse.
        DataError: the folder cannot be written.
    """
    path = Path(path)
    _check_plain(payload, "payload", path)
    buffer = io.BytesIO()
    torch.save(dict(payload), buffer)
    data = buffer.getvalue()
    # sidecar first: a crash between the two writes leaves no `.pt` without its digest (such a file
    # would count as a checkpoint, yet never verify), only an orphan sidecar that the next save replaces
    atomic_write_text(sidecar_path(path), f"{sha256_bytes(data)}  {path.name}\n")
    atomic_write_bytes(path, data)
    return path


_PLAIN_SCALARS = (str, int, float, bool, type(None), torch.dtype, torch.device, torch.Size)


def _check_plain(value: Any, where: str, path: Path) -> None:
    """Refuse anything a weights-only load would reject (numpy arrays, custom classes, ...)."""
    if isinstance(value, torch.Tensor) or isinstance(value, _PLAIN_SCALARS):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise CheckpointError(f"{path}: checkpoint key {where}.{key!r} is not a str or int")
            _check_plain(item, f"{where}.{key}", path)
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]", path)
        return
    raise CheckpointError(
        f"{path}: checkpoint entry {where} is a {type(value).__name__}; store only tensors and plain values"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def verify_checkpoint_file(path: str | Path, *, require_sidecar: bool = True) -> bytes:
    """Read a checkpoint's bytes and check them against the sha256 sidecar.

    Args:
        path: The `.pt` file.
        require_sidecar: Treat a missing sidecar as corruption (set for our own run folders; files
            from elsewhere, e.g. converted weights, may come without one).

    Returns:
        The file's bytes.

    Raises:
        CheckpointError: missing or unreadable file, missing sidecar (when required), digest mismatch.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from None
    side = sidecar_path(path)
    if not side.exists():
        if require_sidecar:
            raise CheckpointError(f"{path}: sha256 sidecar {side.name} is missing (incomplete write?)")
        return data
    try:
        expected = side.read_text(encoding="utf-8").split()[0].lower()
    except (OSError, IndexError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: sha256 sidecar {side.name} is unreadable") from None
    actual = sha256_bytes(data)
    if actual != expected:
        raise CheckpointError(
            f"{path}: sha256 mismatch (file {actual[:12]}..., sidecar {expected[:12]}...): "
            "the checkpoint is truncated or corrupt"
        )
    return data


def load_checkpoint(
    path: str | Path, *, map_location: str | torch.device = "cpu", require_sidecar: bool = False
) -> dict[str, Any]:
    """Load a fusionseg checkpoint with `torch.load(weights_only=True)` after verifying its digest.

    Args:
        path: The `.pt` file.
        map_location: Device for the tensors.
        require_sidecar: Refuse a file without a sha256 sidecar (resuming from a run folder does).

    Returns:
        The payload dict.

    Raises:
        CheckpointError: not found, corrupt, digest mismatch, not loadable weights-only (a pickle with
            code is refused), or not a fusionseg checkpoint.
    """
    path = Path(path)
    data = verify_checkpoint_file(path, require_sidecar=require_sidecar)
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and torch errors all mean "refused"
        raise CheckpointError(
            f"{path}: refused to load: not a plain-tensor checkpoint or corrupt "
            f"(weights-only load failed: {_first_line(exc)})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fusionseg checkpoint (no '{FORMAT}' format tag)")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is newer than this fusionseg "
            f"({__version__}) understands ({FORMAT_VERSION})"
        )
    return payload


def check_compatible(payload: Mapping[str, Any], expected: Mapping[str, Any], *, source: str) -> None:
    """Refuse a checkpoint whose structural keys differ from what the caller needs.

    Args:
        payload: A loaded checkpoint.
        expected: key -> required value, e.g. {"num_classes": 9, "modalities": ["rgb"]}.
        source: File name for the message.

    Raises:
        CheckpointError: naming the first differing key and both values.
    """
    for key, want in expected.items():
        have = payload.get(key)
        if as_plain(have) != as_plain(want):
            raise CheckpointError(
                f"{source}: checkpoint has {key}={as_plain(have)!r} but {as_plain(want)!r} is required here"
            )


def as_plain(value: Any) -> Any:
    """Tuples as lists, recursively, so saved and configured values compare equal."""
    if isinstance(value, (tuple, list)):
        return [as_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: as_plain(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------------
# RNG state as plain values
# ---------------------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) global RNG states as tensors and plain values."""
    np_state = np.random.get_state()  # noqa: NPY002 - the global state is what we checkpoint
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "python": {"version": py_version, "internal": list(py_internal), "gauss_next": py_gauss},
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of `capture_rng_state` (CUDA states are restored when as many devices exist)."""
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(v) for v in py["internal"]), py["gauss_next"]))
    npst = state["numpy"]
    keys = npst["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state(  # noqa: NPY002 - restores the checkpointed global state
        (npst["name"], keys, int(npst["pos"]), int(npst["has_gauss"]), float(npst["cached_gaussian"]))
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda = list(state.get("cuda") or [])
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


# ---------------------------------------------------------------------------------------------------
# Building a model from a checkpoint
# ---------------------------------------------------------------------------------------------------


def model_from_checkpoint(payload: Mapping[str, Any], *, source: str = "checkpoint") -> nn.Module:
    """Rebuild the model a checkpoint was saved from and load its weights (eval mode, on CPU).

    Raises:
        CheckpointError: unknown kind, or weights that do not fit the rebuilt model (names the key).
    """
    from fusionseg.registry import model_for_checkpoint

    # Build on the meta device: every weight is replaced by the checkpoint's, so the random (He)
    # initialisation would be wasted work (5-20 s for a fused model on 2 CPU cores).
    with torch.device("meta"):
        model = model_for_checkpoint(payload, source=source)
    load_model_state(model, payload["model"], source=source, assign=True)
    leftover = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:  # a tensor the state dict does not carry (non-persistent buffer): build for real
        model = model_for_checkpoint(payload, source=source)
        load_model_state(model, payload["model"], source=source)
    return model.eval()


def load_model_state(
    model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str, assign: bool = False
) -> None:
    """`load_state_dict(strict=True)` with a one-line `CheckpointError` naming the first bad key.

    With `assign=True` the model takes the state's tensors themselves (for models built on the meta
    device).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        key = (missing or unexpected)[0]
        what = "missing from the checkpoint" if missing else "not in the model"
        raise CheckpointError(
            f"{source}: weights do not fit the model: key {key!r} {what} "
            f"({len(missing)} missing, {len(unexpected)} unexpected)"
        )
    for key, tensor in own.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{source}: weights do not fit the model: {key} has shape {tuple(state[key].shape)} "
                f"in the checkpoint but {tuple(tensor.shape)} in the model"
            )
    model.load_state_dict(dict(state), strict=True, assign=assign)


# ---------------------------------------------------------------------------------------------------
# A run folder's checkpoints
# ---------------------------------------------------------------------------------------------------


class CheckpointManager:
    """Writes, prunes and finds the checkpoints of one run folder.

    Args:
        run_dir: The run folder.
        keep_last: Number of periodic `ckpt-<step>.pt` files kept (>= 1).
        warn: Called with a one-line message when a checkpoint is skipped as corrupt.
    """

    def __init__(
        self, run_dir: str | Path, *, keep_last: int = 3, warn: Callable[[str], None] | None = None
    ) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.run_dir = Path(run_dir)
        self.keep_last = keep_last
        self.warn = warn or (lambda msg: warnings.warn(msg, stacklevel=3))

    @property
    def last_path(self) -> Path:
        return self.run_dir / LAST_FILE

    @property
    def best_path(self) -> Path:
        return self.run_dir / BEST_FILE

    def step_path(self, step: int) -> Path:
        return self.run_dir / f"ckpt-{step:08d}.pt"

    def step_files(self) -> list[tuple[int, Path]]:
        """Periodic checkpoints present, newest first."""
        found = []
        for path in self.run_dir.glob(STEP_GLOB):
            match = _STEP_FILE.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found, reverse=True)

    def has_checkpoints(self) -> bool:
        return self.last_path.exists() or bool(self.step_files())

    def refuse_existing(self) -> None:
        """Refuse to start a new run in a folder that already holds checkpoints.

        Raises:
            FusionsegError: the folder holds `last.pt` or a periodic checkpoint.
        """
        if self.has_checkpoints():
            raise FusionsegError(
                f"{self.run_dir}: run folder already holds checkpoints; pass `resume` to continue it "
                "or choose another output folder"
            )

    def best_or_last(self) -> Path:
        """The checkpoint to use downstream: `best.pt` when the run validated, else `last.pt`."""
        return self.best_path if self.best_path.exists() else self.last_path

    def completed(self, iterations: int) -> dict[str, Any] | None:
        """The payload of `last.pt` if it exists, verifies and reached the run's steps.

        The run's steps are `iterations`, or, for a run sized to `train.time_budget_s`, the count it
        fitted to its budget (recorded as `total_steps`).
        """
        payload = self.read_last()
        if payload is None:
            return None
        target = iterations
        if payload.get("budget_planned") and payload.get("total_steps"):
            target = min(int(payload["total_steps"]), iterations)
        return payload if int(payload.get("step", -1)) >= target else None

    def read_last(self) -> dict[str, Any] | None:
        """The payload of `last.pt`, or None when it is missing or does not verify."""
        if not self.last_path.exists():
            return None
        try:
            return load_checkpoint(self.last_path, map_location="cpu")
        except CheckpointError:
            return None

    def save(self, payload: Mapping[str, Any], *, step: int, best: bool = False) -> Path:
        """Write `ckpt-<step>.pt`, point `last.pt` (and `best.pt` when `best`) at it, prune old ones."""
        path = save_checkpoint(self.step_path(step), payload)
        self._publish(path, self.last_path)
        if best:
            self._publish(path, self.best_path)
        for _, old in self.step_files()[self.keep_last :]:
            old.unlink(missing_ok=True)
            sidecar_path(old).unlink(missing_ok=True)
        return path

    def publish_best(self, path: Path) -> None:
        """Point `best.pt` at the checkpoint `path` (e.g. again after a crash cut `save` short)."""
        self._publish(path, self.best_path)

    def _publish(self, src: Path, dst: Path) -> None:
        """Make `dst` (and its sidecar) a copy of `src`: atomic hard link, or atomic byte copy."""
        for a, b in ((src, dst), (sidecar_path(src), sidecar_path(dst))):
            fd, tmp = tempfile.mkstemp(prefix=f".{b.name}.tmp-", dir=b.parent)
            os.close(fd)
            os.unlink(tmp)
            try:
                os.link(a, tmp)
                os.replace(tmp, b)
                Path(tmp).unlink(missing_ok=True)  # still there if `b` already was `a` (rename: no-op)
            except OSError:
                Path(tmp).unlink(missing_ok=True)
                atomic_write_bytes(b, a.read_bytes())

    def candidates(self) -> list[Path]:
        """Files to try when resuming, best first: `last.pt`, then periodic ones newest first."""
        paths = [self.last_path] if self.last_path.exists() else []
        return paths + [p for _, p in self.step_files()]

    def load_latest(self, *, map_location: str | torch.device = "cpu") -> tuple[Path, dict[str, Any]]:
        """Load the newest checkpoint that verifies, falling back past corrupt ones (with a warning).

        Raises:
            CheckpointError: no checkpoint, or none that verifies (the message lists why).
        """
        tried: list[str] = []
        for path in self.candidates():
            try:
                payload = load_checkpoint(path, map_location=map_location, require_sidecar=True)
            except CheckpointError as exc:
                tried.append(str(exc))
                self.warn(f"{exc}; falling back to the previous checkpoint")
                continue
            return path, payload
        if not tried:
            raise CheckpointError(f"{self.run_dir}: no checkpoint to resume from")
        raise CheckpointError(f"{self.run_dir}: no intact checkpoint to resume from ({'; '.join(tried)})")


def checkpoint_header(**fields: Any) -> dict[str, Any]:
    """The fixed keys every checkpoint carries, plus `fields`."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "fusionseg_version": __version__, **fields}


def checkpoint_input_size(payload: Mapping[str, Any]) -> tuple[int, int]:
    """The (H, W) a checkpoint was trained at: its `input_size`, else its config's data size, else
    `DataConfig`'s default (checkpoints that record neither)."""
    from fusionseg.config import DataConfig

    size = payload.get("input_size")
    if not size:
        data = (payload.get("config") or {}).get("data") or {}
        size = [data.get("height_px", DataConfig.height_px), data.get("width_px", DataConfig.width_px)]
    return int(size[0]), int(size[1])
