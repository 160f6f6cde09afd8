"""Draw docs/pipeline.png, the picture of the pipeline in the README: `python docs/pipeline.py`."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: no GUI backend, nothing global
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

# (x, y) centres on a 16 x 7 canvas; colours group the parts by where they live.
STAGE, MODEL, WORKFLOW, STORE = "#fde2b8", "#cfe3f7", "#d6f0d2", "#eeeeee"
BOXES = {
    "data": (1.6, 5.6, "CIFAR-100\nbicycle / motorcycle\n(staged to S3)", STORE),
    "train": (5.0, 5.6, "train\n(SageMaker training\ncontract, ResNet-9)", MODEL),
    "tar": (8.4, 5.6, "model.tar.gz", STORE),
    "endpoint": (11.8, 5.6, "endpoint\n(serve: /ping,\n/invocations)", MODEL),
    "capture": (14.8, 5.6, "data capture\n(JSON Lines in S3)", STORE),
    "s3": (1.6, 2.0, "image in S3\n{s3_bucket, s3_key}", STORE),
    "serialize": (5.0, 2.0, "SerializeImageData\n(Lambda)", WORKFLOW),
    "classify": (8.4, 2.0, "ClassifyImage\n(Lambda)", WORKFLOW),
    "filter": (11.8, 2.0, "FilterLowConfidence\n(Lambda)", WORKFLOW),
    "route": (14.8, 3.0, "routed:\nbicycle / motorcycle", WORKFLOW),
    "fail": (14.8, 1.0, "Fail:\nLowConfidenceError", "#f7d0d0"),
}
# (from box, its side, to box, its side, label)
ARROWS = [
    ("data", "right", "train", "left", ""),
    ("train", "right", "tar", "left", ""),
    ("tar", "right", "endpoint", "left", "deploy"),
    ("endpoint", "right", "capture", "left", ""),
    ("s3", "right", "serialize", "left", "StartExecution"),
    ("serialize", "right", "classify", "left", "image_data"),
    ("classify", "right", "filter", "left", "inferences"),
    ("classify", "top", "endpoint", "bottom", "InvokeEndpoint"),
    ("filter", "right", "route", "left", "max >= threshold"),
    ("filter", "right", "fail", "left", "below"),
]
BOX_W, BOX_H = 2.7, 1.3


def anchor(box: str, side: str) -> tuple[float, float]:
    x, y, *_ = BOXES[box]
    dx, dy = {"left": (-BOX_W / 2, 0), "right": (BOX_W / 2, 0), "top": (0, BOX_H / 2), "bottom": (0, -BOX_H / 2)}[side]
    return x + dx, y + dy


def draw(out: Path) -> Path:
    fig = Figure(figsize=(16, 7), dpi=100)
    ax = fig.subplots()
    ax.set_xlim(0, 16.4)
    ax.set_ylim(0, 7)
    ax.axis("off")
    ax.text(0.2, 6.7, "model: stage, train, deploy (SageMaker container contract)", fontsize=12, weight="bold")
    ax.text(0.2, 3.4, "workflow: Step Functions state machine", fontsize=12, weight="bold")
    for x, y, label, colour in BOXES.values():
        ax.add_patch(
            FancyBboxPatch(
                (x - BOX_W / 2, y - BOX_H / 2), BOX_W, BOX_H, boxstyle="round,pad=0.05", fc=colour, ec="#555555"
            )
        )
        ax.text(x, y, label, ha="center", va="center", fontsize=10)
    for start, start_side, end, end_side, label in ARROWS:
        p0, p1 = anchor(start, start_side), anchor(end, end_side)
        ax.add_patch(FancyArrowPatch(p0, p1, arrowstyle="-|>", mutation_scale=16, color="#333333"))
        if label:
            ax.text((p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2 + 0.15, label, ha="center", fontsize=9, color="#333333")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight", metadata={"Software": None})
    return out


if __name__ == "__main__":
    print(draw(Path(__file__).with_name("pipeline.png")))
