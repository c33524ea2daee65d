"""Guess near/far OOD from a file or folder name, for sets whose name says what they are."""

from __future__ import annotations

import re

# OpenOOD v1.5 (Zhang et al. 2023): CIFAR-10/100 near = the other CIFAR, Tiny-ImageNet;
# far = MNIST, SVHN, Textures (DTD), Places365. ImageNet-1k near = SSB-hard, NINCO;
# far = iNaturalist, Textures, OpenImage-O.
_NEAR = frozenset({"cifar10", "cifar100", "tinyimagenet", "tin", "ssb", "ninco"})
_FAR = frozenset({"mnist", "svhn", "dtd", "texture", "textures", "places", "places365",
                  "inaturalist", "openimage"})


def guess_proximity(name: str) -> str | None:
    """"near"/"far" if a word of ``name`` (split at non-alphanumerics) names a known set."""
    words = set(re.split(r"[^a-z0-9]+", name.lower()))
    near, far = bool(words & _NEAR), bool(words & _FAR)
    if near == far:  # nothing known, or both (ambiguous)
        return None
    return "near" if near else "far"
