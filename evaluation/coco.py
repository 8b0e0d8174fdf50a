"""COCO annotation files as released (``instances_<split>.json``, ``captions_<split>.json``), read once.

Only the fields the benchmarks use are kept: images (id -> file name), categories (id -> name), the
categories annotated per image and the reference captions per image. Any reading problem raises
InputError naming the file and what is wrong.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from evaluation.hallucination import InputError

_COCO_ID = re.compile(r"(\d+)\.\w+$")


def read_json(path: Path):
    """A JSON file's content; InputError naming the file when it is missing, a folder or not JSON."""
    if not path.is_file():
        raise InputError(f"{path}: file not found" if not path.exists() else f"{path}: is not a file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from None


def image_id_of(name: str) -> int | None:
    """COCO's image id from a file name ("COCO_val2014_000000310196.jpg" -> 310196), None when it has none."""
    match = _COCO_ID.search(Path(name).name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class CocoAnnotations:
    """file_names: image id -> file name; categories: image id -> annotated category names (sorted, unique);
    captions: image id -> reference captions; category_names: every category, in file order."""

    file_names: dict[int, str]
    categories: dict[int, list[str]]
    captions: dict[int, list[str]]
    category_names: list[str]

    @classmethod
    def load(cls, folder: str | Path, split: str) -> CocoAnnotations:
        folder = Path(folder)
        instances_path, captions_path = folder / f"instances_{split}.json", folder / f"captions_{split}.json"
        instances, captions = read_json(instances_path), read_json(captions_path)
        try:
            names = {c["id"]: c["name"] for c in instances["categories"]}
            file_names = {im["id"]: im["file_name"] for im in instances["images"]}
            per_image: dict[int, set[str]] = {i: set() for i in file_names}
            for ann in instances["annotations"]:
                per_image.setdefault(ann["image_id"], set()).add(names[ann["category_id"]])
        except (KeyError, TypeError) as err:
            raise InputError(f"{instances_path}: not a COCO instances file (missing or bad field {err})") from None
        try:
            texts: dict[int, list[str]] = {}
            for ann in captions["annotations"]:
                texts.setdefault(ann["image_id"], []).append(ann["caption"])
        except (KeyError, TypeError) as err:
            raise InputError(f"{captions_path}: not a COCO captions file (missing or bad field {err})") from None
        return cls(file_names, {i: sorted(c) for i, c in per_image.items()}, texts, list(names.values()))

    def file_name(self, image_id: int) -> str:
        if image_id not in self.file_names:
            raise InputError(f"COCO image id {image_id} is not in the instances annotations")
        return self.file_names[image_id]
