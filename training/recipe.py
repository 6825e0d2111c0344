"""``train --recipe NAME``: every stage of a shipped model's recipe (training/recipes/NAME.json).

A recipe names its datasets (each with the ``generate-dataset`` command that renders it) and its
stages; each stage is a set of training settings by field name (``config.config_from``), its
dataset, and whether it starts from the previous stage's best weights. A recipe may ``extend``
another: the other's stages run first. Stages run into
OUT/<stage>; a finished stage is skipped and an interrupted one resumed, so a recipe spans
sessions: run the same command again. ``start_at`` skips the stages before a named one, whose
weights then come from ``start_init`` (a model those stages made, such as a shipped ONNX file).
With ``render`` the datasets are rendered first (``generate-dataset`` resumes, so a finished one
is only checked), and the last stage is exported to OUT/<the recipe's model file>: the whole
model from one command.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from blender_denoise_addon.core.errors import DenoiseError

from .config import config_from, load_recipe


def dataset_args(data_root: Path, name: str, dataset: dict[str, Any]) -> list[str]:
    """The generator's command line for one dataset, after ``python``."""
    return ["-m", "blender_denoise_addon", "generate-dataset", "--out", str(data_root / name)] + shlex.split(
        dataset["generate"]
    )


def dataset_command(data_root: Path, name: str, dataset: dict[str, Any]) -> str:
    return shlex.join(["python", *dataset_args(data_root, name, dataset)])


def render_datasets(data_root: Path, datasets: dict[str, dict[str, Any]]) -> None:
    """Render (or finish) each dataset with the generator in this Python, which needs ``bpy``."""
    for name, dataset in datasets.items():
        print(f"recipe: dataset {name}: {dataset_command(data_root, name, dataset)}", file=sys.stderr, flush=True)
        if subprocess.run([sys.executable, *dataset_args(data_root, name, dataset)]).returncode != 0:
            raise DenoiseError(f"rendering dataset {name} failed; rerun to resume it")


def _finished(stage_out: Path, epochs: int) -> bool:
    from .checkpoint import load_checkpoint
    from .train import LAST

    last = stage_out / LAST
    return last.is_file() and load_checkpoint(last)["epoch"] + 1 >= epochs


def run_recipe(
    name: str,
    out: str | Path,
    data_root: str | Path,
    run: dict[str, Any] | None = None,
    start_at: str | None = None,
    start_init: str | None = None,
    render: bool = False,
) -> Path:
    """Run (or continue) every stage; returns the last stage's folder, whose best.pt is the model.
    ``run``: settings for every stage that do not change results (threads, workers, progress).
    ``render``: render the datasets first and export the model to OUT/<model file> at the end."""
    from .train import LAST, train

    recipe = load_recipe(name)
    out, data_root = Path(out), Path(data_root)
    names = [s["name"] for s in recipe["stages"]]
    if start_at is not None:
        if start_at not in names:
            raise DenoiseError(f"recipe {name} has no stage {start_at!r}; stages: {', '.join(names)}")
        first = recipe["stages"][names.index(start_at)]
        if first.get("init") == "previous" and not start_init:
            raise DenoiseError(f"--start-at {start_at} needs --init: the model the stages before it made")
        recipe = recipe | {"stages": recipe["stages"][names.index(start_at) :]}
    needed = {s["data"] for s in recipe["stages"]}
    if render:
        render_datasets(data_root, {n: d for n, d in recipe["datasets"].items() if n in needed})
    missing = [n for n in recipe["datasets"] if n in needed and not (data_root / n).is_dir()]
    if missing:
        commands = "\n".join(dataset_command(data_root, n, recipe["datasets"][n]) for n in missing)
        raise DenoiseError(
            f"recipe {name} needs datasets that are not in {data_root}; add --render, or render them first:\n"
            + commands
        )
    previous: Path | None = None
    for stage in recipe["stages"]:
        init = str(previous / "best.pt") if previous else start_init
        stage_out = out / stage["name"]
        settings = stage["settings"] | (run or {})
        settings |= {"data": str(data_root / stage["data"]), "out": str(stage_out)}
        if stage.get("init") == "previous":
            if init is None:
                raise DenoiseError(f"recipe {name}: stage {stage['name']} starts from a previous stage, but is first")
            settings["init"] = init
        cfg = config_from(settings)
        if _finished(stage_out, cfg.epochs):
            print(f"recipe {name}: stage {stage['name']} is done", file=sys.stderr)
        else:
            resume = {"resume": str(stage_out / LAST)} if (stage_out / LAST).is_file() else {}
            print(f"recipe {name}: stage {stage['name']}{' (resumed)' if resume else ''}", file=sys.stderr)
            train(replace(cfg, **resume))
        previous = stage_out
    assert previous is not None
    if render:
        from .export import export

        onnx = out / recipe["model"]
        export(previous / "best.pt", onnx, name=recipe["name"])
        print(f"recipe {name}: exported {onnx}", file=sys.stderr)
    return previous
