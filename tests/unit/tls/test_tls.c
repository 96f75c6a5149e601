/* test_tls.c — unit tests for src/transport/tls: a throwaway PKI (two CAs, a
 * server certificate, a client certificate from each CA) made at run time
 * with the OpenSSL C API, then full handshakes between a td_tls_conn server
 * and a plain OpenSSL client, both over memory BIOs (no sockets), for TLS 1.2
 * and 1.3; data both ways; client-certificate hashes checked against the
 * `openssl` CLI and an independent SHA3; failure modes (wrong CA, garbage). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/err.h"
#include "transport/tls/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* ---------------------------------------------------------------- PKI */

static char dir[512];
static char p_ca1[600], p_ca2[600], p_srv[600], p_srv_key[600], p_srv_key_enc[600];
static char p_a[600], p_a_key[600], p_b[600], p_b_key[600];
static const char *key_pw = "s3cret-Pass";

static EVP_PKEY *new_key(void) {
  EVP_PKEY *k = EVP_EC_gen("P-256");
  assert_non_null(k);
  return k;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value) {
  X509V3_CTX v;
  X509V3_set_ctx_nodb(&v);
  X509V3_set_ctx(&v, issuer ? issuer : x, x, NULL, NULL, 0);
  X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v, nid, value);
  assert_non_null(e);
  assert_int_equal(X509_add_ext(x, e, -1), 1);
  X509_EXTENSION_free(e);
}

/* A certificate for key with common name cn, signed by issuer/ikey (self-signed when issuer is NULL). */
static X509 *new_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey, bool ca, long serial,
                      const char *san) {
  X509 *x = X509_new();
  assert_non_null(x);
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 30);
  X509_NAME *n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"thingsd test", -1, -1, 0);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
  X509_set_pubkey(x, key);
  add_ext(x, issuer, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
  add_ext(x, issuer, NID_subject_key_identifier, "hash");
  if (ca) add_ext(x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
  if (san) add_ext(x, issuer, NID_subject_alt_name, san);
  assert_true(X509_sign(x, ikey ? ikey : key, EVP_sha256()) > 0);
  return x;
}

static void write_certs(const char *path, X509 *a, X509 *b) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  assert_int_equal(PEM_write_X509(f, a), 1);
  if (b) assert_int_equal(PEM_write_X509(f, b), 1);
  fclose(f);
}

static void write_key(const char *path, EVP_PKEY *k, const char *pw) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  if (pw)
    assert_int_equal(PEM_write_PrivateKey(f, k, EVP_aes_256_cbc(), (const unsigned char *)pw, (int)strlen(pw),
                                          NULL, NULL), 1);
  else
    assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
  fclose(f);
}

static int setup_pki(void **state) {
  const char *t = getenv("TD_TEST_TMP");
  snprintf(dir, sizeof dir, "%s/tls-%d", t && t[0] ? t : "/tmp", (int)getpid());
  if (t && t[0]) mkdir(t, 0700);
  if (mkdir(dir, 0700) != 0) return -1;
#define P(var, name) snprintf(var, sizeof var, "%s/%s", dir, name)
  P(p_ca1, "ca1.pem"); P(p_ca2, "ca2.pem"); P(p_srv, "server.pem"); P(p_srv_key, "server.key");
  P(p_srv_key_enc, "server-enc.key"); P(p_a, "clientA.pem"); P(p_a_key, "clientA.key");
  P(p_b, "clientB.pem"); P(p_b_key, "clientB.key");
#undef P
  EVP_PKEY *k1 = new_key(), *k2 = new_key(), *ks = new_key(), *ka = new_key(), *kb = new_key();
  X509 *ca1 = new_cert("Test CA 1", k1, NULL, NULL, true, 1, NULL);
  X509 *ca2 = new_cert("Test CA 2", k2, NULL, NULL, true, 2, NULL);
  X509 *srv = new_cert("localhost", ks, ca1, k1, false, 10, "DNS:localhost");
  X509 *a = new_cert("device-A", ka, ca1, k1, false, 11, NULL);
  X509 *b = new_cert("device-B", kb, ca2, k2, false, 12, NULL);
  write_certs(p_ca1, ca1, NULL);
  write_certs(p_ca2, ca2, NULL);
  write_certs(p_srv, srv, ca1); /* leaf then chain */
  write_key(p_srv_key, ks, NULL);
  write_key(p_srv_key_enc, ks, key_pw);
  write_certs(p_a, a, NULL);
  write_key(p_a_key, ka, NULL);
  write_certs(p_b, b, NULL);
  write_key(p_b_key, kb, NULL);
  X509_free(ca1); X509_free(ca2); X509_free(srv); X509_free(a); X509_free(b);
  EVP_PKEY_free(k1); EVP_PKEY_free(k2); EVP_PKEY_free(ks); EVP_PKEY_free(ka); EVP_PKEY_free(kb);
  return 0;
}

static int teardown_pki(void **state) {
  const char *files[] = {p_ca1, p_ca2, p_srv, p_srv_key, p_srv_key_enc, p_a, p_a_key, p_b, p_b_key};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) unlink(files[i]);
  rmdir(dir);
  return 0;
}

/* ---------------------------------------------------------------- independent references */

/* base64 DER of a certificate file, computed by the openssl and base64 CLIs. */
static char *cli_b64(const char *pem_path) {
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "openssl x509 -in '%s' -outform DER | base64 -w0", pem_path);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  struct td_buf b;
  td_buf_init(&b, 1 << 20);
  char tmp[4096];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, p)) > 0) assert_int_equal(td_buf_append(&b, tmp, n), 0);
  assert_int_equal(pclose(p), 0);
  assert_true(b.len > 100);
  return td_buf_take(&b);
}

static void ref_sha3(const char *s, char out[65]) {
  EVP_MD *md = EVP_MD_fetch(NULL, "SHA3-256", NULL);
  assert_non_null(md);
  unsigned char d[32];
  unsigned int n = 0;
  assert_int_equal(EVP_Digest(s, strlen(s), d, &n, md, NULL), 1);
  assert_int_equal(n, 32);
  for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", d[i]);
  EVP_MD_free(md);
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  struct td_buf b;
  td_buf_init(&b, 1 << 20);
  char tmp[4096];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) assert_int_equal(td_buf_append(&b, tmp, n), 0);
  fclose(f);
  return td_buf_take(&b);
}

/* ---------------------------------------------------------------- a server conn and an OpenSSL client */

struct pair {
  struct td_tls_ctx *ctx;
  struct td_tls_conn *srv;
  SSL_CTX *cctx;
  SSL *cli;
  BIO *cli_in, *cli_out;     /* network side of the client's BIO pair */
  struct td_buf to_client;   /* ciphertext the server produced, not yet given to the client */
  struct td_buf srv_plain;   /* plaintext the server received */
  int handshakes;
  struct td_tls_peer peer;
  int plain_rc;              /* what on_plain returns */
  int hs_rc;                 /* what on_handshake returns */
  bool echo;                 /* on_plain writes what it got straight back */
};

static int on_cipher(void *ud, const char *data, size_t len) {
  struct pair *p = ud;
  return td_buf_append(&p->to_client, data, len);
}
static int on_plain(void *ud, const char *data, size_t len) {
  struct pair *p = ud;
  if (p->plain_rc) return p->plain_rc;
  if (p->echo) {
    int rc = td_tls_write(p->srv, data, len); /* a reply from inside the callback, as MQTT does */
    if (rc) return rc;
  }
  return td_buf_append(&p->srv_plain, data, len);
}
static int on_handshake(void *ud, const struct td_tls_peer *peer) {
  struct pair *p = ud;
  p->handshakes++;
  p->peer = *peer;
  return p->hs_rc;
}

static const struct td_tls_conn_cbs cbs = {on_cipher, on_plain, on_handshake};

static struct td_tls_ctx *make_ctx(enum td_tls_client_auth auth, const char *ca) {
  struct td_tls_config cfg = {.cert_file = p_srv, .key_file = p_srv_key, .ca_file = ca, .client_auth = auth};
  struct td_tls_ctx *ctx = NULL;
  char err[512];
  int rc = td_tls_ctx_new(&cfg, &ctx, err, sizeof err);
  if (rc) fprintf(stderr, "ctx: %s\n", err);
  assert_int_equal(rc, 0);
  assert_non_null(ctx);
  return ctx;
}

/* version: TLS1_2_VERSION or TLS1_3_VERSION; cert/key: client certificate or NULL. */
static void pair_init(struct pair *p, struct td_tls_ctx *ctx, int version, const char *cert, const char *key) {
  memset(p, 0, sizeof *p);
  p->ctx = ctx;
  td_buf_init(&p->to_client, 8u << 20);
  td_buf_init(&p->srv_plain, 8u << 20);
  assert_int_equal(td_tls_conn_new(ctx, &cbs, p, &p->srv), 0);
  p->cctx = SSL_CTX_new(TLS_client_method());
  assert_non_null(p->cctx);
  SSL_CTX_set_min_proto_version(p->cctx, version);
  SSL_CTX_set_max_proto_version(p->cctx, version);
  assert_int_equal(SSL_CTX_load_verify_locations(p->cctx, p_ca1, NULL), 1);
  SSL_CTX_set_verify(p->cctx, SSL_VERIFY_PEER, NULL);
  if (cert) {
    assert_int_equal(SSL_CTX_use_certificate_file(p->cctx, cert, SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(p->cctx, key, SSL_FILETYPE_PEM), 1);
  }
  p->cli = SSL_new(p->cctx);
  assert_non_null(p->cli);
  assert_int_equal(SSL_set1_host(p->cli, "localhost"), 1);
  BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(in, -1);
  BIO_set_mem_eof_return(out, -1);
  SSL_set_bio(p->cli, in, out);
  p->cli_in = in;
  p->cli_out = out;
  SSL_set_connect_state(p->cli);
}

static void pair_free(struct pair *p) {
  td_tls_conn_free(p->srv);
  SSL_free(p->cli);
  SSL_CTX_free(p->cctx);
  td_buf_deinit(&p->to_client);
  td_buf_deinit(&p->srv_plain);
  ERR_clear_error();
}

/* Client ciphertext -> server; returns td_tls_feed's result. */
static int to_server(struct pair *p) {
  char buf[65536];
  int rc = 0;
  while (BIO_ctrl_pending(p->cli_out) > 0) {
    int n = BIO_read(p->cli_out, buf, sizeof buf);
    assert_true(n > 0);
    rc = td_tls_feed(p->srv, buf, (size_t)n);
    if (rc < 0) break;
  }
  return rc;
}

/* Server ciphertext -> client. */
static void to_client(struct pair *p) {
  if (p->to_client.len) {
    assert_int_equal(BIO_write(p->cli_in, p->to_client.data, (int)p->to_client.len), (int)p->to_client.len);
    td_buf_reset(&p->to_client);
  }
}

/* Run the handshake to its end. Returns the server's first error or 0;
 * *cli_ok tells whether the client finished its side. */
static int handshake(struct pair *p, bool *cli_ok) {
  bool cdone = false;
  int srv_rc = 0;
  for (int i = 0; i < 20; i++) {
    if (!cdone) {
      int r = SSL_do_handshake(p->cli);
      if (r == 1) cdone = true;
      else if (SSL_get_error(p->cli, r) != SSL_ERROR_WANT_READ) break;
    }
    srv_rc = to_server(p);
    to_client(p);
    if (srv_rc < 0) break;
    if (cdone && td_tls_handshake_done(p->srv)) break;
  }
  if (cli_ok) *cli_ok = cdone;
  return srv_rc;
}

static void handshake_ok(struct pair *p) {
  bool cok = false;
  int rc = handshake(p, &cok);
  if (rc) fprintf(stderr, "handshake: %s\n", td_tls_conn_reason(p->srv));
  assert_int_equal(rc, 0);
  assert_true(cok);
  assert_true(td_tls_handshake_done(p->srv));
  assert_int_equal(p->handshakes, 1);
}

/* Everything the client can read now, appended to out. Returns the last SSL_get_error. */
static int client_read(struct pair *p, struct td_buf *out) {
  char buf[16384];
  for (;;) {
    int n = SSL_read(p->cli, buf, sizeof buf);
    if (n > 0) {
      assert_int_equal(td_buf_append(out, buf, (size_t)n), 0);
      continue;
    }
    return SSL_get_error(p->cli, n);
  }
}

static void client_write(struct pair *p, const void *data, size_t len) {
  assert_int_equal(SSL_write(p->cli, data, (int)len), (int)len);
}

/* ---------------------------------------------------------------- tests: hashes */

static void test_sha3_known_answers(void **state) {
  char h[65];
  assert_int_equal(td_sha3_256_hex("abc", 3, h), 0);
  assert_string_equal(h, "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532");
  assert_int_equal(td_sha3_256_hex(NULL, 0, h), 0);
  assert_string_equal(h, "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a");
  /* MQTT_BASIC credentialsId of clientId|userName */
  char ref[65];
  const char *s = "myClient|myUser";
  ref_sha3(s, ref);
  assert_int_equal(td_sha3_256_hex(s, strlen(s), h), 0);
  assert_string_equal(h, ref);
}

static void test_pem_to_b64(void **state) {
  char *ref = cli_b64(p_a);
  char *pem = read_file(p_a);
  char *b64 = NULL;
  assert_int_equal(td_tls_pem_to_b64(pem, &b64), 0);
  assert_string_equal(b64, ref);
  free(b64);

  /* CRLF line ends, as pasted from Windows */
  struct td_buf crlf;
  td_buf_init(&crlf, 1 << 20);
  for (const char *c = pem; *c; c++) {
    if (*c == '\n') assert_int_equal(td_buf_append(&crlf, "\r", 1), 0);
    assert_int_equal(td_buf_append(&crlf, c, 1), 0);
  }
  assert_int_equal(td_tls_pem_to_b64(crlf.data, &b64), 0);
  assert_string_equal(b64, ref);
  free(b64);
  td_buf_deinit(&crlf);

  /* already trimmed, with stray blanks */
  char *spaced = malloc(strlen(ref) + 8);
  snprintf(spaced, strlen(ref) + 8, "  %.10s %s\n", ref, ref + 10);
  assert_int_equal(td_tls_pem_to_b64(spaced, &b64), 0);
  assert_string_equal(b64, ref);
  free(b64);
  free(spaced);

  /* the X509_CERTIFICATE credentialsId */
  char id[65], rid[65];
  ref_sha3(ref, rid);
  assert_int_equal(td_tls_pem_credentials_id(pem, id), 0);
  assert_string_equal(id, rid);
  assert_int_equal(td_tls_x509_credentials_id(ref, id), 0);
  assert_string_equal(id, rid);
  free(pem);
  free(ref);

  /* a chain: the first certificate counts */
  ref = cli_b64(p_srv);
  pem = read_file(p_srv);
  assert_int_equal(td_tls_pem_to_b64(pem, &b64), 0);
  assert_string_equal(b64, ref);
  free(b64);
  free(pem);
  free(ref);

  /* malformed */
  b64 = (char *)"sentinel";
  assert_int_equal(td_tls_pem_to_b64("", &b64), TD_EINVAL);
  assert_null(b64);
  assert_int_equal(td_tls_pem_to_b64(" \r\n", &b64), TD_EINVAL);
  assert_int_equal(td_tls_pem_to_b64("-----BEGIN CERTIFICATE-----\nMIIB\n", &b64), TD_EINVAL);
  assert_int_equal(td_tls_pem_to_b64("-----BEGIN CERTIFICATE-----\nMI@B\n-----END CERTIFICATE-----\n", &b64),
                   TD_EINVAL);
  assert_int_equal(td_tls_pem_to_b64("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", &b64),
                   TD_EINVAL);
  assert_int_equal(td_tls_pem_to_b64("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n", &b64),
                   TD_EINVAL);
  assert_int_equal(td_tls_pem_credentials_id("not a cert!", id), TD_EINVAL);
}

/* ---------------------------------------------------------------- tests: context */

/* TLS_TEST_VERBOSE=1 shows the error strings an operator would read. */
static void show(const char *what, const char *msg) {
  if (getenv("TLS_TEST_VERBOSE")) fprintf(stderr, "  %s: %s\n", what, msg);
}

static void test_ctx_errors(void **state) {
  struct td_tls_ctx *ctx = (struct td_tls_ctx *)1;
  char err[512];
  char missing[700];
  snprintf(missing, sizeof missing, "%s/nope.pem", dir);

  struct td_tls_config cfg = {.cert_file = missing, .key_file = p_srv_key};
  assert_int_equal(td_tls_ctx_new(&cfg, &ctx, err, sizeof err), TD_EINVAL);
  assert_null(ctx);
  assert_non_null(strstr(err, missing));
  show("ctx", err);

  cfg = (struct td_tls_config){.cert_file = p_srv, .key_file = missing};
  assert_int_equal(td_tls_ctx_new(&cfg, &ctx, err, sizeof err), TD_EINVAL);
  assert_non_null(strstr(err, missing));

  cfg = (struct td_tls_config){.cert_file = p_srv, .key_file = p_srv_key, .ca_file = missing};
  assert_int_equal(td_tls_ctx_new(&cfg, &ctx, err, sizeof err), TD_EINVAL);
  assert_non_null(strstr(err, missing));

  /* key from another certificate */
  cfg = (struct td_tls_config){.cert_file = p_srv, .key_file = p_a_key};
  assert_int_equal(td_tls_ctx_new(&cfg, &ctx, err, sizeof err), TD_EINVAL);
  assert_non_null(strstr(err, p_a_key));
  assert_non_null(strstr(err, "does not match"));
  show("ctx", err);
  assert_null(strstr(err, "PRIVATE KEY"));

  /* a key file given as the certificate */
  cfg = (struct td_tls_config){.cert_file = p_srv_key, .key_file = p_srv_key};
  assert_int_equal(td_tls_ctx_new(&cfg, &ctx, err, sizeof err), TD_EINVAL);
  assert_non_null(strstr(err, p_srv_key));

  /* encrypted key: no password (must not prompt), wrong password, right password */
  cfg = (struct td_tls_config){.cert_file = p_srv, .key_file = p_srv_key_enc};
  assert_int_equal(td_tls_ctx_new(&cfg, &ctx, err, sizeof err), TD_EINVAL);
  assert_non_null(strstr(err, p_srv_key_enc));
  cfg.key_password = "wrong-password";
  assert_int_equal(td_tls_ctx_new(&cfg, &ctx, err, sizeof err), TD_EINVAL);
  assert_non_null(strstr(err, p_srv_key_enc));
  assert_null(strstr(err, "wrong-password"));
  show("ctx", err);
  cfg.key_password = key_pw;
  assert_int_equal(td_tls_ctx_new(&cfg, &ctx, err, sizeof err), 0);
  assert_non_null(ctx);
  td_tls_ctx_free(ctx);

  /* bad cipher list */
  cfg = (struct td_tls_config){.cert_file = p_srv, .key_file = p_srv_key, .ciphers = "NO-SUCH-CIPHER"};
  assert_int_equal(td_tls_ctx_new(&cfg, &ctx, err, sizeof err), TD_EINVAL);
  assert_non_null(strstr(err, "cipher"));
  show("ctx", err);

  assert_int_equal(td_tls_ctx_new(NULL, &ctx, err, sizeof err), TD_EINVAL);
  td_tls_ctx_free(NULL);
  assert_int_equal(ERR_peek_error(), 0);
}

/* ---------------------------------------------------------------- tests: handshakes */

static void exchange_data(struct pair *p) {
  /* client -> server */
  client_write(p, "hello server", 12);
  assert_int_equal(to_server(p), 0);
  assert_int_equal(p->srv_plain.len, 12);
  assert_memory_equal(p->srv_plain.data, "hello server", 12);
  /* server -> client */
  assert_int_equal(td_tls_write(p->srv, "hello device", 12), 0);
  to_client(p);
  struct td_buf got;
  td_buf_init(&got, 1 << 20);
  assert_int_equal(client_read(p, &got), SSL_ERROR_WANT_READ);
  assert_int_equal(got.len, 12);
  assert_memory_equal(got.data, "hello device", 12);
  td_buf_deinit(&got);
}

static void check_no_cert(int version, const char *vname) {
  struct td_tls_ctx *ctx = make_ctx(TD_TLS_CLIENT_AUTH_OPTIONAL, p_ca1);
  struct pair p;
  pair_init(&p, ctx, version, NULL, NULL);
  td_tls_ctx_free(ctx); /* connections outlive the owner's reference */
  struct td_tls_peer peer;
  assert_int_equal(td_tls_conn_peer(p.srv, &peer), TD_EAGAIN);
  handshake_ok(&p);
  assert_string_equal(p.peer.version, vname);
  assert_false(p.peer.has_cert);
  assert_false(p.peer.chain_ok);
  assert_string_equal(p.peer.subject, "");
  char *b64 = (char *)"x";
  assert_int_equal(td_tls_peer_cert_pem_b64(p.srv, &b64), TD_ENOTFOUND);
  assert_null(b64);
  exchange_data(&p);
  pair_free(&p);
}

static void test_tls12_no_client_cert(void **state) { check_no_cert(TLS1_2_VERSION, "TLSv1.2"); }
static void test_tls13_no_client_cert(void **state) { check_no_cert(TLS1_3_VERSION, "TLSv1.3"); }

static void check_client_cert(int version, enum td_tls_client_auth auth, const char *cert, const char *key,
                              bool chain_ok) {
  struct td_tls_ctx *ctx = make_ctx(auth, p_ca1);
  struct pair p;
  pair_init(&p, ctx, version, cert, key);
  handshake_ok(&p);
  assert_true(p.peer.has_cert);
  assert_int_equal(p.peer.chain_ok, chain_ok);
  assert_non_null(strstr(p.peer.subject, cert == p_a ? "CN=device-A" : "CN=device-B"));
  struct td_tls_peer peer;
  assert_int_equal(td_tls_conn_peer(p.srv, &peer), 0);
  assert_string_equal(peer.subject, p.peer.subject);

  char *ref = cli_b64(cert);
  char *b64 = NULL;
  assert_int_equal(td_tls_peer_cert_pem_b64(p.srv, &b64), 0);
  assert_string_equal(b64, ref);
  assert_null(strchr(b64, '\n'));
  char rid[65], id[65];
  ref_sha3(ref, rid);
  assert_int_equal(td_tls_peer_credentials_id(p.srv, id), 0);
  assert_string_equal(id, rid);
  assert_int_equal(td_tls_x509_credentials_id(b64, id), 0);
  assert_string_equal(id, rid);
  free(b64);
  free(ref);
  exchange_data(&p);
  pair_free(&p);
  td_tls_ctx_free(ctx);
}

static void test_tls12_client_cert(void **state) {
  check_client_cert(TLS1_2_VERSION, TD_TLS_CLIENT_AUTH_OPTIONAL, p_a, p_a_key, true);
  check_client_cert(TLS1_2_VERSION, TD_TLS_CLIENT_AUTH_REQUIRED, p_a, p_a_key, true);
}
static void test_tls13_client_cert(void **state) {
  check_client_cert(TLS1_3_VERSION, TD_TLS_CLIENT_AUTH_OPTIONAL, p_a, p_a_key, true);
  check_client_cert(TLS1_3_VERSION, TD_TLS_CLIENT_AUTH_REQUIRED, p_a, p_a_key, true);
}
/* OPTIONAL: a certificate from an unknown CA still completes the handshake
 * (ThingsBoard decides by the hash at CONNECT), marked as not chained. */
static void test_optional_other_ca_accepted(void **state) {
  check_client_cert(TLS1_2_VERSION, TD_TLS_CLIENT_AUTH_OPTIONAL, p_b, p_b_key, false);
  check_client_cert(TLS1_3_VERSION, TD_TLS_CLIENT_AUTH_OPTIONAL, p_b, p_b_key, false);
}

static void check_required_fails(int version, const char *cert, const char *key, const char *why) {
  struct td_tls_ctx *ctx = make_ctx(TD_TLS_CLIENT_AUTH_REQUIRED, p_ca1);
  struct pair p;
  pair_init(&p, ctx, version, cert, key);
  bool cok = false;
  assert_int_equal(handshake(&p, &cok), TD_EPROTO);
  assert_false(td_tls_handshake_done(p.srv));
  assert_int_equal(p.handshakes, 0);
  show("conn", td_tls_conn_reason(p.srv));
  assert_non_null(strstr(td_tls_conn_reason(p.srv), why));
  /* the alert reached the client: it fails too */
  struct td_buf got;
  td_buf_init(&got, 1 << 20);
  if (!cok) assert_int_equal(SSL_get_error(p.cli, SSL_do_handshake(p.cli)), SSL_ERROR_SSL);
  else assert_int_equal(client_read(&p, &got), SSL_ERROR_SSL);
  td_buf_deinit(&got);
  /* dead connection */
  assert_int_equal(td_tls_feed(p.srv, "x", 1), TD_EPROTO);
  assert_int_equal(td_tls_write(p.srv, "x", 1), TD_EPROTO);
  pair_free(&p);
  td_tls_ctx_free(ctx);
}

static void test_required_rejects(void **state) {
  check_required_fails(TLS1_2_VERSION, p_b, p_b_key, "certificate verify failed");
  check_required_fails(TLS1_3_VERSION, p_b, p_b_key, "certificate verify failed");
  check_required_fails(TLS1_2_VERSION, NULL, NULL, "certificate");
  check_required_fails(TLS1_3_VERSION, NULL, NULL, "certificate");
}

/* REQUIRED without ca_file: any certificate, but one must be presented. */
static void test_required_without_ca(void **state) {
  struct td_tls_ctx *ctx = make_ctx(TD_TLS_CLIENT_AUTH_REQUIRED, NULL);
  struct pair p;
  pair_init(&p, ctx, TLS1_3_VERSION, p_b, p_b_key);
  handshake_ok(&p);
  assert_true(p.peer.has_cert);
  assert_false(p.peer.chain_ok);
  pair_free(&p);
  pair_init(&p, ctx, TLS1_3_VERSION, NULL, NULL);
  assert_int_equal(handshake(&p, NULL), TD_EPROTO);
  pair_free(&p);
  td_tls_ctx_free(ctx);
}

/* NONE: no certificate requested, so none is seen even if the client has one. */
static void test_client_auth_none(void **state) {
  struct td_tls_ctx *ctx = make_ctx(TD_TLS_CLIENT_AUTH_NONE, p_ca1);
  struct pair p;
  pair_init(&p, ctx, TLS1_2_VERSION, p_a, p_a_key);
  handshake_ok(&p);
  assert_false(p.peer.has_cert);
  pair_free(&p);
  td_tls_ctx_free(ctx);
}

/* ---------------------------------------------------------------- tests: data path */

static void test_garbage(void **state) {
  struct td_tls_ctx *ctx = make_ctx(TD_TLS_CLIENT_AUTH_OPTIONAL, p_ca1);
  struct pair p;
  /* plain HTTP on the TLS port */
  pair_init(&p, ctx, TLS1_3_VERSION, NULL, NULL);
  const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  assert_int_equal(td_tls_feed(p.srv, http, strlen(http)), TD_EPROTO);
  assert_true(td_tls_conn_reason(p.srv)[0] != '\0');
  show("http", td_tls_conn_reason(p.srv));
  assert_int_equal(td_tls_feed(p.srv, http, strlen(http)), TD_EPROTO);
  pair_free(&p);

  /* random bytes, many seeds, one byte at a time and all at once */
  unsigned int seed = 12345;
  int failed = 0;
  for (int round = 0; round < 50; round++) {
    unsigned char junk[600];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(rand_r(&seed) & 0xff);
    if (round % 5 == 0) junk[0] = 0x16, junk[1] = 0x03, junk[2] = 0x01; /* looks like a handshake record */
    pair_init(&p, ctx, TLS1_3_VERSION, NULL, NULL);
    int rc = 0;
    if (round % 2) {
      for (size_t i = 0; i < sizeof junk && rc == 0; i++) rc = td_tls_feed(p.srv, junk + i, 1);
    } else {
      rc = td_tls_feed(p.srv, junk, sizeof junk);
    }
    assert_true(rc == TD_EPROTO || rc == 0); /* 0: a record length still waiting for more */
    if (rc == TD_EPROTO) {
      failed++;
      show("junk", td_tls_conn_reason(p.srv));
    }
    if (rc == 0) assert_int_equal(p.handshakes, 0);
    pair_free(&p);
  }
  assert_true(failed >= 40);

  /* garbage after a good handshake */
  pair_init(&p, ctx, TLS1_2_VERSION, NULL, NULL);
  handshake_ok(&p);
  unsigned char bad[64];
  memset(bad, 0x17, 5);
  bad[3] = 0, bad[4] = 59; /* application data record of 59 bytes that won't decrypt */
  for (size_t i = 5; i < sizeof bad; i++) bad[i] = (unsigned char)i;
  assert_int_equal(td_tls_feed(p.srv, bad, sizeof bad), TD_EPROTO);
  assert_true(td_tls_conn_reason(p.srv)[0] != '\0');
  assert_false(td_tls_handshake_done(p.srv));
  assert_int_equal(td_tls_write(p.srv, "x", 1), TD_EPROTO);
  pair_free(&p);
  td_tls_ctx_free(ctx);
}

static void test_write_before_handshake(void **state) {
  struct td_tls_ctx *ctx = make_ctx(TD_TLS_CLIENT_AUTH_OPTIONAL, NULL);
  struct pair p;
  pair_init(&p, ctx, TLS1_3_VERSION, NULL, NULL);
  assert_int_equal(td_tls_write(p.srv, "early ", 6), 0);
  assert_int_equal(td_tls_write(p.srv, "bird", 4), 0);
  assert_int_equal(p.to_client.len, 0);
  char *big = calloc(1, TD_TLS_PENDING_MAX);
  assert_int_equal(td_tls_write(p.srv, big, TD_TLS_PENDING_MAX), TD_ETOOBIG);
  free(big);
  handshake_ok(&p);
  struct td_buf got;
  td_buf_init(&got, 1 << 20);
  assert_int_equal(client_read(&p, &got), SSL_ERROR_WANT_READ);
  assert_int_equal(got.len, 10);
  assert_memory_equal(got.data, "early bird", 10);
  td_buf_deinit(&got);
  pair_free(&p);
  td_tls_ctx_free(ctx);
}

static void test_large_transfer(void **state) {
  struct td_tls_ctx *ctx = make_ctx(TD_TLS_CLIENT_AUTH_NONE, NULL);
  struct pair p;
  pair_init(&p, ctx, TLS1_3_VERSION, NULL, NULL);
  handshake_ok(&p);
  size_t n = 1u << 20;
  unsigned char *data = malloc(n);
  for (size_t i = 0; i < n; i++) data[i] = (unsigned char)(i * 7 + (i >> 11));
  /* server -> client in one call */
  assert_int_equal(td_tls_write(p.srv, data, n), 0);
  to_client(&p);
  struct td_buf got;
  td_buf_init(&got, 4u << 20);
  assert_int_equal(client_read(&p, &got), SSL_ERROR_WANT_READ);
  assert_int_equal(got.len, n);
  assert_memory_equal(got.data, data, n);
  td_buf_deinit(&got);
  /* client -> server: all the ciphertext fed in one call */
  for (size_t off = 0; off < n; off += 16384) client_write(&p, data + off, 16384);
  size_t clen = BIO_ctrl_pending(p.cli_out);
  char *c = malloc(clen);
  assert_int_equal(BIO_read(p.cli_out, c, (int)clen), (int)clen);
  assert_int_equal(td_tls_feed(p.srv, c, clen), 0);
  free(c);
  assert_int_equal(p.srv_plain.len, n);
  assert_memory_equal(p.srv_plain.data, data, n);
  free(data);
  pair_free(&p);
  td_tls_ctx_free(ctx);
}

static void test_close_notify(void **state) {
  struct td_tls_ctx *ctx = make_ctx(TD_TLS_CLIENT_AUTH_OPTIONAL, p_ca1);
  struct pair p;
  /* server closes */
  pair_init(&p, ctx, TLS1_2_VERSION, NULL, NULL);
  handshake_ok(&p);
  assert_int_equal(td_tls_write(p.srv, "bye", 3), 0);
  assert_int_equal(td_tls_close_notify(p.srv), 0);
  assert_int_equal(td_tls_close_notify(p.srv), 0); /* idempotent */
  assert_int_equal(td_tls_write(p.srv, "more", 4), TD_ECLOSED);
  to_client(&p);
  struct td_buf got;
  td_buf_init(&got, 1 << 20);
  assert_int_equal(client_read(&p, &got), SSL_ERROR_ZERO_RETURN);
  assert_int_equal(got.len, 3);
  td_buf_deinit(&got);
  pair_free(&p);
  /* client closes */
  pair_init(&p, ctx, TLS1_3_VERSION, NULL, NULL);
  handshake_ok(&p);
  client_write(&p, "last", 4);
  SSL_shutdown(p.cli);
  assert_int_equal(to_server(&p), TD_ECLOSED);
  assert_int_equal(p.srv_plain.len, 4);
  assert_int_equal(td_tls_feed(p.srv, NULL, 0), TD_ECLOSED);
  assert_int_equal(td_tls_write(p.srv, "x", 1), TD_ECLOSED);
  assert_int_equal(td_tls_close_notify(p.srv), 0);
  pair_free(&p);
  td_tls_ctx_free(ctx);
}

/* TLS 1.3: the client's Finished and its first data arrive in one read; the
 * server completes the handshake and delivers the data in the same feed, and
 * answers from inside on_plain. */
static void test_finished_with_data_and_echo(void **state) {
  struct td_tls_ctx *ctx = make_ctx(TD_TLS_CLIENT_AUTH_OPTIONAL, p_ca1);
  struct pair p;
  pair_init(&p, ctx, TLS1_3_VERSION, p_a, p_a_key);
  p.echo = true;
  assert_int_equal(SSL_get_error(p.cli, SSL_do_handshake(p.cli)), SSL_ERROR_WANT_READ);
  assert_int_equal(to_server(&p), 0);
  to_client(&p);
  assert_int_equal(SSL_do_handshake(p.cli), 1);
  assert_false(td_tls_handshake_done(p.srv));
  client_write(&p, "CONNECT", 7);
  assert_int_equal(to_server(&p), 0);
  assert_true(td_tls_handshake_done(p.srv));
  assert_int_equal(p.handshakes, 1);
  assert_true(p.peer.has_cert);
  assert_int_equal(p.srv_plain.len, 7);
  to_client(&p);
  struct td_buf got;
  td_buf_init(&got, 1 << 20);
  assert_int_equal(client_read(&p, &got), SSL_ERROR_WANT_READ);
  assert_int_equal(got.len, 7);
  assert_memory_equal(got.data, "CONNECT", 7);
  td_buf_deinit(&got);
  pair_free(&p);
  td_tls_ctx_free(ctx);
}

static void test_callback_errors(void **state) {
  struct td_tls_ctx *ctx = make_ctx(TD_TLS_CLIENT_AUTH_OPTIONAL, p_ca1);
  struct pair p;
  /* on_handshake refuses */
  pair_init(&p, ctx, TLS1_3_VERSION, NULL, NULL);
  p.hs_rc = TD_EAUTH;
  assert_int_equal(handshake(&p, NULL), TD_EAUTH);
  assert_int_equal(p.handshakes, 1);
  pair_free(&p);
  /* on_plain pushes back */
  pair_init(&p, ctx, TLS1_2_VERSION, NULL, NULL);
  handshake_ok(&p);
  p.plain_rc = TD_EFULL;
  client_write(&p, "data", 4);
  assert_int_equal(to_server(&p), TD_EFULL);
  pair_free(&p);
  td_tls_ctx_free(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sha3_known_answers),
      cmocka_unit_test(test_pem_to_b64),
      cmocka_unit_test(test_ctx_errors),
      cmocka_unit_test(test_tls12_no_client_cert),
      cmocka_unit_test(test_tls13_no_client_cert),
      cmocka_unit_test(test_tls12_client_cert),
      cmocka_unit_test(test_tls13_client_cert),
      cmocka_unit_test(test_optional_other_ca_accepted),
      cmocka_unit_test(test_required_rejects),
      cmocka_unit_test(test_required_without_ca),
      cmocka_unit_test(test_client_auth_none),
      cmocka_unit_test(test_garbage),
      cmocka_unit_test(test_write_before_handshake),
      cmocka_unit_test(test_large_transfer),
      cmocka_unit_test(test_close_notify),
      cmocka_unit_test(test_finished_with_data_and_echo),
      cmocka_unit_test(test_callback_errors),
  };
  return cmocka_run_group_tests(tests, setup_pki, teardown_pki);
}
