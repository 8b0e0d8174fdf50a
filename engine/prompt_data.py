"""Prompts from a user's HF ``datasets`` dataset instead of ShapesWorld.

The dataset is a ``save_to_disk`` folder, or parquet / jsonl files (one file, a folder of them, or a
glob). It needs an image column (encoded bytes, a ``datasets.Image`` value, a PIL image, or a path relative
to ``image_root``) and a question column; column names are configurable. The RLAIF-V dataset layout
(``image``, ``question``, ``chosen``, ``rejected``, ``idx``, ...) works as is: ``chosen`` becomes each
prompt's ``reference`` answer (BPO's positives). Returns prompt rows (``id``, ``image_bytes``,
``question``, ``reference``, ``gt_objects``, ``layout``); a bad row (unreadable image, empty question) is
left to ``feedback.inputs.select_prompts``, which counts it as a skip. Only an image path that leaves
``image_root`` stops the load: that is a dataset trying to read files it has no business reading.
"""
from __future__ import annotations

import glob
import hashlib
import io
import random
from pathlib import Path

REFERENCE_COLUMNS = ("chosen",)  # RLAIF-V's preferred answer is the reference when no column is named
ID_COLUMNS = ("id", "idx")
_ORDERS: dict[tuple, list[int]] = {}  # a dataset's shuffled distinct rows, computed once per driver process


class PromptDataError(ValueError):
    """A dataset that cannot give prompts at all: the message names the dataset and what is wrong."""


def open_dataset(path: str | Path, split: str = "train"):
    """A ``datasets.Dataset`` from a save_to_disk folder (a DatasetDict gives ``split``) or parquet/jsonl files."""
    from datasets import DatasetDict, load_dataset, load_from_disk
    from datasets.exceptions import DatasetGenerationError

    path = Path(path)
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        dataset = load_from_disk(str(path))
        if isinstance(dataset, DatasetDict):
            if split not in dataset:
                raise PromptDataError(f"{path}: no split {split!r} (splits: {', '.join(dataset)})")
            dataset = dataset[split]
        return dataset
    pattern = str(path / "*") if path.is_dir() else str(path)
    files = sorted(f for f in glob.glob(pattern) if f.endswith((".parquet", ".jsonl", ".json")))
    if not files:
        raise PromptDataError(f"{path}: no save_to_disk dataset and no .parquet/.jsonl files")
    kinds = {"parquet" if f.endswith(".parquet") else "json" for f in files}
    if len(kinds) > 1:
        raise PromptDataError(f"{path}: mixes parquet and jsonl files; use one format")
    kind = kinds.pop()
    if not any(_has_rows(f, kind) for f in files):  # datasets fails on a row-less parquet file, so look first
        raise PromptDataError(f"{path}: the dataset has no rows")
    try:
        return load_dataset(kind, data_files=files, split="train")
    except DatasetGenerationError as e:
        raise PromptDataError(f"{path}: cannot be read as {kind} ({e.__cause__ or e})") from None


def _has_rows(file: str, kind: str) -> bool:
    import pyarrow.parquet as pq

    if kind == "parquet":
        return pq.ParquetFile(file).metadata.num_rows > 0
    with open(file, encoding="utf-8", errors="replace") as f:
        return any(line.strip() for line in f)


def _text(value) -> str | None:
    """A string column, or the text of a chat message list (TRL's conversational format); None for a
    malformed message list (the row becomes a counted skip)."""
    if isinstance(value, list):
        try:
            return " ".join(c["text"] if isinstance(c, dict) else str(c)
                            for m in value for c in (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}])
                            if not isinstance(c, dict) or c.get("text"))
        except (KeyError, TypeError, AttributeError):
            return None
    return value


def image_bytes(value, root: Path, row_id: str) -> bytes:
    """Encoded image bytes of one image cell; b"" when there is no readable image (a counted skip later)."""
    if isinstance(value, dict):  # datasets.Image(decode=False): {"bytes": ..., "path": ...}
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if hasattr(value, "save"):  # a PIL image
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return buffer.getvalue()
    if isinstance(value, str) and value:
        file = _inside_root(value, root, row_id)
        try:
            return file.read_bytes() if file else b""
        except OSError:
            return b""
    return b""


def _inside_root(value: str, root: Path, row_id: str) -> Path | None:
    """The image file of a relative path; None for a path no file system accepts (a NUL byte: the row is
    a counted skip). A path that leaves the image root refuses the whole dataset: a dataset trying to read
    files it has no business reading is not one bad row."""
    try:
        file = (root / value).resolve()
    except (ValueError, OSError):
        return None
    if not file.is_relative_to(root.resolve()):
        raise PromptDataError(f"row {row_id}: image path {value!r} leaves the image root {root}")
    return file


def check_image_paths(path: str | Path, *, image_column: str = "image", id_column: str = "", image_root: str | Path = "",
                      split: str = "train", **_) -> None:
    """Refuses the dataset before any work when any row's image path leaves the image root (reads paths
    only, not images)."""
    from datasets import Image

    dataset = open_dataset(path, split)
    if image_column not in dataset.column_names:
        return  # load_prompt_rows names the missing column
    id_column = id_column or next((c for c in ID_COLUMNS if c in dataset.column_names), "")
    if isinstance(dataset.features[image_column], Image):
        dataset = dataset.cast_column(image_column, Image(decode=False))
    root = Path(image_root) if image_root else (Path(path) if Path(path).is_dir() else Path(path).parent)
    columns = [c for c in (image_column, id_column) if c]
    for index, record in enumerate(dataset.select_columns(columns)):
        value = record[image_column]
        if isinstance(value, dict):
            value = None if value.get("bytes") else value.get("path")
        if isinstance(value, str) and value:
            _inside_root(value, root, str(record[id_column]) if id_column else f"row-{index:06d}")


def distinct_order(dataset, key: tuple, root: Path) -> list[int]:
    """The indices of the dataset's distinct (image content, question) rows, first occurrence kept, shuffled
    with the seed that ends ``key``: the RLAIF-V dataset repeats prompts under different ids, and a file's
    order (one source dataset after another) is no order to train in."""
    if key not in _ORDERS:
        image_column, question_column, seed = key[2], key[3], key[-1]
        seen, order = set(), []
        for index, record in enumerate(dataset.select_columns([image_column, question_column])):
            image = hashlib.sha256(image_bytes(record[image_column], root, f"row-{index:06d}")).hexdigest()
            if (image, str(_text(record[question_column]))) not in seen:
                seen.add((image, str(_text(record[question_column]))))
                order.append(index)
        random.Random(seed).shuffle(order)
        _ORDERS[key] = order
    return _ORDERS[key]


def load_prompt_rows(path: str | Path, *, image_column: str = "image", question_column: str = "question",
                     reference_column: str = "", id_column: str = "", image_root: str | Path = "",
                     split: str = "train", start: int = 0, count: int = 0, keep=None,
                     seed: int | None = None) -> list[dict]:
    """Prompt rows from a user dataset: ``count`` rows from row ``start`` on, wrapping around (0: all); with
    ``keep``, only the rows whose id it accepts (their images are never read otherwise); with ``seed`` (a
    run's seed), the rows in :func:`distinct_order` instead of the file's order.

    ``reference_column`` / ``id_column`` default to ``chosen`` / ``id`` or ``idx`` when the dataset has
    them; ``image_root`` (default: the dataset's folder) is where relative image paths are looked up.
    """
    from datasets import Image

    dataset = open_dataset(path, split)
    columns = dataset.column_names
    for key, column in (("image_column", image_column), ("question_column", question_column),
                        ("reference_column", reference_column), ("id_column", id_column)):
        if column and column not in columns:
            raise PromptDataError(f"{path}: {key} {column!r} is not a column (columns: {', '.join(columns)})")
    if len(dataset) == 0:
        raise PromptDataError(f"{path}: the dataset has no rows")
    reference_column = reference_column or next((c for c in REFERENCE_COLUMNS if c in columns), "")
    id_column = id_column or next((c for c in ID_COLUMNS if c in columns), "")
    if isinstance(dataset.features[image_column], Image):
        dataset = dataset.cast_column(image_column, Image(decode=False))  # keep the encoded bytes as they are
    root = Path(image_root) if image_root else (Path(path) if Path(path).is_dir() else Path(path).parent)
    order = list(range(len(dataset))) if seed is None else distinct_order(
        dataset, (str(path), split, image_column, question_column, str(root), seed), root)
    indices = [order[(start + i) % len(order)] for i in range(count)] if count else order
    if keep is not None:
        ids = dataset[id_column] if id_column else None
        indices = [i for i in indices if keep(str(ids[i]) if id_column else f"row-{i:06d}")]
    rows = []
    for index, record in zip(indices, dataset.select(indices)):
        row_id = str(record[id_column]) if id_column else f"row-{index:06d}"
        rows.append({"id": row_id, "image_bytes": image_bytes(record[image_column], root, row_id),
                     "question": _text(record[question_column]),
                     "reference": (_text(record[reference_column]) or "") if reference_column else "",
                     "gt_objects": [], "layout": []})
    return rows
