"""Models on disk: save and load parameters with their optimizer, crash-safe.

The file is a NumPy ``.npz`` archive (a zip of ``.npy`` files, uncompressed), so
NumPy alone can read it, and it is loaded with ``allow_pickle=False``: loading a
file never runs code, and an object array in it is refused. Members:

* ``fastgrad.json``: a uint8 array holding a UTF-8 JSON header: the format name
  and version, the dtype, every array's shape and CRC-32, the optimizer (kind,
  hyperparameters, step count), the caller's ``meta`` and, in fit's checkpoints,
  the training loop's position and random generators' states;
* ``p.L``, ``p.W``, ``p.b1``, ``p.U``, ``p.b2``: the parameters;
* ``opt.state1.L`` ... ``opt.state2.b2``: the optimizer's state, where it keeps one.

Saving is atomic: the archive is written to a temporary file in the same folder,
flushed and fsynced, then renamed over the target (and the folder fsynced), so a
process killed at any moment leaves the old file or the new one, never a torn one.
A symbolic link's target is written (the link stays), a FIFO or device is written
through, and a new file follows the umask (fastgrad._files).
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib

import numpy as np

from fastgrad._files import output_file
from fastgrad._optim import SGD, AdaGrad, Adam, Optimizer
from fastgrad._types import Params
from fastgrad._validate import check_params

__all__ = ["save", "load", "ModelFileError", "FORMAT", "FORMAT_VERSION"]

FORMAT = "fastgrad-model"
FORMAT_VERSION = 1
_HEADER = "fastgrad.json"
_OPTIMIZERS = {"SGD": SGD, "AdaGrad": AdaGrad, "Adam": Adam}


class ModelFileError(ValueError):
    """A file that is not a complete, intact fastgrad model of a version this fastgrad reads."""


def _crc(a: np.ndarray) -> int:
    return zlib.crc32(memoryview(np.ascontiguousarray(a)).cast("B"))


def _optimizer_header(opt: Optimizer) -> dict:
    kind = type(opt).__name__
    if kind not in _OPTIMIZERS:
        raise TypeError(f"opt must be a fastgrad SGD, AdaGrad or Adam, got {kind}")
    if kind == "SGD":
        hyper = {"lr": opt.lr, "momentum": opt.momentum}
    elif kind == "AdaGrad":
        hyper = {"lr": opt.lr, "eps": opt.eps, "eps_inside_sqrt": opt.eps_inside_sqrt}
    else:
        hyper = {"lr": opt.lr, "betas": list(opt.betas), "eps": opt.eps}
    return {"kind": kind, "hyper": hyper, "steps": int(opt.steps)}


def _named_arrays(p: Params, opt: Optimizer | None) -> dict[str, np.ndarray]:
    arrays = {f"p.{name}": a for name, a in zip(Params._fields, p)}
    if opt is not None:
        for which in ("state1", "state2"):
            state = getattr(opt, which)
            if state is not None:
                arrays.update({f"opt.{which}.{name}": a for name, a in zip(Params._fields, state)})
    return arrays


def save(path, p, opt: Optimizer | None = None, meta: dict | None = None, *,
         _extra: dict | None = None) -> None:
    """Save parameters, optimizer and metadata to one file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (replaced whole if it exists; ``.npz`` is the usual suffix).
    p : Params
    opt : Optimizer or None
        Its kind, hyperparameters, step count and state arrays are saved, so that
        training continues exactly where it stopped.
    meta : dict or None
        Anything JSON can hold (a vocabulary, a feature layout, options); given back
        by load as it was saved.

    Nothing is written when an argument is refused.
    """
    shape = check_params(p, writeable=False)
    p = Params(*p)
    if opt is not None:
        if not isinstance(opt, Optimizer):
            raise TypeError(f"opt must be a fastgrad optimizer or None, got {type(opt).__name__}")
        opt._check_for(shape)
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    arrays = _named_arrays(p, opt)
    header = {
        "format": FORMAT, "version": FORMAT_VERSION, "dtype": shape.dtype.name,
        "arrays": {name: {"shape": list(a.shape), "crc32": _crc(a)} for name, a in arrays.items()},
        "optimizer": None if opt is None else _optimizer_header(opt),
        "meta": meta,
    }
    if _extra:
        header.update(_extra)
    try:
        text = json.dumps(header, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(f"meta must hold only what JSON can (dict, list, str, finite numbers, "
                        f"bool, None): {err}") from None
    members = {_HEADER: np.frombuffer(text.encode(), np.uint8), **arrays}
    _write_atomically(os.fspath(path), members)


def _write_atomically(path: str, members: dict[str, np.ndarray]) -> None:
    with output_file(path, durable=True) as f:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, a in members.items():
                with archive.open(name + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(a),
                                              allow_pickle=False)


def _read(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and arrays of a fastgrad file, every array checked; else ModelFileError."""
    with open(path, "rb") as f:   # FileNotFoundError and the like name the path themselves
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        raise ModelFileError(f"{path}: not a fastgrad model file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if _HEADER not in names:
                raise ModelFileError(f"{path}: not a fastgrad model file (no {_HEADER} member)")
            arrays = {name: archive[name] for name in names}
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except ModelFileError:
        raise
    except ValueError as err:
        if "allow_pickle" in str(err) or "Object arrays" in str(err):
            raise ModelFileError(f"{path}: holds a pickled object, which fastgrad never loads "
                                 "(loading it could run code)") from None
        raise ModelFileError(f"{path}: not a readable fastgrad model file ({err})") from None
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise ModelFileError(f"{path}: damaged or incomplete (truncated, or bytes changed): "
                             f"{err}") from None
    try:
        header = json.loads(arrays.pop(_HEADER).tobytes().decode())
    except (UnicodeDecodeError, ValueError):
        raise ModelFileError(f"{path}: its {_HEADER} header is not valid JSON") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a fastgrad model file (format "
                             f"{header.get('format') if isinstance(header, dict) else None!r})")
    if header.get("version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: format version {header.get('version')!r}; this fastgrad "
                             f"reads version {FORMAT_VERSION}")
    _check_header(path, header)
    listed = header["arrays"]
    if set(listed) != set(arrays):
        raise ModelFileError(f"{path}: its arrays {sorted(arrays)} do not match its header "
                             f"{sorted(listed)}")
    for name, a in arrays.items():
        if list(a.shape) != listed[name]["shape"] or a.dtype.name != header["dtype"]:
            raise ModelFileError(f"{path}: array {name} is {a.dtype}{a.shape}, the header says "
                                 f"{header['dtype']}{tuple(listed[name]['shape'])}")
        if _crc(a) != listed[name]["crc32"]:
            raise ModelFileError(f"{path}: array {name} fails its checksum (the file was "
                                 "changed or damaged)")
    return header, arrays


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_header(path: str, header: dict) -> None:
    """Every field of a header (past format and version) of the kind save writes;
    ModelFileError naming the file and the field otherwise."""
    def bad(field, what):
        raise ModelFileError(f"{path}: header field {field!r} {what}")

    if header.get("dtype") not in ("float32", "float64"):
        bad("dtype", f"must be 'float32' or 'float64', got {header.get('dtype')!r}")
    listed = header.get("arrays")
    if not isinstance(listed, dict):
        bad("arrays", "is missing or not an object")
    for name, entry in listed.items():
        if not isinstance(entry, dict):
            bad(f"arrays.{name}", "is not an object")
        shape = entry.get("shape")
        if not isinstance(shape, list) or not all(_is_count(k) for k in shape):
            bad(f"arrays.{name}.shape", f"must be a list of sizes, got {shape!r}")
        if not _is_count(entry.get("crc32")):
            bad(f"arrays.{name}.crc32", f"must be a CRC-32, got {entry.get('crc32')!r}")
    spec = header.get("optimizer")
    if spec is not None:
        if not isinstance(spec, dict):
            bad("optimizer", "must be an object or null")
        if not isinstance(spec.get("kind"), str):
            bad("optimizer.kind", f"must be a name, got {spec.get('kind')!r}")
        if not isinstance(spec.get("hyper"), dict):
            bad("optimizer.hyper", "is missing or not an object")
        if not _is_count(spec.get("steps", 0)):
            bad("optimizer.steps", f"must be a count >= 0, got {spec.get('steps')!r}")
    if not isinstance(header.get("meta", {}), dict):
        bad("meta", "is not an object")


def _build_optimizer(path: str, header: dict, arrays: dict, p: Params) -> Optimizer | None:
    spec = header.get("optimizer")
    if spec is None:
        return None
    cls = _OPTIMIZERS.get(spec.get("kind"))
    if cls is None:
        raise ModelFileError(f"{path}: unknown optimizer kind {spec.get('kind')!r}")
    try:
        opt = cls(p, **{str(k): v for k, v in spec["hyper"].items()})
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: bad optimizer hyperparameters: {err}") from None
    for which in ("state1", "state2"):
        state = getattr(opt, which)
        stored = [f"opt.{which}.{name}" for name in Params._fields]
        present = [name in arrays for name in stored]
        if state is None:
            if any(present):
                raise ModelFileError(f"{path}: holds {which} arrays, which a "
                                     f"{spec['kind']} with these settings does not keep")
            continue
        if not all(present):
            raise ModelFileError(f"{path}: the {spec['kind']} optimizer's {which} is missing")
        for name, target in zip(stored, state):
            if arrays[name].shape != target.shape:
                raise ModelFileError(f"{path}: {name} has shape {arrays[name].shape}, but the "
                                     f"parameters need {target.shape}")
            np.copyto(target, arrays[name])
    opt.steps = int(spec.get("steps", 0))
    return opt


def load(path) -> tuple[Params, Optimizer | None, dict]:
    """Load a model saved by ``save``: ``(p, opt, meta)``.

    Returns
    -------
    p : Params
        Fresh arrays.
    opt : Optimizer or None
        The optimizer as saved (kind, hyperparameters, step count, state), bound to p;
        None if none was saved.
    meta : dict
        The metadata as saved ({} if none).

    Raises
    ------
    FileNotFoundError
        No such file.
    ModelFileError
        The file is truncated, damaged (a checksum fails), of another format version,
        holds a pickled object, has shapes that do not fit together, or is not a
        fastgrad model file; the message names the file and what is wrong.
    """
    path = os.fspath(path)
    header, arrays = _read(path)
    return _model_from(path, header, arrays)


def _model_from(path: str, header: dict, arrays: dict):
    missing = [f"p.{name}" for name in Params._fields if f"p.{name}" not in arrays]
    if missing:
        raise ModelFileError(f"{path}: parameters {missing} are missing")
    p = Params(*(np.ascontiguousarray(arrays[f"p.{name}"]) for name in Params._fields))
    try:
        check_params(p, writeable=True)
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: the parameters do not fit together: {err}") from None
    opt = _build_optimizer(path, header, arrays, p)
    meta = header.get("meta", {})
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: its meta is not a dict")
    return p, opt, meta
