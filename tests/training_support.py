"""What the training tests share: the tiny network and run settings, and the train command."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--width", "8", "--growth", "8", "--depth", "2"]
SPP = (1, 4)


def bare(**kw):  # noqa: ANN201 - training.model imports torch; keep this module light
    """A kernel-head network with no optional branch unless asked for (today's defaults add them)."""
    from training.model import UNetConfig

    return UNetConfig(**({"demodulate": False, "picker_width": 0, "post_kernel": 0, "kernel_space": "log"} | kw))


def train_cli(data: Path, out: Path, *extra: str) -> int:
    """``python -m training train`` on the tiny dataset with a tiny network and one thread."""
    from training.__main__ import main

    args = ["train", "--data", str(data), "--out", str(out), *TINY, "--patch", "16", "--batch-size", "8"]
    return main([*args, "--patches-per-image", "4", "--threads", "1", "--quiet", *extra])
