/* The NTS server's per-request path compiled (RFC 8915 §5), for lockstep.ntp.nts.server.
 *
 * NtsFastPath.respond(request, header, key_id) does what NtsServer.respond does for a well-formed
 * NTS request whose cookie opens and whose authenticator verifies: it walks the extension fields,
 * opens the cookie, verifies the request, seals new cookies and the reply, and returns the reply's
 * bytes. For anything else (a request to drop or to NAK, encrypted fields in the request, a reply
 * too short for a cookie) it returns None and takes nothing from the nonce pool, and the Python
 * path, the reference, decides: it counts and words every refusal. All cryptography is OpenSSL's
 * (EVP "AES-128-SIV", which is AEAD_AES_SIV_CMAC_256 of RFC 5297 §6.1 with its 256-bit key); this
 * file only parses and copies bytes.
 *
 * The object is also the server's nonce pool (take(n)), with lockstep.ntp.nts.nonces.NoncePool's
 * exact semantics, so both paths draw nonces from one sequence.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define HEADER_LENGTH 48
#define MIN_EXTENSION_LENGTH 16 /* RFC 7822 §7.5 */
#define CRYPTO_NAK_LENGTH 4     /* RFC 7822 §7.5: what remains may be a crypto-NAK or a MAC */
#define KEY_LENGTH 32           /* AEAD_AES_SIV_CMAC_256 (RFC 5297 §6.1) */
#define TAG_LENGTH 16
#define NONCE_LENGTH 16 /* our nonces (RFC 8915 §5.6) */
#define MIN_NONCE_AND_PADDING 16
#define UNIQUE_ID_LENGTH 32
#define COOKIE_NONCE_LENGTH 16
#define COOKIE_PLAINTEXT_LENGTH (4 + 2 * KEY_LENGTH)
#define COOKIE_LENGTH (4 + COOKIE_NONCE_LENGTH + TAG_LENGTH + COOKIE_PLAINTEXT_LENGTH) /* 104 */
#define COOKIE_FIELD_LENGTH (4 + COOKIE_LENGTH)
#define AUTHENTICATOR_LENGTH (4 + 4 + NONCE_LENGTH + TAG_LENGTH)
#define MAX_REQUEST 1280 /* lockstep.ntp.aio.server.MAX_DATAGRAM is smaller */
#define MAX_KEYS 256
#define AEAD_AES_SIV_CMAC_256 15
/* Setting up an AES-SIV key costs more than using it (OpenSSL fetches its CMAC and CTR parts):
 * keyed contexts are kept and copied per operation, as the Python path keeps AESSIV objects. */
#define CLIENT_SLOTS 4096

/* Extension field types, RFC 8915 §5.3-5.6. */
#define UNIQUE_IDENTIFIER 0x0104
#define NTS_COOKIE 0x0204
#define NTS_COOKIE_PLACEHOLDER 0x0304
#define NTS_AUTHENTICATOR 0x0404

typedef struct {
    PyObject_HEAD
    PyObject *weakreflist; /* lockstep.ntp.nts.nonces.forget_nonces_in_child holds it weakly */
    EVP_CIPHER *siv;
    EVP_CIPHER_CTX *ctx;
    EVP_MAC *cmac_algorithm;
    EVP_MAC_CTX *cmac;
    PyObject *random_bytes;
    PyObject *pool; /* bytes */
    Py_ssize_t position;
    Py_ssize_t chunk;
    uint32_t current_id;
    uint32_t keep;
    int key_count;
    uint32_t key_ids[MAX_KEYS];
    unsigned char keys[MAX_KEYS][KEY_LENGTH];
    EVP_CIPHER_CTX *key_contexts[MAX_KEYS]; /* keyed lazily, copied per operation */
    struct {
        unsigned char key[KEY_LENGTH];
        EVP_CIPHER_CTX *context;
    } clients[CLIENT_SLOTS]; /* S2C keys' contexts, direct-mapped by the key's first bytes */
} FastPath;

static uint16_t be16(const unsigned char *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(unsigned char *p, unsigned v) {
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static Py_ssize_t pad4(Py_ssize_t n) { return (4 - (n & 3)) & 3; }

/* A context set up for AES-SIV under ``key`` (never used itself: siv_seal/siv_open copy it). */
static EVP_CIPHER_CTX *keyed_context(FastPath *self, const unsigned char *key) {
    EVP_CIPHER_CTX *context = EVP_CIPHER_CTX_new();
    if (context != NULL && EVP_EncryptInit_ex2(context, self->siv, key, NULL, NULL) == 1) return context;
    EVP_CIPHER_CTX_free(context);
    return NULL;
}

/* AES-SIV over the associated-data vector [ad1, ad2] (RFC 5297 §3: the nonce is its last
 * component, as RFC 8915 §5.6 and §6 use it), under the key ``keyed`` was set up with.
 * Encrypt: out = V (16) | C; 1 on success. The plaintext must not be empty (OpenSSL 3.0
 * ignores an empty update; callers never need one). */
static int siv_seal(FastPath *self, const EVP_CIPHER_CTX *keyed, const unsigned char *ad1, size_t ad1_len,
                    const unsigned char *ad2, size_t ad2_len, const unsigned char *plain, size_t plain_len,
                    unsigned char *out) {
    int n = 0;
    EVP_CIPHER_CTX *ctx = self->ctx;
    if (plain_len == 0 || plain_len > INT_MAX) return 0;
    if (EVP_CIPHER_CTX_copy(ctx, keyed) != 1) return 0;
    if (EVP_EncryptInit_ex2(ctx, NULL, NULL, NULL, NULL) != 1) return 0;
    if (EVP_EncryptUpdate(ctx, NULL, &n, ad1, (int)ad1_len) != 1) return 0;
    if (EVP_EncryptUpdate(ctx, NULL, &n, ad2, (int)ad2_len) != 1) return 0;
    if (EVP_EncryptUpdate(ctx, out + TAG_LENGTH, &n, plain, (int)plain_len) != 1) return 0;
    if (EVP_EncryptFinal_ex(ctx, out + TAG_LENGTH + n, &n) != 1) return 0;
    return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LENGTH, out) == 1;
}

/* Decrypt and verify V | C (``sealed``, longer than the tag) into ``out``; 1 when it verifies. */
static int siv_open(FastPath *self, const EVP_CIPHER_CTX *keyed, const unsigned char *ad1, size_t ad1_len,
                    const unsigned char *ad2, size_t ad2_len, const unsigned char *sealed, size_t sealed_len,
                    unsigned char *out) {
    int n = 0;
    EVP_CIPHER_CTX *ctx = self->ctx;
    if (sealed_len <= TAG_LENGTH || sealed_len > INT_MAX) return 0;
    if (EVP_CIPHER_CTX_copy(ctx, keyed) != 1) return 0;
    if (EVP_DecryptInit_ex2(ctx, NULL, NULL, NULL, NULL) != 1) return 0;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LENGTH, (void *)sealed) != 1) return 0;
    if (EVP_DecryptUpdate(ctx, NULL, &n, ad1, (int)ad1_len) != 1) return 0;
    if (EVP_DecryptUpdate(ctx, NULL, &n, ad2, (int)ad2_len) != 1) return 0;
    if (EVP_DecryptUpdate(ctx, out, &n, sealed + TAG_LENGTH, (int)(sealed_len - TAG_LENGTH)) != 1) return 0;
    return EVP_DecryptFinal_ex(ctx, out + n, &n) == 1;
}

/* The kept context for a client's S2C key (one slot per first-two-bytes value, replaced on a
 * miss); NULL when OpenSSL fails. */
static const EVP_CIPHER_CTX *client_context(FastPath *self, const unsigned char *key) {
    unsigned slot = ((unsigned)key[0] << 8 | key[1]) % CLIENT_SLOTS;
    if (self->clients[slot].context != NULL && CRYPTO_memcmp(self->clients[slot].key, key, KEY_LENGTH) == 0)
        return self->clients[slot].context;
    EVP_CIPHER_CTX *context = keyed_context(self, key);
    if (context == NULL) return NULL;
    EVP_CIPHER_CTX_free(self->clients[slot].context);
    self->clients[slot].context = context;
    memcpy(self->clients[slot].key, key, KEY_LENGTH);
    return context;
}

/* RFC 5297 §2.3 dbl(): multiply by x in GF(2^128). */
static void dbl(unsigned char block[16]) {
    unsigned char carry = block[0] >> 7;
    for (int i = 0; i < 15; i++) block[i] = (unsigned char)(block[i] << 1 | block[i + 1] >> 7);
    block[15] = (unsigned char)(block[15] << 1) ^ (unsigned char)(carry ? 0x87 : 0);
}

static int cmac(EVP_MAC_CTX *mac, const unsigned char *data, size_t length, unsigned char out[16]) {
    size_t written = 0;
    return EVP_MAC_init(mac, NULL, 0, NULL) == 1 && EVP_MAC_update(mac, data, length) == 1 &&
           EVP_MAC_final(mac, out, &written, 16) == 1 && written == 16;
}

/* The synthetic IV of AES-SIV for an EMPTY plaintext: S2V(K1, ad1, ad2, "") (RFC 5297 §2.4,
 * §2.6: K1 is the key's first half). OpenSSL 3.0's EVP AES-SIV cannot take an empty plaintext
 * (its final step fails), and a client's request authenticator (RFC 8915 §5.6) usually has
 * nothing to encrypt; so the S2V chain is composed here from OpenSSL's AES-CMAC, exactly as
 * §2.4 writes it (the tests compare it with `cryptography`'s AESSIV on random inputs):
 *     D = CMAC(<zero>); D = dbl(D) xor CMAC(S_i) for each associated-data string;
 *     the last string is empty, shorter than 128 bits: T = dbl(D) xor pad(""); V = CMAC(T). */
static int siv_tag_empty(FastPath *self, const unsigned char *key, const unsigned char *ad1, size_t ad1_len,
                         const unsigned char *ad2, size_t ad2_len, unsigned char tag[16]) {
    static const unsigned char zero[16];
    unsigned char d[16], mac[16];
    if (EVP_MAC_init(self->cmac, key, KEY_LENGTH / 2, NULL) != 1) return 0; /* AES-128 CMAC, set at init */
    if (!cmac(self->cmac, zero, 16, d)) return 0;
    const unsigned char *strings[2] = {ad1, ad2};
    size_t lengths[2] = {ad1_len, ad2_len};
    for (int s = 0; s < 2; s++) {
        if (!cmac(self->cmac, strings[s], lengths[s], mac)) return 0;
        dbl(d);
        for (int i = 0; i < 16; i++) d[i] ^= mac[i];
    }
    dbl(d);
    d[0] ^= 0x80; /* pad(""): a one bit, then zeros */
    return cmac(self->cmac, d, 16, tag);
}

/* NoncePool.take: the next ``length`` bytes of random_bytes(max(chunk, length)) blocks. */
static const unsigned char *take(FastPath *self, Py_ssize_t length) {
    Py_ssize_t end = self->position + length;
    if (self->pool == NULL || end > PyBytes_GET_SIZE(self->pool)) {
        PyObject *fresh = PyObject_CallFunction(self->random_bytes, "n", self->chunk > length ? self->chunk : length);
        if (fresh == NULL) return NULL;
        if (!PyBytes_Check(fresh) || PyBytes_GET_SIZE(fresh) < length) {
            Py_DECREF(fresh);
            PyErr_SetString(PyExc_ValueError, "random_bytes returned too few bytes");
            return NULL;
        }
        Py_XSETREF(self->pool, fresh);
        self->position = 0;
        end = length;
    }
    const unsigned char *out = (const unsigned char *)PyBytes_AS_STRING(self->pool) + self->position;
    self->position = end;
    return out;
}

/* The kept context for cookie key ``key_id`` (one of the last ``keep`` periods'), or NULL. */
static const EVP_CIPHER_CTX *cookie_context(FastPath *self, uint32_t key_id) {
    for (int i = 0; i < self->key_count; i++) {
        if (self->key_ids[i] != key_id) continue;
        if (self->key_contexts[i] == NULL) self->key_contexts[i] = keyed_context(self, self->keys[i]);
        return self->key_contexts[i];
    }
    return NULL;
}

static PyObject *respond(FastPath *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer request, header;
    unsigned long key_id_arg;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "respond(request, header, key_id)");
        return NULL;
    }
    key_id_arg = PyLong_AsUnsignedLong(args[2]);
    if (key_id_arg == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    if (key_id_arg != self->current_id || self->key_count == 0) Py_RETURN_NONE; /* keys not set for it */
    if (PyObject_GetBuffer(args[0], &request, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(args[1], &header, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&request);
        return NULL;
    }
    PyObject *result = Py_None, *reply = NULL;
    unsigned char plain[COOKIE_PLAINTEXT_LENGTH]; /* the cookie's: the client's keys */
    Py_INCREF(result);
    const unsigned char *data = request.buf;
    Py_ssize_t total = request.len;
    if (header.len != HEADER_LENGTH || total <= HEADER_LENGTH || total > MAX_REQUEST) goto done;

    /* The extension fields after the header, by RFC 7822 §7.5 (lockstep.ntp.wire.scan_trailer):
     * what remains is a field of 16+ bytes, 4-aligned, within the datagram, or a MAC / crypto-NAK
     * of 4, 20 or 24 bytes. RFC 8915 §5.7: the fields of one NTS request are a Unique Identifier
     * (§5.3, at least 32 bytes), exactly one NTS Cookie (§5.4), any Cookie Placeholders of the
     * cookie's length (§5.5) and, last, with no MAC after it, the Authenticator (§5.6). */
    Py_ssize_t uid_begin = 0, uid_end = 0, cookie_begin = 0, cookie_end = 0, auth_begin = 0, auth_end = 0;
    Py_ssize_t placeholder_lengths[MAX_REQUEST / MIN_EXTENSION_LENGTH];
    int placeholders = 0, fields_seen = 0, auth_position = -1;
    Py_ssize_t offset = HEADER_LENGTH;
    while (offset < total) {
        Py_ssize_t remaining = total - offset;
        if (remaining == CRYPTO_NAK_LENGTH || remaining == 20 || remaining == 24) break; /* a MAC */
        if (remaining < MIN_EXTENSION_LENGTH) goto done;
        unsigned type = be16(data + offset), length = be16(data + offset + 2);
        if (length < MIN_EXTENSION_LENGTH || (length & 3) || length > remaining) goto done;
        if (type == UNIQUE_IDENTIFIER) {
            if (uid_end || length - 4 < UNIQUE_ID_LENGTH) goto done;
            uid_begin = offset, uid_end = offset + length;
        } else if (type == NTS_COOKIE) {
            if (cookie_end) goto done;
            cookie_begin = offset, cookie_end = offset + length;
        } else if (type == NTS_COOKIE_PLACEHOLDER) {
            placeholder_lengths[placeholders++] = length;
        } else if (type == NTS_AUTHENTICATOR) {
            auth_begin = offset, auth_end = offset + length, auth_position = fields_seen;
        }
        fields_seen++;
        offset += length;
    }
    int has_mac = offset < total;
    if (auth_end && (auth_position != fields_seen - 1 || has_mac)) goto done;
    if (!uid_end || !cookie_end || !auth_end) goto done;
    Py_ssize_t cookie_field_length = cookie_end - cookie_begin;
    for (int i = 0; i < placeholders; i++)
        if (placeholder_lengths[i] != cookie_field_length) goto done;

    /* The cookie (RFC 8915 §6, lockstep.ntp.nts.cookies): key id | nonce | SIV of the plaintext
     * AEAD id | reserved | C2S key | S2C key, under the key id's key with [key id, nonce] as its
     * associated data. Keys older than ``keep`` periods are expired (a NAK: the Python path). */
    const unsigned char *cookie = data + cookie_begin + 4;
    if (cookie_field_length - 4 != COOKIE_LENGTH) goto done;
    uint32_t cookie_key_id = be32(cookie);
    if ((uint32_t)(self->current_id - cookie_key_id) > self->keep) goto done;
    const EVP_CIPHER_CTX *opening_key = cookie_context(self, cookie_key_id);
    if (opening_key == NULL) goto done;
    if (!siv_open(self, opening_key, cookie, 4, cookie + 4, COOKIE_NONCE_LENGTH, cookie + 4 + COOKIE_NONCE_LENGTH,
                  TAG_LENGTH + COOKIE_PLAINTEXT_LENGTH, plain))
        goto done;
    if (be16(plain) != AEAD_AES_SIV_CMAC_256 || be16(plain + 2) != 0) goto done;
    const unsigned char *c2s = plain + 4, *s2c = plain + 4 + KEY_LENGTH;

    /* The request's Authenticator (§5.6): nonce length, ciphertext length, the nonce and the
     * ciphertext each padded to 4, additional padding; nonce plus all padding at least 16 bytes;
     * the associated data is the datagram up to this field. */
    const unsigned char *value = data + auth_begin + 4;
    Py_ssize_t value_length = auth_end - auth_begin - 4;
    Py_ssize_t nonce_length = be16(value), ciphertext_length = be16(value + 2);
    Py_ssize_t nonce_end = 4 + nonce_length + pad4(nonce_length);
    Py_ssize_t ciphertext_end = nonce_end + ciphertext_length + pad4(ciphertext_length);
    if (ciphertext_end > value_length) goto done;
    if (nonce_length < 1 || ciphertext_length < TAG_LENGTH) goto done;
    if (value_length - ciphertext_end + nonce_end - 4 < MIN_NONCE_AND_PADDING) goto done;
    /* Encrypted fields in a request (placeholders may travel there, §5.5) are left to the Python
     * path; with nothing encrypted, the ciphertext is the synthetic IV alone. */
    if (ciphertext_length != TAG_LENGTH) goto done;
    {
        unsigned char tag[TAG_LENGTH];
        if (!siv_tag_empty(self, c2s, data, (size_t)auth_begin, value + 4, (size_t)nonce_length, tag)) goto done;
        if (CRYPTO_memcmp(tag, value + nonce_end, TAG_LENGTH) != 0) goto done;
    }

    /* The reply (§5.7): header, the request's Unique Identifier field byte for byte, and an
     * Authenticator under S2C whose encrypted part holds one new cookie per cookie and per
     * placeholder, fewer if the reply would be longer than the request (RFC 8633). */
    Py_ssize_t uid_length = uid_end - uid_begin;
    Py_ssize_t associated_length = HEADER_LENGTH + uid_length;
    Py_ssize_t count = 1 + placeholders;
    while (count > 0 && associated_length + AUTHENTICATOR_LENGTH + count * COOKIE_FIELD_LENGTH > total) count--;
    if (count == 0) goto done;
    Py_ssize_t cookies_length = count * COOKIE_FIELD_LENGTH;
    Py_ssize_t reply_length = associated_length + AUTHENTICATOR_LENGTH + cookies_length;
    reply = PyBytes_FromStringAndSize(NULL, reply_length);
    if (reply == NULL) goto fail;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(reply);
    memcpy(out, header.buf, HEADER_LENGTH);
    memcpy(out + HEADER_LENGTH, data + uid_begin, (size_t)uid_length);
    unsigned char new_cookies[(MAX_REQUEST / COOKIE_FIELD_LENGTH + 1) * COOKIE_FIELD_LENGTH];
    unsigned char key_id_bytes[4];
    put32(key_id_bytes, self->current_id);
    const EVP_CIPHER_CTX *sealing_key = cookie_context(self, self->current_id);
    const EVP_CIPHER_CTX *reply_key = client_context(self, s2c);
    for (Py_ssize_t i = 0; i < count; i++) {
        unsigned char *field = new_cookies + i * COOKIE_FIELD_LENGTH;
        const unsigned char *nonce = take(self, COOKIE_NONCE_LENGTH);
        if (nonce == NULL) goto fail_reply;
        put16(field, NTS_COOKIE);
        put16(field + 2, COOKIE_FIELD_LENGTH);
        memcpy(field + 4, key_id_bytes, 4);
        memcpy(field + 8, nonce, COOKIE_NONCE_LENGTH);
        if (sealing_key == NULL || reply_key == NULL ||
            !siv_seal(self, sealing_key, key_id_bytes, 4, nonce, COOKIE_NONCE_LENGTH, plain, COOKIE_PLAINTEXT_LENGTH,
                      field + 8 + COOKIE_NONCE_LENGTH))
            goto crypto_error;
    }
    unsigned char *auth = out + associated_length;
    const unsigned char *nonce = take(self, NONCE_LENGTH);
    if (nonce == NULL) goto fail_reply;
    put16(auth, NTS_AUTHENTICATOR);
    put16(auth + 2, (unsigned)(AUTHENTICATOR_LENGTH + cookies_length));
    put16(auth + 4, NONCE_LENGTH);
    put16(auth + 6, (unsigned)(TAG_LENGTH + cookies_length));
    memcpy(auth + 8, nonce, NONCE_LENGTH);
    if (!siv_seal(self, reply_key, out, (size_t)associated_length, nonce, NONCE_LENGTH, new_cookies, (size_t)cookies_length,
                  auth + 8 + NONCE_LENGTH))
        goto crypto_error;
    Py_SETREF(result, reply);
    goto done;

crypto_error:
    PyErr_SetString(PyExc_RuntimeError, "OpenSSL AES-SIV failed");
fail_reply:
    Py_DECREF(reply);
fail:
    Py_CLEAR(result);
done:
    OPENSSL_cleanse(plain, sizeof plain);
    PyBuffer_Release(&request);
    PyBuffer_Release(&header);
    return result;
}

static PyObject *take_method(FastPath *self, PyObject *arg) {
    Py_ssize_t length = PyLong_AsSsize_t(arg);
    if (length == -1 && PyErr_Occurred()) return NULL;
    if (length < 0) {
        PyErr_SetString(PyExc_ValueError, "length must not be negative");
        return NULL;
    }
    const unsigned char *bytes = take(self, length);
    return bytes == NULL ? NULL : PyBytes_FromStringAndSize((const char *)bytes, length);
}

/* forget(): drop the unspent pool (a forked child must not reuse its parent's nonces). */
static PyObject *forget(FastPath *self, PyObject *Py_UNUSED(ignored)) {
    Py_CLEAR(self->pool);
    self->position = 0;
    Py_RETURN_NONE;
}

/* set_keys(current_id, keep, keys): the cookie keys of ids current_id - keep .. current_id, as
 * (key id, 32-byte key) pairs; respond() serves only requests for this current_id. */
static PyObject *set_keys(FastPath *self, PyObject *args) {
    unsigned long current_id, keep;
    PyObject *keys, *sequence;
    if (!PyArg_ParseTuple(args, "kkO", &current_id, &keep, &keys)) return NULL;
    sequence = PySequence_Fast(keys, "keys must be a sequence of (key id, key) pairs");
    if (sequence == NULL) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    if (count > MAX_KEYS || current_id > 0xFFFFFFFFul || keep > 0xFFFFFFFFul) {
        Py_DECREF(sequence);
        PyErr_SetString(PyExc_ValueError, "too many keys, or ids beyond 32 bits");
        return NULL;
    }
    for (int i = 0; i < MAX_KEYS; i++) {
        EVP_CIPHER_CTX_free(self->key_contexts[i]);
        self->key_contexts[i] = NULL;
    }
    self->key_count = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        unsigned long key_id;
        const char *key;
        Py_ssize_t key_length;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(sequence, i), "ky#", &key_id, &key, &key_length)) {
            Py_DECREF(sequence);
            return NULL;
        }
        if (key_length != KEY_LENGTH || key_id > 0xFFFFFFFFul) {
            Py_DECREF(sequence);
            self->key_count = 0;
            PyErr_SetString(PyExc_ValueError, "cookie keys are 32 bytes with 32-bit ids");
            return NULL;
        }
        self->key_ids[i] = (uint32_t)key_id;
        memcpy(self->keys[i], key, KEY_LENGTH);
    }
    Py_DECREF(sequence);
    self->key_count = (int)count;
    self->current_id = (uint32_t)current_id;
    self->keep = (uint32_t)keep;
    Py_RETURN_NONE;
}

static int init(FastPath *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"random_bytes", "chunk", NULL};
    PyObject *random_bytes;
    Py_ssize_t chunk = 4096;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|n", names, &random_bytes, &chunk)) return -1;
    if (!PyCallable_Check(random_bytes) || chunk < 1) {
        PyErr_SetString(PyExc_TypeError, "random_bytes must be callable and chunk positive");
        return -1;
    }
    Py_INCREF(random_bytes);
    Py_XSETREF(self->random_bytes, random_bytes);
    self->chunk = chunk;
    if (self->siv == NULL) self->siv = EVP_CIPHER_fetch(NULL, "AES-128-SIV", NULL);
    if (self->ctx == NULL) self->ctx = EVP_CIPHER_CTX_new();
    if (self->cmac_algorithm == NULL) self->cmac_algorithm = EVP_MAC_fetch(NULL, "CMAC", NULL);
    if (self->cmac == NULL && self->cmac_algorithm != NULL) {
        OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("cipher", "AES-128-CBC", 0), OSSL_PARAM_construct_end()};
        self->cmac = EVP_MAC_CTX_new(self->cmac_algorithm);
        if (self->cmac != NULL && EVP_MAC_CTX_set_params(self->cmac, params) != 1) {
            EVP_MAC_CTX_free(self->cmac);
            self->cmac = NULL;
        }
    }
    if (self->siv == NULL || self->ctx == NULL || self->cmac == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "this OpenSSL has no AES-128-SIV or CMAC");
        return -1;
    }
    return 0;
}

static void dealloc(FastPath *self) {
    if (self->weakreflist != NULL) PyObject_ClearWeakRefs((PyObject *)self);
    EVP_CIPHER_CTX_free(self->ctx);
    EVP_CIPHER_free(self->siv);
    EVP_MAC_CTX_free(self->cmac);
    EVP_MAC_free(self->cmac_algorithm);
    for (int i = 0; i < MAX_KEYS; i++) EVP_CIPHER_CTX_free(self->key_contexts[i]);
    for (int i = 0; i < CLIENT_SLOTS; i++) EVP_CIPHER_CTX_free(self->clients[i].context);
    OPENSSL_cleanse(self->keys, sizeof self->keys);
    OPENSSL_cleanse(self->clients, sizeof self->clients);
    Py_XDECREF(self->random_bytes);
    Py_XDECREF(self->pool);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef methods[] = {
    {"respond", (PyCFunction)(void (*)(void))respond, METH_FASTCALL,
     "respond(request, header, key_id) -> reply bytes, or None for the Python path to decide"},
    {"take", (PyCFunction)take_method, METH_O, "take(length) -> the next length bytes of the nonce pool"},
    {"forget", (PyCFunction)forget, METH_NOARGS, "drop the unspent nonce pool"},
    {"set_keys", (PyCFunction)set_keys, METH_VARARGS, "set_keys(current_id, keep, [(key id, key), ...])"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FastPathType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lockstep.ntp.nts._fastpath.FastPath",
    .tp_basicsize = sizeof(FastPath),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_weaklistoffset = offsetof(FastPath, weakreflist),
    .tp_doc = "The NTS server's compiled per-request path and nonce pool.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)init,
    .tp_dealloc = (destructor)dealloc,
    .tp_methods = methods,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastpath", "NTS server fast path (OpenSSL).", -1, NULL};

PyMODINIT_FUNC PyInit__fastpath(void) {
    if (PyType_Ready(&FastPathType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&FastPathType);
    if (PyModule_AddObject(m, "FastPath", (PyObject *)&FastPathType) < 0) {
        Py_DECREF(&FastPathType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
