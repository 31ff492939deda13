"""Check an ONNX file written by `xp export model` with onnxruntime.

The integration test tests/it/export.rs runs this script and compares what it prints with
what xp itself computes for the same checkpoint:

    python ort_check.py MODEL.onnx REQUEST.json

REQUEST.json is {"prompts": [[id, ...], ...], "greedy": {"prompt": "text", "tokens": N}}.
Prints one JSON object on stdout:

    {"opset": 17, "metadata": {key: value, ...},
     "logits": [[[float] * vocab] * len(prompt) for each prompt],
     "greedy": "the N generated characters (not the prompt)",
     "batch_max_diff": largest |difference| between each prompt run alone and in a batch of
                       three copies of it (the batch dimension is dynamic)}

The model must pass onnx.checker's full check first; any failure raises, so the script exits
non-zero with the message on stderr.
"""

import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main(model_path: str, request_path: str) -> None:
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    metadata = {p.key: p.value for p in model.metadata_props}
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    with open(request_path, encoding="utf-8") as f:
        request = json.load(f)

    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])

    def run(ids: list[int]) -> np.ndarray:
        """Logits [seq, vocab] of one sequence."""
        (logits,) = session.run(["logits"], {"input_ids": np.array([ids], dtype=np.int64)})
        return logits[0]

    prompts = request.get("prompts", [])
    alone = [run(ids) for ids in prompts]
    batched = [
        session.run(["logits"], {"input_ids": np.array([ids] * 3, dtype=np.int64)})[0]
        for ids in prompts
    ]
    out = {
        "opset": opset,
        "metadata": metadata,
        "logits": [a.tolist() for a in alone],
        "batch_max_diff": max(
            (float(np.abs(b - a[None]).max()) for a, b in zip(alone, batched)), default=0.0
        ),
    }

    greedy = request.get("greedy")
    if greedy is not None:
        vocab = json.loads(metadata["xp.vocab"])
        block_size = int(metadata["xp.block_size"])
        ids = [vocab.index(c) for c in greedy["prompt"]]  # a character outside it raises
        generated = []
        for _ in range(greedy["tokens"]):
            next_id = int(np.argmax(run(ids[-block_size:])[-1]))
            ids.append(next_id)
            generated.append(next_id)
        out["greedy"] = "".join(vocab[i] for i in generated)

    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python ort_check.py MODEL.onnx REQUEST.json")
    main(sys.argv[1], sys.argv[2])
