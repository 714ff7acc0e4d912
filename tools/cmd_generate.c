/* cmd_generate.c -- `lathe generate`: flags to lathe_generate_options; the
 * prompt and each generated character to stdout as it comes, statistics to
 * stderr. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "tools/cli.h"

static int put_char(void *user, int token, int byte) {
  (void)user, (void)token;
  if (byte >= 0) {
    putchar(byte);
    fflush(stdout);
  }
  return 0;
}

static int parse_options(const cli_args *a, lathe_generate_options *o) {
  uint64_t tokens = 0, top_k = 0;
  int given = 0;
  if (cli_u64(a, "generate", "--tokens", &tokens, &given) || cli_u64(a, "generate", "--top-k", &top_k, NULL) ||
      cli_u64(a, "generate", "--seed", &o->seed, NULL) || cli_double(a, "generate", "--temperature", &o->temperature) ||
      cli_backend(cli_value(a, "--backend"), &o->backend))
    return 1;
  o->weights = cli_value(a, "--weights");
  o->prompt = cli_value(a, "--prompt");
  o->recompute = cli_has(a, "--recompute");
  if (!o->weights) {
    fprintf(stderr, "lathe generate: error: no weights: give --weights FILE.safetensors (lathe train writes them)\n");
    return 1;
  }
  if (!given) {
    fprintf(stderr, "lathe generate: error: give --tokens N, the number of tokens to generate\n");
    return 1;
  }
  if (tokens > ((uint64_t)1 << 32) || top_k > 1u << 20) {
    fprintf(stderr, "lathe generate: error: --tokens or --top-k is too large\n");
    return 1;
  }
  if (!(o->temperature >= 0) || isinf(o->temperature)) {
    fprintf(stderr, "lathe generate: error: --temperature must be a finite number >= 0 (0 is greedy)\n");
    return 1;
  }
  o->tokens = (int64_t)tokens;
  o->top_k = (int)top_k;
  return 0;
}

int cmd_generate(int argc, char **argv) {
  cli_args a;
  lathe_generate_options o = {.temperature = 1.0, .on_token = put_char};
  int status = cli_parse(argc, argv, "generate",
                         "--weights=value --prompt=value --tokens=value --temperature=value --top-k=value "
                         "--seed=value --backend=value --bind=pair --recompute=bool",
                         &a);
  if (status) return 1;
  status = parse_options(&a, &o);
  lathe_model *m = status ? NULL : cli_load_model(&a, &status);
  if (m) {
    lathe_error err = {0};
    lathe_generate_result r;
    if (o.prompt) fputs(o.prompt, stdout);
    fflush(stdout);
    if (lathe_generate(m, &o, &r, &err)) {
      putchar('\n');
      status = cli_report(&err);
    } else {
      putchar('\n');
      if (r.note[0]) fprintf(stderr, "note: %s\n", r.note);
      fprintf(stderr, "generated %lld tokens in %.3f s: %.1f tokens/s (%s; prompt: %lld tokens in %.3f s)\n",
              (long long)r.generated, r.seconds, r.tokens_per_s, r.cached ? "key/value cache" : "full recompute",
              (long long)r.prompt_tokens, r.prefill_seconds);
    }
  }
  lathe_model_free(m);
  cli_args_free(&a);
  return status;
}
