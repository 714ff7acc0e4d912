/* progress.c -- the live training line and the JSONL metric log.
 *
 * The progress line is the one place in the runtime that prints, and only to
 * the FILE its caller hands over. Redraws are rate-limited (a terminal 4 per
 * second, a log file 1 per second) so printing never costs training time.
 * An epoch's last step is not drawn by rt_progress_step but by
 * rt_progress_epoch, after validation, so the line that closes an epoch
 * carries that epoch's own validation score, never the previous one's. */
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "data.h"

#define TTY_INTERVAL 0.25
#define PLAIN_INTERVAL 1.0

struct rt_progress {
  FILE *out;
  int tty;
  int64_t epochs, steps, batch;
  double (*clock)(void *);
  void *ctx;
  double start, last_print;
  int64_t done;             /* steps taken since start */
  int live;                 /* a live line is on screen */
  int64_t epoch, step;      /* the latest step, for the epoch's closing line */
  double loss, lr;
  /* a data-parallel job: seconds inside steps and, of those, inside the
   * collectives (rank 0's), so the line shows what communication costs */
  int64_t comm_steps;
  double step_s, comm_s;
};

static double mono_clock(void *ctx) {
  (void)ctx;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

rt_progress *rt_progress_new(FILE *out, int tty, int64_t epochs, int64_t steps_per_epoch, int64_t batch) {
  rt_progress *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->out = out;
  p->tty = tty >= 0 ? tty : isatty(fileno(out));
  p->epochs = epochs, p->steps = steps_per_epoch, p->batch = batch;
  p->clock = mono_clock;
  p->start = p->clock(NULL);
  p->last_print = -1e300;
  return p;
}

void rt_progress_set_clock(rt_progress *p, double (*clock)(void *), void *ctx) {
  p->clock = clock, p->ctx = ctx;
  p->start = clock(ctx);
}

/* "1:02:03" or "2:03". */
static void fmt_duration(char *b, size_t n, double s) {
  if (!isfinite(s) || s < 0) {
    snprintf(b, n, "?");
    return;
  }
  long t = (long)(s + 0.5);
  if (t >= 3600) snprintf(b, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else snprintf(b, n, "%ld:%02ld", t / 60, t % 60);
}

/* The line for the latest step; val is "" or "  val NAME VALUE". A closing
 * line (end = 1) stays on a terminal: it ends with a newline there too. */
static void draw(rt_progress *p, const char *val, int end, double now) {
  double el = now - p->start, rate = el > 0 ? (double)p->done / el : 0;
  int64_t left = p->epochs * p->steps - ((p->epoch - 1) * p->steps + p->step);
  char eta[32], comm[96] = "";
  fmt_duration(eta, sizeof eta, rate > 0 ? (double)left / rate : NAN);
  if (p->comm_steps > 0 && p->step_s > 0)
    snprintf(comm, sizeof comm, "  comm wait %.2f ms/step (%.1f%%)", 1e3 * p->comm_s / (double)p->comm_steps,
             100 * p->comm_s / p->step_s);
  fprintf(p->out, "%sepoch %lld/%lld  step %lld/%lld  loss %.4f  lr %.3g%s  %.0f samples/s%s  ETA %s%s",
          p->tty ? "\r\033[K" : "", (long long)p->epoch, (long long)p->epochs, (long long)p->step,
          (long long)p->steps, p->loss, p->lr, val, rate * (double)p->batch, comm, eta, p->tty && !end ? "" : "\n");
  fflush(p->out);
  p->live = p->tty && !end;
  p->last_print = now;
}

void rt_progress_step(rt_progress *p, int64_t epoch, int64_t step, double loss, double lr) {
  if (!p) return;
  p->done++;
  p->epoch = epoch, p->step = step, p->loss = loss, p->lr = lr;
  double now = p->clock(p->ctx);
  /* the last step waits for rt_progress_epoch and its validation score */
  if (step < p->steps && now - p->last_print >= (p->tty ? TTY_INTERVAL : PLAIN_INTERVAL)) draw(p, "", 0, now);
}

void rt_progress_comm(rt_progress *p, int64_t steps, double step_s, double comm_s) {
  if (p) p->comm_steps = steps, p->step_s = step_s, p->comm_s = comm_s;
}

void rt_progress_epoch(rt_progress *p, const char *metric, double value) {
  if (!p || p->epoch < 1) return;
  char val[64] = "";
  if (metric) snprintf(val, sizeof val, "  val %.31s %.4f", metric, value);
  draw(p, val, 1, p->clock(p->ctx));
}

void rt_progress_note(rt_progress *p, const char *text) {
  if (!p) return;
  fprintf(p->out, "%s%s\n", p->live ? "\r\033[K" : "", text);
  fflush(p->out);
  p->live = 0;
}

void rt_progress_free(rt_progress *p) {
  if (!p) return;
  if (p->live) fputc('\n', p->out), fflush(p->out);
  free(p);
}

/* ---- JSONL log ---- */

struct rt_log {
  FILE *f;
  char *path;
  double start;
};

int rt_log_open(rt_log **out, const char *path, int append, char *msg, size_t msgn) {
  *out = NULL;
  rt_log *l = calloc(1, sizeof *l);
  FILE *f = l ? fopen(path, append ? "a" : "w") : NULL;
  if (!f) {
    snprintf(msg, msgn, "cannot write '%s': %s", path, l ? strerror(errno) : "out of memory");
    free(l);
    return -1;
  }
  l->f = f;
  l->path = strdup(path);
  l->start = mono_clock(NULL);
  *out = l;
  return 0;
}

/* The shortest text that reads back as exactly v (0.05, not
 * 0.050000000000000003). JSON has no NaN or infinity: those are null. */
static json_object *number(double v) {
  if (!isfinite(v)) return NULL;
  char b[32];
  for (int digits = 15; digits <= 17; digits++) {
    snprintf(b, sizeof b, "%.*g", digits, v);
    if (strtod(b, NULL) == v) break;
  }
  return json_object_new_double_s(v, b);
}

int rt_log_event(rt_log *l, const char *split, int64_t epoch, int64_t step, const rt_metric *m, int n, char *msg,
                 size_t msgn) {
  json_object *o = json_object_new_object();
  if (!o) {
    snprintf(msg, msgn, "out of memory");
    return -1;
  }
  json_object_object_add(o, "split", json_object_new_string(split));
  json_object_object_add(o, "epoch", json_object_new_int64(epoch));
  json_object_object_add(o, "step", json_object_new_int64(step));
  json_object_object_add(o, "time", number(round((mono_clock(NULL) - l->start) * 1e3) / 1e3));
  for (int i = 0; i < n; i++) json_object_object_add(o, m[i].name, number(m[i].value));
  const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
  int ok = fprintf(l->f, "%s\n", s) >= 0 && fflush(l->f) == 0;
  json_object_put(o);
  if (!ok) {
    snprintf(msg, msgn, "cannot write '%s': %s", l->path ? l->path : "log", strerror(errno));
    return -1;
  }
  return 0;
}

void rt_log_close(rt_log *l) {
  if (!l) return;
  fclose(l->f);
  free(l->path);
  free(l);
}
