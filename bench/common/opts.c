/* opts.c — table-driven command-line parsing (see opts.h). */
#include "opts.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OPTS 32
#define LONG_ONLY 256 /* getopt_long value of option i without a short name: LONG_ONLY + i */

static void store(const struct bench_opt *o, const char *arg) {
  switch (o->type) {
  case BENCH_OPT_FLAG: *(bool *)o->dst = true; break;
  case BENCH_OPT_INT: *(int *)o->dst = atoi(arg); break;
  case BENCH_OPT_DOUBLE: *(double *)o->dst = atof(arg); break;
  case BENCH_OPT_STR: *(const char **)o->dst = arg; break;
  case BENCH_OPT_SIZE: *(size_t *)o->dst = (size_t)atol(arg); break;
  case BENCH_OPT_U64: *(uint64_t *)o->dst = (uint64_t)atol(arg); break;
  }
}

int bench_opts_parse(int argc, char **argv, const struct bench_opt *opts, void (*usage)(FILE *)) {
  struct option lo[MAX_OPTS + 2];
  char shorts[2 * MAX_OPTS + 2];
  size_t n = 0, ns = 0;
  for (; opts[n].name; n++) {
    if (n == MAX_OPTS) abort(); /* a tool's table is larger than this parser: a programming error */
    int has_arg = opts[n].type == BENCH_OPT_FLAG ? no_argument : required_argument;
    int val = opts[n].short_name ? opts[n].short_name : LONG_ONLY + (int)n;
    lo[n] = (struct option){opts[n].name, has_arg, NULL, val};
    if (opts[n].short_name) {
      shorts[ns++] = opts[n].short_name;
      if (has_arg == required_argument) shorts[ns++] = ':';
    }
  }
  lo[n] = (struct option){"help", no_argument, NULL, 'h'};
  lo[n + 1] = (struct option){0, 0, 0, 0};
  shorts[ns++] = 'h';
  shorts[ns] = '\0';
  int ch;
  while ((ch = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
    if (ch == 'h') {
      usage(stdout);
      exit(0);
    }
    size_t i = 0;
    if (ch >= LONG_ONLY && (size_t)(ch - LONG_ONLY) < n)
      i = (size_t)(ch - LONG_ONLY);
    else
      while (i < n && (opts[i].short_name == 0 || opts[i].short_name != ch)) i++;
    if (ch == '?' || i == n) {
      usage(stderr);
      return -1;
    }
    store(&opts[i], optarg);
  }
  if (optind != argc) {
    usage(stderr);
    return -1;
  }
  return 0;
}
