"""The server-side assets folder: uploaded test clips and images."""

from __future__ import annotations

import os
from pathlib import Path

from simulator.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

MAX_ASSET_BYTES = 50 * 1024 * 1024  # Scope refuses uploads above 50 MB


class AssetError(ValueError):
    """An upload Scope refuses with 400."""


class AssetStore:
    """Files under one directory, described the way `/api/v1/assets` describes them."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, filename: str, content: bytes) -> dict:
        """Store `content` as `filename` and describe it; AssetError on a bad name, type or size."""
        name = Path(filename).name
        suffix = Path(name).suffix.lower()
        if not name or name != filename or name.startswith("."):
            raise AssetError(f"Invalid file name: {filename!r}")
        if suffix not in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS:
            allowed = ", ".join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))
            raise AssetError(f"Invalid file type. Allowed types: {allowed}")
        if len(content) > MAX_ASSET_BYTES:
            raise AssetError(f"File size exceeds maximum of {MAX_ASSET_BYTES // (1024 * 1024)}MB")
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / name
        tmp = path.with_name(f".{name}.part")
        tmp.write_bytes(content)
        os.replace(tmp, path)  # a reader never sees half a file
        return self.describe(path)

    def describe(self, path: Path) -> dict:
        """The asset entry of one file."""
        stat = path.stat()
        return {
            "name": path.stem,
            "path": str(path.resolve()),
            "size_mb": round(stat.st_size / (1024 * 1024), 2),
            "folder": None,
            "type": "image" if path.suffix.lower() in IMAGE_EXTENSIONS else "video",
            "created_at": stat.st_ctime,
        }

    def list(self, asset_type: str | None = None) -> list[dict]:
        """Every asset, most recent first, optionally only images or videos."""
        if not self.root.is_dir():
            return []
        entries = [
            self.describe(path) for path in self.root.iterdir()
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
        ]
        if asset_type is not None:
            entries = [entry for entry in entries if entry["type"] == asset_type]
        return sorted(entries, key=lambda entry: (-entry["created_at"], entry["name"]))
