"""Where the files the pages need are: in a checkout, or where ``pip install`` put them."""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
CHECKOUT = HERE.parent.parent
#: Installed copies (setup.cfg [options.data_files]) of what lives outside the package in a checkout.
SHARED = Path(sys.prefix) / "share" / "gateway"


def first_existing(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return candidates[0]


def client_library() -> Path:
    """The folder of the JavaScript client library's modules (clients/js/src)."""
    return first_existing(CHECKOUT / "clients" / "js" / "src", SHARED / "client")


def spec_path() -> Path:
    return first_existing(CHECKOUT / "docs" / "openapi.yaml", SHARED / "openapi.yaml")


@lru_cache(maxsize=1)
def spec() -> tuple[str, str]:
    """The OpenAPI spec as YAML text and as JSON text (read and converted once)."""
    text = spec_path().read_text(encoding="utf-8")
    return text, json.dumps(yaml.safe_load(text), default=str)


@lru_cache(maxsize=None)
def page(name: str) -> str:
    """An HTML page of static/ (read once)."""
    return (STATIC / name).read_text(encoding="utf-8")
