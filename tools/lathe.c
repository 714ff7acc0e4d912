/* lathe.c -- the `lathe` command: a thin client of the public API
 * (include/lathe.h). Each subcommand is a row in `commands`; its flags are
 * documented in its help text. Exit status: 0 success, 1 user error, 2
 * internal error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lathe.h"
#include "tools/cli.h"

static const cli_command commands[] = {
  {"check", cmd_check, "parse and verify a model; print the graph summary",
   "usage: lathe check MODEL [--bind NAME=N]... [--ir] [--train|--generate] [--kernels] [-O0..3] [--passes=LIST]\n"
   "                   [--print-after=P] [--dump-dir DIR] [--time-passes]\n"
   "                   [--backend cuda [--gpu-arch sm_80|sm_90]] [--weights FILE]\n"
   "\n"
   "Parses and type-checks MODEL, lowers it to a static graph and prints every node with\n"
   "its shape and FLOPs, the parameter count and the memory parameters and activations need,\n"
   "then the native backend's memory plan: the planned peak of the intermediate-tensor arena\n"
   "against the naive sum of every intermediate tensor, and what the graph passes did: nodes,\n"
   "kernels and bytes moved (inputs read + results written) before and after.\n"
   "\n"
   "  --bind NAME=N   bind a symbolic dimension (unbound ones default to 1 for check)\n"
   "  --ir            print the IR listing (after the passes) instead of the summary table\n"
   "  --backend cuda  also render every kernel of the plan as CUDA C and compile it with NVRTC\n"
   "                  (docs/cuda.md); --dump-dir DIR gets each module's .cu and .cubin/.ptx\n"
   "  --gpu-arch A    the GPU architecture to compile for (sm_80, sm_90, ...); without it the\n"
   "                  GPU present is asked (compiling needs NVRTC only, never a GPU)\n"
   "  --weights FILE  compile as for these weights: a file lathe quantize wrote compiles its\n"
   "                  products quantized in its mode (docs/quantize.md); nothing is loaded\n"
   "  --train         the training step instead (forward, backward and the optimizer update\n"
   "                  of the model's train block): its memory plan and what the passes did\n"
   "  --generate      the decode step lathe generate compiles instead (one token at batch 1,\n"
   "                  the key/value caches as state): its memory plan (and --backend cuda)\n"
   "  --kernels       also print the kernel plan (docs/compiling.md): one line per kernel in\n"
   "                  run order with its kind, member nodes (%ID), the buffers it writes and\n"
   "                  reads (arena+offset, input/param/output index, const, alias) and its\n"
   "                  FLOPs and bytes; with --dump-dir the plan is also written to DIR/plan.txt\n"
   CLI_PASS_HELP},
  {"dot", cmd_dot, "write the graph as Graphviz DOT to stdout",
   "usage: lathe dot MODEL [--bind NAME=N]...\n"
   "\n"
   "Writes the lowered graph in Graphviz DOT format: lathe dot m.nn > g.dot && dot -Tsvg g.dot\n"
   "\n"
   "  --bind NAME=N   bind a symbolic dimension (unbound ones default to 1)\n"},
  {"run", cmd_run, "run one forward pass",
   "usage: lathe run MODEL [--weights W.safetensors] --in NAME=FILE.npy... [--out NAME=FILE.npy]...\n"
   "                 [--bind NAME=N]... [--backend interp|llvm|cuda] [--gemm blas|generated] [--f64]\n"
   "                 [--time] [-O0..3]\n"
   "                 [--normalize standard|minmax|none] [--pipeline K]\n"
   "\n"
   "Runs one forward pass. Symbolic dimensions are bound from the input arrays' shapes.\n"
   "Outputs named with --out are written as .npy; without --out every output is printed.\n"
   "Weights written by lathe train carry the normalisation of the training data: give the\n"
   "inputs raw (as in the data file) and it is applied to them as in training.\n"
   "\n"
   "  --weights FILE    safetensors weights (required when the model has parameters)\n"
   "  --normalize K     assert the normalisation the weights carry; refused if they differ\n"
   "  --in NAME=FILE    an input array (.npy); every input must be given (targets optional,\n"
   "                    but an output that reads a target needs it)\n"
   "  --out NAME=FILE   write output NAME (or 'loss') to FILE (.npy, in the output's dtype)\n"
   "  --bind NAME=N     bind a symbolic dimension explicitly\n"
   "  --pipeline K      under mpirun -np K: rank s runs stage s of the layers (cut by FLOPs,\n"
   "                    as lathe train --pipeline cuts them); the last rank writes the outputs\n"
   "  --backend B       llvm (native code through LLVM; the default), interp (the reference\n"
   "                    interpreter), cuda\n"
   "  --f64             compute in double precision (implies --backend interp)\n"
   "  --time            print to stderr: compile time split (parse, lowering, LLVM IR, optimisation,\n"
   "                    codegen, JIT; object-cache hit or miss), run time, kernel calls and unique\n"
   "                    kernels after deduplication, and the planned arena against the naive sum.\n"
   "                    With LATHE_PROFILE=1 in the environment, per-operator kernel times too\n"
   "                    (LATHE_PROFILE=40: and the 40 slowest kernel calls)\n"
   CLI_GEMM_HELP
   CLI_PASS_HELP},
  {"emit", cmd_emit, "compile the forward pass ahead of time (object, library, header)",
   "usage: lathe emit MODEL --weights W.safetensors -o DIR [--bind NAME=N]... [--weights-file] [-O0..3]\n"
   "                  [--entry forward|train_step] [--gemm blas|generated] [--target TRIPLE] [--cpu NAME]\n"
   "\n"
   "Writes DIR/MODEL.o, DIR/libMODEL.a and DIR/MODEL.h (MODEL: the name the model file declares):\n"
   "the forward pass compiled for this machine's CPU exactly as lathe run compiles it, with the\n"
   "weights and the normalisation they carry, callable from C as MODEL_forward(inputs..., outputs...)\n"
   "or MODEL_forward_ws(&in, &out, workspace). Link with -lMODEL -llathe_rt -lopenblas -lm -lpthread.\n"
   "Every symbolic dimension must be bound (the shapes are static). See docs/emit.md.\n"
   "\n"
   "  --weights FILE    safetensors weights (from lathe train or lathe init)\n"
   "  -o DIR            output directory (created if missing; files written atomically)\n"
   "  --bind NAME=N     bind a symbolic dimension (required for each one)\n"
   "  --weights-file    leave the weights out of the object: write DIR/MODEL.weights, which\n"
   "                    MODEL_load_weights(path) reads, checking names, shapes and a checksum\n"
   "  --entry E         forward (default), or train_step: one step of the train block (forward,\n"
   "                    backward, optimizer update) as MODEL_train_step(&state, inputs..., targets...),\n"
   "                    with MODEL_state_init/_save/_load (safetensors, as lathe train's checkpoints;\n"
   "                    the optimizer state starts at zero)\n"
   "  --gemm generated  matrix products as generated vector code in the object, no BLAS call: link\n"
   "                    -llathe_rt_noblas -lm -lpthread, no OpenBLAS (default blas: LATHE_GEMM)\n"
   "  --target TRIPLE   cross-compile for an LLVM target triple (aarch64-linux-gnu, x86_64-linux-gnu;\n"
   "                    64-bit little-endian); the object then runs on that machine, not this one\n"
   "  --cpu NAME        the target's CPU (LLVM's name: neoverse-n1, cortex-a72, x86-64-v3, ...);\n"
   "                    default: this machine's CPU, or generic with --target\n"
   CLI_PASS_HELP},
  {"init", cmd_init, "write freshly initialised weights",
   "usage: lathe init MODEL -o W.safetensors [--seed N] [--bind NAME=N]...\n"
   "\n"
   "Writes every parameter, initialised as the model says (xavier for dense weights, he for\n"
   "conv2d, zeros for biases, ones for layernorm scales, or the train block's init), seeded.\n"
   "\n"
   "  -o FILE         output file (written atomically)\n"
   "  --seed N        random seed (default 0)\n"
   "  --bind NAME=N   bind a symbolic dimension parameters depend on (unbound ones default to 1)\n"},
  {"train", cmd_train, "train a model on a data set",
   "usage: lathe train MODEL --data FILE [--out DIR] [--plot FILE.svg] [--json] [--resume]\n"
   "                   [--weights W] [--epochs N] [--batch N] [--lr X] [--seed N] [--restarts N]\n"
   "                   [--target-column N] [--normalize standard|minmax|none] [--backend llvm|interp]\n"
   "                   [--gemm blas|generated] [--in-order]\n"
   "\n"
   "Compiles one training step (forward, backward and optimizer update) and trains as the model's\n"
   "train block says; flags override the block. The data is split train/val/test by the block's\n"
   "`split` (default 0.8/0.1/0.1) shuffled with the seed; validation picks the best epoch and drives\n"
   "early stopping; the test split is evaluated once, at the end, on the best weights, and printed as\n"
   "`test NAME: VALUE` lines.\n"
   "\n"
   "  --data FILE          CSV (optionally gzip; header optional; target = last column), a text file\n"
   "                       for a model whose input is i32[batch, T] (character tokens), or\n"
   "                       IMAGES,LABELS in the IDX (MNIST) format\n"
   "  --data NAME=F.npy    one array per input and target instead (repeat the flag)\n"
   "  --target-column N    CSV: the target column (0-based; negative counts from the end)\n"
   "  --normalize K        standard (default), minmax or none; statistics of the training split,\n"
   "                       saved in the checkpoints (run, eval and the C API apply them)\n"
   "  --in-order           no shuffling: the split takes the rows in file order (train first, then\n"
   "                       val, then test) and every epoch visits the train rows in that order\n"
   "                       (to compare with an emitted training step fed the same rows)\n"
   "  --out DIR            write best.safetensors, last.safetensors (checkpoints) and log.jsonl\n"
   "  --resume             continue from DIR/last.safetensors (needs --out): every tensor's name,\n"
   "                       dtype and shape is checked; a run that had finished (or was killed in its\n"
   "                       final evaluation) goes straight to the test metrics; log.jsonl is cut back\n"
   "                       to the checkpoint's step\n"
   "  --weights W          start from the weights in W.safetensors (fine-tuning, pruned or imported\n"
   "                       models; a checkpoint works too) instead of initialising them: every\n"
   "                       parameter must be there as f32 (or f16/bf16) of the model's shape, finite;\n"
   "                       optimizer state starts at zero and the step at 0\n"
   "  --plot FILE.svg      learning curves (train and validation loss per epoch)\n"
   "  --json               print a final JSON object with every metric\n"
   "  --epochs N, --batch N, --lr X, --seed N   override the train block (N >= 1, X > 0)\n"
   "  --restarts N         train N seeds (seed, seed+1, ...); keep the best by validation\n"
   "                       (DIR/restartK/ holds each run's checkpoints; DIR/best.safetensors and\n"
   "                       DIR/last.safetensors are the chosen run's)\n"
   "  --metric NAME        the validation metric that picks the best epoch and drives early\n"
   "                       stopping (default: accuracy for classifiers, mse for regression,\n"
   "                       perplexity for language models; also loss, f1, roc_auc, r2, ...)\n"
   "  --backend B          llvm (default) or interp\n"
   "  --quiet              no progress lines\n"
   "  --bucket-kb N        under mpirun: gradients per allreduce in KiB (default 1024)\n"
   "  --zero1              under mpirun: shard the optimizer state over the ranks (ZeRO-1);\n"
   "                       checkpoints still hold all of it\n"
   "  --comm-timeout S     under mpirun: end the job when a wait for another rank takes more\n"
   "                       than S seconds, naming the rank that does not answer (default 120;\n"
   "                       0: wait forever)\n"
   "  --pipeline K         under mpirun -np K: pipeline parallelism, the layers cut into K stages\n"
   "                       (by FLOPs), rank s runs stage s (GPipe schedule)\n"
   "  --micro-batches M    with --pipeline: micro-batches per global batch (default K)\n"
   "\n"
   "Started by mpirun, every rank trains on its slice of each global batch (the batch must be a\n"
   "multiple of the ranks), gradients are averaged inside the compiled step (sums in rank order:\n"
   "the same result every run), rank 0 alone prints, evaluates and writes DIR; --resume works with\n"
   "any number of ranks. Each bucket's sum starts as soon as its gradients are final and is awaited\n"
   "before the update. The progress line and the last lines say how long the steps waited for\n"
   "communication (docs/distributed.md).\n"
   CLI_GEMM_HELP
   CLI_PASS_HELP},
  {"eval", cmd_eval, "evaluate weights on a data split",
   "usage: lathe eval MODEL --weights W --data FILE [--split test|val|train|all]\n"
   "                  [--target-column N] [--normalize K] [--batch N] [--seed N] [--backend B]\n"
   "                  [--gemm blas|generated] [--in-order] [--pipeline K]\n"
   "\n"
   "Rebuilds the split training used (the train block's fractions and seed, or --seed; --in-order:\n"
   "the rows in file order, as lathe train --in-order split them) and prints\n"
   "one `NAME: VALUE` line per metric for the chosen split (default test). The features are\n"
   "normalised as the weights say (their saved statistics); --normalize must agree with them.\n"
   "Weights without saved statistics (older files) get them refitted on the training split.\n"
   "Under mpirun -np K, --pipeline K evaluates the layers cut into K stages (rank s runs stage s;\n"
   "the last prints the metrics; --comm-timeout S as for lathe train).\n"
   "\n"
   CLI_GEMM_HELP},
  {"quantize", cmd_quantize, "quantize a model's weights (int8, int4, bf16, f16)",
   "usage: lathe quantize MODEL --weights W --mode w8|w4|int8-dynamic|int8|bf16|f16 [-o Q.safetensors]\n"
   "                      [--data D [--calib-batches N] [--calib minmax|percentile] [--percentile P]]\n"
   "\n"
   "Writes Q.safetensors (default quantized.safetensors): W's f32 weights with each dense layer's\n"
   "weight matrix replaced by its quantized form, and reports what stayed f32 and why. lathe run,\n"
   "eval and generate load the file as it is and compile those products quantized (the pass\n"
   "'quantize': --print-after=quantize shows it). See docs/quantize.md.\n"
   "\n"
   "  --mode M          w8, w4: weight-only int8 / int4, one scale per group of 32 inputs (the\n"
   "                    memory-bound case: generation); int8-dynamic: int8 weights per output\n"
   "                    channel, activations quantized per row at run time, u8 x s8 integer dot\n"
   "                    products (AVX-512 VNNI, AVX-VNNI or AVX2, as the CPU has; LATHE_CPU_FEATURES=\n"
   "                    -avx512vnni,-avxvnni,-avx2 turns paths off); int8: static int8, the same\n"
   "                    weights and kernels with each product's input scale calibrated on --data\n"
   "                    (at batch 1 on a CPU without VNNI those products compute in f32); bf16, f16:\n"
   "                    16-bit weights\n"
   "  --data FILE       int8: the training data (as lathe train reads it); its training split calibrates\n"
   "  --calib-batches N int8: calibrate on the first N batches of the training split (default 10)\n"
   "  --calib KIND      int8: minmax (max |x|, the default) or percentile (of |x|: clips outliers)\n"
   "  --percentile P    int8 with --calib percentile: which percentile of |x| (default 99.99)\n"},
  {"export", cmd_export, "write the forward graph as an ONNX model (opset 17)",
   "usage: lathe export MODEL --weights W.safetensors -o MODEL.onnx [--bind NAME=N]...\n"
   "\n"
   "Writes MODEL.onnx (atomically): the model's forward graph as ONNX opset 17 with W's weights as\n"
   "initializers, one graph output per model output (same names), the inputs the outputs read as\n"
   "graph inputs (targets and the loss are left out). Layers without an ONNX op of their own\n"
   "(attention, gelu, rmsnorm, groupnorm) are written as the ONNX ops they compute; the\n"
   "normalisation trained weights carry becomes the first nodes after its input, so the file\n"
   "takes raw features as lathe run does. Shapes are static: symbolic dimensions are bound with\n"
   "--bind, else 1. ONNX Runtime runs the file (tests/onnx_export.sh checks it against lathe run).\n"
   "See docs/onnx.md.\n"
   "\n"
   "  --weights W       the weights (lathe init, lathe train); quantized files are refused\n"
   "  -o MODEL.onnx     the file to write\n"
   "  --bind NAME=N     bind a symbolic dimension (default 1)\n"},
  {"import", cmd_import, "an ONNX model as a .nn model and its weights",
   "usage: lathe import MODEL.onnx -o DIR [--name NAME]\n"
   "\n"
   "Writes DIR/NAME.nn and DIR/NAME.safetensors (NAME: the file's stem, or --name). Known\n"
   "patterns become the language's layers (MatMul/Gemm + Add -> dense, Conv -> conv2d/conv1d,\n"
   "LayerNormalization -> layernorm, BatchNormalization -> batchnorm, LSTM/GRU/RNN -> lstm/gru/rnn,\n"
   "a Gather from a constant table -> embedding), everything else the language's primitive ops;\n"
   "shape arithmetic (Shape, Gather, Concat, ... on shapes) is folded; symbolic dimensions of\n"
   "the inputs (a dynamic batch) stay symbolic. Opsets 6 to 17 of the default domain. An\n"
   "operator or attribute Lathe cannot express is an error naming the node, the op, the\n"
   "attribute and the opset. See docs/onnx.md.\n"},
  {"prune", cmd_prune, "prune a model's weights (unstructured, or whole neurons, channels and heads)",
   "usage: lathe prune MODEL --weights W --sparsity S [--structured] [--per-layer] [--steps N]\n"
   "                   [--finetune EPOCHS --data D [--lr X] [--batch N]] [-o P.safetensors]\n"
   "                   [--report R.json] [--time-batch B]\n"
   "\n"
   "Removes the fraction S (0 <= S < 1) of the dense and conv2d weights by magnitude and writes\n"
   "P.safetensors (default pruned.safetensors) and the report P.json. Unstructured: the smallest\n"
   "|w| become zero (one threshold over all layers, or each layer its own with --per-layer),\n"
   "in N steps of a cubic schedule; fine-tuning keeps them zero (a mask in the compiled training\n"
   "step). --structured: each dense layer loses S of its neurons, each conv2d of its channels and\n"
   "each attention layer of its heads (smallest L2 norm first), every shape downstream follows,\n"
   "and the smaller model is written\n"
   "beside the weights as P.nn: a dense model that runs faster. The report (printed and JSON):\n"
   "parameters, nonzero weights, FLOPs, file size, validation and test metrics (with --data) and\n"
   "forward time before and after. See docs/prune.md.\n"
   "\n"
   "  --sparsity S      fraction removed (required)\n"
   "  --structured      remove neurons, channels and attention heads; writes P.nn\n"
   "  --per-layer       unstructured: every layer loses S (default: one global threshold)\n"
   "  --steps N         unstructured: prune gradually in N steps, fine-tuning after each (default 1)\n"
   "  --finetune E      epochs of fine-tuning in all (needs --data; default 0)\n"
   "  --lr X, --batch N fine-tuning's learning rate and batch (default: the train block's)\n"
   "  --data FILE       the data set the model trains on: fine-tuning and the metrics\n"
   "  --report FILE     the JSON report (default P.json)\n"
   "  --time-batch B    batch of the forward time (llvm backend; default 64)\n"
   "  --backend B       fine-tuning and evaluation: llvm (default) or interp\n"},
  {"generate", cmd_generate, "generate text from a sequence model",
   "usage: lathe generate MODEL --weights W --prompt TEXT --tokens N [--temperature T] [--top-k K]\n"
   "                      [--seed S] [--backend B] [--recompute]\n"
   "\n"
   "For a model whose input is a token sequence i32[batch, T] and whose first output is logits\n"
   "[batch, T, vocab] (96 characters or 256 bytes, as lathe train reads text). Writes the prompt\n"
   "followed by the generated text to stdout, statistics (tokens/s) to stderr. Each token costs\n"
   "O(T): causal attention layers keep a key/value cache in a compiled decode-step program;\n"
   "models without that form (recurrent layers) recompute their context per token, with a note.\n"
   "The context is a sliding window: when it holds T tokens it keeps the last T/2, so prompts and\n"
   "outputs may be longer than T. Prompt bytes outside a 96-character vocabulary are dropped, as\n"
   "in text data, with a note naming the first. Nothing is written to stdout before generation\n"
   "begins; a write error on stdout stops it with an error.\n"
   "\n"
   "  --tokens N           tokens to generate (required; at most 4294967296, streamed)\n"
   "  --temperature T      sampling temperature (default 1); 0 is greedy decoding\n"
   "  --top-k K            sample among the K most likely tokens (default 0: all; at most 1048576)\n"
   "  --seed S             seed of the sampler (default 0)\n"
   "  --backend B          llvm (default) or interp\n"
   "  --recompute          no cache: recompute the whole context every token (the reference)\n"},
};
static const int ncommands = (int)(sizeof commands / sizeof commands[0]);

static void usage(FILE *f) {
  fprintf(f, "usage: lathe COMMAND [ARGS]\n\nLathe %s: a compiler for neural-network models (.nn files).\n\n"
             "commands:\n", LATHE_VERSION);
  for (int i = 0; i < ncommands; i++) fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\nlathe COMMAND --help describes a command's flags.\n");
}

/* A command's result, unless stdout could not take what was printed
 * (`lathe check m.nn > /dev/full`): then exit 1, never a silent success.
 * A command that failed has said why already (generate stops on a stdout
 * error itself): no second message. */
static int finish_stdout(int rc) {
  if ((fflush(stdout) == 0 && !ferror(stdout)) || rc) return rc;
  int e = errno;
  fprintf(stderr, "lathe: error: cannot write to stdout: %s\n", strerror(e ? e : EIO));
  return 1;
}

static int dispatch(int argc, char **argv) {
  if (argc < 2) { usage(stderr); return 1; }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    if (argc > 2 && strcmp(cmd, "help") == 0) {
      for (int i = 0; i < ncommands; i++)
        if (!strcmp(argv[2], commands[i].name)) { fputs(commands[i].help, stdout); return 0; }
    }
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "--version")) {
    char why[2048];
    int cuda = lathe_backend_available(LATHE_BACKEND_CUDA, why, sizeof why);
    printf("lathe %s (LLVM %s)\nbackends: interp, llvm, cuda: %s (%s)\n", LATHE_VERSION, lathe_llvm_version(),
           cuda ? "yes" : "no", why);
    printf("distributed: %s\n", lathe_dist_available() ? "mpi (mpirun -np N lathe train)" : "no (built without MPI)");
    cli_print_kernels(stdout);
    return 0;
  }
  for (int i = 0; i < ncommands; i++) {
    if (strcmp(cmd, commands[i].name) != 0) continue;
    for (int a = 2; a < argc; a++)
      if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) { fputs(commands[i].help, stdout); return 0; }
    return commands[i].fn(argc - 2, argv + 2);
  }
  fprintf(stderr, "lathe: error: unknown command '%s'\n", cmd);
  usage(stderr);
  return 1;
}

int main(int argc, char **argv) { return finish_stdout(dispatch(argc, argv)); }
