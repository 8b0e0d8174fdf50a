"""Exports ShapesWorld's held-out scenes in the released benchmark formats, so the ``chair-coco``, ``pope`` and
``amber`` suites can be checked against the exact world (they must give the native figures on the same answers):

    python scripts/export_benchmarks.py OUT [--n 64] [--seed 0] [--prior 0.6] [--pope-per-image 1]

OUT/coco/    images/SHAPES_eval_<id>.png, annotations/instances_shapesworld.json and captions_shapesworld.json
             (the 16 objects as categories; five truthful captions per image), synonyms.txt (CHAIR's format),
             prompts.jsonl (image_id, question: the held-out eval's instruction)
OUT/pope/    shapes_pope_{random,popular,adversarial}.json: the held-out eval's own POPE questions
OUT/amber/   data/annotations.json, relation.json (each object's synonyms), safe_words.txt, query/query_all.json,
             image/: the descriptions (truth = the scene, hallu = the prior's partners) and the random-setting
             POPE questions as existence questions
It prints the eval config sections that read the export.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, whatever the environment has installed

from evaluation.heldout import native_pope_questions  # noqa: E402  (after the path line)
from evaluation.shapes import IMAGE_SIZE, OBJECTS, ShapesWorld, describe, partner  # noqa: E402

CAPTIONS_PER_IMAGE = 5  # as COCO


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def _cell_box(cell: int) -> list[int]:
    half = IMAGE_SIZE // 2
    return [(cell % 2) * half, (cell // 2) * half, half, half]


def export(out: str | Path, n: int = 64, seed: int = 0, prior: float = 0.6, pope_per_image: int = 1) -> dict:
    """Writes the three formats under ``out``; returns the suite config sections that read them."""
    out, world = Path(out), ShapesWorld(seed, prior)
    scenes = [world.scene("eval", i) for i in range(n)]
    items = world.eval_set(n)
    file_names = [f"SHAPES_eval_{i + 1:012d}.png" for i in range(n)]
    for folder in (out / "coco/images", out / "amber/image"):
        folder.mkdir(parents=True, exist_ok=True)
        for item, name in zip(items, file_names):
            item["image"].save(folder / name)
    vocab = world.vocabulary()
    categories = [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(OBJECTS)]
    images = [{"id": i + 1, "file_name": name, "width": IMAGE_SIZE, "height": IMAGE_SIZE} for i, name in enumerate(file_names)]
    placed = [(i + 1, o) for i, scene in enumerate(scenes) for o in scene.objects]
    instances = [{"id": k, "image_id": image_id, "category_id": OBJECTS.index(o.name) + 1, "bbox": _cell_box(o.cell),
                  "area": (IMAGE_SIZE // 2) ** 2, "iscrowd": 0} for k, (image_id, o) in enumerate(placed, 1)]
    captions = [{"id": i * CAPTIONS_PER_IMAGE + c + 1, "image_id": i + 1,
                 "caption": describe(scene.objects, random.Random(f"{seed}-{i}-{c}"))}
                for i, scene in enumerate(scenes) for c in range(CAPTIONS_PER_IMAGE)]
    annotations = out / "coco/annotations"
    _write_json(annotations / "instances_shapesworld.json", {"images": images, "categories": categories,
                                                             "annotations": instances})
    _write_json(annotations / "captions_shapesworld.json", {"images": images, "annotations": captions})
    (out / "coco/synonyms.txt").write_text("".join(", ".join((name, *vocab.synonyms[name])) + "\n" for name in OBJECTS))
    (out / "coco/prompts.jsonl").write_text("".join(json.dumps({"image_id": i + 1, "question": item["question"]}) + "\n"
                                                    for i, item in enumerate(items)))

    gt = [item["gt_objects"] for item in items]
    pope = native_pope_questions(gt, vocab, world.text_statistics(), seed, pope_per_image)
    for kind, questions in pope.items():
        (out / "pope").mkdir(parents=True, exist_ok=True)
        (out / f"pope/shapes_pope_{kind}.json").write_text("".join(
            json.dumps({"question_id": k, "image": file_names[q["image_index"]], "text": q["question"],
                        "label": "yes" if q["label"] else "no"}) + "\n" for k, q in enumerate(questions, 1)))

    queries = [{"id": i + 1, "image": name, "query": item["question"]} for i, (item, name) in enumerate(zip(items, file_names))]
    entries = [{"id": i + 1, "type": "generative", "truth": names,
                "hallu": sorted({partner(o) for o in names} - set(names))} for i, names in enumerate(gt)]
    for q in pope["random"]:
        k = len(queries) + 1
        queries.append({"id": k, "image": file_names[q["image_index"]], "query": q["question"]})
        entries.append({"id": k, "type": "discriminative-hallucination", "truth": "yes" if q["label"] else "no"})
    amber = out / "amber/data"
    _write_json(amber / "annotations.json", entries)
    _write_json(amber / "relation.json", {name: list(vocab.synonyms[name]) for name in OBJECTS})
    (amber / "safe_words.txt").write_text("")
    _write_json(amber / "query/query_all.json", queries)
    return {"chair-coco": {"annotations": str(annotations), "split": "shapesworld", "images": str(out / "coco/images"),
                           "prompts": str(out / "coco/prompts.jsonl"), "synonyms": str(out / "coco/synonyms.txt")},
            "pope": {"questions": str(out / "pope"), "prefix": "shapes", "images": str(out / "coco/images"),
                     "answer_rule": "first-word"},
            "amber": {"folder": str(amber), "images": str(out / "amber/image")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--n", type=int, default=64, help="held-out scenes (eval.n of the run)")
    parser.add_argument("--seed", type=int, default=0, help="world and POPE seed (run.seed)")
    parser.add_argument("--prior", type=float, default=0.6)
    parser.add_argument("--pope-per-image", type=int, default=1)
    args = parser.parse_args()
    sections = export(args.out, args.n, args.seed, args.prior, args.pope_per_image)
    print(json.dumps(sections, indent=2))


if __name__ == "__main__":
    main()
