"""Train the shipped example: a small CNN on scikit-learn's bundled 8x8 digits, reproducibly.

    .venv/bin/python scripts/train_digits.py [--out examples/digits]

Writes, from one seeded training run (CPU, one thread, deterministic algorithms):

    digits.onnx        the PyTorch model exported to ONNX (NCHW input [1, 1, 8, 8], output logits [1, 10])
    digits.keras       the same weights in an equivalent Keras 3 model (NHWC input [1, 8, 8, 1])
    calib.npy          256 calibration inputs from the training split, NCHW, pixels / 16
    eval.npz           the 360 test inputs (`input`, NCHW) with their `labels`
    calib_nhwc.npy     calib.npy transposed for the Keras model
    eval_nhwc.npz      eval.npz transposed for the Keras model

Both models are checked against each other before anything is written. The dataset ships inside
scikit-learn: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

SEED = 0
EPOCHS = 40
BATCH = 64
CALIBRATION_SAMPLES = 256
PIXEL_SCALE = 16.0  # digits pixels are 0..16


def load_splits() -> dict[str, np.ndarray]:
    """Train/test split of the digits (NCHW float32 in [0, 1]), fixed by SEED."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / PIXEL_SCALE).astype(np.float32)[:, None, :, :]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, random_state=SEED, stratify=digits.target
    )
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def build_torch_model():
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def train(data: dict[str, np.ndarray]):
    """Adam, cross-entropy, fixed shuffling: the same weights on every run."""
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    model = build_torch_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.from_numpy(data["x_train"])
    y = torch.from_numpy(data["y_train"]).long()
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), BATCH):
            batch = order[start : start + BATCH]
            optimizer.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model.eval()


def torch_logits(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def export_onnx(model, path: Path) -> None:
    import torch

    example = torch.zeros(1, 1, 8, 8)
    torch.onnx.export(
        model, (example,), str(path), input_names=["input"], output_names=["logits"], opset_version=17, dynamo=False
    )


def build_keras_model(torch_model):
    """The same network in Keras (NHWC), with the trained weights copied over."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    conv1, conv2, dense1, dense2 = (torch_model[i] for i in (0, 2, 6, 8))
    inputs = keras.Input(shape=(8, 8, 1), batch_size=1, name="input")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="dense1")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs, name="digits")
    model.get_layer("conv1").set_weights(_conv_weights(conv1))
    model.get_layer("conv2").set_weights(_conv_weights(conv2))
    # torch flattens (C, H, W), Keras flattens (H, W, C): reorder the first dense layer's rows.
    w1 = dense1.weight.detach().numpy().reshape(64, 32, 4, 4).transpose(2, 3, 1, 0).reshape(512, 64)
    model.get_layer("dense1").set_weights([w1, dense1.bias.detach().numpy()])
    model.get_layer("logits").set_weights([dense2.weight.detach().numpy().T, dense2.bias.detach().numpy()])
    return model


def _conv_weights(conv) -> list[np.ndarray]:
    # torch OIHW -> Keras HWIO
    return [conv.weight.detach().numpy().transpose(2, 3, 1, 0), conv.bias.detach().numpy()]


def keras_logits(model, x_nchw: np.ndarray) -> np.ndarray:
    x = x_nchw.transpose(0, 2, 3, 1)
    return np.concatenate([np.asarray(model(x[i : i + 1], training=False)) for i in range(len(x))])


def onnx_logits(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": x[i : i + 1]})[0] for i in range(len(x))])


def calibration_subset(data: dict[str, np.ndarray]) -> np.ndarray:
    order = np.random.default_rng(SEED).permutation(len(data["x_train"]))
    return data["x_train"][np.sort(order[:CALIBRATION_SAMPLES])]


def write_all(out: Path) -> dict[str, float]:
    data = load_splits()
    model = train(data)
    reference = torch_logits(model, data["x_test"])
    accuracy = float(np.mean(reference.argmax(1) == data["y_test"]))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        onnx_path = Path(scratch) / "digits.onnx"
        export_onnx(model, onnx_path)
        keras_model = build_keras_model(model)
        keras_path = Path(scratch) / "digits.keras"
        keras_model.save(keras_path)
        errors = {
            "onnx_vs_torch": float(np.max(np.abs(onnx_logits(onnx_path, data["x_test"]) - reference))),
            "keras_vs_torch": float(np.max(np.abs(keras_logits(keras_model, data["x_test"]) - reference))),
        }
        if max(errors.values()) > 1e-4:
            raise SystemExit(f"exported models disagree with the trained model: {errors}")
        calib = calibration_subset(data)
        np.save(Path(scratch) / "calib.npy", calib)
        np.savez(Path(scratch) / "eval.npz", input=data["x_test"], labels=data["y_test"].astype(np.int64))
        np.save(Path(scratch) / "calib_nhwc.npy", calib.transpose(0, 2, 3, 1))
        np.savez(
            Path(scratch) / "eval_nhwc.npz",
            input=data["x_test"].transpose(0, 2, 3, 1),
            labels=data["y_test"].astype(np.int64),
        )
        for path in Path(scratch).iterdir():
            os.replace(path, out / path.name)
    return {"test_accuracy": accuracy, "test_samples": len(data["y_test"]), **errors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "examples" / "digits")
    args = parser.parse_args(argv)
    summary = write_all(args.out)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
