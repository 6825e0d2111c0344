"""Generating a dataset: the loop shared by the CLI and the add-on's operator.

:class:`DatasetJob` yields after every render, so the operator can update the UI
and honour Esc between renders, and the CLI can drive a progress bar.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from ...core.errors import DenoiseError
from ...core.imageio import read_image, write_image
from ...core.transfer import autoexposure
from ...dataset import files as df
from ...dataset import spec as ss
from .render import average_exrs, configure, render_exr
from .scene import BuiltScene, build_scene
from .user_scene import OpenScene, build_copy, inspect, open_blend


@dataclass
class Step:
    """One finished render (or a finished sample when ``sample_done``)."""

    index: int
    what: str  # "noisy_0004spp", "clean", "sample"
    seconds: float | None  # None: file already there from an earlier run
    sample_done: bool = False
    spp: int = 0  # samples per pixel of this render (progress weight: cost grows with it)


def png_exposure(clean_rgb: np.ndarray) -> float:
    """One exposure per sample for the 8-bit quick-look pair (same for noisy and clean)."""
    c = np.where(np.isfinite(clean_rgb) & (clean_rgb > 0), clean_rgb, 0).astype(np.float32)
    return float(np.clip(autoexposure(c), 1 / 64, 64))


class DatasetJob:
    """Renders the samples of ``settings``: random scenes, or the artist's ``settings.scenes``.

    ``open_files=False`` renders the scene open in this session instead of loading the file
    (the add-on's "This File"); the CLI loads each file and never saves it.
    """

    def __init__(
        self, settings: ss.GenerateSettings, quiet: bool = False, threads: int = 0, open_files: bool = True
    ) -> None:
        self.settings = settings
        self.quiet = quiet  # silence Cycles' per-sample log lines on stdout
        self.threads = threads  # Cycles threads (0: all cores); the pixels do not depend on it
        self.open_files = open_files
        self.root = Path(settings.out)
        self.all_indices = ss.shard_indices(settings.count, settings.shard)
        self.done_before = df.complete_indices(self.root) if self.root.is_dir() else set()
        n = max(1, len(settings.scenes))
        # Samples of one file together, so each file is loaded once.
        self.todo = sorted((i for i in self.all_indices if i not in self.done_before), key=lambda i: (i % n, i))
        self._open: tuple[int, OpenScene] | None = None
        self.warnings: list[str] = []
        self.renders_per_sample = len(settings.noisy_spp) + 1
        self._prepared = False

    # -- folder ---------------------------------------------------------------

    def prepare(self) -> None:
        """Check the artist's files, create the layout, and refuse to mix settings with an existing
        dataset. Every check that can fail runs before the folder is created."""
        if self._prepared:
            return
        for i in range(len(self.settings.scenes)):
            src = self._scene_file(i)
            if src.missing:
                msg = (
                    f"warning: {Path(src.file).name}: {len(src.missing)} missing file(s) will render pink: "
                    f"{'; '.join(src.missing)} (--strict makes this an error)"
                )
                self.warnings.append(msg)
                print(msg, file=sys.stderr)
        try:
            for sub in (df.EXR_DIR, df.NOISE_DIR, df.DENOISE_DIR, df.RECORDS_DIR):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DenoiseError(f"cannot create output folder {self.root}: {e.strerror or e}") from None
        identity = self.dataset_identity()
        cfg = self.root / df.DATASET_CONFIG
        if cfg.is_file():
            try:
                existing = json.loads(cfg.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise DenoiseError(f"{cfg} is unreadable ({e}); move it away or use another folder") from None
            diff = sorted(k for k in set(existing) | set(identity) if existing.get(k) != identity.get(k))
            if diff:
                show = ", ".join(f"{k}: folder has {existing.get(k)!r}, asked {identity.get(k)!r}" for k in diff)
                raise DenoiseError(f"{self.root} holds a dataset made with other settings ({show}); use another folder")
        else:
            df.write_json_atomic(cfg, identity)
        self._prepared = True

    def dataset_identity(self) -> dict[str, Any]:
        ident = self.settings.identity()
        ident["blender"] = bpy.app.version_string
        return ident

    # -- work -------------------------------------------------------------------

    def steps(self) -> Iterator[Step]:
        """Every render of every sample still to do. Closing the iterator stops cleanly."""
        self.prepare()
        for index in self.todo:
            yield from self.sample_steps(index)
        self.finish()

    def finish(self) -> None:
        # The compiled manifest only when the folder holds the whole dataset, so
        # shard folders (which lack it) still merge by plain copying.
        if set(range(self.settings.count)) <= df.complete_indices(self.root):
            df.write_manifest(self.root)

    def sample_steps(self, index: int) -> Iterator[Step]:
        st = self.settings
        root = self.root
        for p in df.partial_files(root, index):
            p.unlink(missing_ok=True)
        df.sample_dir(root, index).mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        spec, summary, built, render_settings = self._user_scene(index) if st.scenes else self._lit_scene(index)
        try:
            build_seconds = time.perf_counter() - t0
            noisy = []
            for spp in st.noisy_spp:
                path = df.noisy_exr(root, index, spp)
                seed = ss.render_seed(st.seed, index, spp)
                # A file under its real name is complete (written via a temporary name) and
                # deterministic, so a resumed sample reuses it.
                secs = None if path.is_file() else render_exr(built.scene, path, spp, seed, quiet=self.quiet)
                noisy.append({"spp": spp, "seed": seed, "seconds": secs, "exr": _rel(root, path)})
                yield Step(index, f"noisy_{df.spp_tag(spp)}", secs, spp=spp)
            path = df.clean_exr(root, index)
            seed = ss.render_seed(st.seed, index, st.clean_spp, clean=True)
            adaptive = (st.clean_adaptive_threshold, st.clean_adaptive_min_samples)
            clean: dict[str, Any] = {
                "spp": st.clean_spp,
                "seed": seed,
                "exr": _rel(root, path),
                "adaptive_threshold": st.clean_adaptive_threshold,
                "adaptive_min_samples": st.clean_adaptive_min_samples if st.clean_adaptive_threshold > 0 else 0,
            }
            if st.clean_chunks == 1:
                secs = (
                    None
                    if path.is_file()
                    else render_exr(built.scene, path, st.clean_spp, seed, *adaptive, quiet=self.quiet)
                )
            else:
                # Independent renders with their own seeds, averaged: each is kept as it finishes,
                # so a long reference resumes after the last finished chunk.
                per = st.clean_spp // st.clean_chunks
                clean["chunks"] = []
                for k in range(st.clean_chunks):
                    cpath = df.clean_chunk_exr(root, index, k)
                    cseed = ss.render_seed(st.seed, index, st.clean_spp, clean=True, chunk=k + 1)
                    done = path.is_file() or cpath.is_file()
                    csecs = None if done else render_exr(built.scene, cpath, per, cseed, *adaptive, quiet=self.quiet)
                    clean["chunks"].append({"spp": per, "seed": cseed, "seconds": csecs})
                    yield Step(index, f"clean_chunk_{k}", csecs, spp=per)
                if not path.is_file():
                    average_exrs([df.clean_chunk_exr(root, index, k) for k in range(st.clean_chunks)], path)
                for k in range(st.clean_chunks):
                    df.clean_chunk_exr(root, index, k).unlink(missing_ok=True)
                secs = sum(c["seconds"] or 0.0 for c in clean["chunks"])
            clean["seconds"] = secs
            yield Step(index, "clean", secs, spp=st.clean_spp if st.clean_chunks == 1 else 0)
        finally:
            built.remove()
        exposure = self._write_pngs(index)
        for n in noisy:
            n["png"] = _rel(root, df.noisy_png(root, index, n["spp"]))
            n["png_clean"] = _rel(root, df.clean_png(root, index, n["spp"]))
        record = {
            "sample": df.sample_name(index),
            "index": index,
            "seed": st.seed,
            "resolution": list(spec["crop"][2:]) if st.scenes else list(st.resolution),
            "noisy": noisy,
            "clean": clean,
            "png_exposure": exposure,
            "render_settings": render_settings,
            "build_seconds": round(build_seconds, 3),
            "blender": bpy.app.version_string,
            "spec_version": ss.SPEC_VERSION,
            "scene": summary,
            "spec": spec,
        }
        df.write_json_atomic(df.record_path(root, index), record)  # last: marks the sample complete
        yield Step(index, "sample", None, sample_done=True)

    def _scene_file(self, file_index: int) -> OpenScene:
        """The artist's file ``file_index``, loaded (once for consecutive samples) and checked."""
        if self._open is not None and self._open[0] == file_index:
            return self._open[1]
        path = self.settings.scenes[file_index]
        if self.open_files:
            open_blend(path)
        src = inspect(path, self.settings)
        self._open = (file_index, src)
        return src

    def _user_scene(self, index: int) -> tuple[dict[str, Any], dict[str, Any], BuiltScene, dict[str, Any]]:
        st = self.settings
        src = self._scene_file(index % len(st.scenes))
        draw = ss.user_scene_draw(
            st.seed, index, len(st.scenes), src.frames, src.frame_size, st.resolution, st.camera_jitter
        )
        built, render_settings = build_copy(src, st, draw)
        if self.threads:
            built.scene.render.threads_mode = "FIXED"
            built.scene.render.threads = self.threads
        spec = {"file": src.file, "scene": src.scene.name, "missing": src.missing} | draw
        summary = {
            "layout": "artist",
            "file": Path(src.file).name,
            "scene": src.scene.name,
            "frame": draw["frame"],
            "scene_engine": src.engine,
            "rendered_with": "CYCLES",
            "missing": len(src.missing),
        }
        return spec, summary, built, render_settings

    def _lit_scene(self, index: int) -> tuple[dict[str, Any], dict[str, Any], BuiltScene, dict[str, Any]]:
        """The first of the sample's scene draws whose 1 spp probe render is not black.

        The probe (same resolution, its own fixed seed) is deterministic, so a resumed run picks
        the same draw; it is deleted at once. After ``MAX_ATTEMPTS`` black draws the last is kept.
        """
        st = self.settings
        probe = df.sample_dir(self.root, index) / f".probe{df.PARTIAL}.exr"
        for attempt in range(ss.MAX_ATTEMPTS):
            spec = ss.scene_spec(st.seed, index, attempt, st.layouts)
            built = build_scene(spec)
            try:
                render_settings = configure(built.scene, st)
                if self.threads:
                    built.scene.render.threads_mode = "FIXED"
                    built.scene.render.threads = self.threads
                if attempt == ss.MAX_ATTEMPTS - 1:
                    return spec, ss.spec_summary(spec), built, render_settings
                render_exr(built.scene, probe, 1, ss.render_seed(st.seed, index, 0), quiet=self.quiet)
                lit = ss.is_lit(read_image(probe).color)
            except BaseException:
                built.remove()
                raise
            finally:
                probe.unlink(missing_ok=True)
            if lit:
                return spec, ss.spec_summary(spec), built, render_settings
            built.remove()
        raise AssertionError("unreachable")

    def _write_pngs(self, index: int) -> float:
        clean = read_image(df.clean_exr(self.root, index)).color
        exposure = png_exposure(clean)
        for spp in self.settings.noisy_spp:
            noisy = read_image(df.noisy_exr(self.root, index, spp)).color
            write_image(df.noisy_png(self.root, index, spp), noisy * exposure)
            write_image(df.clean_png(self.root, index, spp), clean * exposure)
        return exposure


def _rel(root: Path, path: Path) -> str:
    return Path(path).relative_to(root).as_posix()


def generate(settings: ss.GenerateSettings) -> int:
    """Run a whole job without UI; returns the number of samples made."""
    job = DatasetJob(settings)
    made = 0
    for step in job.steps():
        made += step.sample_done
    return made
