"""A labeler plug-in as a user would write one (loaded as python:labeler_plugin:LengthLabeler in tests)."""


class LengthLabeler:
    def __init__(self, model: str):
        self.model = model

    def __call__(self, images, questions, metadata):
        # accepts claims about short object names, rejects the rest; NaN for an empty question
        return [float("nan") if not q else (0.9 if len(q) < 34 else 0.1) for q in questions]
