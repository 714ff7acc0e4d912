/* test_plot.c -- the SVG learning-curve plot (structure, escaping, broken
 * lines, parsed by Python's xml.etree when /usr/bin/python3 is there) and
 * the JSONL log. The progress line is tested in test_feedback.c. */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"
#include "runtime.h"
#include "test.h"

static char msg[512];

static int count(const char *s, const char *what) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, what)); p += strlen(what)) n++;
  return n;
}

static void test_svg_structure(void) {
  double ex[5] = {1, 2, 3, 4, 5}, tr[5] = {2.3, 1.1, 0.62, 0.4, 0.31}, va[5] = {2.1, 1.3, NAN, 0.55, 0.5};
  rt_plot_series s[2] = {{"train loss", ex, tr, 5}, {"val <loss> & co", ex, va, 5}};
  rt_plot_opts o = {"digits \"mlp\"", "epoch", "loss", 0};
  char *svg;
  CHECK(rt_plot_svg_string(&o, s, 2, &svg, msg, sizeof msg) == 0);
  CHECK(strncmp(svg, "<?xml version=\"1.0\"", 19) == 0);
  CHECK(strstr(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\"") != NULL);
  CHECK(strstr(svg, "</svg>\n") != NULL);
  CHECK(count(svg, "<path class=\"series\"") == 2);
  CHECK(strstr(svg, "val &lt;loss&gt; &amp; co") != NULL);        /* escaped legend */
  CHECK(strstr(svg, "digits &quot;mlp&quot;") != NULL);           /* escaped title */
  CHECK(count(svg, "<circle") == 9);                               /* the NaN is not drawn */
  /* x ticks 1..5 and y ticks 0, 0.5, ... 2.5 */
  CHECK(strstr(svg, "class=\"xtick\" x=\"80.0\" y=\"459.0\" text-anchor=\"middle\">1<") != NULL);
  CHECK(count(svg, "class=\"xtick\"") == 5);                      /* step 1 from 1 to 5 */
  CHECK(strstr(svg, ">2.5</text>") != NULL && strstr(svg, ">0</text>") != NULL);
  CHECK(strstr(svg, ">epoch</text>") != NULL && strstr(svg, "rotate(-90") != NULL);
  /* The val series restarts its path after the NaN: one " M" move inside. */
  const char *second = strstr(strstr(svg, "<path class=\"series\"") + 1, "<path class=\"series\"");
  CHECK(second && strstr(second, " M") && strstr(second, " M") < strstr(second, "/>"));
  free(svg);

  /* Degenerate input: no series, a constant series, only NaNs, log scale. */
  CHECK(rt_plot_svg_string(NULL, NULL, 0, &svg, msg, sizeof msg) == 0 && strstr(svg, "</svg>"));
  free(svg);
  double one[1] = {3}, nan1[1] = {NAN};
  rt_plot_series c = {"c", one, one, 1}, n = {"n", one, nan1, 1};
  CHECK(rt_plot_svg_string(&o, &c, 1, &svg, msg, sizeof msg) == 0 && count(svg, "<circle") == 1);
  free(svg);
  CHECK(rt_plot_svg_string(&o, &n, 1, &svg, msg, sizeof msg) == 0 && count(svg, "<circle") == 0);
  free(svg);
  rt_plot_opts lg = {"log", "step", "loss", 1};
  double big[4] = {1000, 10, 0.1, -1}, xs[4] = {0, 100, 200, 300};
  rt_plot_series l = {"loss", xs, big, 4};
  CHECK(rt_plot_svg_string(&lg, &l, 1, &svg, msg, sizeof msg) == 0);
  CHECK(count(svg, "<circle") == 3 && strstr(svg, ">1000</text>") && strstr(svg, "(log scale)"));
  free(svg);
}

/* Writes a plot and has Python's XML parser read it back. */
static void test_svg_parses(void) {
  char path[] = "/tmp/lathe_test_plot_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return;
  close(fd);
  double x[200], tr[200], va[200];
  for (int i = 0; i < 200; i++) x[i] = i * 5, tr[i] = 2.0 / (1 + i * 0.1), va[i] = 2.2 / (1 + i * 0.08);
  rt_plot_series s[2] = {{"train loss", x, tr, 200}, {"val loss", x, va, 200}};
  rt_plot_opts o = {"learning curves", "step", "loss", 0};
  CHECK(rt_plot_svg(path, &o, s, 2, msg, sizeof msg) == 0);
  if (access("/usr/bin/python3", X_OK) == 0) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import sys, xml.etree.ElementTree as E; r = E.parse('%s').getroot(); "
             "ns = '{http://www.w3.org/2000/svg}'; "
             "assert r.tag == ns + 'svg', r.tag; "
             "assert len(r.findall('.//' + ns + 'path')) == 2; "
             "assert len(r.findall('.//' + ns + 'text')) >= 10; "
             "assert len(r.findall('.//' + ns + 'circle')) == 0\"",
             path);
    CHECK_MSG(system(cmd) == 0, "xml.etree rejected %s", path);
  }
  if (access("/usr/bin/rsvg-convert", X_OK) == 0) {
    /* Rendered by librsvg as a browser would: it must draw without error. */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/rsvg-convert '%s' -o '%s.png' && test -s '%s.png'", path, path, path);
    CHECK_MSG(system(cmd) == 0, "rsvg-convert could not render %s", path);
    snprintf(cmd, sizeof cmd, "%s.png", path);
    unlink(cmd);
  }
  CHECK(rt_plot_svg("/nonexistent/dir/p.svg", &o, s, 2, msg, sizeof msg) == -1);
  unlink(path);
}

/* ---- JSONL log ---- */

static void test_log(void) {
  char path[] = "/tmp/lathe_test_log_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return;
  close(fd);
  rt_log *l;
  CHECK(rt_log_open(&l, path, 0, msg, sizeof msg) == 0);
  rt_metric m1[1] = {{"loss", 0.5}}, m2[2] = {{"loss", 0.25}, {"accuracy", NAN}};
  CHECK(rt_log_event(l, "train", 1, 10, m1, 1, msg, sizeof msg) == 0);
  CHECK(rt_log_event(l, "val", 1, 10, m2, 2, msg, sizeof msg) == 0);
  rt_log_close(l);
  char *text;
  size_t len;
  CHECK(rt_read_file(path, &text, &len, msg, sizeof msg) == 0);
  CHECK(count(text, "\n") == 2);
  char *nl = strchr(text, '\n');
  *nl = 0;
  json_object *a = json_tokener_parse(text), *b = json_tokener_parse(nl + 1), *v;
  CHECK(a && b);
  if (a && b) {
    CHECK(json_object_object_get_ex(a, "split", &v) && strcmp(json_object_get_string(v), "train") == 0);
    CHECK(json_object_object_get_ex(a, "step", &v) && json_object_get_int64(v) == 10);
    CHECK(json_object_object_get_ex(a, "loss", &v) && json_object_get_double(v) == 0.5);
    CHECK(json_object_object_get_ex(b, "accuracy", &v) && v == NULL); /* NaN -> null */
    CHECK(json_object_object_get_ex(b, "time", &v) && json_object_get_double(v) >= 0);
  }
  json_object_put(a);
  json_object_put(b);
  free(text);
  unlink(path);
  CHECK(rt_log_open(&l, "/nonexistent/dir/log.jsonl", 0, msg, sizeof msg) == -1);
  CHECK_STR(msg, "cannot write '/nonexistent/dir/log.jsonl': No such file or directory");
}

int main(void) {
  test_svg_structure();
  test_svg_parses();
  test_log();
  return TEST_REPORT();
}
