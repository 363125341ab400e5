"""Masking helpers the dataset transforms share: salted pseudonyms, age bands, coordinate grids.

Each helper is vectorised over a pandas Series and keeps missing values missing, so the transforms
can count gaps instead of the helpers inventing values for them.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

SALT_ENV = "CHAINTRACE_PSEUDONYM_SALT"
# Only for the demo and the tests: a deployment sets CHAINTRACE_PSEUDONYM_SALT to a secret, because
# anyone who knows the salt can re-identify a pseudonym by hashing every candidate identifier.
DEMO_SALT = "chaintrace-demo-salt-not-secret"
PSEUDONYM_LENGTH = 16  # hex characters: 64 bits, no collisions expected below billions of ids


class MaskingError(ValueError):
    """A masking helper given input it cannot use; the message names what is wrong."""


def pseudonym_salt(environ: Mapping[str, str] | None = None) -> str:
    """The salt for pseudonyms: ``CHAINTRACE_PSEUDONYM_SALT`` if set and not blank, else the demo salt."""
    environ = os.environ if environ is None else environ
    value = environ.get(SALT_ENV, "").strip()
    return value or DEMO_SALT


def salted_hash(values: pd.Series, salt: str, *, length: int = PSEUDONYM_LENGTH) -> pd.Series:
    """HMAC-SHA256 pseudonyms of ``values`` (as text), truncated to ``length`` hex characters.

    The same value and salt always give the same pseudonym, so records of one subject still link;
    missing values stay missing. Each distinct value is hashed once (ids repeat a lot).
    """
    if not salt:
        raise MaskingError("salted_hash: the salt is empty")
    if not 8 <= length <= 64:
        raise MaskingError(f"salted_hash: length must be 8..64 hex characters, got {length}")
    key = salt.encode()
    present = values.notna()
    text = values[present].astype("str")
    distinct = pd.unique(text)
    digests = {
        value: hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:length] for value in distinct
    }
    result = pd.Series(pd.NA, index=values.index, dtype="str")
    result[present] = text.map(digests)
    return result


def band_labels(edges: Sequence[float]) -> list[str]:
    """Labels for bands [edges[i], edges[i+1]) of whole years: ``0``, ``1-4``, ``5-11`` ... ``90+``."""
    labels: list[str] = []
    for low, high in itertools.pairwise(edges):
        if math.isinf(high):
            labels.append(f"{int(low)}+")
        elif high - low == 1:
            labels.append(f"{int(low)}")
        else:
            labels.append(f"{int(low)}-{int(high) - 1}")
    return labels


def age_bands(ages: pd.Series, edges: Sequence[float]) -> pd.Series:
    """Generalise ages to the band [edges[i], edges[i+1]) they fall in (text labels).

    Ages outside [edges[0], edges[-1]) and missing ages give a missing band: the caller counts them.
    """
    if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
        raise MaskingError(f"age_bands: edges must be at least two increasing numbers, got {list(edges)}")
    numeric = pd.to_numeric(ages, errors="coerce")
    banded = pd.cut(numeric, bins=list(edges), right=False, labels=band_labels(edges))
    return banded.astype("str").where(banded.notna(), None).astype("str")


def round_to_grid(values: pd.Series, step: float) -> pd.Series:
    """Snap coordinates to the nearest multiple of ``step`` degrees (0.01 is about 1.1 km of latitude).

    The result is rounded to the step's decimals so equal cells compare equal (no 44.970000000001).
    """
    if not step > 0:
        raise MaskingError(f"round_to_grid: step must be positive, got {step}")
    numeric = pd.to_numeric(values, errors="coerce").astype("float64")
    decimals = max(0, -math.floor(math.log10(step))) + 1
    return pd.Series(np.round(np.round(numeric / step) * step, decimals), index=values.index, dtype="float64")
