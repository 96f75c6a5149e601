/* lines.h — reading a bench tool's input file (access tokens, devices) into
 * an array, one element a line.
 *
 * Where it sits: bench/common (benchcommon); main thread, before the run. */
#ifndef BENCH_COMMON_LINES_H
#define BENCH_COMMON_LINES_H
#include <stddef.h>

/* Fill *elem from line (CR/LF stripped, never empty): 0 = taken, 1 = skip
 * the line, < 0 = a fatal error (the callback reports it on stderr). */
typedef int (*bench_line_fn)(const char *line, void *elem, void *arg);

/* Read path a line at a time into *arr, an array of elements of elem_size
 * bytes grown with realloc, until max elements are taken (0 = no limit) or the
 * file ends; *n gets the count. When memory runs out the lines read so far are
 * kept. Returns 0, or -1 if the file cannot be opened (reported on stderr as
 * "tool: path: why") or take failed; either way the caller owns *arr (NULL or
 * *n elements) and frees it and what its elements own. */
int bench_lines_load(const char *tool, const char *path, size_t max, size_t elem_size, bench_line_fn take, void *arg,
                     void **arr, size_t *n);
#endif
