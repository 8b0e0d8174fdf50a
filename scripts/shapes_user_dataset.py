"""A tiny user dataset in RLAIF-V's released layout, made from ShapesWorld's prompt scenes, to try a preference
source on data that is not the world's own: English questions and reference answers in general English (not
the world's grammar), so BPO's general injector (feedback/inject.py) rewrites them, not the ShapesWorld one.

    python scripts/shapes_user_dataset.py OUT [--n 16] [--seed 0]
    python iterate.py --config configs/shapes-bpo.yaml data.source=dataset data.path=OUT

OUT is a ``datasets`` save_to_disk folder with RLAIF-V's columns ``ds_name, image, question, chosen,
rejected, idx``; Candor reads ``chosen`` as the reference answer (engine/prompt_data.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, whatever the environment has installed

from evaluation.shapes import ShapesWorld  # noqa: E402  (after the path line, so the script runs from anywhere)

QUESTIONS = ("Describe this picture in detail.", "What shapes can you see in this image, and where are they?",
             "Tell me what is in the image.")
NUMBER_WORDS = ("no", "one", "two", "three", "four")


def reference(scene) -> str:
    """The scene told in plain English: how many shapes, then each with its size, colour and corner."""
    objects = sorted(scene.objects, key=lambda o: o.cell)
    count = len(objects)
    parts = [f"The picture shows {NUMBER_WORDS[count]} {'shape' if count == 1 else 'shapes'} on a plain light "
             "background."]
    parts += [f"A {o.size} {o.color} {o.shape} sits in the {o.position} corner." for o in objects]
    return " ".join(parts)


def write_dataset(out: str | Path, n: int = 16, seed: int = 0) -> Path:
    """Writes ``n`` rows of ShapesWorld's prompt scenes (seed ``seed``) under ``out``; returns ``out``."""
    from datasets import Dataset, Features, Image, Value

    scenes = [ShapesWorld(seed).scene("prompts", i) for i in range(n)]
    features = Features({"ds_name": Value("string"), "image": Image(), "question": Value("string"),
                         "chosen": Value("string"), "rejected": Value("string"), "idx": Value("int64")})
    Dataset.from_dict({
        "ds_name": ["shapes-english"] * n, "image": [s.render() for s in scenes],
        "question": [QUESTIONS[i % len(QUESTIONS)] for i in range(n)], "chosen": [reference(s) for s in scenes],
        "rejected": ["The picture shows nothing but a plain background."] * n, "idx": list(range(n)),
    }, features=features).save_to_disk(str(out))
    return Path(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_dataset(args.out, args.n, args.seed))
