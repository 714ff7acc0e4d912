"""The benchmark's workload table: one row per workload.

Each row names the Lathe model file and its bindings, the inputs to feed
(integer inputs with their value range), the PyTorch peer builder (a function
in peer.py) with its arguments, and how many timed steps to run. Later issues
add training workloads as rows here (with a peer builder that trains).
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
    kind: str = "inference"         # later: "train"


GPT_CHAR = dict(vocab=96, T=64, d=128, heads=4, layers=4)
GPT2_SMALL = dict(vocab=50257, T=256, d=768, heads=12, layers=12)

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
             "gpt", dict(batch=1, **GPT2_SMALL), reps=5, quick_reps=2, warmup=1, max_seconds=5,
             batch1=True, peer_malloc=("tuned",)),  # each peer process costs ~1 min here
]

BY_NAME = {w.name: w for w in WORKLOADS}
