/* tls.h — the one TLS layer of thingsd: OpenSSL 3.0 driven through memory
 * BIOs, so that any libuv stream owner (the MQTT transport on 8883, later
 * HTTPS) can put TLS between its socket and its protocol parser without
 * OpenSSL ever touching a file descriptor. Also the X.509 helpers that device
 * authentication needs (ThingsBoard credentialsId = SHA3-256 of the trimmed
 * base64 DER certificate, reference §1.0.1) and SHA3-256 itself.
 *
 * Two objects:
 *
 *   struct td_tls_ctx   the server side configuration (certificate chain,
 *                       key, trust anchors for client certificates). Built
 *                       once at start-up, then shared read-only by every loop
 *                       thread: td_tls_conn_new() may be called on any thread.
 *
 *   struct td_tls_conn  one TLS connection. Used only on the loop thread of
 *                       the socket that owns it. The owner feeds it the bytes
 *                       it reads (td_tls_feed) and gives it the plaintext it
 *                       wants to send (td_tls_write); the layer answers
 *                       through three callbacks:
 *                         on_cipher    ciphertext to write to the socket
 *                                      (handshake flights, records, alerts);
 *                         on_plain     decrypted application bytes;
 *                         on_handshake once, when the handshake completed,
 *                                      with the peer's certificate summary.
 *                       Callbacks run synchronously inside td_tls_feed /
 *                       td_tls_write / td_tls_close_notify. The data pointer
 *                       they get is valid only during the call (copy it into
 *                       the uv_write request). A callback may call
 *                       td_tls_write / td_tls_close_notify on the same
 *                       connection, but must not free it; a callback that
 *                       returns a negative TD_E* stops the current operation,
 *                       which returns that code.
 *
 * Errors: a TLS failure (bad record, failed handshake, certificate rejected,
 * garbage bytes) makes the call return TD_EPROTO; td_tls_conn_reason() then
 * gives a short static-size reason ("certificate verify failed", ...) for one
 * log line. Any alert OpenSSL produced is flushed through on_cipher first, so
 * the peer learns why. After TD_EPROTO the connection is dead: every later
 * call returns TD_EPROTO again and the owner closes the socket.
 *
 * Memory bounds: ciphertext is processed in chunks of at most
 * TD_TLS_CHUNK bytes, decrypted plaintext is handed to on_plain at once and
 * never queued here (back-pressure is the owner's: stop reading the socket).
 * The only buffered plaintext is what the owner writes before the handshake
 * completed; it is capped at TD_TLS_PENDING_MAX (TD_ETOOBIG beyond).
 *
 * Client certificates — decision (reference §1.1.1): ThingsBoard asks for a
 * client certificate, accepts whatever the client presents (its trust
 * manager swallows errors) and authenticates at MQTT CONNECT by looking up
 * sha3(base64 DER) as X509_CERTIFICATE credentials. We do the same:
 *   TD_TLS_CLIENT_AUTH_NONE      no certificate is requested.
 *   TD_TLS_CLIENT_AUTH_OPTIONAL  (ThingsBoard's behaviour, the default for
 *                                MQTT) a certificate is requested; any
 *                                certificate, self-signed or from an unknown
 *                                CA, completes the handshake; none at all is
 *                                fine too. The MQTT layer decides by the hash.
 *                                td_tls_peer.chain_ok tells whether the
 *                                certificate also chained to ca_file (false
 *                                when no ca_file), for logging or policy.
 *   TD_TLS_CLIENT_AUTH_REQUIRED  a certificate must be presented. With a
 *                                ca_file, it must chain to it (OpenSSL's
 *                                standard verification, including validity
 *                                dates); without a ca_file any certificate is
 *                                accepted (the hash lookup still decides).
 *                                A failure ends the handshake: TD_EPROTO.
 * When ca_file is given its subjects are sent to clients as the list of
 * acceptable CAs in every mode but NONE. */
#ifndef TD_TRANSPORT_TLS_H
#define TD_TRANSPORT_TLS_H
#include <stdbool.h>
#include <stddef.h>

/* Ciphertext is pushed through OpenSSL, and output drained, in chunks of this size. */
#define TD_TLS_CHUNK (16u * 1024)
/* Plaintext written before the handshake completed is held up to this many bytes. */
#define TD_TLS_PENDING_MAX (64u * 1024)

enum td_tls_client_auth {
  TD_TLS_CLIENT_AUTH_NONE = 0,
  TD_TLS_CLIENT_AUTH_OPTIONAL,
  TD_TLS_CLIENT_AUTH_REQUIRED,
};

enum td_tls_version {
  TD_TLS_V12 = 0, /* the default minimum */
  TD_TLS_V13,
};

/* Server configuration; strings are borrowed for the td_tls_ctx_new call. */
struct td_tls_config {
  const char *cert_file;      /* PEM: the server certificate, then its chain */
  const char *key_file;       /* PEM private key (PKCS#8, traditional, EC or RSA) */
  const char *key_password;   /* NULL or "": the key is not encrypted */
  const char *ca_file;        /* PEM bundle to verify client certificates; NULL: none */
  enum td_tls_client_auth client_auth;
  enum td_tls_version min_version;
  const char *ciphers;        /* TLS 1.2 cipher list; NULL: TD_TLS_DEFAULT_CIPHERS */
  const char *ciphersuites;   /* TLS 1.3 suites; NULL: OpenSSL's default */
};

/* Forward secrecy and AEAD first (server preference), no anonymous, export,
 * RC4, 3DES, MD5, PSK or SRP suites; plain RSA key exchange is kept for old
 * devices, as ThingsBoard's JVM defaults do. */
#define TD_TLS_DEFAULT_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:ECDHE+AES:HIGH:!aNULL:!eNULL:!MD5:!RC4:!3DES:!PSK:!SRP:!DSS"

/* What the handshake learned about the peer. */
struct td_tls_peer {
  const char *version;   /* "TLSv1.2" / "TLSv1.3" (static) */
  const char *cipher;    /* OpenSSL cipher name (static) */
  bool has_cert;         /* the client presented a certificate */
  bool chain_ok;         /* ... and it chained to ca_file (false without ca_file) */
  char subject[256];     /* RFC 2253 subject of the client certificate, "" if none (truncated) */
};

struct td_tls_ctx;
struct td_tls_conn;

/* td_tls_ctx_new: load the certificate chain, the key (checking that it
 * matches the certificate) and the optional CA bundle; minimum TLS 1.2 (or
 * 1.3), no renegotiation, no compression. On failure returns TD_EINVAL (or
 * TD_ENOMEM) and writes to err (if errlen > 0) a one-line message naming the
 * file and OpenSSL's reason — never key material or the password. *out is
 * freed with td_tls_ctx_free. Call at start-up on any thread; the result is
 * then immutable and may be used by all loop threads. */
int td_tls_ctx_new(const struct td_tls_config *cfg, struct td_tls_ctx **out, char *err, size_t errlen);
/* td_tls_ctx_free: release the owner's reference. Connections created from
 * it keep what they need alive, so they may outlive it. NULL is a no-op. */
void td_tls_ctx_free(struct td_tls_ctx *ctx);

/* Callbacks of one connection; ud is the owner's pointer given to td_tls_conn_new. */
struct td_tls_conn_cbs {
  /* Ciphertext for the socket (required). Return 0 or a negative TD_E*. */
  int (*on_cipher)(void *ud, const char *data, size_t len);
  /* Decrypted application data (required). Return 0 or a negative TD_E*. */
  int (*on_plain)(void *ud, const char *data, size_t len);
  /* Handshake finished (optional); peer is valid during the call (see also
   * td_tls_conn_peer). Return 0, or a negative TD_E* to refuse the connection. */
  int (*on_handshake)(void *ud, const struct td_tls_peer *peer);
};

/* td_tls_conn_new: a server-side connection in handshake state. cbs is
 * copied. Free with td_tls_conn_free. Returns 0, TD_EINVAL or TD_ENOMEM. */
int td_tls_conn_new(struct td_tls_ctx *ctx, const struct td_tls_conn_cbs *cbs, void *ud,
                    struct td_tls_conn **out);
/* td_tls_conn_free: drop the connection without sending anything (call
 * td_tls_close_notify first for an orderly close). NULL is a no-op. Never
 * from inside one of the connection's callbacks. */
void td_tls_conn_free(struct td_tls_conn *c);

/* td_tls_feed: the bytes just read from the socket. Drives the handshake,
 * delivers plaintext through on_plain, and flushes any output (handshake
 * flights, tickets, alerts) through on_cipher. Returns 0 (more bytes welcome
 * — also when a record is incomplete), TD_ECLOSED when the peer sent
 * close_notify (plaintext before it was delivered; the owner may still
 * td_tls_close_notify and then closes the socket), TD_EPROTO on TLS failure,
 * or a callback's negative return. len 0 is allowed (just flushes). */
int td_tls_feed(struct td_tls_conn *c, const void *data, size_t len);

/* td_tls_write: encrypt plaintext and hand the records to on_cipher. Before
 * the handshake completed the bytes are held (at most TD_TLS_PENDING_MAX in
 * total, else TD_ETOOBIG and nothing is kept) and sent right after it.
 * Returns 0, TD_ECLOSED after close_notify (either way), TD_EPROTO after a
 * failure, or on_cipher's negative return. */
int td_tls_write(struct td_tls_conn *c, const void *data, size_t len);

/* td_tls_close_notify: send the close_notify alert (through on_cipher) if the
 * handshake completed and it was not sent yet; later writes return
 * TD_ECLOSED. Returns 0 or on_cipher's negative return. The owner then closes
 * the socket after its writes drained (no need to wait for the peer's reply). */
int td_tls_close_notify(struct td_tls_conn *c);

/* td_tls_handshake_done: true once the handshake completed (and not failed). */
bool td_tls_handshake_done(const struct td_tls_conn *c);
/* td_tls_conn_peer: the peer summary; TD_EAGAIN before the handshake completed. */
int td_tls_conn_peer(const struct td_tls_conn *c, struct td_tls_peer *out);
/* td_tls_conn_reason: short reason of the last failure ("" if none); the
 * string belongs to the connection. Never contains secrets or payload. */
const char *td_tls_conn_reason(const struct td_tls_conn *c);

/* td_tls_peer_cert_pem_b64: the client certificate as ThingsBoard stores it:
 * base64 of the DER, without PEM header/footer and without CR/LF. *out is
 * malloc'd (caller frees). TD_ENOTFOUND when no certificate was presented,
 * TD_EAGAIN before the handshake completed. */
int td_tls_peer_cert_pem_b64(const struct td_tls_conn *c, char **out);
/* td_tls_peer_credentials_id: sha3-256 hex of td_tls_peer_cert_pem_b64, the
 * X509_CERTIFICATE credentialsId to look up at CONNECT. Same errors. */
int td_tls_peer_credentials_id(const struct td_tls_conn *c, char out[65]);

/* td_tls_pem_to_b64: the trimmed base64 of the first certificate in a PEM
 * text (what the REST API receives as credentialsValue). Takes the body
 * between the first "-----BEGIN CERTIFICATE-----" and the following END line
 * (or the whole text when there is no BEGIN line: already trimmed base64) and
 * removes all whitespace — ThingsBoard removes CR/LF and the markers; also
 * dropping blanks and further chain certificates gives the value a TLS client
 * can actually match. Returns 0 with *out malloc'd (caller frees); TD_EINVAL
 * if the result is empty or not base64 text. Any thread. */
int td_tls_pem_to_b64(const char *pem, char **out);
/* td_tls_x509_credentials_id: lower-case hex SHA3-256 of the trimmed base64
 * string b64 (ThingsBoard's credentialsId for X509_CERTIFICATE). Any thread. */
int td_tls_x509_credentials_id(const char *b64, char out[65]);
/* td_tls_pem_credentials_id: td_tls_pem_to_b64 then td_tls_x509_credentials_id. */
int td_tls_pem_credentials_id(const char *pem, char out[65]);

/* td_sha3_256_hex: lower-case hex SHA3-256 of data (NUL-terminated in out);
 * used for MQTT_BASIC credentialsId (sha3 of "clientId|userName"). Returns 0
 * or TD_ENOMEM / TD_EIO if OpenSSL fails. Any thread. */
int td_sha3_256_hex(const void *data, size_t len, char out[65]);

#endif
