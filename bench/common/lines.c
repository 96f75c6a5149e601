/* lines.c — reading input files a line at a time (see lines.h). */
#include "lines.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bench_lines_load(const char *tool, const char *path, size_t max, size_t elem_size, bench_line_fn take, void *arg,
                     void **arr, size_t *n) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "%s: %s: %s\n", tool, path, strerror(errno));
    return -1;
  }
  size_t cap = 0;
  int rc = 0;
  char line[8192];
  *arr = NULL;
  *n = 0;
  while ((max == 0 || *n < max) && fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = '\0';
    if (!line[0]) continue;
    if (*n == cap) {
      cap = cap ? cap * 2 : 1024;
      void *t = realloc(*arr, cap * elem_size);
      if (!t) break;
      *arr = t;
    }
    rc = take(line, (char *)*arr + *n * elem_size, arg);
    if (rc < 0) break;
    if (rc == 0) (*n)++;
  }
  fclose(f);
  return rc < 0 ? -1 : 0;
}
