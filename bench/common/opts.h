/* opts.h — command-line options of the bench tools, declared as one table
 * (name, type, where the value goes) instead of an enum, a getopt_long table
 * and a switch that must agree.
 *
 * Where it sits: bench/common (benchcommon); main thread, at start-up. */
#ifndef BENCH_COMMON_OPTS_H
#define BENCH_COMMON_OPTS_H
#include <stdio.h>

enum bench_opt_type {
  BENCH_OPT_FLAG,   /* no argument; bool = true */
  BENCH_OPT_INT,    /* int, atoi */
  BENCH_OPT_DOUBLE, /* double, atof */
  BENCH_OPT_STR,    /* const char *, the argv string itself */
  BENCH_OPT_SIZE,   /* size_t, atol */
  BENCH_OPT_U64,    /* uint64_t, atol */
};

/* One option: --name (and -short_name when not 0); dst points to a variable of
 * the type's C type. A table ends with a NULL name. */
struct bench_opt {
  const char *name;
  char short_name;
  enum bench_opt_type type;
  void *dst;
};

/* Parse argv by the table (at most 32 options); --help / -h prints usage to
 * stdout and exits 0. Returns 0, or -1 after printing usage to stderr on an
 * unknown option, a missing argument or a stray non-option argument. Values
 * are not range-checked: that is the caller's, after this returns. */
int bench_opts_parse(int argc, char **argv, const struct bench_opt *opts, void (*usage)(FILE *));
#endif
