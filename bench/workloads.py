"""The benchmark's workload table: one row per workload.

Each row names the Lathe model file and its bindings, the inputs to feed
(integer inputs with their value range), the PyTorch peer builder (a function
in peer.py) with its arguments, and how many timed steps to run.

Training rows (kind="train") time one full training step: Lathe compiles the
model with lathe_compile_train (its train block's optimizer), the peer runs
forward, loss, backward and torch.optim with `optim` and `clip_norm`, which
must say what the model's train block says. Their inputs include the targets.
"""

from dataclasses import dataclass, field


@dataclass
class Workload:
    name: str
    model: str                      # path relative to the repository root
    binds: dict                     # symbolic dimension -> value
    inputs: dict                    # input name -> None (float) or int range
    peer: str                       # builder name in peer.py
    peer_args: dict = field(default_factory=dict)
    reps: int = 50                  # timed steps (full run)
    quick_reps: int = 5             # timed steps with --quick
    warmup: int = 3
    max_seconds: float = 20.0       # stop timing early after this long
    batch1: bool = False            # batch-1 inference: the peer also tries TorchScript
    peer_malloc: tuple = ("default", "tuned")  # glibc malloc settings the peer tries (harness.py)
    kind: str = "inference"         # or "train": one full training step; "generate": greedy decoding
    optim: dict = None              # train: the peer's torch.optim (name, lr, ...), as the train block
    clip_norm: float = 0.0          # train: the peer's clip_grad_norm_ (0: none), as the train block
    gen_tokens: int = 0             # generate: tokens generated (one timed step per token)
    quant: str = ""                 # Lathe runs the weights quantized in this mode (lathe_quantize); the
                                    # peer, for int8-dynamic and int8, runs torch.ao.quantization.quantize_dynamic
    calib: str = ""                 # quant int8: the calibration data (lathe_bench --calib-data)
    f32_row: str = ""               # a quantized or pruned row: the f32 dense row it is compared with (printed under the table)
    pruned: str = ""                # a pruned model (bench/*_pruned50.nn, what lathe prune --structured writes)
    imported: bool = False          # Lathe runs what `lathe import` makes of the peer's ONNX export (peer.py
                                    # --export-onnx, the file the ORT column runs); `model` is not read then


GPT_CHAR = dict(vocab=96, T=64, d=128, heads=4, layers=4)
DIGITS_CSV = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"  # scikit-learn's digits
GPT2_SMALL = dict(vocab=50257, T=256, d=768, heads=12, layers=12)
LSTM_CHAR = dict(vocab=96, T=32, E=64, H=128)


def train(name, model, binds, inputs, peer, peer_args, optim, clip_norm=0.0, **kw):
    """A training-step row; optim and clip_norm restate the model's train block."""
    return Workload(name, model, binds, inputs, peer, peer_args, kind="train", optim=optim, clip_norm=clip_norm,
                    **kw)

WORKLOADS = [
    Workload("mlp_b1", "examples/mlp.nn", {"batch": 1}, {"x": None},
             "mlp", dict(batch=1), reps=3000, quick_reps=300, warmup=200, max_seconds=2, batch1=True),
    Workload("mlp_b256", "examples/mlp.nn", {"batch": 256}, {"x": None},
             "mlp", dict(batch=256), reps=300, quick_reps=30, warmup=20, max_seconds=2),
    Workload("cnn_b128", "examples/cnn.nn", {"batch": 128}, {"x": None},
             "cnn", dict(batch=128), reps=200, quick_reps=20, warmup=10, max_seconds=2),
    Workload("gpt_char_b16", "examples/gpt.nn", {"batch": 16}, {"tokens": GPT_CHAR["vocab"]},
             "gpt", dict(batch=16, **GPT_CHAR), reps=20, quick_reps=3, warmup=2, max_seconds=4),
    Workload("gpt2_small_b1", "bench/gpt2_small.nn", {"batch": 1}, {"tokens": GPT2_SMALL["vocab"]},
             "gpt", dict(batch=1, **GPT2_SMALL), reps=10, quick_reps=2, warmup=1, max_seconds=5,
             batch1=True, peer_malloc=("tuned",)),  # each peer process costs ~1 min here
    # issue 18: the same GPT-2-small as PyTorch exports it to ONNX, imported by `lathe import` (its attention
    # subgraphs as attention layers): the imported model's forward against ORT running that very file
    Workload("gpt2_small_onnx_b1", "bench/gpt2_small.nn", {}, {"tokens": GPT2_SMALL["vocab"]},
             "gpt", dict(batch=1, **GPT2_SMALL), reps=10, quick_reps=2, warmup=1, max_seconds=5,
             batch1=True, peer_malloc=("tuned",), imported=True),
    # Training steps (issues 4 and 5).
    train("mlp_train_b64", "examples/mlp.nn", {"batch": 64}, {"x": None, "y": 10}, "mlp", dict(batch=64),
          dict(name="adam", lr=1e-3), reps=1000, quick_reps=100, warmup=50, max_seconds=2),
    train("mlp_train_b256", "examples/mlp.nn", {"batch": 256}, {"x": None, "y": 10}, "mlp", dict(batch=256),
          dict(name="adam", lr=1e-3), reps=500, quick_reps=50, warmup=20, max_seconds=2),
    train("cnn_train_b128", "examples/cnn.nn", {"batch": 128}, {"x": None, "y": 10}, "cnn", dict(batch=128),
          dict(name="adam", lr=3e-3), reps=200, quick_reps=20, warmup=10, max_seconds=3),
    # issue 17: the batchnorm CNN's step (batch statistics, running averages, the gradient through them)
    train("cnn_bn_train_b128", "examples/cnn_bn.nn", {"batch": 128}, {"x": None, "y": 10}, "cnn_bn",
          dict(batch=128), dict(name="adam", lr=3e-3), reps=200, quick_reps=20, warmup=10, max_seconds=3),
    train("gpt_char_train_b16", "examples/gpt.nn", {"batch": 16},
          {"tokens": GPT_CHAR["vocab"], "next": GPT_CHAR["vocab"]}, "gpt", dict(batch=16, **GPT_CHAR),
          dict(name="adamw", lr=1.5e-3, weight_decay=0.1), clip_norm=1.0,
          reps=20, quick_reps=3, warmup=3, max_seconds=5),
    train("lstm_train_b32", "examples/lstm.nn", {"batch": 32},
          {"tokens": LSTM_CHAR["vocab"], "next": LSTM_CHAR["vocab"]}, "lstm", dict(batch=32, **LSTM_CHAR),
          dict(name="adam", lr=2e-3), clip_norm=1.0, reps=100, quick_reps=10, warmup=5, max_seconds=3),
    # issue 17: the 2-layer bidirectional GRU classifier's step (examples/bigru.nn; the reverse direction as a
    # time-reversing gather around the fused gru op and its fused backward)
    train("bigru_train_b64", "examples/bigru.nn", {"batch": 64}, {"x": None, "y": 4}, "bigru",
          dict(batch=64, T=24, symbols=6, H=32), dict(name="adam", lr=1e-2), clip_norm=1.0,
          reps=200, quick_reps=20, warmup=10, max_seconds=3),
    # Generation (issue 5): greedy tokens at batch 1. Lathe: lathe_generate (key/value-cache decode program);
    # peer: the naive loop, the full forward over the last T tokens per new token. Times are per token.
    Workload("gpt_char_generate", "examples/gpt.nn", {"batch": 1}, {"tokens": GPT_CHAR["vocab"]},
             "gpt", dict(batch=1, **GPT_CHAR), kind="generate", gen_tokens=200, reps=200, quick_reps=200,
             warmup=5, max_seconds=20),
    # Quantization (issue 16): one dense layer K = N = 1024 at M = 1, 64, 256 in f32 and int8-dynamic (peer:
    # nn.Linear, and quantize_dynamic on the engine this PyTorch offers), the digits MLP in int8-dynamic, and
    # char-GPT generation with w8 / w4 weights (peer: the same f32 recompute loop as gpt_char_generate).
    *[Workload("dense1024_b%d" % m, "bench/dense1024.nn", {"batch": m}, {"x": None}, "dense", dict(batch=m),
               reps=r, quick_reps=r // 10, warmup=20, max_seconds=2) for m, r in ((1, 3000), (64, 500), (256, 200))],
    *[Workload("dense1024_b%d_int8" % m, "bench/dense1024.nn", {"batch": m}, {"x": None}, "dense", dict(batch=m),
               reps=r, quick_reps=r // 10, warmup=20, max_seconds=2, quant="int8-dynamic",
               f32_row="dense1024_b%d" % m) for m, r in ((1, 3000), (64, 500), (256, 200))],
    # bf16 (issue 16): the same layer with bf16 weights; Lathe multiplies on vdpbf16ps where the CPU has
    # AVX-512 BF16 (rt/rt_qbf16.c); peer: nn.Linear in bf16 (weights and input), what PyTorch runs on CPU.
    *[Workload("dense1024_b%d_bf16" % m, "bench/dense1024.nn", {"batch": m}, {"x": None}, "dense", dict(batch=m),
               reps=r, quick_reps=r // 10, warmup=20, max_seconds=2, quant="bf16",
               f32_row="dense1024_b%d" % m) for m, r in ((1, 3000), (64, 500), (256, 200))],
    Workload("mlp_b1_int8", "examples/mlp.nn", {"batch": 1}, {"x": None}, "mlp", dict(batch=1), reps=3000,
             quick_reps=300, warmup=200, max_seconds=2, quant="int8-dynamic", f32_row="mlp_b1"),
    Workload("mlp_b256_int8", "examples/mlp.nn", {"batch": 256}, {"x": None}, "mlp", dict(batch=256), reps=300,
             quick_reps=30, warmup=20, max_seconds=2, quant="int8-dynamic", f32_row="mlp_b256"),
    # Static int8 (issue 16): the digits MLP with its input scales calibrated on the digits training split (the
    # seeded weights' activations, 10 batches); the peer has no static row here: quantize_dynamic again.
    *[Workload("mlp_b%d_int8s" % b, "examples/mlp.nn", {"batch": b}, {"x": None}, "mlp", dict(batch=b), reps=r,
               quick_reps=r // 10, warmup=20 if b > 1 else 200, max_seconds=2, quant="int8", calib=DIGITS_CSV,
               f32_row="mlp_b%d" % b) for b, r in ((1, 3000), (256, 300))],
    # Static int8 conv2d (issue 16): the digits CNN with conv2 and the dense layers in int8 (conv1, 9 inputs per
    # window, stays f32: lathe quantize says so), calibrated as the MLP rows are; the f32 rows at the same batch.
    # Peer: quantize_dynamic again, which quantizes nn.Linear only: PyTorch's convolutions stay f32 in that row.
    Workload("cnn_b1", "examples/cnn.nn", {"batch": 1}, {"x": None}, "cnn", dict(batch=1), reps=3000,
             quick_reps=300, warmup=200, max_seconds=2, batch1=True),
    *[Workload("cnn_b%d_int8s" % b, "examples/cnn.nn", {"batch": b}, {"x": None}, "cnn", dict(batch=b), reps=r,
               quick_reps=r // 10, warmup=20 if b > 1 else 200, max_seconds=2, quant="int8", calib=DIGITS_CSV,
               f32_row="cnn_b%d" % b) for b, r in ((1, 3000), (128, 200))],
    *[Workload("gpt_char_generate_%s" % q, "examples/gpt.nn", {"batch": 1}, {"tokens": GPT_CHAR["vocab"]},
               "gpt", dict(batch=1, **GPT_CHAR), kind="generate", gen_tokens=200, reps=200, quick_reps=200,
               warmup=5, max_seconds=20, quant=q, f32_row="gpt_char_generate") for q in ("w8", "w4")],
    # Pruning (issue 16): the digits MLP and CNN with 50% of their neurons and channels removed (lathe prune
    # --structured --sparsity 0.5 writes bench/mlp_pruned50.nn and bench/cnn_pruned50.nn from examples/*.nn;
    # tests/prune.sh checks they are the same) against their dense rows; peer: the same smaller nn.Modules.
    *[Workload("mlp_b%d_pruned50" % b, "bench/mlp_pruned50.nn", {"batch": b}, {"x": None}, "mlp",
               dict(batch=b, hidden=128), reps=r, quick_reps=r // 10, warmup=20, max_seconds=2, batch1=b == 1,
               pruned="50% structured", f32_row="mlp_b%d" % b) for b, r in ((1, 3000), (256, 300))],
    Workload("cnn_b128_pruned50", "bench/cnn_pruned50.nn", {"batch": 128}, {"x": None}, "cnn",
             dict(batch=128, c1=8, c2=16, f1=32), reps=200, quick_reps=20, warmup=10, max_seconds=2,
             pruned="50% structured", f32_row="cnn_b128"),
    # the char-GPT with half of every attention layer's heads (2 of width 32: head_dim=32) and half of its MLP
    # neurons (bench/gpt_pruned50.nn, what lathe prune --structured --sparsity 0.5 writes from examples/gpt.nn)
    Workload("gpt_char_b16_pruned50", "bench/gpt_pruned50.nn", {"batch": 16}, {"tokens": GPT_CHAR["vocab"]},
             "gpt", dict(batch=16, **dict(GPT_CHAR, heads=2), head_dim=32, ffn=256), reps=20, quick_reps=3, warmup=2,
             max_seconds=4, pruned="50% structured", f32_row="gpt_char_b16"),
]

BY_NAME = {w.name: w for w in WORKLOADS}
