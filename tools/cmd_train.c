/* cmd_train.c -- `lathe train` and `lathe eval`: flags to
 * lathe_train_options, results to `test NAME: VALUE` lines (and JSON). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli.h"

#define DATA_FLAGS "--data=value --target-column=value --normalize=value --batch=value --seed=value --bind=pair " \
                   "--in-order=bool"

/* A count flag given as 0 is refused: the options keep 0 for "not given",
 * so a 0 let through would silently mean "the model file's value". So is
 * one above max, which the int options would otherwise cut silently. */
static int count_flag(const char *cmd, const char *flag, uint64_t v, int given, uint64_t max) {
  if (!given || (v >= 1 && v <= max)) return 0;
  if (v < 1) fprintf(stderr, "lathe %s: error: %s must be at least 1, got 0\n", cmd, flag);
  else fprintf(stderr, "lathe %s: error: %s must be at most %llu, got %llu\n", cmd, flag, (unsigned long long)max,
               (unsigned long long)v);
  return 1;
}

/* The largest values the C API takes (runtime/api_args.c): a count past them
 * is refused here, by its flag, instead of being cut to an int. */
#define MAX_EPOCHS 1000000000ull
#define MAX_BATCH (1ull << 40)
#define MAX_RESTARTS 1000000ull

/* --lr X: a positive number, as the train block's lr (0 would freeze the
 * weights; the options keep 0 for "not given"). */
static int lr_option(const cli_args *a, double *lr) {
  if (cli_double(a, "train", "--lr", lr)) return 1;
  if (!cli_value(a, "--lr") || *lr > 0) return 0;
  fprintf(stderr, "lathe train: error: --lr must be a positive number, got %s\n", cli_value(a, "--lr"));
  return 1;
}

/* --comm-timeout S: seconds a wait for another rank may take (0: forever). */
static int comm_timeout_option(const cli_args *a, const char *cmd, double *t) {
  *t = -1;
  if (!cli_value(a, "--comm-timeout")) return 0;
  if (cli_double(a, cmd, "--comm-timeout", t)) return 1;
  if (*t >= 0 && *t <= 1e6) return 0;
  fprintf(stderr, "lathe %s: error: --comm-timeout must be seconds from 0 (wait forever) to 1e6, got %s\n", cmd,
          cli_value(a, "--comm-timeout"));
  return 1;
}

/* --data FILE, or --data NAME=FILE.npy (repeatable). */
static int data_options(const cli_args *a, const char *cmd, lathe_train_options *o, const char **npy, int max) {
  cli_item d[CLI_MAXITEMS];
  int nd = cli_items(a, "--data", d, CLI_MAXITEMS);
  for (int i = 0; i < nd; i++) {
    const char *v = d[i].value, *eq = strchr(v, '=');
    int is_pair = eq && strlen(eq) > 4 && !strcmp(v + strlen(v) - 4, ".npy");
    if (is_pair) {
      if (o->nnpy >= max) { fprintf(stderr, "lathe %s: error: too many --data pairs\n", cmd); return 1; }
      npy[o->nnpy++] = v;
    } else if (o->data) {
      fprintf(stderr, "lathe %s: error: give one --data FILE, or --data NAME=FILE.npy per input and target\n", cmd);
      return 1;
    } else {
      o->data = v;
    }
  }
  if (!o->data && !o->nnpy) {
    fprintf(stderr, "lathe %s: error: no data: give --data FILE (see lathe %s --help)\n", cmd, cmd);
    return 1;
  }
  if (o->data && o->nnpy) {
    fprintf(stderr, "lathe %s: error: --data FILE and --data NAME=FILE.npy cannot be mixed\n", cmd);
    return 1;
  }
  o->npy = npy;
  const char *tc = cli_value(a, "--target-column");
  if (tc) {
    char *end;
    long v = strtol(tc, &end, 10);
    if (*end || !*tc) { fprintf(stderr, "lathe %s: error: --target-column expects an integer\n", cmd); return 1; }
    o->target_column_set = 1;
    o->target_column = (int)v;
  }
  o->normalize = cli_value(a, "--normalize");
  o->in_order = cli_has(a, "--in-order");
  uint64_t b = 0;
  int b_given = 0;
  if (cli_u64(a, cmd, "--batch", &b, &b_given) || cli_u64(a, cmd, "--seed", &o->seed, &o->seed_set) ||
      count_flag(cmd, "--batch", b, b_given, MAX_BATCH))
    return 1;
  o->batch = (int64_t)b;
  return 0;
}

static void print_metrics(const char *prefix, const lathe_metrics *m) {
  for (int i = 0; i < m->n; i++) printf("%s%s: %.4f\n", prefix, m->name[i], m->value[i]);
}

static void print_json(const lathe_train_result *r) {
  printf("{\"steps\": %lld, \"epochs\": %lld, \"seconds\": %.3f, \"restart\": %d", (long long)r->steps,
         (long long)r->epochs, r->seconds, r->best_restart);
  for (int i = 0; i < r->best_val.n; i++)
    printf(isfinite(r->best_val.value[i]) ? ", \"val_%s\": %.6g" : ", \"val_%s\": null%.0f", r->best_val.name[i],
           isfinite(r->best_val.value[i]) ? r->best_val.value[i] : 0);
  for (int i = 0; i < r->test.n; i++)
    printf(isfinite(r->test.value[i]) ? ", \"test_%s\": %.6g" : ", \"test_%s\": null%.0f", r->test.name[i],
           isfinite(r->test.value[i]) ? r->test.value[i] : 0);
  printf(", \"ranks\": %d, \"step_seconds\": %.6f, \"comm_seconds\": %.6f, \"timed_steps\": %lld}\n", r->ranks,
         r->step_seconds, r->comm_seconds, (long long)r->timed_steps);
}

int cmd_train(int argc, char **argv) {
  cli_args a;
  const char *npy[CLI_MAXITEMS];
  lathe_train_options o = {.progress = stderr, .tty = -1};
  uint64_t epochs = 0, restarts = 1;
  int epochs_given = 0, restarts_given = 0;
  int status = cli_parse(argc, argv, "train",
                         DATA_FLAGS " --out=value --plot=value --json=bool --resume=bool --restarts=value "
                                    "--lr=value --epochs=value --backend=value --gemm=value --quiet=bool --metric=value --weights=value "
                                    "--bucket-kb=value --zero1=bool --comm-timeout=value --pipeline=value --micro-batches=value "
                                    CLI_PASS_FLAGS,
                         &a);
  lathe_options passes = {0};
  if (!status) status = data_options(&a, "train", &o, npy, CLI_MAXITEMS);
  if (!status) status = cli_pass_options(&a, "train", &passes);
  o.compile = &passes;
  if (!status) status = cli_u64(&a, "train", "--epochs", &epochs, &epochs_given) ||
                        count_flag("train", "--epochs", epochs, epochs_given, MAX_EPOCHS) ||
                        cli_u64(&a, "train", "--restarts", &restarts, &restarts_given) ||
                        count_flag("train", "--restarts", restarts, restarts_given, MAX_RESTARTS) ||
                        lr_option(&a, &o.lr) ||
                        cli_backend(cli_value(&a, "--backend"), &o.backend) ||
                        cli_gemm("train", cli_value(&a, "--gemm"));
  if (status) { cli_args_free(&a); return 1; }
  uint64_t bucket_kb = 0;
  int bucket_given = 0;
  double timeout = -1;
  if (comm_timeout_option(&a, "train", &timeout) || cli_u64(&a, "train", "--bucket-kb", &bucket_kb, &bucket_given) ||
      count_flag("train", "--bucket-kb", bucket_kb, bucket_given, 1u << 22)) {
    cli_args_free(&a);
    return 1;
  }
  o.bucket_bytes = (int64_t)bucket_kb * 1024;
  uint64_t stages = 0, micro = 0;
  int stages_given = 0, micro_given = 0;
  if (cli_u64(&a, "train", "--pipeline", &stages, &stages_given) ||
      count_flag("train", "--pipeline", stages, stages_given, 64) ||
      cli_u64(&a, "train", "--micro-batches", &micro, &micro_given) ||
      count_flag("train", "--micro-batches", micro, micro_given, 1u << 20)) {
    cli_args_free(&a);
    return 1;
  }
  if (micro_given && !stages_given) {
    fprintf(stderr, "lathe train: error: --micro-batches needs --pipeline K\n");
    cli_args_free(&a);
    return 1;
  }
  o.pipeline = (int)stages, o.micro_batches = (int)micro;
  o.zero1 = cli_has(&a, "--zero1");
  o.epochs = (int64_t)epochs;
  o.restarts = (int)restarts;
  o.out_dir = cli_value(&a, "--out");
  o.plot = cli_value(&a, "--plot");
  o.resume = cli_has(&a, "--resume");
  o.weights = cli_value(&a, "--weights");
  o.metric = cli_value(&a, "--metric");
  if (cli_has(&a, "--quiet")) o.progress = NULL;
  lathe_error err = {0};
  /* under mpirun: join the job (rank 0 alone prints; docs/distributed.md) */
  if (lathe_dist_init(&err)) {
    status = cli_report(&err);
    cli_args_free(&a);
    return status;
  }
  if (timeout >= 0) lathe_dist_set_timeout(timeout);
  int rank = lathe_dist_rank();
  if (rank > 0) o.progress = NULL;
  lathe_model *m = cli_load_model(&a, &status);
  lathe_train_result r;
  if (m && lathe_train(m, &o, &r, &err)) status = cli_report(&err);
  else if (m && rank == 0) {
    fprintf(stderr, "trained %lld steps (%lld epochs) in %.2f s\n", (long long)r.steps, (long long)r.epochs,
            r.seconds);
    if (r.ranks > 1)
      fprintf(stderr, "%d ranks: steps %.2f s, of which waiting for communication %.3f s (%.1f%%; %.3f ms per step)\n",
              r.ranks, r.step_seconds, r.comm_seconds, r.step_seconds > 0 ? 100 * r.comm_seconds / r.step_seconds : 0,
              r.timed_steps > 0 ? 1e3 * r.comm_seconds / (double)r.timed_steps : 0);
    print_metrics("val ", &r.best_val);
    print_metrics("test ", &r.test);
    if (cli_has(&a, "--json")) print_json(&r);
  }
  lathe_model_free(m);
  cli_args_free(&a);
  if (status && lathe_dist_size() > 1) lathe_dist_abort("lathe train failed on this rank");
  lathe_dist_finalize();
  return status;
}

int cmd_eval(int argc, char **argv) {
  cli_args a;
  const char *npy[CLI_MAXITEMS];
  lathe_eval_options o = {0};
  int status = cli_parse(argc, argv, "eval",
                         DATA_FLAGS " --weights=value --split=value --backend=value --gemm=value --precision=value "
                                    "--pipeline=value --comm-timeout=value", &a);
  lathe_options prec = {0};
  if (!status) status = cli_precision("eval", cli_value(&a, "--precision"), &prec.precision);
  o.data.compile = &prec;
  if (!status) status = data_options(&a, "eval", &o.data, npy, CLI_MAXITEMS);
  if (!status) status = cli_backend(cli_value(&a, "--backend"), &o.data.backend) ? 1 : 0;
  if (!status) status = cli_gemm("eval", cli_value(&a, "--gemm")) ? 1 : 0;
  o.weights = cli_value(&a, "--weights");
  o.split = cli_value(&a, "--split");
  if (!status && !o.weights) {
    fprintf(stderr, "lathe eval: error: no weights: give --weights FILE.safetensors\n");
    status = 1;
  }
  uint64_t stages = 0;
  int stages_given = 0;
  double timeout = -1;
  if (!status && (cli_u64(&a, "eval", "--pipeline", &stages, &stages_given) ||
                  count_flag("eval", "--pipeline", stages, stages_given, 64) ||
                  comm_timeout_option(&a, "eval", &timeout)))
    status = 1;
  o.data.pipeline = (int)stages;
  if (status) { cli_args_free(&a); return status; }
  lathe_error err = {0};
  /* --pipeline K under mpirun -np K: rank s evaluates stage s, the last prints */
  if (stages > 1 && lathe_dist_init(&err)) {
    status = cli_report(&err);
    cli_args_free(&a);
    return status;
  }
  if (timeout >= 0) lathe_dist_set_timeout(timeout);
  lathe_model *m = cli_load_model(&a, &status);
  lathe_metrics mt;
  if (m && lathe_eval(m, &o, &mt, &err)) status = cli_report(&err);
  else if (m && lathe_dist_rank() == lathe_dist_size() - 1) print_metrics("", &mt);
  lathe_model_free(m);
  cli_args_free(&a);
  if (status && lathe_dist_size() > 1) lathe_dist_abort("lathe eval failed on this rank");
  lathe_dist_finalize();
  return status;
}
