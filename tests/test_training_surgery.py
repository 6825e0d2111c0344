"""training/surgery.py (and around it): --init: fitting saved weights to a model, widening, growing
branches, configs of earlier versions.

The tiny dataset and run are made once per session (tests/conftest.py).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_thread")

from training_support import bare, train_cli  # noqa: E402

from blender_denoise_addon.core.errors import DenoiseError  # noqa: E402
from training.model import (  # noqa: E402
    UPSAMPLES,
    ModifiedUNet,
    UNetConfig,
)
from training.surgery import widened_state  # noqa: E402


@pytest.mark.parametrize("upsample", UPSAMPLES)
def test_widening_keeps_what_the_network_computes(upsample):
    kw = dict(inputs="color,albedo,normal", depth=2, kernel_size=3, kernel_scales=3, upsample=upsample)
    torch.manual_seed(0)
    small = ModifiedUNet(bare(width=4, growth=2, **kw)).eval()
    wide = ModifiedUNet(bare(width=6, growth=5, **kw)).eval()
    state = widened_state(wide, small.state_dict())
    wide.load_state_dict(state)
    x = torch.rand(2, 9, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(wide(x), small(x), atol=1e-5, rtol=0)
    # The new channels are live (random weights in, zero weights out), so training can use them.
    assert state["encoders.1.0.weight"][2:].abs().sum() > 0
    with pytest.raises(ValueError, match="wider than this network"):
        widened_state(small, wide.state_dict())


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
    assert train_cli(dataset, out, "--epochs", "1", "--max-steps", "1", "--lr", "1e-12", "--init", str(exported)) == 0
    tuned = load_checkpoint(out / "last.pt")
    assert tuned["config"]["init"] == str(exported)
    for k, v in tuned["model"].items():
        torch.testing.assert_close(v, trained[k], atol=1e-6, rtol=0)
    # --widen: a wider network starts out computing what the exported one does.
    wide_out = tmp_path / "wide"
    args = ("--epochs", "1", "--max-steps", "1", "--lr", "1e-12", "--init", str(exported), "--widen")
    assert train_cli(dataset, wide_out, *args, "--growth", "12") == 0
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


def test_demodulate_grows_a_model_that_matches_where_albedo_is_flat(tmp_path):
    """--widen --demodulate: the source's weights, a new picker at 0.5; flat albedo makes both paths agree."""
    kw = dict(inputs="color,albedo,normal", width=4, growth=2, depth=2, kernel_size=3, kernel_scales=3)
    torch.manual_seed(0)
    small = ModifiedUNet(bare(kernel_space="both", **kw)).eval()
    grown = ModifiedUNet(bare(kernel_space="both", demodulate=True, **kw)).eval()
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
    picked = ModifiedUNet(bare(kernel_space="both", demodulate=True, picker_width=4, **kw)).eval()
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
    kw = dict(inputs="color", width=4, growth=2, depth=2, kernel_size=3, kernel_scales=3)
    torch.manual_seed(0)
    plain = ModifiedUNet(bare(**kw)).eval()
    post = ModifiedUNet(bare(post_kernel=3, **kw)).eval()
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


def test_refine_branch_starts_as_the_model_it_grows_and_stays_bounded(tmp_path):
    """--refine-width on --init weights without it: same function at first, then corrections of at most the bound."""
    from training.model import REFINE_BOUND

    kw = dict(inputs="color,albedo,normal", width=4, growth=2, depth=2, kernel_size=3, kernel_scales=3)
    torch.manual_seed(0)
    plain = ModifiedUNet(bare(kernel_space="both", **kw)).eval()
    refined = ModifiedUNet(bare(kernel_space="both", refine_width=4, **kw)).eval()
    _grow_from_file(refined, plain, tmp_path)
    x = torch.rand(2, 9, 32, 32) * 0.5 + 0.25
    with torch.no_grad():
        torch.testing.assert_close(refined(x), plain(x), atol=0, rtol=0)
        refined.refine[2].bias.fill_(100.0)  # saturated: every pixel pushed up by the whole bound
        shift = refined(x) - plain(x)
    assert float(shift.max()) == pytest.approx(REFINE_BOUND, abs=1e-5) and float(shift.min()) > 0
    # Widened, the branch reads more features: its new input columns start at zero and it keeps its
    # weights (the saturated bias too), so the wide network computes what the refined one does.
    wide = ModifiedUNet(bare(**(kw | {"width": 6}), kernel_space="both", refine_width=4)).eval()
    wide.load_state_dict(widened_state(wide, refined.state_dict()))
    with torch.no_grad():
        torch.testing.assert_close(wide(x), refined(x), atol=1e-5, rtol=0)
    assert not wide.refine[0].weight[:, 4:6].detach().any()  # the new feature channels
    assert float(wide.refine[2].bias.min()) == 100.0


def test_refine_bound_change_on_init_keeps_the_corrections(tmp_path):
    """--refine-bound other than the source's: the branch is rescaled to add what it did, up to the new bound."""
    import copy

    from training.model import REFINE_BOUND

    kw = dict(inputs="color", width=4, growth=2, depth=2, kernel_size=3, kernel_scales=3, refine_width=4)
    torch.manual_seed(0)
    source = ModifiedUNet(bare(**kw)).eval()
    with torch.no_grad():  # a trained branch: small corrections that vary per pixel
        source.refine[2].weight.normal_(0.0, 0.01)
    unrefined = copy.deepcopy(source)
    with torch.no_grad():
        unrefined.refine[2].weight.zero_()
    raised = ModifiedUNet(bare(**kw, refine_bound=10 * REFINE_BOUND)).eval()
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
        bare(**kw, refine_bound=0.0)


def test_widening_keeps_a_post_kernel_that_still_fits():
    """--widen at the same widths (an --upsample conversion) copies the post kernel instead of failing."""
    kw = dict(inputs="color", width=4, growth=2, depth=2, kernel_size=3, kernel_scales=3)
    torch.manual_seed(0)
    source = ModifiedUNet(bare(post_kernel=3, refine_width=2, **kw))
    with torch.no_grad():
        source.post_head.weight.normal_()
    same = ModifiedUNet(bare(post_kernel=3, refine_width=2, **kw))
    state = widened_state(same, source.state_dict())
    for name, value in source.state_dict().items():
        torch.testing.assert_close(state[name], value, atol=0, rtol=0)


def test_widen_converts_a_transpose_model_to_nearest_upsampling(tmp_path):
    """--widen --upsample nearest from a transpose model: everything but the transposed convs is kept."""
    from training.surgery import fitted_weights

    kw = dict(inputs="color", width=4, growth=2, depth=2, kernel_size=3, kernel_scales=3)
    torch.manual_seed(0)
    old = ModifiedUNet(bare(upsample="transpose", **kw))
    path = tmp_path / "old.pt"
    torch.save({"model": old.state_dict(), "model_config": old.config.to_dict()}, path)
    new = ModifiedUNet(bare(upsample="nearest", **kw))
    state = fitted_weights(new, path, widen=True)
    assert not any(k.startswith("ups.") for k in state)
    for k, v in state.items():
        torch.testing.assert_close(v, old.state_dict()[k])
    with pytest.raises(DenoiseError, match="pass --upsample transpose"):
        fitted_weights(new, path)


def test_saved_configs_from_earlier_versions_load_or_name_the_removed_option():
    from training.config import TrainConfig

    old = {"data": "d", "out": "o", "width": 8, "growth": 8, "depth": 2, "head": "kernel", "residual": False}
    cfg = TrainConfig.from_dict(old | {"kernel_size": 3, "kernel_scales": 3})
    assert (cfg.model.width, cfg.model.kernel_space, cfg.model.post_kernel) == (8, "log", 0)  # the old defaults
    with pytest.raises(DenoiseError, match="head='direct'"):
        UNetConfig.from_dict({"head": "direct", "kernel_size": 3, "kernel_scales": 3})
