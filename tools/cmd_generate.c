/* cmd_generate.c -- `lathe generate`: flags to lathe_generate_options; the
 * prompt and each generated character to stdout as they come, statistics to
 * stderr. Nothing reaches stdout until generation has begun, so a model or
 * weights lathe_generate refuses leave stdout empty; a write error on stdout
 * (a closed pipe with SIGPIPE ignored, a full disk) stops generation at once
 * instead of generating into the void. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli.h"

/* Caps that keep every count in range; generation streams, so a large
 * --tokens costs time, not memory. Documented in `lathe generate --help`. */
#define MAX_TOKENS ((uint64_t)1 << 32)
#define MAX_TOP_K ((uint64_t)1 << 20)

typedef struct {
  const char *prompt;
  int started;   /* the prompt is on stdout */
  int werr;      /* errno of a failed write to stdout, 0 if none */
} out_state;

static int flush_out(out_state *s) {
  if ((fflush(stdout) || ferror(stdout)) && !s->werr) s->werr = errno ? errno : EIO;
  return s->werr != 0;
}

/* The prompt goes out with the first token (or at the end, for --tokens 0). */
static void start(out_state *s) {
  if (s->started) return;
  s->started = 1;
  if (s->prompt) fputs(s->prompt, stdout);
}

static int put_char(void *user, int token, int byte) {
  out_state *s = user;
  start(s);
  if (byte >= 0) putchar(byte);
  else printf("%d ", token); /* a tokenizer's vocabulary (not text): the token ids */
  return flush_out(s); /* non-zero: stop generating */
}

/* The prompt is tokenised as text data is: other bytes are dropped. Only the
 * 96-character vocabulary drops any (256 is every byte). */
static void note_dropped(const lathe_generate_result *r, const char *prompt) {
  if (r->prompt_dropped == 0 || r->first_dropped < 0) return;
  fprintf(stderr,
          "note: dropped %lld prompt byte%s outside the 96-character vocabulary (newline, tab and printable ASCII); "
          "the first is byte %lld (0x%02x)\n",
          (long long)r->prompt_dropped, r->prompt_dropped == 1 ? "" : "s", (long long)r->first_dropped + 1,
          (unsigned char)prompt[r->first_dropped]);
}

static int parse_options(const cli_args *a, lathe_generate_options *o) {
  uint64_t tokens = 0, top_k = 0;
  int given = 0;
  if (cli_u64(a, "generate", "--tokens", &tokens, &given) || cli_u64(a, "generate", "--top-k", &top_k, NULL) ||
      cli_u64(a, "generate", "--seed", &o->seed, NULL) || cli_double(a, "generate", "--temperature", &o->temperature) ||
      cli_backend(cli_value(a, "--backend"), &o->backend) || cli_precision("generate", cli_value(a, "--precision"), &o->precision))
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
  if (tokens > MAX_TOKENS || top_k > MAX_TOP_K) {
    int t = tokens > MAX_TOKENS;
    fprintf(stderr, "lathe generate: error: %s %llu is above the maximum, %llu\n", t ? "--tokens" : "--top-k",
            (unsigned long long)(t ? tokens : top_k), (unsigned long long)(t ? MAX_TOKENS : MAX_TOP_K));
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

static int report(const lathe_generate_result *r, const char *prompt) {
  note_dropped(r, prompt);
  if (r->note[0]) fprintf(stderr, "note: %s\n", r->note);
  fprintf(stderr, "generated %lld tokens in %.3f s: %.1f tokens/s (%s; prompt: %lld tokens in %.3f s)\n",
          (long long)r->generated, r->seconds, r->tokens_per_s, r->cached ? "key/value cache" : "full recompute",
          (long long)r->prompt_tokens, r->prefill_seconds);
  return 0;
}

int cmd_generate(int argc, char **argv) {
  cli_args a;
  out_state out = {0};
  lathe_generate_options o = {.temperature = 1.0, .on_token = put_char, .user = &out};
  int status = cli_parse(argc, argv, "generate",
                         "--weights=value --prompt=value --tokens=value --temperature=value --top-k=value "
                         "--seed=value --backend=value --bind=pair --recompute=bool --precision=value",
                         &a);
  if (status) return 1;
  status = parse_options(&a, &o);
  out.prompt = o.prompt;
  lathe_model *m = status ? NULL : cli_load_model(&a, &status);
  if (m) {
    lathe_error err = {0};
    lathe_generate_result r;
    int failed = lathe_generate(m, &o, &r, &err) != 0;
    if (!failed || out.started) { /* end the text with a newline; nothing at all if it never began */
      start(&out);
      putchar('\n');
      flush_out(&out);
    }
    if (failed) status = cli_report(&err);
    else if (out.werr) {
      fprintf(stderr, "lathe generate: error: cannot write the text to stdout: %s\n", strerror(out.werr));
      status = 1;
    } else status = report(&r, o.prompt);
  }
  lathe_model_free(m);
  cli_args_free(&a);
  return status;
}
