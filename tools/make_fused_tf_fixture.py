"""Write tests/fixtures/deepscene-fused/: the original SSMA and CMoDE fusion heads, run by TensorFlow.

Needs TensorFlow (a scratch venv outside the repo; fusionseg itself never imports it) and the released
DeepSceneSeg sources as git repositories:

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu numpy
    /tmp/tfvenv/bin/python tools/make_fused_tf_fixture.py --ssma-git SSMA/.git --cmode-git CMoDE/.git

What runs is the authors' own `SSMA._setup` (SSMA commit 7066905: the three SSMA blocks, the decoder
gates `conv550`/`conv551` and the fused decoder) and `CMoDE._setup` (CMoDE commit e4ac942: the class
gates, the mixture and the final conv), read with `git show` into a temporary folder and patched only
where TF2 or Python 3 lack something (print statements, `xrange`, `tf.contrib` initialisers and
regularisers, `tensorflow.compat.v1`). The experts are replaced by their outputs: the eASPP and skip
taps (SSMA) and the eASPP taps and logits (CMoDE) are fed as seeded random tensors, because two
complete AdapNet++ experts (51 M parameters) would not make a small fixture and their parity is proven
on ../shared/data/deepscene-tf-dev already.

To stay small the heads run narrow: every layer width the original hard-codes is mapped at call time
(`--width`: 512 -> 2F, 256 -> F, 32 -> 2F/16, i.e. eASPP width F instead of 256, decoder width F) and
CMoDE's hard-wired flatten `24*48*20` becomes `GRID_H*GRID_W*20` for a GRID_H x GRID_W stride-16 grid.
The skip widths (24, 48, 8), the gate widths (20, 128) and every connection, order and scope name are
the original's. Variables get seeded values (BN statistics non-trivial), the graph runs in inference
mode (`training=False`: moving statistics, dropout off) and `tf.train.Saver` writes the TF1 bundle.

Output per model (`ssma/`, `cmode/`): `model.ckpt-1.index`, `model.ckpt-1.data-00000-of-00001` and
`io.npz` (inputs and TensorFlow's float32 outputs, NHWC).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import types
import zlib
from pathlib import Path

import numpy as np

SSMA_COMMIT = "7066905"
CMODE_COMMIT = "e4ac942"
NUM_CLASSES = 5
BATCH = 2
EASPP_HW = (4, 6)  # stride-16 grid of a 64x96 input


def _patch(source: str) -> str:
    """Python 3 / TF2 compatibility only: nothing about the model changes."""
    source = source.replace("import tensorflow as tf", "import tensorflow.compat.v1 as tf")
    source = re.sub(r"^(\s*)print (.+)$", r"\1print(\2)", source, flags=re.M)
    source = source.replace("xrange(", "range(")
    source = source.replace("tf.contrib.layers.xavier_initializer()", "tf.glorot_uniform_initializer()")
    source = re.sub(r"tf\.contrib\.layers\.l2_regularizer\(scale=self\.weight_decay\)", "None", source)
    source = re.sub(r"out_channels/(\d)", r"out_channels//\1", source)  # Python 2 integer division
    source = source.replace("\t", "        ")
    return source.replace("24*48*20", "GRID_H*GRID_W*20")  # CMoDE's hard-wired 24x48 flatten


def _load_models(git_dir: Path, commit: str, where: Path) -> None:
    """Copy models/*.py of `commit` into `where`, patched, and make them importable."""
    names = subprocess.run(
        ["git", "--git-dir", str(git_dir), "ls-tree", "--name-only", commit, "models/"],
        check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    for name in names:
        if name.endswith(".py"):
            text = subprocess.run(
                ["git", "--git-dir", str(git_dir), "show", f"{commit}:{name}"],
                check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip
            (where / Path(name).name).write_text(_patch(text))
    sys.path.insert(0, str(where))


def _narrow(net, width_map: dict[int, int]) -> None:
    """Map the hard-coded output widths of the head's layer calls (the original's literals)."""
    for method, index in (("conv_bias", 3), ("conv_batchN_relu", 3), ("tconv2d", 2)):  # out_channels
        original = getattr(net, method)

        def call(*args, _original=original, _index=index, **kwargs):
            args = list(args)
            args[_index] = width_map.get(args[_index], args[_index])
            return _original(*args, **kwargs)

        setattr(net, method, call)


def _seed(name: str) -> int:
    return zlib.crc32(name.encode())


def _value(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Seeded values: He-scaled weights, biases around 0, BN with non-trivial statistics."""
    rng = np.random.default_rng(_seed(name))
    base = name.rsplit("/", 1)[-1]
    if base == "gamma":
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if base == "beta":
        return rng.normal(0.0, 0.3, shape).astype(np.float32)
    if base == "moving_mean":
        return rng.normal(0.0, 0.5, shape).astype(np.float32)
    if base == "moving_variance":
        return rng.uniform(0.5, 2.0, shape).astype(np.float32)
    if base == "biases":
        return rng.normal(0.0, 0.1, shape).astype(np.float32)
    fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    if "conv41" in name or "conv16" in name or "conv5/" in name:  # transposed conv: [k, k, out, in]
        fan_in = shape[0] * shape[1] * shape[3]
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def _run_and_save(
    tf, outputs: dict, feeds: dict, out_dir: Path, extra: dict[str, np.ndarray], overrides: dict | None = None
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    variables = tf.global_variables()
    overrides = overrides or {}
    with tf.Session() as sess:
        for var in variables:
            name = var.op.name
            value = overrides.get(name)
            var.load(_value(name, tuple(var.shape.as_list())) if value is None else value, sess)
        values = sess.run(outputs, feed_dict=feeds)
        tf.train.Saver(variables).save(
            sess, str(out_dir / "model.ckpt"), global_step=1, write_meta_graph=False
        )
    for leftover in out_dir.glob("checkpoint"):
        leftover.unlink()  # holds an absolute path; the tests give the prefix
    np.savez_compressed(out_dir / "io.npz", **extra, **{k: v.astype(np.float32) for k, v in values.items()})
    print(out_dir, {v.op.name: v.shape.as_list() for v in variables}.__len__(), "variables")


def make_ssma(tf, git_dir: Path, out_dir: Path, width: int, tmp: Path) -> None:
    """The SSMA head on seeded taps (two experts: eASPP F maps at /16, skip2 24 at /8, skip1 24 at /4)."""
    _load_models(git_dir, SSMA_COMMIT, tmp)
    ssma = __import__("SSMA")
    tf.reset_default_graph()
    net = ssma.SSMA(num_classes=NUM_CLASSES, training=False)
    _narrow(net, {512: 2 * width, 256: width, 32: 2 * width // 16})
    h, w = EASPP_HW
    rng = np.random.default_rng(16)
    shapes = {
        "easpp": (BATCH, h, w, width),
        "skip2": (BATCH, 2 * h, 2 * w, 24),
        "skip1": (BATCH, 4 * h, 4 * w, 24),
    }
    feeds, extra = {}, {}
    for m, stub_name in ((1, "model1"), (2, "model2")):
        taps = {}
        for tap, shape in shapes.items():
            value = rng.normal(0.0, 1.0, shape).astype(np.float32)
            taps[tap] = tf.placeholder(tf.float32, shape, name=f"m{m}_{tap}")
            feeds[taps[tap]] = value
            extra[f"m{m}_{tap}"] = value
        stub = types.SimpleNamespace(eAspp_out=taps["easpp"], skip2=taps["skip2"], skip1=taps["skip1"])
        setattr(net, stub_name, stub)
    net._setup()
    outputs = {
        "fused_easpp": net.in3,  # conv515 (+BN): stride 16
        "fused_skip2": net.skip1_out,  # conv552: stride 8 (the original calls it skip1)
        "fused_skip1": net.skip2_out,  # conv553: stride 4
        "gated_skip2": net.side_out1,  # conv550 gate x stride-8 skip
        "gated_skip1": net.side_out2,
        "logits": net.deconv_up3,  # conv5 (+BN), pre-softmax
    }
    _run_and_save(tf, outputs, feeds, out_dir, extra)


def make_cmode(tf, git_dir: Path, out_dir: Path, width: int, tmp: Path) -> None:
    """The CMoDE head on seeded eASPP taps (F maps at /16) and expert logits (C classes at full size)."""
    _load_models(git_dir, CMODE_COMMIT, tmp)
    cmode = __import__("CMoDE")
    h, w = EASPP_HW
    cmode.GRID_H, cmode.GRID_W = h, w
    tf.reset_default_graph()
    net = cmode.CMoDE(num_classes=NUM_CLASSES, training=False)
    rng = np.random.default_rng(17)
    feeds, extra = {}, {}
    for m, stub_name in ((1, "model1"), (2, "model2")):
        easpp = rng.normal(0.0, 1.0, (BATCH, h, w, width)).astype(np.float32)
        logits = rng.normal(0.0, 3.0, (BATCH, 16 * h, 16 * w, NUM_CLASSES)).astype(np.float32)
        ph_e = tf.placeholder(tf.float32, easpp.shape, name=f"m{m}_easpp")
        ph_l = tf.placeholder(tf.float32, logits.shape, name=f"m{m}_logits")
        feeds.update({ph_e: easpp, ph_l: logits})
        extra.update({f"m{m}_easpp": easpp, f"m{m}_logits": logits})
        setattr(net, stub_name, types.SimpleNamespace(eAspp_out=ph_e, deconv_up3=ph_l))
    net._setup()
    graph = tf.get_default_graph()
    # per-class softmax (o, p) of every gate, stacked: (B, C, 2)
    softmaxes = [op.outputs[0] for op in graph.get_operations() if op.type == "Softmax"][:NUM_CLASSES]
    outputs = {"gate_softmax": tf.stack(softmaxes, axis=1), "mixed": net.in2, "logits": net.in5}
    _run_and_save(tf, outputs, feeds, out_dir, extra)


def _build_full(tf, graph, module: str, training: bool, placeholders: list):
    """The released model with both experts, scoped as its `build_graph` scopes them (rgb, depth).

    `build_graph` itself would add the training loss, which needs labels; this is its body without it.
    """
    net = getattr(graph, module)(num_classes=12, training=training, expert_not_fixed=training)
    scope = "resnet_v2_50" if module == "SSMA" else "resnet_v1_50"
    for part in (net, net.model1, net.model2):
        part.bn_decay_ = 0.0  # training mode: one step sets the moving statistics to the batch's
    with tf.variable_scope(f"rgb/{scope}"):
        net.model1._setup(placeholders[0])  # an expert's build_graph minus its training loss
    with tf.variable_scope(f"depth/{scope}"):
        net.model2._setup(placeholders[1])
    net._setup()
    return net


def _calibrated_statistics(tf, graph, module: str, images: list[np.ndarray]) -> dict[str, np.ndarray]:
    """BN moving statistics near the seeded network's own batch statistics (so that activations stay of
    order 1 through 2 x 50 layers), perturbed so they are not exactly the batch's."""
    tf.reset_default_graph()
    placeholders = [tf.placeholder(tf.float32, (1, 384, 768, 3)) for _ in range(2)]
    _build_full(tf, graph, module, True, placeholders)
    variables = tf.global_variables()
    stats = [v for v in variables if v.op.name.endswith(("moving_mean", "moving_variance"))]
    names = {v.op.name for v in stats}
    initializers = {v.initializer.name for v in variables}
    assigns = [  # the training-mode updates of the moving statistics (decay 0: the batch's own)
        op
        for op in tf.get_default_graph().get_operations()
        if op.type in ("Assign", "AssignVariableOp")
        and op.name not in initializers
        and op.inputs[0].op.name in names
    ]
    with tf.Session() as sess:
        for var in variables:
            var.load(_value(var.op.name, tuple(var.shape.as_list())), sess)
        sess.run(assigns, dict(zip(placeholders, images)))
        values = dict(zip([v.op.name for v in stats], sess.run(stats)))
    print(f"{module}: {len(assigns)} BN updates for {len(stats)} moving statistics")
    out = {}
    for name, value in values.items():
        rng = np.random.default_rng(_seed(name))
        if name.endswith("moving_variance"):
            out[name] = (np.maximum(value, 0.05) * rng.uniform(0.7, 1.4, value.shape)).astype(np.float32)
        else:
            var = values[name.replace("moving_mean", "moving_variance")]
            noise = 0.2 * np.sqrt(np.maximum(var, 0.05)) * rng.standard_normal(value.shape)
            out[name] = (value + noise).astype(np.float32)
    return out


def make_full(tf, model: str, git_dir: Path, out_dir: Path, tmp: Path) -> None:
    """The complete released graph (both experts, full widths, 12 classes) at the zoo's 384x768 on two
    seeded 8-bit images: a 225 MB (SSMA) or 388 MB (CMoDE) bundle, too large to commit; for
    `FUSIONSEG_FUSED_TF_FULL` runs of tests/tfimport/test_fused_parity.py. BN moving statistics are
    calibrated on the images (`_calibrated_statistics`), the rest seeded as in the small fixture."""
    commit, module = (SSMA_COMMIT, "SSMA") if model == "ssma" else (CMODE_COMMIT, "CMoDE")
    _load_models(git_dir, commit, tmp)
    graph = __import__(module)
    graph.GRID_H, graph.GRID_W = 24, 48
    rng = np.random.default_rng(384)
    images = [rng.integers(0, 256, (1, 384, 768, 3)).astype(np.float32) for _ in range(2)]
    statistics = _calibrated_statistics(tf, graph, module, images)
    tf.reset_default_graph()
    placeholders = [tf.placeholder(tf.float32, (1, 384, 768, 3), name=f"modality{i + 1}") for i in range(2)]
    net = _build_full(tf, graph, module, False, placeholders)
    logits = net.deconv_up3 if model == "ssma" else net.in5
    outputs = {"logits": logits, "easpp1": net.model1.eAspp_out, "easpp2": net.model2.eAspp_out}
    extra = {"modality1_bgr": images[0].astype(np.uint8), "modality2_bgr": images[1].astype(np.uint8)}
    _run_and_save(tf, outputs, dict(zip(placeholders, images)), out_dir / model, extra, statistics)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ssma-git", type=Path, required=True, help="git dir of DeepSceneSeg/SSMA")
    parser.add_argument("--cmode-git", type=Path, required=True, help="git dir of DeepSceneSeg/CMoDE")
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/deepscene-fused"))
    parser.add_argument("--width", type=int, default=32, help="F: eASPP and decoder width (256 originally)")
    parser.add_argument("--full", type=Path, default=None, help="also write the complete graphs here")
    parser.add_argument("--full-models", default="ssma,cmode", help="which complete graphs (--full)")
    args = parser.parse_args()
    import tensorflow.compat.v1 as tf

    tf.disable_v2_behavior()
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        make_ssma(tf, args.ssma_git, args.out / "ssma", args.width, Path(a))
        for name in ("network_base", "ssma_helper", "SSMA"):
            sys.modules.pop(name, None)
        sys.path.remove(a)
        make_cmode(tf, args.cmode_git, args.out / "cmode", args.width, Path(b))
    if args.full is not None:
        for model, git_dir in (("ssma", args.ssma_git), ("cmode", args.cmode_git)):
            if model not in args.full_models.split(","):
                continue
            for name in ("network_base", "ssma_helper", "SSMA", "CMoDE", "AdapNet_pp", "AdapNet"):
                sys.modules.pop(name, None)
            sys.path[:] = [p for p in sys.path if not p.startswith(tempfile.gettempdir() + "/tmp")]
            with tempfile.TemporaryDirectory() as c:
                make_full(tf, model, git_dir, args.full, Path(c))


if __name__ == "__main__":
    main()
