"""Pretrained weights by name: a local file or folder, or a Hugging Face hub id (downloaded once, cached).

Every input that takes pretrained weights (the vocoder's ``--pretrained`` and ``--vocoder``, the image
encoders' ``--pretrained_frame``, the detector) accepts both, e.g. ``nvidia/bigvgan_v2_22khz_80band_256x``
or the folder ``hf download`` wrote. Offline, a hub id that is not in the cache is one line saying
what to pass instead.
"""

from __future__ import annotations

import os
import re

from binaural_core.audio import BadInputError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(name: str) -> bool:
    """``owner/name`` that is not a path on this machine."""
    return bool(_HUB_ID.match(name)) and not os.path.exists(name)


def offline_hint(name: str) -> str:
    return (f"where there is a connection, download it (`hf download {name} --local-dir DIR`) and pass the "
            "folder DIR instead")


def resolve(name: str, *, files: tuple[str, ...], what: str) -> str:
    """A local path as given, or the cached snapshot folder of hub id ``name`` holding ``files``.

    Raises:
        BadInputError: neither a local path nor a reachable / cached hub id (one line, what to pass).
    """
    name = os.fspath(name)
    if os.path.exists(name):
        return name
    if not _HUB_ID.match(name):
        raise BadInputError(name, f"{what}: checkpoint not found (no such file or folder, and not a hub id owner/name)")
    from huggingface_hub import hf_hub_download

    try:
        paths = [hf_hub_download(name, f) for f in files]
    except Exception as err:  # offline, unknown repo, missing file: all "cannot get it"
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise BadInputError(name, f"{what}: no such file or folder here, and as a hub id it cannot be fetched "
                                  f"({', '.join(files)}: {reason}); " + offline_hint(name)) from None
    return os.path.dirname(paths[0])
