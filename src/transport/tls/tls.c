/* tls.c — TLS for the transports: OpenSSL 3.0 server connections driven
 * through a pair of memory BIOs (see tls.h for the contract), plus the
 * X.509 / SHA3 helpers used for ThingsBoard-compatible device credentials.
 *
 * Data path of one connection:
 *   socket bytes -> td_tls_feed -> BIO_write(rbio) -> SSL_do_handshake /
 *   SSL_read -> on_plain;  td_tls_write -> SSL_write -> wbio -> flush ->
 *   on_cipher -> socket.
 * Everything OpenSSL writes lands in wbio and is drained after every step,
 * so wbio never holds more than one chunk's worth of records. */
#include "transport/tls/tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "base/assert.h"
#include "base/buf.h"
#include "base/err.h"

struct td_tls_ctx {
  SSL_CTX *ssl_ctx;
  bool has_ca;
};

enum conn_state { ST_HANDSHAKE = 0, ST_OPEN, ST_FAILED };

struct td_tls_conn {
  SSL *ssl;
  BIO *rbio;                  /* network -> SSL (we write ciphertext into it) */
  BIO *wbio;                  /* SSL -> network (we drain it into on_cipher) */
  struct td_tls_conn_cbs cbs;
  void *ud;
  enum conn_state state;
  bool has_ca;
  bool sent_close;            /* our close_notify went out */
  bool got_close;             /* the peer's close_notify arrived */
  struct td_tls_peer peer;    /* filled when the handshake completed */
  struct td_buf pending;      /* plaintext written before the handshake completed */
  char reason[128];
};

/* ---------------------------------------------------------------- SHA3 */

static pthread_once_t sha3_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha3_md;

static void sha3_fetch(void) { sha3_md = EVP_MD_fetch(NULL, "SHA3-256", NULL); }

int td_sha3_256_hex(const void *data, size_t len, char out[65]) {
  static const char hex[] = "0123456789abcdef";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  TD_ASSERT(out != NULL);
  out[0] = '\0';
  pthread_once(&sha3_once, sha3_fetch);
  if (!sha3_md) return TD_EIO;
  if (!EVP_Digest(len ? data : "", len, md, &n, sha3_md, NULL) || n != 32) {
    ERR_clear_error();
    return TD_EIO;
  }
  for (unsigned int i = 0; i < n; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[64] = '\0';
  return 0;
}

int td_tls_x509_credentials_id(const char *b64, char out[65]) {
  if (!b64 || !out) return TD_EINVAL;
  return td_sha3_256_hex(b64, strlen(b64), out);
}

static bool is_b64(unsigned char ch) {
  return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '+' ||
         ch == '/' || ch == '=';
}

int td_tls_pem_to_b64(const char *pem, char **out) {
  static const char begin[] = "-----BEGIN CERTIFICATE-----";
  if (!pem || !out) return TD_EINVAL;
  *out = NULL;
  const char *start = strstr(pem, begin);
  const char *end;
  if (start) {
    start += sizeof begin - 1;
    end = strstr(start, "-----END CERTIFICATE-----");
    if (!end) return TD_EINVAL;
  } else {
    start = pem;
    end = pem + strlen(pem);
  }
  char *s = malloc((size_t)(end - start) + 1);
  if (!s) return TD_ENOMEM;
  size_t n = 0;
  for (const char *p = start; p < end; p++) {
    unsigned char ch = (unsigned char)*p;
    if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f') continue;
    if (!is_b64(ch)) {
      free(s);
      return TD_EINVAL;
    }
    s[n++] = (char)ch;
  }
  s[n] = '\0';
  if (n == 0) {
    free(s);
    return TD_EINVAL;
  }
  *out = s;
  return 0;
}

int td_tls_pem_credentials_id(const char *pem, char out[65]) {
  char *b64 = NULL;
  int rc = td_tls_pem_to_b64(pem, &b64);
  if (rc == 0) rc = td_tls_x509_credentials_id(b64, out);
  free(b64);
  return rc;
}

/* ---------------------------------------------------------------- context */

/* OpenSSL's reason for the most recent error of this thread, then clears the
 * queue. Reason strings name the failure class, never data. */
static const char *last_reason(void) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  ERR_clear_error();
  return r ? r : "unknown error";
}

static void set_err(char *err, size_t errlen, const char *fmt, const char *file, const char *why) {
  if (err && errlen) snprintf(err, errlen, fmt, file, why);
}

/* Supplies the configured password to PEM_read_bio_PrivateKey; with no
 * password an encrypted key fails instead of prompting on the terminal. */
static int password_cb(char *buf, int size, int rwflag, void *u) {
  const char *pw = u;
  if (!pw || size <= 0) return 0;
  size_t n = strlen(pw);
  if (n > (size_t)size) return 0;
  memcpy(buf, pw, n);
  return (int)n;
}

/* Accept any client certificate: ThingsBoard authenticates by its hash at
 * CONNECT (tls.h, "Client certificates"). The chain result stays in
 * SSL_get_verify_result for td_tls_peer.chain_ok. */
static int verify_accept_any(int preverify_ok, X509_STORE_CTX *x) { return 1; }

static int file_readable(const char *path, char *err, size_t errlen, const char *what) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (err && errlen) snprintf(err, errlen, "tls: cannot open %s %s: %s", what, path, strerror(errno));
    return TD_EINVAL;
  }
  fclose(f);
  return 0;
}

static int load_key(SSL_CTX *sctx, const struct td_tls_config *cfg, char *err, size_t errlen) {
  BIO *bio = BIO_new_file(cfg->key_file, "r");
  if (!bio) {
    set_err(err, errlen, "tls: cannot read key file %s: %s", cfg->key_file, last_reason());
    return TD_EINVAL;
  }
  const char *pw = cfg->key_password && cfg->key_password[0] ? cfg->key_password : NULL;
  EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, password_cb, (void *)pw);
  BIO_free(bio);
  if (!pkey) {
    set_err(err, errlen, "tls: cannot load private key from %s: %s (wrong password or not a PEM key?)",
            cfg->key_file, last_reason());
    return TD_EINVAL;
  }
  X509 *cert = SSL_CTX_get0_certificate(sctx);
  if (cert && X509_check_private_key(cert, pkey) != 1) {
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    set_err(err, errlen, "tls: private key %s does not match certificate %s", cfg->key_file, cfg->cert_file);
    return TD_EINVAL;
  }
  int ok = SSL_CTX_use_PrivateKey(sctx, pkey);
  EVP_PKEY_free(pkey);
  if (ok != 1) {
    set_err(err, errlen, "tls: private key %s rejected: %s", cfg->key_file, last_reason());
    return TD_EINVAL;
  }
  if (SSL_CTX_check_private_key(sctx) != 1) {
    ERR_clear_error();
    set_err(err, errlen, "tls: private key %s does not match certificate %s", cfg->key_file, cfg->cert_file);
    return TD_EINVAL;
  }
  return 0;
}

int td_tls_ctx_new(const struct td_tls_config *cfg, struct td_tls_ctx **out, char *err, size_t errlen) {
  int rc = TD_EINVAL;
  SSL_CTX *sctx = NULL;
  struct td_tls_ctx *ctx = NULL;
  if (err && errlen) err[0] = '\0';
  if (!cfg || !out) return TD_EINVAL;
  *out = NULL;
  if (!cfg->cert_file || !cfg->cert_file[0] || !cfg->key_file || !cfg->key_file[0]) {
    set_err(err, errlen, "tls: %s%s", "certificate and key files must be configured", "");
    return TD_EINVAL;
  }
  if (cfg->client_auth > TD_TLS_CLIENT_AUTH_REQUIRED || cfg->min_version > TD_TLS_V13) {
    set_err(err, errlen, "tls: %s%s", "invalid client_auth or min_version", "");
    return TD_EINVAL;
  }
  ERR_clear_error();
  if ((rc = file_readable(cfg->cert_file, err, errlen, "certificate file")) != 0) goto fail;
  if ((rc = file_readable(cfg->key_file, err, errlen, "key file")) != 0) goto fail;
  if (cfg->ca_file && cfg->ca_file[0] && (rc = file_readable(cfg->ca_file, err, errlen, "CA file")) != 0)
    goto fail;
  rc = TD_EINVAL;

  sctx = SSL_CTX_new(TLS_server_method());
  ctx = calloc(1, sizeof *ctx);
  if (!sctx || !ctx) {
    set_err(err, errlen, "tls: %s%s", "out of memory", "");
    rc = TD_ENOMEM;
    goto fail;
  }
  SSL_CTX_set_min_proto_version(sctx, cfg->min_version == TD_TLS_V13 ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_options(sctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  /* Release idle read/write buffers: thousands of mostly idle device connections. */
  SSL_CTX_set_mode(sctx, SSL_MODE_RELEASE_BUFFERS);
  /* Needed for session resumption once client certificates are requested. */
  static const unsigned char sid_ctx[] = "thingsd";
  SSL_CTX_set_session_id_context(sctx, sid_ctx, sizeof sid_ctx - 1);
  SSL_CTX_set_num_tickets(sctx, 1);

  const char *ciphers = cfg->ciphers && cfg->ciphers[0] ? cfg->ciphers : TD_TLS_DEFAULT_CIPHERS;
  if (SSL_CTX_set_cipher_list(sctx, ciphers) != 1) {
    set_err(err, errlen, "tls: invalid cipher list \"%s\": %s", ciphers, last_reason());
    goto fail;
  }
  if (cfg->ciphersuites && cfg->ciphersuites[0] && SSL_CTX_set_ciphersuites(sctx, cfg->ciphersuites) != 1) {
    set_err(err, errlen, "tls: invalid TLS 1.3 ciphersuites \"%s\": %s", cfg->ciphersuites, last_reason());
    goto fail;
  }
  if (SSL_CTX_use_certificate_chain_file(sctx, cfg->cert_file) != 1) {
    set_err(err, errlen, "tls: cannot load certificate chain from %s: %s", cfg->cert_file, last_reason());
    goto fail;
  }
  if ((rc = load_key(sctx, cfg, err, errlen)) != 0) goto fail;
  rc = TD_EINVAL;

  if (cfg->ca_file && cfg->ca_file[0]) {
    if (SSL_CTX_load_verify_locations(sctx, cfg->ca_file, NULL) != 1) {
      set_err(err, errlen, "tls: cannot load CA bundle %s: %s", cfg->ca_file, last_reason());
      goto fail;
    }
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
    if (names) SSL_CTX_set_client_CA_list(sctx, names);
    ERR_clear_error();
    ctx->has_ca = true;
  }
  switch (cfg->client_auth) {
  case TD_TLS_CLIENT_AUTH_NONE:
    SSL_CTX_set_verify(sctx, SSL_VERIFY_NONE, NULL);
    break;
  case TD_TLS_CLIENT_AUTH_OPTIONAL:
    SSL_CTX_set_verify(sctx, SSL_VERIFY_PEER, verify_accept_any);
    break;
  case TD_TLS_CLIENT_AUTH_REQUIRED:
    SSL_CTX_set_verify(sctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       ctx->has_ca ? NULL : verify_accept_any);
    break;
  }
  ctx->ssl_ctx = sctx;
  *out = ctx;
  return 0;

fail:
  ERR_clear_error();
  SSL_CTX_free(sctx);
  free(ctx);
  return rc;
}

void td_tls_ctx_free(struct td_tls_ctx *ctx) {
  if (!ctx) return;
  SSL_CTX_free(ctx->ssl_ctx); /* each SSL holds its own reference */
  free(ctx);
}

/* ---------------------------------------------------------------- connection */

int td_tls_conn_new(struct td_tls_ctx *ctx, const struct td_tls_conn_cbs *cbs, void *ud,
                    struct td_tls_conn **out) {
  if (!ctx || !cbs || !cbs->on_cipher || !cbs->on_plain || !out) return TD_EINVAL;
  *out = NULL;
  struct td_tls_conn *c = calloc(1, sizeof *c);
  if (!c) return TD_ENOMEM;
  c->ssl = SSL_new(ctx->ssl_ctx);
  c->rbio = BIO_new(BIO_s_mem());
  c->wbio = BIO_new(BIO_s_mem());
  if (!c->ssl || !c->rbio || !c->wbio) {
    SSL_free(c->ssl);
    BIO_free(c->rbio);
    BIO_free(c->wbio);
    free(c);
    ERR_clear_error();
    return TD_ENOMEM;
  }
  /* An empty memory BIO reports "retry" instead of EOF, so SSL_read
   * answers SSL_ERROR_WANT_READ until more bytes are fed. */
  BIO_set_mem_eof_return(c->rbio, -1);
  BIO_set_mem_eof_return(c->wbio, -1);
  SSL_set_bio(c->ssl, c->rbio, c->wbio); /* the SSL owns both BIOs now */
  SSL_set_accept_state(c->ssl);
  c->cbs = *cbs;
  c->ud = ud;
  c->has_ca = ctx->has_ca;
  td_buf_init(&c->pending, TD_TLS_PENDING_MAX);
  *out = c;
  return 0;
}

void td_tls_conn_free(struct td_tls_conn *c) {
  if (!c) return;
  SSL_free(c->ssl);
  td_buf_deinit(&c->pending);
  free(c);
}

/* Hand everything OpenSSL wrote to the owner. */
static int flush(struct td_tls_conn *c) {
  char buf[TD_TLS_CHUNK];
  while (BIO_ctrl_pending(c->wbio) > 0) {
    int n = BIO_read(c->wbio, buf, (int)sizeof buf);
    if (n <= 0) break;
    int rc = c->cbs.on_cipher(c->ud, buf, (size_t)n);
    if (rc < 0) return rc;
  }
  return 0;
}

/* Record why the connection failed, push out any alert, and mark it dead. */
static int fail(struct td_tls_conn *c, int ssl_err, const char *doing) {
  unsigned long e = ERR_peek_last_error();
  const char *why = e ? ERR_reason_error_string(e) : NULL;
  if (!why) why = ssl_err == SSL_ERROR_SYSCALL ? "unexpected end of stream" : "unexpected failure";
  long vr = SSL_get_verify_result(c->ssl);
  if (e && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED && vr != X509_V_OK)
    snprintf(c->reason, sizeof c->reason, "%s: %s (%s)", doing, why, X509_verify_cert_error_string(vr));
  else
    snprintf(c->reason, sizeof c->reason, "%s: %s", doing, why);
  ERR_clear_error();
  c->state = ST_FAILED;
  (void)flush(c); /* the alert, if any; the owner closes anyway */
  return TD_EPROTO;
}

static int write_plain(struct td_tls_conn *c, const char *p, size_t len) {
  while (len > 0) {
    size_t n = len < TD_TLS_CHUNK ? len : TD_TLS_CHUNK;
    ERR_clear_error();
    int w = SSL_write(c->ssl, p, (int)n);
    if (w <= 0) return fail(c, SSL_get_error(c->ssl, w), "write");
    int rc = flush(c);
    if (rc < 0) return rc;
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

/* Send what was written before the handshake completed, oldest first. The
 * buffer is detached first: a callback may call td_tls_write meanwhile. */
static int drain_pending(struct td_tls_conn *c) {
  if (c->pending.len == 0) return 0;
  struct td_buf b = c->pending;
  td_buf_init(&c->pending, TD_TLS_PENDING_MAX);
  int rc = write_plain(c, b.data, b.len);
  td_buf_deinit(&b);
  return rc;
}

static void fill_peer(struct td_tls_conn *c) {
  struct td_tls_peer *p = &c->peer;
  memset(p, 0, sizeof *p);
  p->version = SSL_get_version(c->ssl);
  p->cipher = SSL_get_cipher_name(c->ssl);
  X509 *x = SSL_get0_peer_certificate(c->ssl);
  if (!x) return;
  p->has_cert = true;
  p->chain_ok = c->has_ca && SSL_get_verify_result(c->ssl) == X509_V_OK;
  BIO *m = BIO_new(BIO_s_mem());
  if (m) {
    if (X509_NAME_print_ex(m, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0) {
      int n = BIO_read(m, p->subject, (int)sizeof p->subject - 1);
      p->subject[n > 0 ? n : 0] = '\0';
    }
    BIO_free(m);
  }
  ERR_clear_error();
}

static int handshake_step(struct td_tls_conn *c) {
  ERR_clear_error();
  int r = SSL_do_handshake(c->ssl);
  if (r != 1) {
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) return flush(c);
    return fail(c, e, "handshake");
  }
  c->state = ST_OPEN;
  fill_peer(c);
  int rc = flush(c); /* the server's last flight and session tickets */
  if (rc < 0) return rc;
  if (c->cbs.on_handshake) {
    struct td_tls_peer copy = c->peer;
    rc = c->cbs.on_handshake(c->ud, &copy);
    if (rc < 0) return rc;
  }
  return drain_pending(c);
}

static int read_plain(struct td_tls_conn *c) {
  char buf[TD_TLS_CHUNK];
  for (;;) {
    ERR_clear_error();
    int n = SSL_read(c->ssl, buf, (int)sizeof buf);
    if (n > 0) {
      int rc = c->cbs.on_plain(c->ud, buf, (size_t)n);
      if (rc < 0) return rc;
      if (c->state != ST_OPEN) return TD_EPROTO; /* a write inside the callback failed */
      continue;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ) return flush(c);
    if (e == SSL_ERROR_ZERO_RETURN) {
      c->got_close = true;
      (void)flush(c);
      return TD_ECLOSED;
    }
    return fail(c, e, "read");
  }
}

int td_tls_feed(struct td_tls_conn *c, const void *data, size_t len) {
  TD_ASSERT(c != NULL);
  if (c->state == ST_FAILED) return TD_EPROTO;
  if (c->got_close) return TD_ECLOSED;
  const char *p = data;
  do {
    size_t n = len < TD_TLS_CHUNK ? len : TD_TLS_CHUNK;
    if (n > 0 && BIO_write(c->rbio, p, (int)n) != (int)n) {
      snprintf(c->reason, sizeof c->reason, "feed: out of memory");
      c->state = ST_FAILED;
      ERR_clear_error();
      return TD_ENOMEM;
    }
    p += n;
    len -= n;
    int rc = 0;
    if (c->state == ST_HANDSHAKE) rc = handshake_step(c);
    if (rc == 0 && c->state == ST_OPEN) rc = read_plain(c);
    if (rc < 0) return rc;
  } while (len > 0);
  return 0;
}

int td_tls_write(struct td_tls_conn *c, const void *data, size_t len) {
  TD_ASSERT(c != NULL);
  if (c->state == ST_FAILED) return TD_EPROTO;
  if (c->sent_close || c->got_close) return TD_ECLOSED;
  if (len == 0) return 0;
  if (c->state == ST_HANDSHAKE) return td_buf_append(&c->pending, data, len);
  int rc = drain_pending(c);
  if (rc < 0) return rc;
  return write_plain(c, data, len);
}

int td_tls_close_notify(struct td_tls_conn *c) {
  TD_ASSERT(c != NULL);
  if (c->state != ST_OPEN || c->sent_close) {
    c->sent_close = true;
    return 0;
  }
  c->sent_close = true;
  ERR_clear_error();
  (void)SSL_shutdown(c->ssl); /* 0 = sent, peer's reply not awaited */
  ERR_clear_error();
  return flush(c);
}

bool td_tls_handshake_done(const struct td_tls_conn *c) { return c && c->state == ST_OPEN; }

int td_tls_conn_peer(const struct td_tls_conn *c, struct td_tls_peer *out) {
  if (!c || !out) return TD_EINVAL;
  if (c->state != ST_OPEN) return TD_EAGAIN;
  *out = c->peer;
  return 0;
}

const char *td_tls_conn_reason(const struct td_tls_conn *c) { return c ? c->reason : ""; }

int td_tls_peer_cert_pem_b64(const struct td_tls_conn *c, char **out) {
  if (!c || !out) return TD_EINVAL;
  *out = NULL;
  if (c->state != ST_OPEN) return TD_EAGAIN;
  X509 *x = SSL_get0_peer_certificate(c->ssl);
  if (!x) return TD_ENOTFOUND;
  unsigned char *der = NULL;
  int n = i2d_X509(x, &der);
  if (n <= 0) {
    ERR_clear_error();
    return TD_ENOMEM;
  }
  char *b64 = malloc(4 * (((size_t)n + 2) / 3) + 1);
  if (!b64) {
    OPENSSL_free(der);
    return TD_ENOMEM;
  }
  EVP_EncodeBlock((unsigned char *)b64, der, n); /* no line breaks, NUL-terminated */
  OPENSSL_free(der);
  *out = b64;
  return 0;
}

int td_tls_peer_credentials_id(const struct td_tls_conn *c, char out[65]) {
  char *b64 = NULL;
  int rc = td_tls_peer_cert_pem_b64(c, &b64);
  if (rc == 0) rc = td_tls_x509_credentials_id(b64, out);
  free(b64);
  return rc;
}
