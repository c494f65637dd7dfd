"""The training loop and the image strategies that run it (head, partial, finetune, scratch,
mlp): frozen means frozen, resume continues where it stopped, class weights, augmentation,
and real learning on easy colour classes. Tiny models (test_efficientnet, random weights)."""
import csv
import json

import numpy as np
import pytest
import torch

import transferkit as tk
from transferkit.backbones import create_backbone
from transferkit.errors import TransferkitError
from transferkit.loop import Checkpoint, balanced_class_weights, freeze, train_mode
from transferkit.modality.image_transforms import train_transform as build_transform

from conftest import TINY, write_class_folder

FAST = dict(TINY, image_size=32, workers=0)  # transfer strategies: tiny model, 32 px, no worker processes


@pytest.fixture(autouse=True)
def _no_html_reports(monkeypatch):
    """The run pages are issue5's and tested there; here they would only double the time."""
    import transferkit.pipeline

    monkeypatch.setattr(transferkit.pipeline, "write_reports", lambda run_dir, ds=None: None)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_class_folder(tmp_path_factory.mktemp("train") / "photos", per_class=16)


def _fresh_body():
    """The body a run with seed 0 starts from (the pipeline seeds torch before creating it)."""
    torch.manual_seed(0)
    body = create_backbone("test_efficientnet", pretrained=False).model
    body.reset_classifier(0)
    return {k: v.clone() for k, v in body.state_dict().items()}


def _body_of(run):
    return {k[len("backbone.") :]: v for k, v in run.model.state_dict().items() if k.startswith("backbone.")}


def _history(run_dir):
    with open(run_dir / "history.csv") as fh:
        return list(csv.DictReader(fh))


def test_frozen_body_keeps_weights_and_batchnorm_statistics(photos, tmp_path):
    run = tk.train(str(photos), strategy="head", out=str(tmp_path / "head"), epochs=2, augment="light", **FAST)
    before, after = _fresh_body(), _body_of(run)
    assert set(before) == set(after)
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats, "test_efficientnet has batch-norm layers"
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == [], f"frozen body changed: {changed[:5]}"
    m = run.metrics["model"]
    assert m["params_trainable"] == sum(p.numel() for p in run.model.head.parameters())
    assert m["trained_on"] == "augmented images"
    rows = _history(tmp_path / "head")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert set(rows[0]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"}


def test_train_mode_keeps_frozen_batchnorm_in_eval():
    body = create_backbone("test_efficientnet", pretrained=False).model
    model = torch.nn.Sequential(body, torch.nn.Linear(1000, 3))
    freeze(body)
    train_mode(model)
    bns = [m for m in body.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and not any(m.training for m in bns)
    assert model[1].training
    mean = bns[0].running_mean.clone()
    model(torch.randn(4, 3, 32, 32) * 5 + 3)
    assert torch.equal(bns[0].running_mean, mean)


def test_partial_trains_only_the_top_blocks(photos, tmp_path):
    run = tk.train(str(photos), strategy="partial", unfreeze=1, out=str(tmp_path / "partial"), epochs=2, lr=1e-2, body_lr_mult=1.0, augment="none", **FAST)
    before, after = _fresh_body(), _body_of(run)
    m = run.metrics["model"]
    top = m["unfrozen_modules"]
    assert m["unfrozen_blocks"] == 1 and m["blocks_total"] > 2 and "conv_head" in top
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(any(k.startswith(n + ".") for n in top) for k in changed), sorted(changed)[:5]
    assert not any(k.startswith(("conv_stem.", "blocks.0.", "blocks.1.")) for k in changed)
    assert not any(k.endswith(("running_mean", "running_var")) for k in changed)  # BN statistics kept (train_bn off)


def test_finetune_two_stages_then_whole_body(photos, tmp_path, monkeypatch):
    """Stage 1 (--head-epochs, through the frozen body) leaves the body's weights and batch-norm
    statistics as they were; stage 2 trains all of it, the stem too. The body is read at each
    epoch's end, before the best epoch's weights are restored."""
    from transferkit.loop import Callback, Loop

    snaps = {}

    class Snapshot(Callback):
        def on_epoch_end(self, loop, epoch, logs):
            snaps[epoch] = {k[len("backbone.") :]: v.detach().clone() for k, v in loop.net.state_dict().items() if k.startswith("backbone.")}

    original = Loop.fit

    def fit(self, *a, **k):
        self.callbacks.insert(0, Snapshot())
        return original(self, *a, **k)

    monkeypatch.setattr(Loop, "fit", fit)
    run = tk.train(str(photos), strategy="finetune", out=str(tmp_path / "ft"), epochs=3, head_epochs=1, lr=1e-2, body_lr_mult=1.0, patience=0, **FAST)
    m = run.metrics["model"]
    assert m["stage_epochs"] == [1, 2] and m["epochs_run"] == 3 and m["head_warmup_epochs"] == 1
    fresh = _fresh_body()
    assert all(torch.equal(fresh[k], snaps[1][k]) for k in fresh), "stage 1 changed the body (weights or BN statistics)"
    changed = {k.split(".")[0] for k in fresh if not torch.equal(fresh[k], snaps[3][k])}
    assert {"conv_stem", "blocks"} <= changed  # the stem learns in stage 2 too
    assert not any(k.endswith(("running_mean", "running_var")) and not torch.equal(fresh[k], snaps[3][k]) for k in fresh)  # BN statistics kept (no --train-bn)
    assert m["params_trainable"] == sum(p.numel() for p in run.model.parameters())
    assert [int(r["epoch"]) for r in _history(tmp_path / "ft")] == [1, 2, 3]


def test_head_epochs_0_trains_the_body_from_the_first_epoch(photos, tmp_path, monkeypatch):
    from transferkit.loop import Callback, Loop

    snaps = {}

    class Snapshot(Callback):
        def on_epoch_end(self, loop, epoch, logs):
            snaps[epoch] = {k: v.detach().clone() for k, v in loop.net.state_dict().items() if k.startswith("backbone.conv_stem")}

    original = Loop.fit
    monkeypatch.setattr(Loop, "fit", lambda self, *a, **k: (self.callbacks.insert(0, Snapshot()), original(self, *a, **k))[1])
    run = tk.train(str(photos), strategy="finetune", out=str(tmp_path / "ft0"), epochs=2, head_epochs=0, lr=1e-2, body_lr_mult=1.0, patience=0, **FAST)
    assert run.metrics["model"]["stage_epochs"] == [2]
    fresh = _fresh_body()
    assert any(not torch.equal(fresh[k[len("backbone.") :]], v) for k, v in snaps[1].items())


@pytest.mark.parametrize("strategy", ["scratch", "mlp"])
def test_baselines_learn_easy_colour_classes(photos, tmp_path, strategy):
    run = tk.train(str(photos), strategy=strategy, out=str(tmp_path / strategy), epochs=4, batch_size=16, workers=0)
    assert run.config.backbone == "none" and run.metrics["model"]["epochs_run"] >= 2
    assert run.metrics["test"]["accuracy"] >= 0.9
    assert run.metrics["model"]["head"] == ("scratch_cnn" if strategy == "scratch" else "pixel_mlp")
    # the saved model reloads and predicts what the run measured
    preds = run.predict([str(p) for p in sorted((photos / "red").iterdir())[:4]])
    assert [p["labels"][0] for p in preds] == ["red"] * 4


def test_resume_continues_at_the_next_epoch_exactly(photos, tmp_path, monkeypatch):
    opts = dict(strategy="scratch", epochs=4, patience=0, batch_size=16, workers=0)
    full = tk.train(str(photos), out=str(tmp_path / "full"), **opts)

    original = Checkpoint.on_epoch_end

    def crash_after_2(self, loop, epoch, logs):
        original(self, loop, epoch, logs)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "on_epoch_end", crash_after_2)
    with pytest.raises(KeyboardInterrupt):
        tk.train(str(photos), out=str(tmp_path / "cut"), **opts)
    monkeypatch.setattr(Checkpoint, "on_epoch_end", original)
    assert not (tmp_path / "cut").exists() and (tmp_path / ".cut.checkpoint" / "last.pt").is_file()

    with pytest.raises(TransferkitError, match="the interrupted run used"):
        tk.train(resume=str(tmp_path / "cut"), lr=0.5)
    resumed = tk.train(resume=str(tmp_path / "cut"))
    assert resumed.metrics["model"]["resumed_from_epoch"] == 2
    h_full, h_res = _history(tmp_path / "full"), _history(tmp_path / "cut")
    assert [int(r["epoch"]) for r in h_res] == [1, 2, 3, 4]
    for a, b in zip(h_full, h_res):  # the same run: per-epoch seeds, optimizer and schedule state restored
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-5)
        assert float(a["lr"]) == pytest.approx(float(b["lr"]))
    assert not (tmp_path / ".cut.checkpoint").exists()  # removed once the run folder is committed
    with pytest.raises(TransferkitError, match="no interrupted training"):
        tk.train(resume=str(tmp_path / "cut"))


def test_balanced_class_weights_favour_the_small_class(tmp_path):
    w = balanced_class_weights(np.array([0] * 30 + [1] * 10 + [2] * 20), 3)
    assert w == pytest.approx([60 / 90, 60 / 30, 60 / 60])
    d = write_class_folder(tmp_path / "photos", per_class=16)
    for f in sorted((d / "blue").iterdir())[:10]:
        f.unlink()
    run = tk.train(str(d), strategy="mlp", class_weight="balanced", out=str(tmp_path / "run"), epochs=2, batch_size=16, workers=0)
    cw = run.metrics["model"]["class_weights"]
    counts = run.metrics["data"]["class_counts"]["train"]
    assert cw == pytest.approx([sum(counts) / (3 * c) for c in counts])
    assert cw[run.classes.index("blue")] == max(cw) > 1.5 * min(cw)


def test_augmentation_presets():
    from PIL import Image

    dc = create_backbone("test_efficientnet", pretrained=False).with_input_size(64).data_config
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 100, 3), dtype=np.uint8))
    for preset in ("none", "light", "strong"):
        tf = build_transform(dc, preset)
        torch.manual_seed(0)
        a, b = tf(img), tf(img)
        assert a.shape == (3, 64, 64)
        assert torch.equal(a, b) == (preset == "none")  # augmentation is random, evaluation is not
    with pytest.raises(TransferkitError, match="--augment"):
        tk.TrainConfig(data="x", augment="heavy").validate()


def test_strong_augmentation_survives_every_op_at_its_largest_magnitude():
    """RandAugment draws a magnitude around 9 per op; each op must work at the top of the
    range it can draw (posterize once asked Pillow for 0 bits there and killed the epoch)."""
    from PIL import Image
    from timm.data.auto_augment import RandAugment

    dc = create_backbone("test_efficientnet", pretrained=False).with_input_size(64).data_config
    tf = build_transform(dc, "strong")
    ra = next(t for t in tf.transforms if isinstance(t, RandAugment))
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 100, 3), dtype=np.uint8))
    for op in ra.ops:
        top = op.magnitude_max or 10
        op.magnitude, op.magnitude_std, op.prob = top + 1, 0.0, 1.0  # clipped to the largest magnitude it can reach
        out = op(img)
        assert out.size == img.size and out.mode == "RGB", op.name


def test_blocks_come_from_the_model_structure():
    bb = create_backbone("test_efficientnet", pretrained=False)
    blocks = bb.blocks()
    names = {id(m): n for n, m in bb.model.named_modules()}
    assert names[id(blocks[0][0])].startswith("conv_stem") and len(blocks) >= 3
    mods = [names[id(m)] for g in blocks for m in g]
    assert len(mods) == len(set(mods))


def test_text_strategies_run_the_same_loop(tmp_path, monkeypatch):
    """Texts train through `transferkit.train.Loop` too (head on cached features, finetune)."""
    from textdata import make_texts, make_tiny_bert, write_csv

    from transferkit.loop import Loop

    calls = []
    original = Loop.fit

    def counting_fit(self, *a, **k):
        calls.append(type(self.model).__name__)
        return original(self, *a, **k)

    monkeypatch.setattr(Loop, "fit", counting_fit)
    data = write_csv(tmp_path / "texts.csv", make_texts(per_class=20))
    bert = make_tiny_bert(tmp_path / "bert")
    run = tk.train(str(data), strategy="finetune", backbone=str(bert), out=str(tmp_path / "ft"), epochs=2, batch_size=16, lr=3e-3)
    assert calls == ["DenseHead", "TextTransferModel"]  # head warm-up on features, then the encoder
    rows = _history(tmp_path / "ft")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    # three topics with disjoint words, a random-weight 2-layer BERT, 15 test texts (chance: 1/3)
    assert run.metrics["val"]["accuracy"] >= 0.8 and run.metrics["test"]["accuracy"] >= 0.6


def test_progress_bar_counts_every_training_item_of_each_epoch(capsys):
    """The in-epoch bar (ProgressLog) is fed by the loop's on_batch_end hook, one update per step."""
    from transferkit.loop import Group, Loop, ProgressLog, Schedule, adamw

    model = torch.nn.Linear(4, 2)
    X, y = torch.randn(50, 4), torch.randint(0, 2, (50,))
    seen = []

    class Count(ProgressLog):
        def on_batch_end(self, loop, n_items):
            seen.append((loop.epoch + 1, n_items))
            super().on_batch_end(loop, n_items)

    opt = adamw([Group("all", list(model.parameters()), 1e-2)], 0.0)
    loop = Loop(model, opt, Schedule(opt, [2 * 4], 1), torch.nn.CrossEntropyLoss(), epochs=2, callbacks=[Count("t: ", items_per_epoch=50)], channels_last=False)
    loop.fit(lambda epoch, gen: [(X[s : s + 16], y[s : s + 16]) for s in range(0, 50, 16)])
    assert [sum(n for e, n in seen if e == k) for k in (1, 2)] == [50, 50]
    err = capsys.readouterr().err
    assert "t: epoch 1/2" in err and "[transferkit] t: epoch 2/2: train loss" in err
