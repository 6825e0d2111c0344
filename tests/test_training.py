"""training/: data, model, one epoch, overfitting, resume, export parity, evaluate, CLI.

The tiny dataset is made once per session by the real generator (bpy, 32x32, few spp).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from blender_denoise_addon.core import load_model, read_image  # noqa: E402
from blender_denoise_addon.core import transfer as tf  # noqa: E402
from blender_denoise_addon.core.denoise import denoise, frame_exposure, sanitize_color  # noqa: E402
from blender_denoise_addon.core.errors import DenoiseError  # noqa: E402
from training.dataset import (  # noqa: E402
    FullImageDataset,
    Pair,
    PairCache,
    RandomCropDataset,
    albedo_texture,
    check_texture_kinds,
    dihedral,
    find_pairs,
    split_pairs,
    texture_pattern,
    to_network,
)
from training.model import (  # noqa: E402
    KERNEL_SPACES,
    UPSAMPLES,
    ModifiedUNet,
    UNetConfig,
    _kernel_upsample,
    count_parameters,
)
from training.surgery import widened_state  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--width", "8", "--growth", "8", "--depth", "2"]
SPP = (1, 4)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: tiny tensors gain nothing from two, and OpenMP spinning on a busy 2-core machine costs 10x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """Five 32x32 scenes at 1 and 4 spp, 16 spp references, from the real generator (~10 s)."""
    root = tmp_path_factory.mktemp("tiny_dataset")
    cmd = [sys.executable, "-m", "blender_denoise_addon", "generate-dataset", "--out", str(root)]
    cmd += ["--count", "5", "--resolution", "32", "32", "--noisy-spp", *map(str, SPP), "--clean-spp", "16"]
    cmd += ["--seed", "3"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=600)
    return root


def _train(data: Path, out: Path, *extra: str) -> int:
    from training.__main__ import main

    args = ["train", "--data", str(data), "--out", str(out), *TINY, "--patch", "16", "--batch-size", "8"]
    return main([*args, "--patches-per-image", "4", "--threads", "1", "--quiet", *extra])


@pytest.fixture(scope="session")
def run_dir(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert _train(dataset, out, "--epochs", "1") == 0
    return out


# --- data --------------------------------------------------------------------


def test_pairs_cover_every_sample_and_spp(dataset):
    pairs = find_pairs(dataset)
    assert pairs and all(p.kind == "exr" for p in pairs)
    scenes = {p.scene for p in pairs}
    assert len(pairs) == len(scenes) * len(SPP)
    assert {p.spp for p in pairs} == set(SPP)
    png = find_pairs(dataset, source="png")
    assert {(p.scene, p.spp) for p in png} == {(p.scene, p.spp) for p in pairs}
    assert find_pairs(dataset, spp=[4]) == [p for p in pairs if p.spp == 4]


def test_split_is_by_scene_deterministic_and_disjoint():
    pairs = [Pair(f"{i:06d}", s, Path("n"), Path("c"), "exr") for i in range(40) for s in (1, 4, 16)]
    a = split_pairs(pairs, 0.1, 0.2, seed=5)
    b = split_pairs(list(reversed(pairs)), 0.1, 0.2, seed=5)
    assert all({p.scene for p in a[k]} == {p.scene for p in b[k]} for k in a)
    scenes = {k: {p.scene for p in v} for k, v in a.items()}
    assert (len(scenes["train"]), len(scenes["val"]), len(scenes["test"])) == (28, 4, 8)
    assert not (scenes["train"] & scenes["val"]) and not (scenes["train"] & scenes["test"])
    assert not (scenes["val"] & scenes["test"])
    assert all(len(v) == 3 * len(scenes[k]) for k, v in a.items())  # every spp of a scene together
    other = split_pairs(pairs, 0.1, 0.2, seed=6)
    assert {p.scene for p in other["test"]} != scenes["test"]


def _heightfield_normals(h: np.ndarray) -> np.ndarray:
    """Camera-space normals (x right, y up) of a height field given in image rows/cols."""
    dx = np.gradient(h, axis=1)
    dy_up = -np.gradient(h, axis=0)  # rows go down, y goes up
    n = np.stack([-dx, -dy_up, np.ones_like(h)])
    return (n / np.linalg.norm(n, axis=0, keepdims=True)).astype(np.float32)


def test_dihedral_moves_every_pass_alike_and_turns_normals():
    rng = np.random.default_rng(1)
    h = np.cumsum(np.cumsum(rng.standard_normal((12, 10)), 0), 1) * 0.1
    color = rng.random((3, 12, 10)).astype(np.float32)
    item = {"color": color, "target": color.copy(), "albedo": color.copy(), "normal": _heightfield_normals(h)}
    seen = set()
    for k in range(8):
        out = dihedral(item, k)
        assert np.array_equal(out["color"], out["target"]) and np.array_equal(out["color"], out["albedo"])
        # Transform the surface itself, then take its normals: they must match the turned normals.
        moved_h = dihedral({"h": h[None]}, k)["h"][0]
        np.testing.assert_allclose(out["normal"], _heightfield_normals(moved_h), atol=1e-6)
        seen.add(out["color"].tobytes())
    assert len(seen) == 8


def test_crops_are_reproducible_and_carry_the_full_frame_exposure(dataset):
    pairs = find_pairs(dataset)[:2]
    cache = PairCache(pairs, "color,albedo,normal", "log")
    ds = RandomCropDataset(cache, patch=16, patches_per_image=3, seed=7)
    a, b = ds[4], ds[4]
    assert all(np.array_equal(a[k], b[k]) for k in ("color", "albedo", "normal", "target"))
    assert a["color"].shape == a["normal"].shape == (3, 16, 16)
    ds.set_epoch(1)
    assert not np.array_equal(ds[4]["color"], a["color"])
    full = sanitize_color(read_image(pairs[1].noisy).color)
    assert a["exposure"] == pytest.approx(frame_exposure(full, "log"))
    big = RandomCropDataset(cache, patch=48, patches_per_image=1, augment=False)  # larger than the frame: mirrored
    assert big[0]["color"].shape == (3, 48, 48)
    padded = FullImageDataset(cache, alignment=64)[0]
    assert padded["color"].shape[1:] == (64, 64) and (padded["height"], padded["width"]) == (32, 32)


def test_texture_pattern_is_anti_aliased_regions_up_to_one():
    for seed in range(12):
        t = texture_pattern(24, 40, np.random.default_rng(seed))
        assert t.shape == (3, 24, 40) and t.dtype == np.float32
        assert t.max() == pytest.approx(1.0) and t.min() > 0.0
        assert len(np.unique(t[1])) > 2  # at least two regions plus the blended pixels on their edges


def test_mortar_texture_draws_thin_grout_lines_and_is_opt_in():
    for seed in range(12):
        t = texture_pattern(48, 48, np.random.default_rng(seed), ("mortar",))
        assert t.shape == (3, 48, 48) and t.max() == pytest.approx(1.0) and t.min() > 0.0
        # Grout is a minority: lines at most a quarter of a cell wide leave large flat cell interiors
        # (at most two cell colours), whatever the rotation's anti-aliased edges.
        values, counts = np.unique(t[1], return_counts=True)
        assert len(values) > 2 and np.sort(counts)[-2:].sum() > 0.25 * t[1].size
    # The default kinds draw what they always did (earlier recipes keep their crops).
    np.testing.assert_array_equal(
        texture_pattern(16, 16, np.random.default_rng(5)),
        texture_pattern(16, 16, np.random.default_rng(5), ("checker", "stripes", "blobs")),
    )
    with pytest.raises(DenoiseError, match="texture-kinds"):
        check_texture_kinds(["checker", "bricks"])
    with pytest.raises(DenoiseError, match="texture-kinds"):
        check_texture_kinds([])


def test_hue_textures_keep_one_luminance_and_are_opt_in(dataset):
    """--texture-hue: regions of (nearly) one luminance whose channels move apart; 0 draws what it always did."""
    lum = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    for seed in range(12):
        t = texture_pattern(32, 32, np.random.default_rng(seed), ("checker",), hue=1.0)
        assert t.shape == (3, 32, 32) and t.max() == pytest.approx(1.0) and t.min() > 0.0
        y = np.einsum("c,chw->hw", lum, t)
        assert y.max() / y.min() < 1.6 + 1e-3  # anti-aliased edges mix colours of one luminance
        chroma = t / y  # each channel over the luminance
        assert float((chroma.max((1, 2)) / chroma.min((1, 2))).max()) > 1.5  # the hue changes
    for seed in range(4):  # the luminance palette still spans its range
        rng = np.random.default_rng(seed)
        np.testing.assert_array_equal(
            texture_pattern(16, 16, rng), texture_pattern(16, 16, np.random.default_rng(seed), hue=0.0)
        )
    cache = PairCache(find_pairs(dataset)[:2], "color", "log")
    plain = RandomCropDataset(cache, patch=16, patches_per_image=2, seed=7, texture=1.0)
    zero = RandomCropDataset(cache, patch=16, patches_per_image=2, seed=7, texture=1.0, texture_hue=0.0)
    hue = RandomCropDataset(cache, patch=16, patches_per_image=2, seed=7, texture=1.0, texture_hue=1.0)
    for i in range(len(plain)):
        np.testing.assert_array_equal(plain[i]["color"], zero[i]["color"])
    assert any(not np.array_equal(plain[i]["color"], hue[i]["color"]) for i in range(len(plain)))
    with pytest.raises(DenoiseError, match="--texture-hue"):
        RandomCropDataset(cache, texture=0.5, texture_hue=2.0)


def test_albedo_texture_keeps_color_over_albedo_and_spares_the_world():
    rng = np.random.default_rng(0)
    albedo = rng.uniform(0.1, 1.0, (3, 32, 32)).astype(np.float32)
    albedo[:, :, :8] = 0.0  # the world: Cycles' albedo is black there
    color = rng.uniform(0.05, 4.0, (3, 32, 32)).astype(np.float32)
    item = {"color": color, "albedo": albedo, "target": color * 0.9, "normal": albedo, "exposure": np.float32(1.5)}
    out = albedo_texture(item, np.random.default_rng(3), "log")
    lit = albedo > 0.02
    np.testing.assert_allclose(out["color"][lit] / out["albedo"][lit], color[lit] / albedo[lit], rtol=1e-5)
    np.testing.assert_allclose(out["target"], out["color"] * 0.9, rtol=1e-5)
    np.testing.assert_array_equal(out["color"][:, :, :8], color[:, :, :8])
    assert out["normal"] is albedo and not np.array_equal(out["albedo"], albedo)
    # The texture only darkens, so the exposure rises, by what the crop's own exposure says.
    ratio = tf.autoexposure(out["color"].transpose(1, 2, 0)) / tf.autoexposure(color.transpose(1, 2, 0))
    assert ratio > 1.0 and out["exposure"] == pytest.approx(1.5 * ratio)
    # A transfer without exposure keeps the crop's (the core's frame_exposure is 1 for it).
    assert albedo_texture(item, np.random.default_rng(3), "linear")["exposure"] == pytest.approx(1.5)


def test_textured_crops_are_the_same_crops_painted(dataset):
    cache = PairCache(find_pairs(dataset)[:2], "color,albedo,normal", "log")
    plain = RandomCropDataset(cache, patch=16, patches_per_image=3, seed=7)
    painted = RandomCropDataset(cache, patch=16, patches_per_image=3, seed=7, texture=1.0)
    for i in range(len(plain)):
        a, b = plain[i], painted[i]
        np.testing.assert_array_equal(a["normal"], b["normal"])  # same place, same flip: only paint differs
        lit = a["albedo"] > 0.02
        np.testing.assert_allclose(b["color"][lit] / b["albedo"][lit], a["color"][lit] / a["albedo"][lit], rtol=1e-4)
        assert not np.array_equal(a["color"], b["color"])
    with pytest.raises(DenoiseError, match="fraction"):
        RandomCropDataset(cache, texture=1.5)


def test_to_network_applies_the_core_transfer_with_each_exposure():
    color = torch.rand(2, 3, 4, 4) * 10
    batch = {"color": color, "target": color, "albedo": torch.rand(2, 3, 4, 4), "exposure": torch.tensor([0.5, 2.0])}
    x, y = to_network(batch, "log")
    assert x.shape == (2, 6, 4, 4)
    for i, e in enumerate((0.5, 2.0)):
        np.testing.assert_allclose(x[i, :3].numpy(), tf.forward(color[i].numpy(), "log", e), rtol=1e-5)
    assert torch.equal(x[:, 3:], batch["albedo"])


# --- model -------------------------------------------------------------------


# The kernel head with every optional branch: remodulation, the picker on the results, post kernel, refine.
_EVERY_BRANCH = UNetConfig(
    inputs="color,albedo",
    width=4,
    growth=2,
    depth=2,
    head="kernel",
    kernel_size=3,
    kernel_scales=3,
    kernel_space="both",
    demodulate=True,
    picker_width=2,
    picker_results=True,
    post_kernel=3,
    refine_width=3,
)


def _linearized(cfg: UNetConfig) -> torch.nn.Module:
    """The network with ReLUs removed, so every weight path carries gradient."""
    net = ModifiedUNet(cfg).double()

    def strip(m: torch.nn.Module) -> None:
        for name, child in m.named_children():
            if isinstance(child, torch.nn.ReLU):
                setattr(m, name, torch.nn.Identity())
            else:
                strip(child)

    strip(net)
    with torch.no_grad():  # branches that start at zero (picker, post kernel, refine) must carry gradient too
        for param in net.parameters():
            if not param.abs().sum():
                param.normal_(0.0, 0.1)
    return net


@pytest.mark.parametrize(
    "cfg",
    [
        UNetConfig(inputs="color", width=4, growth=2, depth=1),
        UNetConfig(inputs="color", width=4, growth=2, depth=2),
        UNetConfig(inputs="color", width=4, growth=2, depth=3),
        UNetConfig(inputs="color", width=4, growth=2, depth=3, upsample="transpose"),
        UNetConfig(inputs="color", width=4, growth=2, depth=2, head="kernel", kernel_scales=1),
        UNetConfig(inputs="color", width=4, growth=2, depth=2, head="kernel", kernel_scales=3, kernel_size=3),
        UNetConfig(inputs="color,albedo", width=4, growth=2, depth=2, head="kernel", kernel_scales=2, demodulate=True),
        UNetConfig(inputs="color", width=4, growth=2, depth=2, head="kernel", kernel_scales=3, kernel_space="linear"),
        UNetConfig(inputs="color", width=4, growth=2, depth=2, head="kernel", kernel_scales=2, kernel_space="both"),
        UNetConfig(
            inputs="color,albedo",
            width=4,
            growth=2,
            depth=2,
            head="kernel",
            kernel_scales=2,
            kernel_space="both",
            demodulate=True,
            picker_width=2,
        ),
        _EVERY_BRANCH,
        dataclasses.replace(_EVERY_BRANCH, up_kernel=True),
        UNetConfig(inputs="color", width=4, growth=2, depth=3, head="kernel", kernel_scales=4, up_kernel=True),
    ],
    ids=[
        "d1",
        "d2",
        "d3",
        "d3-transpose",
        "kernel-1scale",
        "kernel-3scales",
        "kernel-demodulate",
        "kernel-linear",
        "kernel-both",
        "kernel-both-demodulate",
        "kernel-refine-post-picker-results",
        "kernel-every-branch-up-kernel",
        "kernel-4scales-up-kernel",
    ],
)
def test_receptive_field_is_exact_for_every_phase(cfg):
    torch.manual_seed(0)
    net = _linearized(cfg)
    size, radius = 128, 0
    for phase in range(cfg.alignment):
        # Mid-range inputs keep the kernel head's final clamp from cutting gradients.
        x = (torch.rand(1, cfg.in_channels, size, size, dtype=torch.double) * 0.5 + 0.25).requires_grad_(True)
        c = 48 + phase
        net(x)[0, :, c, c].sum().backward()
        ys, xs = torch.nonzero(x.grad.abs().sum((0, 1)), as_tuple=True)
        radius = max(radius, c - int(ys.min()), int(ys.max()) - c, c - int(xs.min()), int(xs.max()) - c)
    assert cfg.receptive_field == 2 * radius + 1
    assert cfg.alignment == 2**cfg.depth


def test_default_model_is_base_sized_and_macs_match_the_layers():
    cfg = UNetConfig()
    net = ModifiedUNet(cfg)
    assert 0.5e6 < count_parameters(net) < 1.0e6  # OIDN 'base' is ~0.9 M
    assert (cfg.alignment, cfg.receptive_field) == (16, 215)
    for up in UPSAMPLES:
        _check_macs(UNetConfig(width=6, growth=4, depth=2, upsample=up))
    _check_macs(UNetConfig(width=6, growth=4, depth=2, head="kernel", kernel_size=3, kernel_scales=2))
    _check_macs(dataclasses.replace(_EVERY_BRANCH, width=6, growth=4, kernel_scales=2, picker_width=3, refine_width=5))
    _check_macs(dataclasses.replace(_EVERY_BRANCH, width=6, growth=4, kernel_scales=3, up_kernel=True))


def _check_macs(small: UNetConfig) -> None:
    macs = 0.0

    def hook(mod, inp, out):
        nonlocal macs
        if isinstance(mod, torch.nn.Conv2d):
            macs += out[0].numel() * mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, torch.nn.ConvTranspose2d):
            macs += inp[0][0].numel() * mod.out_channels * 4

    model = ModifiedUNet(small)
    for m in model.modules():
        m.register_forward_hook(hook)
    model(torch.rand(1, small.in_channels, 32, 32))
    conv_macs = small.macs_per_pixel()
    if small.head == "kernel":  # the per-pixel weighted sums are not convolutions
        k2 = small.kernel_size**2
        conv_macs -= sum(4.0**-s * k2 * small.planes for s in range(small.kernel_scales))
        conv_macs -= small.post_kernel**2 * 3
        if small.up_kernel:
            conv_macs -= sum(4.0**-s * 9 * small.planes for s in range(small.kernel_scales - 1))
    assert macs / (32 * 32) == pytest.approx(conv_macs)


@pytest.mark.parametrize("upsample", UPSAMPLES)
@pytest.mark.parametrize("head", ["direct", "kernel"])
def test_widening_keeps_what_the_network_computes(head, upsample):
    kw = dict(inputs="color,albedo,normal", depth=2, head=head, kernel_size=3, kernel_scales=3, upsample=upsample)
    torch.manual_seed(0)
    small = ModifiedUNet(UNetConfig(width=4, growth=2, **kw)).eval()
    wide = ModifiedUNet(UNetConfig(width=6, growth=5, **kw)).eval()
    state = widened_state(wide, small.state_dict())
    wide.load_state_dict(state)
    x = torch.rand(2, 9, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(wide(x), small(x), atol=1e-5, rtol=0)
    # The new channels are live (random weights in, zero weights out), so training can use them.
    assert state["encoders.1.0.weight"][2:].abs().sum() > 0
    with pytest.raises(ValueError, match="wider than this network"):
        widened_state(small, wide.state_dict())


# --- training ----------------------------------------------------------------


def test_one_epoch_writes_checkpoints_config_and_log(run_dir):
    for name in ("config.json", "split.json", "log.csv", "last.pt", "best.pt"):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["seed"] == 0 and config["epochs"] == 1 and config["width"] == 8
    lines = (run_dir / "log.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,step,lr,train_loss,train_mse,train_ssim,val_loss")
    assert len(lines) == 2
    state = torch.load(run_dir / "best.pt", weights_only=False)
    assert state["epoch"] == 0 and state["seed"] == 0 and np.isfinite(state["best_val"])
    split = json.loads((run_dir / "split.json").read_text())
    assert split["train"] and split["val"] and split["test"]


def test_resume_continues_from_last_checkpoint(dataset, run_dir, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    assert _train(dataset, run, "--epochs", "2", "--resume", "auto") == 0
    rows = (run / "log.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["1", "2"]
    assert torch.load(run / "last.pt", weights_only=False)["epoch"] == 1
    # A different model cannot resume this run.
    assert _train(dataset, run, "--epochs", "3", "--resume", "auto", "--width", "12") == 1


def test_overfits_a_fixed_batch(dataset):
    from training.losses import DenoiseLoss
    from training.train import init_output_bias, seed_everything

    seed_everything(0)
    cache = PairCache(find_pairs(dataset)[:4], "color,albedo,normal", "log")
    ds = RandomCropDataset(cache, patch=32, patches_per_image=1, augment=False)
    batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
    x, y = to_network(batch, "log")
    net = ModifiedUNet(UNetConfig(width=16, growth=8, depth=2))
    init_output_bias(net, "log")
    loss_fn = DenoiseLoss()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    first = loss_fn(net(x), y)[0].item()
    for _ in range(250):
        loss, _ = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 10, (first, loss.item())


def test_display_loss_is_the_display_mse_that_psnr_scores():
    from blender_denoise_addon.core import metrics
    from training.losses import DenoiseLoss, LossWeights

    rng = np.random.default_rng(3)
    # Linear HDR frames, some pixels far above 1 (the display clips them), each its own exposure.
    target = rng.gamma(0.8, 0.4, (2, 3, 16, 16)).astype(np.float32)
    pred = (target * rng.uniform(0.5, 1.5, target.shape)).astype(np.float32)
    exposure = torch.tensor([0.7, 3.0])
    ex = exposure.view(-1, 1, 1, 1)
    p = tf.forward(torch.from_numpy(pred), "log", ex, xp=torch).requires_grad_()
    t = tf.forward(torch.from_numpy(target), "log", ex, xp=torch)
    loss_fn = DenoiseLoss(LossWeights(mse=0, ssim=0, display=1), "log")
    total, terms = loss_fn(p, t, exposure)
    want = metrics.mse(metrics.to_display(pred.transpose(0, 2, 3, 1)), metrics.to_display(target.transpose(0, 2, 3, 1)))
    assert terms["display"] == pytest.approx(want, rel=1e-3)
    total.backward()
    # Only what the display shows has a gradient: nothing where both are clipped at white.
    clipped = torch.from_numpy((pred > 1) & (target > 1))
    assert clipped.any() and (~clipped).any()
    assert float(p.grad[clipped].abs().max()) == 0.0
    assert float(p.grad[~clipped].abs().max()) > 0.0
    with pytest.raises(ValueError, match="exposure"):
        loss_fn(p, t)
    # The psnr term: each frame's PSNR shortfall below 50 dB, averaged over frames.
    _, terms = DenoiseLoss(LossWeights(mse=0, ssim=0, psnr=1), "log")(p, t, exposure)
    shortfall = [
        50 - metrics.psnr(metrics.to_display(a.transpose(1, 2, 0)), metrics.to_display(b.transpose(1, 2, 0)))
        for a, b in zip(pred, target, strict=True)
    ]
    assert terms["psnr"] == pytest.approx(np.mean(shortfall), abs=0.05)


def test_picker_loss_pulls_each_block_toward_its_better_result():
    """Per 8x8 block: toward remod where it is right, toward plain where that is, no pull where they agree."""
    from training.losses import picker_loss

    torch.manual_seed(0)
    target = torch.rand(1, 3, 16, 16)
    plain, remod = target.clone(), target.clone()
    plain[..., :8, :8] += 0.1  # top left: only remod is right
    remod[..., :8, 8:] += 0.1  # top right: only plain is right
    plain[..., 8:, :8] += 0.1  # bottom left: both off by the same
    remod[..., 8:, :8] += 0.1
    plain[..., 8:, 8:] -= 0.1  # bottom right: the target halfway between them
    remod[..., 8:, 8:] += 0.1
    beta = torch.full((1, 1, 16, 16), 0.5, requires_grad=True)
    picker_loss(beta, plain, remod, target, 8).backward()
    assert beta.grad is not None
    g = beta.grad[0, 0, ::8, ::8]  # one pixel per block: the gradient is flat within a block
    assert g[0, 0] < 0 < g[0, 1]
    assert g[1, 0] == 0 and abs(float(g[1, 1])) < 1e-6 * abs(float(g[0, 0]))
    torch.testing.assert_close(beta.grad[0, 0, :8, :8], torch.full((8, 8), float(g[0, 0])))


def test_w_picker_and_albedo_texture_settings_reach_a_run_or_fail_first(dataset, tmp_path):
    extra = ["--head", "kernel", "--kernel-size", "3", "--kernel-scales", "3", "--epochs", "1"]
    demod = ["--kernel-space", "both", "--demodulate", "--picker-width", "4"]
    # Painted crops ride along: the flag reaches the run's config.
    assert _train(dataset, tmp_path / "a", *extra, *demod, "--w-picker", "0.1", "--albedo-texture", "0.5") == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["albedo_texture"] == 0.5
    row = (tmp_path / "a" / "log.csv").read_text().splitlines()
    picker = float(row[1].split(",")[row[0].split(",").index("train_picker")])
    assert np.isfinite(picker) and picker > 0
    assert "val_picker" not in row[0]  # validation scores the image only
    assert _train(dataset, tmp_path / "b", *extra, "--w-picker", "0.1") == 1
    assert _train(dataset, tmp_path / "c", *extra, *demod, "--w-picker", "0.1", "--picker-block", "5") == 1
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()  # nothing written
    assert _train(dataset, tmp_path / "d", *extra, "--albedo-texture", "2") == 1
    assert not (tmp_path / "d").exists()


def test_w_guides_teaches_a_color_model_the_clean_passes_and_export_leaves_the_head_out(dataset, run_dir, tmp_path):
    import shutil

    from training.__main__ import main
    from training.checkpoint import load_checkpoint

    extra = ["--inputs", "color", "--head", "kernel", "--kernel-size", "3", "--kernel-scales", "3", "--epochs", "2"]
    assert _train(dataset, tmp_path / "g", *extra, "--w-guides", "0.5", "--albedo-texture", "0.5", "--lr", "3e-3") == 0
    rows = (tmp_path / "g" / "log.csv").read_text().splitlines()
    col = rows[0].split(",").index("train_guides")
    first, second = (float(r.split(",")[col]) for r in rows[1:])
    assert "val_guides" not in rows[0]  # validation scores the image only
    assert second < first  # the head learns the passes: the term falls
    state = load_checkpoint(tmp_path / "g" / "best.pt")
    assert state["guide_head"]["conv.weight"].abs().sum() > 0
    # The exported network is the color model alone: same parameters as a run without the term.
    assert main(["export", "--checkpoint", str(tmp_path / "g" / "best.pt"), "-o", str(tmp_path / "g.onnx")]) == 0
    model = load_model(tmp_path / "g.onnx")
    assert model.info.inputs == ("color",)
    names = {i.name for i in model.session.get_inputs()}
    assert len(names) == 1
    assert not any(k.startswith("conv.") or "guide" in k for k in state["model"])
    # The clean passes come from the clean frame, and the guide albedo carries painted textures.
    cache = PairCache(find_pairs(dataset)[:1], "color", "log", guides=True)
    lo = cache[0]
    assert lo.albedo is None and lo.guide_albedo is not None and lo.guide_normal is not None
    assert lo.guide_albedo.shape == lo.guide_normal.shape == lo.color.shape
    clean = read_image(find_pairs(dataset)[0].clean)
    np.testing.assert_allclose(lo.guide_normal.transpose(1, 2, 0), np.clip(clean.normal[..., :3], -1, 1))
    painted = RandomCropDataset(cache, patch=16, patches_per_image=1, augment=False, texture=1.0)[0]
    plain = RandomCropDataset(cache, patch=16, patches_per_image=1, augment=False)[0]
    ratio_color = painted["color"] / np.maximum(plain["color"], 1e-6)
    ratio_albedo = painted["guide_albedo"] / np.maximum(plain["guide_albedo"], 1e-6)
    lit = (plain["color"] > 1e-3) & (plain["guide_albedo"] > 1e-3)
    np.testing.assert_allclose(ratio_albedo[lit], ratio_color[lit], rtol=1e-4)
    # A resumed run picks the head up again; a run trained without it cannot resume with it.
    assert _train(dataset, tmp_path / "g", *extra[:-1], "3", "--w-guides", "0.5", "--resume", "auto") == 0
    assert len((tmp_path / "g" / "log.csv").read_text().splitlines()) == 4
    shutil.copytree(run_dir, tmp_path / "plain")
    assert _train(dataset, tmp_path / "plain", "--epochs", "2", "--w-guides", "0.5", "--resume", "auto") == 1
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["w_guides"] == 0  # refused before writing


def test_every_loss_weight_flag_reaches_the_loss():
    from dataclasses import fields

    from training.losses import LossWeights
    from training.train import TrainConfig

    for i, f in enumerate(fields(LossWeights)):
        weights = TrainConfig(data="d", out="o", **{f"w_{f.name}": 0.25 + i}).loss_weights()  # type: ignore[arg-type]
        assert getattr(weights, f.name) == 0.25 + i, f.name


def test_validation_psnr_is_the_mean_display_psnr_that_evaluation_reports():
    from blender_denoise_addon.core import metrics
    from training.losses import DenoiseLoss, LossWeights
    from training.train import evaluate_loss

    rng = np.random.default_rng(4)
    target = rng.gamma(0.8, 0.4, (3, 3, 16, 16)).astype(np.float32)
    pred = (target * rng.uniform(0.5, 1.5, target.shape)).astype(np.float32)
    pred[2] = target[2]  # a frame equal to its target: inf PSNR, left out of the mean
    exposure = [0.7, 3.0, 1.0]
    batches = [
        {
            "color": torch.from_numpy(pred[i : i + 1]),
            "target": torch.from_numpy(target[i : i + 1]),
            "exposure": torch.tensor([exposure[i]]),
            "height": torch.tensor([16]),
            "width": torch.tensor([16]),
        }
        for i in range(3)
    ]

    class Identity(torch.nn.Module):  # the "denoiser" returns its input: the prediction is pred
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    # The loss weights do not change psnr_db: runs with other loss terms compare on it.
    for weights in (LossWeights(), LossWeights(mse=0, ssim=0, psnr=1)):
        val = evaluate_loss(Identity(), batches, DenoiseLoss(weights, "log"), "log")  # type: ignore[arg-type]
        want = np.mean(
            [
                metrics.psnr(metrics.to_display(p.transpose(1, 2, 0)), metrics.to_display(t.transpose(1, 2, 0)))
                for p, t in zip(pred[:2], target[:2], strict=True)
            ]
        )
        assert val["psnr_db"] == pytest.approx(want, abs=0.02)


# --- export and the core ----------------------------------------------------


@pytest.fixture(scope="session")
def exported(run_dir, tmp_path_factory) -> Path:
    from training.__main__ import main

    path = tmp_path_factory.mktemp("export") / "tiny.onnx"
    assert main(["export", "--checkpoint", str(run_dir / "best.pt"), "-o", str(path)]) == 0
    return path


def test_export_matches_torch_and_loads_in_the_core(exported, run_dir):
    import onnx

    from training.checkpoint import build_model, load_checkpoint
    from training.export import check_parity

    model = load_model(exported)
    cfg = UNetConfig(inputs="color,albedo,normal", width=8, growth=8, depth=2)
    assert model.info.inputs == ("color", "albedo", "normal")
    assert (model.info.transfer, model.info.alignment, model.info.receptive_field) == ("log", 4, cfg.receptive_field)
    assert exported.stat().st_size < 10 * 2**20
    net, _, _ = build_model(load_checkpoint(run_dir / "best.pt"))
    assert check_parity(net.eval(), exported, model.info, 1e-4) <= 1e-4
    dims = onnx.load(str(exported)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["N", "", "H", "W"]
    # Different weights must break parity: the check is not vacuous.
    with torch.no_grad():
        net.head.bias += 0.5
    with pytest.raises(Exception, match="differ"):
        check_parity(net, exported, model.info, 1e-4)


def test_init_fine_tunes_from_an_exported_model_or_a_checkpoint(exported, run_dir, dataset, tmp_path):
    from training.checkpoint import build_model, load_checkpoint
    from training.surgery import fitted_weights, load_initial_weights

    trained = load_checkpoint(run_dir / "best.pt")["model"]
    for source in (exported, run_dir / "best.pt"):
        net = ModifiedUNet(UNetConfig(width=8, growth=8, depth=2))
        load_initial_weights(net, source)
        for k, v in net.state_dict().items():
            torch.testing.assert_close(v, trained[k], msg=f"{source.name}: {k}")
    # Through the CLI: with a vanishing learning rate, one step leaves the weights where --init put them.
    out = tmp_path / "fine"
    assert _train(dataset, out, "--epochs", "1", "--max-steps", "1", "--lr", "1e-12", "--init", str(exported)) == 0
    tuned = load_checkpoint(out / "last.pt")
    assert tuned["config"]["init"] == str(exported)
    for k, v in tuned["model"].items():
        torch.testing.assert_close(v, trained[k], atol=1e-6, rtol=0)
    # --widen: a wider network starts out computing what the exported one does.
    wide_out = tmp_path / "wide"
    args = ("--epochs", "1", "--max-steps", "1", "--lr", "1e-12", "--init", str(exported), "--widen")
    assert _train(dataset, wide_out, *args, "--growth", "12") == 0
    wide, wide_cfg, _ = build_model(load_checkpoint(wide_out / "last.pt"))
    assert wide_cfg.channels == [8, 20, 32]
    net = ModifiedUNet(UNetConfig(width=8, growth=8, depth=2))
    load_initial_weights(net, exported)
    x = torch.rand(1, net.config.in_channels, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(wide.eval()(x), net.eval()(x), atol=1e-5, rtol=0)
    with pytest.raises(DenoiseError, match="--widen"):
        fitted_weights(ModifiedUNet(UNetConfig(width=4, growth=8, depth=2)), exported, widen=True)
    # The export records how the network was built: settings that keep the shapes but change the function
    # are named, as the flags to pass.
    with pytest.raises(DenoiseError, match="pass --upsample nearest"):
        load_initial_weights(ModifiedUNet(UNetConfig(width=8, growth=8, depth=2, upsample="transpose")), exported)
    # Another architecture, or a file that is not a model, is refused by name.
    with pytest.raises(DenoiseError, match="does not fit this model"):
        load_initial_weights(ModifiedUNet(UNetConfig(width=12, growth=8, depth=2)), exported)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(DenoiseError, match="cannot read"):
        load_initial_weights(ModifiedUNet(UNetConfig(width=8, growth=8, depth=2)), bad)


def test_exported_model_tiles_seamlessly_and_runs_in_denoise_image(exported, dataset, tmp_path):
    pair = find_pairs(dataset)[0]
    frame = read_image(pair.noisy)
    model = load_model(exported)
    # 3x3 copies of the frame: large enough for several sliding tiles with overlap >= RF - 1.
    big = [np.tile(a, (3, 3, 1)) for a in (frame.color, frame.albedo, frame.normal)]
    whole = denoise(model, *big, tiling="full")
    sliding = denoise(model, *big, tiling="sliding", tile=64)
    assert sliding.stats.tiles > 1 and sliding.stats.overlap >= model.info.receptive_field - 1
    np.testing.assert_allclose(sliding.image, whole.image, atol=1e-5)
    full = denoise(model, frame.color, frame.albedo, frame.normal, tiling="full").image
    out = tmp_path / "out.exr"
    cmd = [sys.executable, "-m", "blender_denoise_addon", "denoise-image", str(pair.noisy), "-o", str(out)]
    proc = subprocess.run([*cmd, "--model", str(exported), "--quiet"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = read_image(out).color
    assert result.shape == frame.color.shape and np.isfinite(result).all()
    np.testing.assert_allclose(result, full[..., :3], atol=1e-4)


@pytest.mark.parametrize(
    "variant",
    [
        ["--demodulate"],
        ["--kernel-space", "linear", "--upsample", "transpose"],
        ["--kernel-space", "both"],
        ["--kernel-space", "both", "--demodulate", "--picker-width", "4"],
        ["--kernel-space", "both", "--up-kernel"],
    ],
)
def test_kernel_head_trains_exports_and_tiles_seamlessly(dataset, tmp_path, variant):
    """The kernel head (demodulating, or averaging linear radiance): train, export (parity), sliding == full."""
    from training.__main__ import main
    from training.checkpoint import build_model, load_checkpoint
    from training.export import check_parity

    run = tmp_path / "run"
    extra = ["--head", "kernel", "--kernel-size", "3", "--kernel-scales", "3", *variant, "--epochs", "1"]
    assert _train(dataset, run, *extra) == 0
    path = tmp_path / "kernel.onnx"
    assert main(["export", "--checkpoint", str(run / "best.pt"), "-o", str(path)]) == 0
    model = load_model(path)
    net, cfg, _ = build_model(load_checkpoint(run / "best.pt"))
    assert (cfg.head, model.info.receptive_field) == ("kernel", cfg.receptive_field)
    space = variant[variant.index("--kernel-space") + 1] if "--kernel-space" in variant else "log"
    assert (cfg.demodulate, cfg.kernel_space) == ("--demodulate" in variant, space)
    assert check_parity(net.eval(), path, model.info, 1e-4) <= 1e-4
    frame = read_image(find_pairs(dataset)[0].noisy)
    big = [np.tile(a, (3, 3, 1)) for a in (frame.color, frame.albedo, frame.normal)]
    whole = denoise(model, *big, tiling="full")
    sliding = denoise(model, *big, tiling="sliding", tile=64)
    assert sliding.stats.tiles > 1
    np.testing.assert_allclose(sliding.image, whole.image, atol=1e-5)


def test_linear_kernel_space_keeps_the_mean_of_sparse_noise():
    """Uniform kernels on a 0 / bright checkerboard: linear averaging keeps its mean, log averaging does not."""
    from training.surgery import reset_blends

    v = 8.0  # linear radiance after exposure
    lin = torch.zeros(1, 3, 32, 32)
    lin[..., ::2, ::2] = lin[..., 1::2, 1::2] = v
    x = tf.forward(lin, "log", xp=torch)
    means = {}
    for space in KERNEL_SPACES:
        cfg = UNetConfig(inputs="color", width=4, growth=2, depth=2, head="kernel", kernel_size=3, kernel_scales=3)
        net = ModifiedUNet(dataclasses.replace(cfg, kernel_space=space)).eval()
        state = {k: torch.zeros_like(t) if k.startswith("kernel_heads") else t for k, t in net.state_dict().items()}
        net.load_state_dict(reset_blends(state, net.config))  # zero logits: uniform kernels, blends 0.5
        with torch.no_grad():
            means[space] = float(tf.inverse(net(x), "log", xp=torch)[..., 4:-4, 4:-4].mean())
    assert means["linear"] == pytest.approx(v / 2, rel=0.02)
    assert means["log"] < 0.5 * means["linear"]


def _uniform_kernels(net: ModifiedUNet, picker: float) -> None:
    """Zero kernel logits (box filters), coarse blends 0.5, and every picker logit at ``picker``."""
    k2 = net.config.kernel_size**2
    with torch.no_grad():
        for head in net.kernel_heads:
            head.weight.zero_()
            head.bias.zero_()
            head.bias[k2 + 1 :] = picker


def test_linear_demodulation_keeps_albedo_texture():
    """Noisy flat light on a checkerboard albedo: box kernels blur it; demodulated, the texture comes back."""
    cfg = UNetConfig(
        inputs="color,albedo",
        width=4,
        growth=2,
        depth=2,
        head="kernel",
        kernel_size=3,
        kernel_scales=3,
        kernel_space="linear",
        demodulate=True,
    )
    torch.manual_seed(0)
    albedo = torch.full((1, 3, 32, 32), 0.2)
    albedo[..., ::2, ::2] = albedo[..., 1::2, 1::2] = 0.8
    light = 1.0 + 0.3 * torch.randn(1, 1, 32, 32)  # noisy irradiance, mean 1
    x = torch.cat([tf.forward(albedo * light, "log", xp=torch), albedo], dim=1)
    truth = albedo  # clean radiance: albedo x irradiance 1
    errors = {}
    for name, picker in (("plain", -30.0), ("demodulated", 30.0)):
        net = ModifiedUNet(cfg).eval()
        _uniform_kernels(net, picker)
        with torch.no_grad():
            out = tf.inverse(net(x), "log", xp=torch)[..., 4:-4, 4:-4]
        errors[name] = float((out - truth[..., 4:-4, 4:-4]).abs().mean())
    assert errors["demodulated"] < 0.1 < errors["plain"]


def test_demodulate_grows_a_model_that_matches_where_albedo_is_flat(tmp_path):
    """--widen --demodulate: the source's weights, a new picker at 0.5; flat albedo makes both paths agree."""
    kw = dict(inputs="color,albedo,normal", width=4, growth=2, depth=2, head="kernel", kernel_size=3, kernel_scales=3)
    torch.manual_seed(0)
    small = ModifiedUNet(UNetConfig(kernel_space="both", **kw)).eval()
    grown = ModifiedUNet(UNetConfig(kernel_space="both", demodulate=True, **kw)).eval()
    state = widened_state(grown, small.state_dict())
    grown.load_state_dict(state)
    assert float(state["kernel_heads.0.weight"][-1].abs().sum() + state["kernel_heads.0.bias"][-1].abs()) == 0
    x = torch.rand(2, 9, 32, 32)
    x[:, 3:6] = torch.rand(2, 3, 1, 1)
    with torch.no_grad():  # float32 rounding of color / albedo * albedo: 1e-5 at worst
        torch.testing.assert_close(grown(x), small(x), atol=5e-5, rtol=0)
        x[:, 3:6] = torch.rand(2, 3, 32, 32)
        assert float((grown(x) - small(x)).abs().max()) > 1e-3
    # From a file (what --init reads): only --widen may add --demodulate.
    from training.surgery import fitted_weights

    path = tmp_path / "small.pt"
    torch.save({"model": small.state_dict(), "model_config": small.config.to_dict()}, path)
    for k, v in fitted_weights(grown, path, widen=True).items():
        torch.testing.assert_close(v, state[k])
    with pytest.raises(DenoiseError, match="pass no --demodulate"):
        fitted_weights(grown, path)
    # --picker-width adds a branch whose zero output layer leaves the function as it was; it learns from there.
    picked = ModifiedUNet(UNetConfig(kernel_space="both", demodulate=True, picker_width=4, **kw)).eval()
    picked.load_state_dict(widened_state(picked, grown.state_dict()))
    with torch.no_grad():
        torch.testing.assert_close(picked(x), grown(x), atol=1e-6, rtol=0)
        picked.picker[2].bias.fill_(-5.0)
        assert float((picked(x) - grown(x)).abs().max()) > 1e-3


def _grow_from_file(model: ModifiedUNet, source: ModifiedUNet, folder, widen: bool = False):  # noqa: ANN201
    """Load ``model`` the way ``train --init [--widen]`` does, from ``source`` saved as a checkpoint
    (returned, for more loads)."""
    from training.surgery import fitted_weights

    path = folder / "source.pt"
    torch.save({"model": source.state_dict(), "model_config": source.config.to_dict()}, path)
    model.load_state_dict(fitted_weights(model, path, widen=widen))
    return path


def test_post_kernel_starts_as_no_change_then_smooths_or_sharpens(tmp_path):
    """--post-kernel on --init weights without it: the same function; gain 1 box-filters, gain -1 sharpens."""
    kw = dict(inputs="color", width=4, growth=2, depth=2, head="kernel", kernel_size=3, kernel_scales=3)
    torch.manual_seed(0)
    plain = ModifiedUNet(UNetConfig(**kw)).eval()
    post = ModifiedUNet(UNetConfig(post_kernel=3, **kw)).eval()
    _grow_from_file(post, plain, tmp_path)
    x = torch.rand(1, 3, 32, 32) * 0.5 + 0.25
    with torch.no_grad():
        base = plain(x)
        torch.testing.assert_close(post(x), base, atol=0, rtol=0)
        post.post_head.bias[-1] = 5.0  # gain clamped to 1: the box-filtered result
        smoothed = post(x)
        post.post_head.bias[-1] = -1.0
        sharpened = post(x)
    box = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(base, (1, 1, 1, 1), mode="replicate"), 3, 1)
    torch.testing.assert_close(smoothed, box, atol=1e-6, rtol=0)
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    assert float(smoothed[inner].std()) < float(base[inner].std()) < float(sharpened[inner].std())


def test_kernel_upsampling_starts_bilinear_then_keeps_a_step_edge():
    """_kernel_upsample: zero logits give bilinear upsampling (exactly, with the unread neighbours'
    logits far enough down); logits that favour the coarse neighbour on a pixel's own side of a
    step keep the step sharp, which bilinear blurs over two pixels."""
    torch.manual_seed(0)
    coarse = torch.rand(2, 6, 8, 12)
    bilinear = torch.nn.functional.interpolate(coarse, scale_factor=2.0, mode="bilinear", align_corners=False)
    zero = torch.zeros(2, 9, 16, 24)
    torch.testing.assert_close(_kernel_upsample(coarse, zero, far=60.0), bilinear, atol=1e-6, rtol=0)
    assert float((_kernel_upsample(coarse, zero) - bilinear).abs().max()) < 1e-3  # the default start
    # A vertical step between coarse columns 3 and 4, i.e. fine columns 7 and 8.
    step = torch.zeros(1, 1, 8, 8)
    step[..., 4:] = 1.0
    logits = torch.zeros(1, 9, 16, 16)
    logits[:, 3, :, :8] = 40.0  # left half: the coarse pixel to the left (offset row 1, column 0)
    logits[:, 5, :, 8:] = 40.0  # right half: the one to the right
    sharp = _kernel_upsample(step, logits)
    blurred = torch.nn.functional.interpolate(step, scale_factor=2.0, mode="bilinear", align_corners=False)
    expected = torch.zeros(1, 1, 16, 16)
    expected[..., 8:] = 1.0
    torch.testing.assert_close(sharp, expected, atol=1e-6, rtol=0)
    assert float(blurred[0, 0, 0, 7]) == pytest.approx(0.25) and float(blurred[0, 0, 0, 8]) == pytest.approx(0.75)


def test_up_kernel_grows_a_model_nearly_keeping_what_it_computes(tmp_path):
    """--up-kernel on --init weights without it: the new heads start at zero, so the grown model
    computes its source's output up to the e^-8 weights of the neighbours bilinear does not read."""
    kw = dict(inputs="color", width=4, growth=2, depth=2, head="kernel", kernel_size=3, kernel_scales=3)
    torch.manual_seed(0)
    plain = ModifiedUNet(UNetConfig(**kw)).eval()
    grown = ModifiedUNet(UNetConfig(up_kernel=True, **kw)).eval()
    _grow_from_file(grown, plain, tmp_path)
    x = torch.rand(1, 3, 32, 32) * 0.5 + 0.25
    with torch.no_grad():
        base = plain(x)
        torch.testing.assert_close(grown(x), base, atol=1e-3, rtol=0)
        grown.up_heads[0].bias.normal_(0.0, 2.0)  # the heads act
        assert float((grown(x) - base).abs().max()) > 1e-3


def test_widening_keeps_upsampling_kernels_or_grows_them_beside_the_other_branches():
    """--widen with --up-kernel: the upsampling heads widen like the kernel heads (the same function);
    grown at the same time from a model without them, they start at zero and the refine branch and
    post kernel that read the widened features keep their weights."""
    kw = dict(inputs="color", depth=2, head="kernel", kernel_size=3, kernel_scales=3, post_kernel=3, refine_width=2)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32) * 0.5 + 0.25
    for source_up in (True, False):
        small = ModifiedUNet(UNetConfig(width=4, growth=2, up_kernel=source_up, **kw)).eval()
        for p in small.parameters():  # the late branches too, so that dropping one would show
            if not p.abs().sum():
                torch.nn.init.normal_(p, 0.0, 0.3)
        wide = ModifiedUNet(UNetConfig(width=6, growth=5, up_kernel=True, **kw)).eval()
        wide.load_state_dict(widened_state(wide, small.state_dict()))
        with torch.no_grad():
            if source_up:
                torch.testing.assert_close(wide(x), small(x), atol=1e-5, rtol=0)
            else:
                assert all(not p.abs().sum() for p in wide.up_heads.parameters())
                torch.testing.assert_close(wide.refine[2].weight, small.refine[2].weight)
                torch.testing.assert_close(wide.post_head.bias, small.post_head.bias)


def test_branch_lr_trains_the_late_branches_at_their_own_rate(dataset, tmp_path):
    """--init --up-kernel --branch-lr: with a vanishing --lr the source's network stays put while the
    branches after the kernel head (the new upsampling heads, the source's refine branch) move."""
    from training.checkpoint import load_checkpoint

    kw = dict(inputs="color,albedo,normal", width=8, growth=8, depth=2, head="kernel", kernel_size=3, kernel_scales=3)
    torch.manual_seed(0)
    source = ModifiedUNet(UNetConfig(refine_width=2, **kw))
    path = tmp_path / "source.pt"
    torch.save({"model": source.state_dict(), "model_config": source.config.to_dict()}, path)
    head = ("--head", "kernel", "--kernel-size", "3", "--kernel-scales", "3", "--refine-width", "2", "--up-kernel")
    args = ("--epochs", "1", "--max-steps", "3", "--lr", "1e-12", "--init", str(path), *head)
    for branch_lr, moved in ((1e-2, True), (None, False)):
        out = tmp_path / f"run-{branch_lr}"
        extra = ("--branch-lr", str(branch_lr)) if branch_lr else ()
        assert _train(dataset, out, *args, *extra) == 0
        tuned = load_checkpoint(out / "last.pt")["model"]
        for k, v in source.state_dict().items():
            if not k.startswith("refine."):
                torch.testing.assert_close(tuned[k], v, atol=1e-6, rtol=0, msg=k)
        up = [v for k, v in tuned.items() if k.startswith("up_heads.")]
        assert len(up) == 4 and (max(float(v.abs().max()) for v in up) > 1e-6) == moved
        refine = float((tuned["refine.2.weight"] - source.refine[2].weight).abs().max())
        assert (refine > 1e-6) == moved
    # Its optimizer has another parameter group: resuming the run without --branch-lr is refused by name.
    assert _train(dataset, tmp_path / "run-0.01", *args, "--epochs", "2", "--resume", "auto") == 1


def test_picker_results_grow_a_picker_that_then_reads_both_results(tmp_path):
    """--picker-results on --init weights without it: zero weights on the new inputs, the same function."""
    base = dataclasses.replace(
        _EVERY_BRANCH, inputs="color,albedo,normal", picker_width=3, picker_results=False, post_kernel=0, refine_width=0
    )
    torch.manual_seed(0)
    plain = ModifiedUNet(base).eval()
    with torch.no_grad():
        plain.picker[2].weight.normal_(0.0, 0.5)  # a trained picker, so the branch is live
    grown = ModifiedUNet(dataclasses.replace(base, picker_results=True)).eval()
    _grow_from_file(grown, plain, tmp_path)
    assert grown.picker[0].weight.shape[1] == 9 + 6 and not grown.picker[0].weight[:, 9:].detach().any()
    x = torch.rand(2, 9, 32, 32) * 0.5 + 0.25
    with torch.no_grad():
        torch.testing.assert_close(grown(x), plain(x), atol=1e-6, rtol=0)
        grown.picker[0].weight[:, 9:] = 1.0  # now it reads the results
        assert float((grown(x) - plain(x)).abs().max()) > 1e-4


def test_refine_branch_starts_as_the_model_it_grows_and_stays_bounded(tmp_path):
    """--refine-width on --init weights without it: same function at first, then corrections of at most the bound."""
    from training.model import REFINE_BOUND

    kw = dict(inputs="color,albedo,normal", width=4, growth=2, depth=2, head="kernel", kernel_size=3, kernel_scales=3)
    torch.manual_seed(0)
    plain = ModifiedUNet(UNetConfig(kernel_space="both", **kw)).eval()
    refined = ModifiedUNet(UNetConfig(kernel_space="both", refine_width=4, **kw)).eval()
    _grow_from_file(refined, plain, tmp_path)
    x = torch.rand(2, 9, 32, 32) * 0.5 + 0.25
    with torch.no_grad():
        torch.testing.assert_close(refined(x), plain(x), atol=0, rtol=0)
        refined.refine[2].bias.fill_(100.0)  # saturated: every pixel pushed up by the whole bound
        shift = refined(x) - plain(x)
    assert float(shift.max()) == pytest.approx(REFINE_BOUND, abs=1e-5) and float(shift.min()) > 0
    # Widened, the branch reads more features: its new input columns start at zero and it keeps its
    # weights (the saturated bias too), so the wide network computes what the refined one does.
    wide = ModifiedUNet(UNetConfig(**(kw | {"width": 6}), kernel_space="both", refine_width=4)).eval()
    wide.load_state_dict(widened_state(wide, refined.state_dict()))
    with torch.no_grad():
        torch.testing.assert_close(wide(x), refined(x), atol=1e-5, rtol=0)
    assert not wide.refine[0].weight[:, 4:6].detach().any()  # the new feature channels
    assert float(wide.refine[2].bias.min()) == 100.0


def test_refine_bound_change_on_init_keeps_the_corrections(tmp_path):
    """--refine-bound other than the source's: the branch is rescaled to add what it did, up to the new bound."""
    import copy

    from training.model import REFINE_BOUND

    kw = dict(inputs="color", width=4, growth=2, depth=2, head="kernel", kernel_size=3, kernel_scales=3, refine_width=4)
    torch.manual_seed(0)
    source = ModifiedUNet(UNetConfig(**kw)).eval()
    with torch.no_grad():  # a trained branch: small corrections that vary per pixel
        source.refine[2].weight.normal_(0.0, 0.01)
    unrefined = copy.deepcopy(source)
    with torch.no_grad():
        unrefined.refine[2].weight.zero_()
    raised = ModifiedUNet(UNetConfig(**kw, refine_bound=10 * REFINE_BOUND)).eval()
    _grow_from_file(raised, source, tmp_path)
    x = torch.rand(1, 3, 32, 32) * 0.5 + 0.25
    with torch.no_grad():
        base, plain = source(x), unrefined(x)
        changed = float((base - plain).abs().max())
        assert changed > 1e-4
        # Copied as they were, the corrections would be 10x larger; rescaled, they match to first order.
        assert float((raised(x) - base).abs().max()) < 0.01 * changed
        raised.refine[2].bias.fill_(100.0)  # saturated: pushed up by the whole new bound
        shift = raised(x) - plain
    assert float(shift[plain < 0.4].min()) == pytest.approx(10 * REFINE_BOUND, abs=1e-5)
    with pytest.raises(ValueError, match="refine_bound"):
        UNetConfig(**kw, refine_bound=0.0)


def test_widening_keeps_a_post_kernel_that_still_fits():
    """--widen at the same widths (an --upsample conversion) copies the post kernel instead of failing."""
    kw = dict(inputs="color", width=4, growth=2, depth=2, head="kernel", kernel_size=3, kernel_scales=3)
    torch.manual_seed(0)
    source = ModifiedUNet(UNetConfig(post_kernel=3, refine_width=2, **kw))
    with torch.no_grad():
        source.post_head.weight.normal_()
    same = ModifiedUNet(UNetConfig(post_kernel=3, refine_width=2, **kw))
    state = widened_state(same, source.state_dict())
    for name, value in source.state_dict().items():
        torch.testing.assert_close(state[name], value, atol=0, rtol=0)


def test_kernel_weights_average_neighbours():
    from training.model import apply_kernels

    torch.manual_seed(0)
    planes = torch.rand(2, 3, 9, 11)
    logits = torch.randn(2, 25, 9, 11) * 3
    out = apply_kernels(planes, torch.softmax(logits, dim=1), 5)
    # A convex combination of the 5x5 neighbourhood (edges replicated) stays within its range.
    padded = torch.nn.functional.pad(planes, (2, 2, 2, 2), mode="replicate")
    windows = padded.unfold(2, 5, 1).unfold(3, 5, 1)  # N x C x H x W x 5 x 5
    assert (out >= windows.amin((-2, -1)) - 1e-6).all() and (out <= windows.amax((-2, -1)) + 1e-6).all()
    # A one-hot kernel on offset (dy, dx) = (+1, -2) is a shift.
    onehot = torch.zeros(2, 25, 9, 11)
    onehot[:, 3 * 5 + 0] = 1
    shifted = apply_kernels(planes, onehot, 5)
    torch.testing.assert_close(shifted[:, :, 2:-1, 2:], planes[:, :, 3:, :-2])


def test_summarize_counts_samples_and_render_time(dataset, capsys):
    from training.__main__ import main
    from training.dataset import summarize

    whole = summarize(dataset)
    assert whole["samples"] == 5 and whole["noisy_spp"] == list(SPP) and whole["resolution"] == [32, 32]
    assert (
        whole["render_seconds"]["clean"] > 0 and sum(v for k, v in whole["scenes_with"].items() if "layout" in k) == 5
    )
    first = summarize(dataset, count=2)
    assert first["samples"] == 2 and first["indices"] == [0, 1]
    assert first["total_render_hours"] < whole["total_render_hours"]
    assert main(["summarize", "--data", str(dataset), "--count", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 2
    with pytest.raises(Exception, match="no complete samples"):
        summarize(dataset.parent / "nowhere")


# --- evaluation and CLI ------------------------------------------------------


def test_evaluate_writes_metrics_table_and_plots(run_dir, dataset, tmp_path):
    from training.__main__ import main

    out = tmp_path / "eval"
    args = ["evaluate", "--data", str(dataset), "--checkpoint", str(run_dir / "best.pt"), "--out", str(out)]
    assert main([*args, "--grids", "2", "--quiet"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    test_scenes = set(json.loads((run_dir / "split.json").read_text())["test"])
    assert {r["scene"] for r in result["per_image"]} == test_scenes
    for key in [*map(str, SPP), "all"]:
        assert set(result["metrics"][key]) == {"noisy", "ours", "oidn_high", "oidn_balanced"}
        for m in result["metrics"][key].values():
            assert all(np.isfinite(v) for v in m.values())
    # OIDN must clearly beat the noisy input; otherwise its inputs are wrong.
    allm = result["metrics"]["all"]
    assert allm["oidn_high"]["psnr"] > allm["noisy"]["psnr"] + 3
    assert allm["oidn_high"]["flip"] < allm["noisy"]["flip"]
    assert (out / "curves.png").stat().st_size > 1000
    grids = sorted(out.glob("grid_*.png"))
    assert len(grids) == 2 and all(g.stat().st_size > 1000 for g in grids)
    assert result["plots"]["comparison"] and (out / "comparison.png").stat().st_size > 1000
    table = (out / "table.md").read_text()
    assert "| 1 | noisy |" in table and "| all | oidn_high |" in table


def test_evaluate_means_leave_out_frames_equal_to_their_reference():
    from training.evaluate import aggregate, table_markdown

    def row(spp: int, psnr: float) -> dict:
        m = {
            "mse": 0.0 if psnr == np.inf else 10 ** (-psnr / 10),
            "psnr": psnr,
            "ssim": 1.0,
            "relmse": 0.0,
            "flip": 0.0,
        }
        return {"spp": spp} | {f"{k}_{n}": v for k in ("noisy", "ours") for n, v in m.items()}

    # An all-black render: noisy and denoised both equal the black reference.
    agg = aggregate([row(1, 20.0), row(1, 30.0), row(1, np.inf), row(4, np.inf)])
    assert agg["1"]["ours"]["psnr"] == pytest.approx(25.0)
    assert agg["1"]["ours"]["exact"] == 1 and agg["all"]["ours"]["exact"] == 2
    assert agg["4"]["ours"]["psnr"] == np.inf  # nothing to average
    assert "left out of the PSNR means): noisy 2, ours 2" in table_markdown(agg)


def test_evaluate_an_exported_model_on_png_pairs(exported, dataset, tmp_path):
    from training.__main__ import main

    out = tmp_path / "eval_png"
    args = ["evaluate", "--data", str(dataset), "--model", str(exported), "--out", str(out), "--source", "png"]
    # PNG pairs have no albedo/normal: the 9-channel model must refuse them with a clear error.
    assert main([*args, "--quiet", "--grids", "0", "--split", "all"]) == 1


def test_cli_help_explains_every_option():
    import argparse

    from training.__main__ import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"train", "evaluate", "export", "summarize"}
    for name, p in sub.choices.items():
        for action in p._actions:
            assert action.help and len(action.help) > 8, f"{name} {action.option_strings} has no help"
    cmd = [sys.executable, "-m", "training", "train", "--help"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "--patch" in proc.stdout and "(default: 64)" in proc.stdout


def test_residual_model_starts_at_its_input_and_exports(tmp_path):
    from training.export import export

    cfg = UNetConfig(inputs="color,albedo,normal", width=8, growth=4, depth=2, residual=True)
    net = ModifiedUNet(cfg).eval()
    x = torch.rand(2, 9, 16, 20) * 0.9 + 0.05
    with torch.no_grad():
        y = net(x)
        torch.testing.assert_close(y, x[:, :3], atol=1e-5, rtol=0)
        net.head.bias += 0.3  # trained weights move it away from the identity; export must keep that
    ckpt = tmp_path / "residual.pt"
    torch.save({"model_config": cfg.to_dict(), "model": net.state_dict(), "transfer": "log"}, ckpt)
    report = export(ckpt, tmp_path / "residual.onnx")
    assert report.max_abs_diff <= 1e-4
    m = load_model(tmp_path / "residual.onnx")
    color = np.random.default_rng(0).random((24, 40, 3), dtype=np.float32)
    aux = np.random.default_rng(1).random((24, 40, 3), dtype=np.float32)
    out = denoise(m, color, aux, aux * 2 - 1, tiling="full").image
    assert out.shape == (24, 40, 3) and np.isfinite(out).all()


def test_widen_converts_a_transpose_model_to_nearest_upsampling(tmp_path):
    """--widen --upsample nearest from a transpose model: everything but the transposed convs is kept."""
    from training.surgery import fitted_weights

    kw = dict(inputs="color", width=4, growth=2, depth=2, head="kernel", kernel_size=3, kernel_scales=3)
    torch.manual_seed(0)
    old = ModifiedUNet(UNetConfig(upsample="transpose", **kw))
    path = tmp_path / "old.pt"
    torch.save({"model": old.state_dict(), "model_config": old.config.to_dict()}, path)
    new = ModifiedUNet(UNetConfig(upsample="nearest", **kw))
    state = fitted_weights(new, path, widen=True)
    assert not any(k.startswith("ups.") for k in state)
    for k, v in state.items():
        torch.testing.assert_close(v, old.state_dict()[k])
    with pytest.raises(DenoiseError, match="pass --upsample transpose"):
        fitted_weights(new, path)


def test_widen_grows_the_post_kernel_nearly_keeping_what_the_network_computes(tmp_path):
    """--widen --post-kernel 5 from a 3x3 post kernel: the new outer offsets start small, not dead."""
    from training.surgery import GROWN_OFFSET_LOGIT, fitted_weights

    kw = dict(inputs="color", width=4, growth=2, depth=2, head="kernel", kernel_size=3, kernel_scales=3)
    torch.manual_seed(0)
    old = ModifiedUNet(UNetConfig(post_kernel=3, **kw)).eval()
    with torch.no_grad():  # a trained-looking post kernel: sharp logits and a real gain
        old.post_head.weight.normal_(0, 2)
        old.post_head.bias.normal_(0, 2)
    big = ModifiedUNet(UNetConfig(post_kernel=5, **kw)).eval()
    path = _grow_from_file(big, old, tmp_path, widen=True)
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        diff = float((big(x) - old(x)).abs().max())
    assert 0 < diff < 0.05  # close to the old output, and not identical: the new offsets have weight
    w, b = big.post_head.weight.detach(), big.post_head.bias.detach()
    # The corner copies the old corner's logit layer, lowered; the centre and the gain are the old ones.
    ow, ob = old.post_head.weight.detach(), old.post_head.bias.detach()
    torch.testing.assert_close(w[0], ow[0])
    assert float(b[0]) == pytest.approx(float(ob[0]) - GROWN_OFFSET_LOGIT)
    torch.testing.assert_close(b[12], ob[4])
    torch.testing.assert_close(b[25], ob[9])
    with pytest.raises(DenoiseError, match="does not fit"):
        fitted_weights(big, path)  # without --widen the shapes differ
    with pytest.raises(DenoiseError, match="cannot grow"):
        fitted_weights(ModifiedUNet(UNetConfig(post_kernel=1, **kw)), path, widen=True)


def test_widen_grows_the_scale_kernels_nearly_keeping_what_the_network_computes(tmp_path):
    """--widen --kernel-size 5 from 3x3 kernels: every scale's new outer offsets start small, not dead."""
    from training.surgery import GROWN_OFFSET_LOGIT, fitted_weights

    kw = dict(inputs="color", width=4, growth=2, depth=2, head="kernel", kernel_scales=3, post_kernel=3)
    torch.manual_seed(0)
    old = ModifiedUNet(UNetConfig(kernel_size=3, **kw)).eval()
    with torch.no_grad():  # trained-looking kernels: sharp logits
        for head in old.kernel_heads:
            head.bias.normal_(0, 2)
    big = ModifiedUNet(UNetConfig(kernel_size=5, **kw)).eval()
    path = _grow_from_file(big, old, tmp_path, widen=True)
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        diff = float((big(x) - old(x)).abs().max())
    assert 0 < diff < 0.05
    for s in range(3):
        ob, b = old.kernel_heads[s].bias.detach(), big.kernel_heads[s].bias.detach()
        assert b.shape[0] == 25 + old.config.blend_channels
        assert float(b[0]) == pytest.approx(float(ob[0]) - GROWN_OFFSET_LOGIT)  # corner from the old corner
        torch.testing.assert_close(b[12], ob[4])  # the centre is the old centre
        torch.testing.assert_close(b[25:], ob[9:])  # the blend logits are kept
    lower = fitted_weights(big, path, widen=True, grown_logit=1.5)["kernel_heads.0.bias"]
    assert float(lower[0]) == pytest.approx(float(old.kernel_heads[0].bias[0]) - 1.5)  # --grown-offset-logit
    with pytest.raises(DenoiseError, match="pass --kernel-size 3"):
        fitted_weights(big, path)
    with pytest.raises(DenoiseError, match="cannot grow"):
        fitted_weights(ModifiedUNet(UNetConfig(kernel_size=1, **kw)), path, widen=True)


def test_widen_grows_the_full_resolution_level_alone_keeping_the_late_branches(tmp_path):
    """--widen --first-width: only level 0 grows; the post kernel and refine branch keep their weights,
    so the grown network computes exactly what the old one did."""
    from training.surgery import fitted_weights

    kw = dict(inputs="color", width=4, growth=2, depth=2, head="kernel", kernel_size=3, kernel_scales=3)
    kw |= dict(post_kernel=3, refine_width=4)
    torch.manual_seed(0)
    old = ModifiedUNet(UNetConfig(**kw)).eval()
    with torch.no_grad():  # trained-looking late branches: zero-initialised ones would hide a restart
        for p in [*old.post_head.parameters(), *old.refine.parameters()]:
            p.normal_(0, 0.5)
    big = ModifiedUNet(UNetConfig(first_width=7, **kw)).eval()
    assert big.config.channels == [7, 6, 8]
    path = _grow_from_file(big, old, tmp_path, widen=True)
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(big(x), old(x))
    with pytest.raises(DenoiseError, match="does not fit"):
        fitted_weights(big, path)
