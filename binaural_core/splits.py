"""Split lists: the one reader of every list of clip names that a script takes.

Three formats, chosen by the file's suffix (docs/formats.md, "Split lists"):

* ``.csv``: a header with a ``name`` column (other columns are ignored), one clip per row;
* ``.h5`` / ``.hdf5``: FAIR-Play's official split files, dataset ``audio`` holding wav paths from the
  authors' machine (``/home/.../binaural_audios/000001.wav``); only the basename is used;
* ``.txt`` (or ``.lst``): one name or file name per line, as PseudoBinaural's scene-disjoint
  ``new_splits/split{k}/{train,val,test}.txt``; blank lines and lines starting with ``#`` are skipped.

Every entry becomes a clip *name*: an entry that looks like a path (a separator, or a media suffix
such as ``.wav``/``.mp4``/``.npy``) loses its folder and suffix. Names are always strings, so FAIR-Play
ids like ``000001`` stay ``000001`` (never the number 1). A broken list stops with one
:class:`~binaural_core.audio.BadInputError` line naming the file (and the line where there is one).
"""

from __future__ import annotations

import os

import numpy as np

from binaural_core.audio import BadInputError

H5_KEY = "audio"  # FAIR-Play's split files keep the wav paths under this key
MEDIA_SUFFIXES = (".wav", ".flac", ".mp3", ".mp4", ".npy")
CSV_SUFFIXES, H5_SUFFIXES, TXT_SUFFIXES = (".csv",), (".h5", ".hdf5"), (".txt", ".lst")


def clip_name(entry: str) -> str:
    """One list entry → clip name: paths (a separator or a media suffix) lose folder and suffix."""
    entry = entry.strip()
    if "/" in entry or "\\" in entry or entry.lower().endswith(MEDIA_SUFFIXES):
        return os.path.splitext(os.path.basename(entry.replace("\\", "/")))[0]
    return entry


def read_split_list(path: str | os.PathLike) -> list[str]:
    """Clip names of a split list (CSV, FAIR-Play ``.h5`` or ``.txt``), in file order.

    Raises:
        BadInputError: missing or unreadable file, unknown suffix, no ``name`` column / ``audio``
            dataset, an empty entry (with its line), a name listed twice, or an empty list.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BadInputError(path, "split list not found")
    suffix = os.path.splitext(path)[1].lower()
    if suffix in CSV_SUFFIXES:
        entries = _read_csv(path)
    elif suffix in H5_SUFFIXES:
        entries = _read_h5(path)
    elif suffix in TXT_SUFFIXES:
        entries = _read_txt(path)
    else:
        known = ", ".join(CSV_SUFFIXES + H5_SUFFIXES + TXT_SUFFIXES)
        raise BadInputError(path, f"unknown split-list format {suffix or '(no suffix)'!r} (expected {known})")
    names, seen = [], {}
    for where, entry in entries:
        name = clip_name(entry)
        if not name:
            raise BadInputError(path, f"{where}: empty clip name ({entry!r})")
        if name in seen:  # a clip listed twice would be trained on twice as often, silently
            raise BadInputError(path, f"{where}: clip {name!r} is already listed at {seen[name]}")
        seen[name] = where
        names.append(name)
    if not names:
        raise BadInputError(path, "the split list is empty")
    return names


def read_csv_table(path: str):
    """A CSV as a ``pandas.DataFrame`` of strings (``000001`` stays a string), stripped column names.

    Raises:
        BadInputError: missing or unreadable file (one line with the parser's reason).
    """
    import pandas as pd

    if not os.path.isfile(path):
        raise BadInputError(path, "file not found")
    try:
        # strings throughout: clip names like "000001" must not become numbers
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadInputError(path, f"unreadable CSV ({reason})") from None
    table.columns = [str(c).strip() for c in table.columns]
    return table


def _read_csv(path: str) -> list[tuple[str, str]]:
    table = read_csv_table(path)
    if "name" not in table.columns:
        found = ", ".join(table.columns) or "none"
        raise BadInputError(path, f"no 'name' column in the header (columns: {found})")
    return [(f"line {i + 2}", value) for i, value in enumerate(table["name"])]  # line 1 is the header


def _read_h5(path: str) -> list[tuple[str, str]]:
    from binaural_core.extras import need

    h5py = need("h5py", f"reading {path}")

    try:
        with h5py.File(path, "r") as f:
            if H5_KEY not in f:
                keys = ", ".join(f.keys()) or "none"
                raise BadInputError(path, f"no '{H5_KEY}' dataset (keys: {keys})")
            values = np.asarray(f[H5_KEY][()]).reshape(-1)
    except BadInputError:
        raise
    except Exception as err:
        raise BadInputError(path, f"unreadable HDF5 file ({type(err).__name__})") from None
    entries = []
    for i, value in enumerate(values):
        text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
        entries.append((f"entry {i} of '{H5_KEY}'", text))
    return entries


def _read_txt(path: str) -> list[tuple[str, str]]:
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: a BOM from Windows editors is not a name
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise BadInputError(path, f"unreadable text file ({type(err).__name__})") from None
    return [(f"line {i + 1}", line) for i, line in enumerate(lines)
            if line.strip() and not line.lstrip().startswith("#")]
