/* sqlite_ceiling.c — the raw-SQLite ceiling for bench/run.sh.
 *
 * Inserts `rows` timeseries rows shaped like thingsd's ts_kv table (16-byte
 * entity blob, integer key id, ts, bool/long/double/string/json value columns,
 * PRIMARY KEY (entity_id, key, ts), WITHOUT ROWID) into a fresh database in WAL
 * mode, in transactions of `batch` rows, with the smart-meter pattern: each
 * message is three rows (pulseCounter long, leakage bool, batteryLevel long)
 * for one of `devices` devices. Prints one line:
 *   sqlite_ceiling rows=N batch=B devices=D seconds=S rows_per_s=R
 * Uses only SQLite and libc.
 *
 * usage: sqlite_ceiling [rows=60000] [devices=1000] [dbfile=/tmp/sqlite_ceiling.db] [batch=1000] */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int exec(sqlite3 *db, const char *sql) {
  char *err = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
    fprintf(stderr, "sqlite_ceiling: %s: %s\n", sql, err ? err : "?");
    sqlite3_free(err);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  long rows = argc > 1 ? atol(argv[1]) : 60000;
  long devices = argc > 2 ? atol(argv[2]) : 1000;
  const char *path = argc > 3 ? argv[3] : "/tmp/sqlite_ceiling.db";
  long batch = argc > 4 ? atol(argv[4]) : 1000;
  if (rows <= 0 || devices <= 0 || batch <= 0) {
    fprintf(stderr, "usage: sqlite_ceiling [rows] [devices] [dbfile] [batch]\n");
    return 2;
  }
  char aux[1200];
  unlink(path);
  snprintf(aux, sizeof aux, "%s-wal", path);
  unlink(aux);
  snprintf(aux, sizeof aux, "%s-shm", path);
  unlink(aux);

  sqlite3 *db;
  if (sqlite3_open(path, &db) != SQLITE_OK) {
    fprintf(stderr, "sqlite_ceiling: open %s: %s\n", path, sqlite3_errmsg(db));
    return 1;
  }
  if (exec(db, "PRAGMA journal_mode=WAL") || exec(db, "PRAGMA synchronous=NORMAL") ||
      exec(db, "PRAGMA cache_size=-65536") ||
      exec(db, "CREATE TABLE ts_kv (entity_id BLOB NOT NULL, key INTEGER NOT NULL, ts INTEGER NOT NULL,"
               " bool_v INTEGER, long_v INTEGER, dbl_v REAL, str_v TEXT, json_v TEXT,"
               " PRIMARY KEY (entity_id, key, ts)) WITHOUT ROWID"))
    return 1;
  sqlite3_stmt *ins;
  if (sqlite3_prepare_v2(db,
                         "INSERT OR REPLACE INTO ts_kv (entity_id, key, ts, bool_v, long_v, dbl_v, str_v, json_v)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, NULL, NULL, NULL)",
                         -1, &ins, NULL) != SQLITE_OK) {
    fprintf(stderr, "sqlite_ceiling: prepare: %s\n", sqlite3_errmsg(db));
    return 1;
  }
  /* device ids: time-based-UUID-like 16 bytes, distinct per device */
  unsigned char(*ids)[16] = calloc((size_t)devices, 16);
  if (!ids)
    return 1;
  for (long d = 0; d < devices; d++) {
    uint64_t hi = 0x1ee0000000001000ULL + (uint64_t)d * 7919u, lo = 0x8080808080800000ULL | (uint64_t)d;
    memcpy(ids[d], &hi, 8);
    memcpy(ids[d] + 8, &lo, 8);
  }
  int64_t ts0 = 1700000000000LL;
  double t0 = now_s();
  long done = 0, in_tx = 0;
  for (long msg = 0; done < rows; msg++) {
    long d = msg % devices;
    int64_t ts = ts0 + msg; /* one message per ms, like a wall-clock ts */
    for (int k = 0; k < 3 && done < rows; k++, done++) {
      if (in_tx == 0 && exec(db, "BEGIN"))
        return 1;
      sqlite3_bind_blob(ins, 1, ids[d], 16, SQLITE_STATIC);
      sqlite3_bind_int(ins, 2, k + 1);
      sqlite3_bind_int64(ins, 3, ts);
      if (k == 1) {
        sqlite3_bind_int(ins, 4, (int)(msg & 1));
        sqlite3_bind_null(ins, 5);
      } else {
        sqlite3_bind_null(ins, 4);
        sqlite3_bind_int64(ins, 5, k == 0 ? msg : 100 - (msg % 100));
      }
      if (sqlite3_step(ins) != SQLITE_DONE) {
        fprintf(stderr, "sqlite_ceiling: insert: %s\n", sqlite3_errmsg(db));
        return 1;
      }
      sqlite3_reset(ins);
      if (++in_tx == batch) {
        if (exec(db, "COMMIT"))
          return 1;
        in_tx = 0;
      }
    }
  }
  if (in_tx && exec(db, "COMMIT"))
    return 1;
  double secs = now_s() - t0;
  sqlite3_finalize(ins);
  sqlite3_close(db);
  free(ids);
  printf("sqlite_ceiling rows=%ld batch=%ld devices=%ld seconds=%.3f rows_per_s=%.0f\n", rows, batch, devices, secs,
         (double)rows / secs);
  return 0;
}
