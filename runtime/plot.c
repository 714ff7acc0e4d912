/* plot.c -- learning curves as a standalone SVG file: a frame, 1-2-5 ticks
 * with grid lines and labels, one path per series (broken at non-finite
 * points), a legend. Plain SVG 1.1 that any browser shows; no scripts, no
 * external fonts. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "runtime.h"

#define W 800.0
#define H 500.0
#define LEFT 80.0
#define RIGHT 30.0
#define TOP 50.0
#define BOTTOM 60.0
#define DOTS_MAX 60   /* draw a dot per point when a series is this short */

static const char *colours[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"};

/* A growing string; err set once any allocation fails. */
typedef struct {
  char *s;
  size_t n, cap;
  int err;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) {
  if (b->err) return;
  if (!b->s && !(b->s = malloc(b->cap = 4096))) {
    b->err = 1;
    return;
  }
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    if (k < 0) {
      b->err = 1;
      return;
    }
    if ((size_t)k < b->cap - b->n) {
      b->n += (size_t)k;
      return;
    }
    size_t cap = (b->cap + (size_t)k + 1) * 2;
    char *s = realloc(b->s, cap);
    if (!s) {
      b->err = 1;
      return;
    }
    b->s = s, b->cap = cap;
  }
}

/* Text with XML's special characters escaped. */
static void put_text(sbuf *b, const char *t) {
  for (; t && *t; t++) {
    switch (*t) {
      case '&': put(b, "&amp;"); break;
      case '<': put(b, "&lt;"); break;
      case '>': put(b, "&gt;"); break;
      case '"': put(b, "&quot;"); break;
      default:
        if ((unsigned char)*t >= 0x20 || *t == '\t') put(b, "%c", *t);
    }
  }
}

/* An axis: data range [lo, hi] widened to whole ticks of size step. */
typedef struct {
  double lo, hi, step;
} axis;

static double nice_step(double raw) {
  double p = pow(10, floor(log10(raw))), f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

static axis make_axis(double lo, double hi) {
  if (!(lo <= hi)) lo = 0, hi = 1;
  if (hi - lo < 1e-12 * (fabs(lo) + fabs(hi)) || hi == lo) {
    double d = lo == 0 ? 1 : fabs(lo) * 0.1;
    lo -= d, hi += d;
  }
  axis a = {lo, hi, nice_step((hi - lo) / 5)};
  a.lo = floor(lo / a.step + 1e-9) * a.step;
  a.hi = ceil(hi / a.step - 1e-9) * a.step;
  return a;
}

typedef struct {
  axis x, y;
  int logy;
} frame;

static double px(const frame *f, double x) { return LEFT + (x - f->x.lo) / (f->x.hi - f->x.lo) * (W - LEFT - RIGHT); }
static double py(const frame *f, double y) { return H - BOTTOM - (y - f->y.lo) / (f->y.hi - f->y.lo) * (H - TOP - BOTTOM); }

/* The plotted y of a value, or NAN when it cannot be drawn. */
static double yval(int logy, double y) {
  if (!isfinite(y)) return NAN;
  if (logy) return y > 0 ? log10(y) : NAN;
  return y;
}

static frame fit_frame(const rt_plot_series *s, int ns, int logy) {
  double xl = INFINITY, xh = -INFINITY, yl = INFINITY, yh = -INFINITY;
  for (int i = 0; i < ns; i++)
    for (int64_t k = 0; k < s[i].n; k++) {
      double x = s[i].x[k], y = yval(logy, s[i].y[k]);
      if (!isfinite(x) || isnan(y)) continue;
      xl = fmin(xl, x), xh = fmax(xh, x), yl = fmin(yl, y), yh = fmax(yh, y);
    }
  frame f = {make_axis(xl, xh), make_axis(yl, yh), logy};
  return f;
}

static void tick_label(char *b, size_t n, double v, double step, int logy) {
  if (fabs(v) < step * 1e-9) v = 0;
  if (logy) v = pow(10, v);
  snprintf(b, n, "%.6g", v);
}

static void put_axes(sbuf *b, const frame *f) {
  double x0 = LEFT, x1 = W - RIGHT, y0 = H - BOTTOM, y1 = TOP;
  char t[48];
  put(b, "<g font-family=\"sans-serif\" font-size=\"12\" fill=\"#333\">\n");
  for (double v = f->x.lo; v <= f->x.hi + f->x.step * 1e-6; v += f->x.step) {
    double x = px(f, v);
    tick_label(t, sizeof t, v, f->x.step, 0);
    put(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n", x, y0, x, y1);
    put(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", x, y0, x, y0 + 5);
    put(b, "<text class=\"xtick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", x, y0 + 19, t);
  }
  for (double v = f->y.lo; v <= f->y.hi + f->y.step * 1e-6; v += f->y.step) {
    double y = py(f, v);
    tick_label(t, sizeof t, v, f->y.step, f->logy);
    put(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n", x0, y, x1, y);
    put(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", x0 - 5, y, x0, y);
    put(b, "<text class=\"ytick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", x0 - 8, y + 4, t);
  }
  put(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n</g>\n", x0,
      y1, x1 - x0, y0 - y1);
}

static void put_labels(sbuf *b, const rt_plot_opts *o) {
  double cx = (LEFT + W - RIGHT) / 2, cy = (TOP + H - BOTTOM) / 2;
  put(b, "<g font-family=\"sans-serif\" fill=\"#000\">\n<text class=\"title\" x=\"%.1f\" y=\"30\" "
      "font-size=\"16\" text-anchor=\"middle\">", cx);
  put_text(b, o->title ? o->title : "learning curves");
  put(b, "</text>\n<text class=\"xlabel\" x=\"%.1f\" y=\"%.1f\" font-size=\"13\" text-anchor=\"middle\">", cx, H - 15);
  put_text(b, o->xlabel ? o->xlabel : "epoch");
  put(b, "</text>\n<text class=\"ylabel\" x=\"20\" y=\"%.1f\" font-size=\"13\" text-anchor=\"middle\" "
      "transform=\"rotate(-90 20 %.1f)\">", cy, cy);
  put_text(b, o->ylabel ? o->ylabel : "loss");
  put(b, "%s</text>\n</g>\n", o->logy ? " (log scale)" : "");
}

static void put_series(sbuf *b, const frame *f, const rt_plot_series *s, const char *colour) {
  put(b, "<path class=\"series\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" stroke-linejoin=\"round\" d=\"",
      colour);
  int pen = 0, any = 0;
  for (int64_t k = 0; k < s->n; k++) {
    double y = yval(f->logy, s->y[k]);
    if (!isfinite(s->x[k]) || isnan(y)) {
      pen = 0;
      continue;
    }
    put(b, "%s%.1f %.1f", pen ? " L" : any ? " M" : "M", px(f, s->x[k]), py(f, y));
    pen = any = 1;
  }
  if (!any) put(b, "M0 0");
  put(b, "\"/>\n");
  if (s->n > DOTS_MAX) return;
  for (int64_t k = 0; k < s->n; k++) {
    double y = yval(f->logy, s->y[k]);
    if (isfinite(s->x[k]) && !isnan(y))
      put(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", px(f, s->x[k]), py(f, y), colour);
  }
}

static void put_legend(sbuf *b, const rt_plot_series *s, int ns) {
  double x = W - RIGHT - 170, y = TOP + 10;
  put(b, "<g class=\"legend\" font-family=\"sans-serif\" font-size=\"12\">\n<rect x=\"%.1f\" y=\"%.1f\" "
      "width=\"160\" height=\"%d\" fill=\"#fff\" fill-opacity=\"0.85\" stroke=\"#999\"/>\n", x, y, 8 + 18 * ns);
  for (int i = 0; i < ns; i++) {
    double ly = y + 16 + 18 * i;
    put(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n", x + 8,
        ly - 4, x + 32, ly - 4, colours[i % 6]);
    put(b, "<text x=\"%.1f\" y=\"%.1f\">", x + 40, ly);
    put_text(b, s[i].name ? s[i].name : "");
    put(b, "</text>\n");
  }
  put(b, "</g>\n");
}

int rt_plot_svg_string(const rt_plot_opts *o, const rt_plot_series *s, int ns, char **out, char *msg, size_t msgn) {
  *out = NULL;
  rt_plot_opts none = {0};
  if (!o) o = &none;
  frame f = fit_frame(s, ns, o->logy);
  sbuf b = {0};
  put(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" "
      "width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\">\n<title>", W, H, W, H);
  put_text(&b, o->title ? o->title : "learning curves");
  put(&b, "</title>\n<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n");
  put_axes(&b, &f);
  put_labels(&b, o);
  for (int i = 0; i < ns; i++) put_series(&b, &f, &s[i], colours[i % 6]);
  if (ns > 0) put_legend(&b, s, ns);
  put(&b, "</svg>\n");
  if (b.err) {
    free(b.s);
    snprintf(msg, msgn, "out of memory while drawing the plot");
    return -1;
  }
  *out = b.s;
  return 0;
}

int rt_plot_svg(const char *path, const rt_plot_opts *o, const rt_plot_series *s, int ns, char *msg, size_t msgn) {
  char *svg;
  if (rt_plot_svg_string(o, s, ns, &svg, msg, msgn) < 0) return -1;
  rt_chunk c = {svg, strlen(svg)};
  int rc = rt_write_atomic(path, &c, 1, msg, msgn);
  free(svg);
  return rc;
}
