/* The NTS server's per-request path compiled (RFC 8915 §5), for lockstep.ntp.nts.server.
 *
 * NtsFastPath.respond(request, header, key_id) does what NtsServer.respond does for a well-formed
 * NTS request whose cookie opens and whose authenticator verifies: it walks the extension fields,
 * opens the cookie, verifies the request, seals new cookies and the reply, and returns the reply's
 * bytes. For anything else (a request to drop or to NAK, encrypted fields in the request, a reply
 * too short for a cookie) it returns None and takes nothing from the nonce pool, and the Python
 * path, the reference, decides: it counts and words every refusal. All cryptography is Nettle's
 * SIV-CMAC-AES128 (AEAD_AES_SIV_CMAC_256 of RFC 5297 §6.1 with its 256-bit key), the library and
 * the functions chronyd's NTS uses (chrony's siv_nettle.c); this file only parses and copies bytes.
 * Nettle's SIV takes the associated data and the nonce as the two strings of RFC 5297 §3's vector,
 * [ad, nonce], which is how RFC 8915 uses it (§5.6 for the authenticator, §6 for our cookies).
 *
 * FastPath.answer_batch does the same for a whole recvmmsg batch with no Python per request: it
 * also builds each reply's NTP header (as lockstep.ntp.server.NtpServer.respond does, from the
 * template NtpServer.batch_template gives), reads T3 just before sealing, and sends the replies
 * itself with sendmmsg. What it does not answer it lists for the Python path.
 *
 * The object is also the server's nonce pool (take(n)), with lockstep.ntp.nts.nonces.NoncePool's
 * exact semantics, so both paths draw nonces from one sequence.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <nettle/memops.h>
#include <nettle/siv-cmac.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define HEADER_LENGTH 48
#define MIN_EXTENSION_LENGTH 16 /* RFC 7822 §7.5 */
#define CRYPTO_NAK_LENGTH 4     /* RFC 7822 §7.5: what remains may be a crypto-NAK or a MAC */
#define KEY_LENGTH SIV_CMAC_AES128_KEY_SIZE /* 32: AEAD_AES_SIV_CMAC_256 (RFC 5297 §6.1) */
#define TAG_LENGTH SIV_DIGEST_SIZE          /* 16 */
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
/* A key's SIV context (two AES key schedules and CMAC's subkeys, ≈ 0.4 µs to set up) is kept and
 * used read-only: per cookie key id, and per recent client in a direct-mapped table. */
#define CLIENT_SLOTS 4096

/* answer_batch's send slots: as many as a lockstep.ntp.aio.mmsg.DatagramBatch has receive slots. */
#define SEND_SLOTS 64
/* NTS replies (their T3 is sealed in) wait for each other to share a sendmmsg at most this long
 * after the first one's T3 was read (lockstep.ntp.aio.server._LONG_REPLY_WAIT_NS). */
#define LONG_REPLY_WAIT_NS 40000
#define UNIX_EPOCH_SECONDS 2208988800LL /* 1900 to 1970 (RFC 5905 §6) */
#ifndef SO_TIMESTAMPING_OLD
#define SO_TIMESTAMPING_OLD 37 /* native struct timespec, as lockstep.ntp.aio.mmsg asks for it */
#endif

/* Extension field types, RFC 8915 §5.3-5.6. */
#define UNIQUE_IDENTIFIER 0x0104
#define NTS_COOKIE 0x0204
#define NTS_COOKIE_PLACEHOLDER 0x0304
#define NTS_AUTHENTICATOR 0x0404

typedef struct siv_cmac_aes128_ctx Siv;

typedef struct {
    unsigned char keys[2 * KEY_LENGTH]; /* C2S | S2C, as in the cookie's plaintext */
    int used;
    Siv c2s, s2c;
} ClientKeys;

/* Replies waiting for one sendmmsg, each to the address its request came from. */
typedef struct {
    struct mmsghdr messages[SEND_SLOTS];
    struct iovec parts[SEND_SLOTS];
    struct sockaddr_storage addresses[SEND_SLOTS];
    unsigned char data[SEND_SLOTS][MAX_REQUEST];
    int used;
} Outbox;

typedef struct {
    PyObject_HEAD
    PyObject *weakreflist; /* lockstep.ntp.nts.nonces.forget_nonces_in_child holds it weakly */
    PyObject *random_bytes;
    PyObject *pool; /* bytes */
    Py_ssize_t position;
    Py_ssize_t chunk;
    uint32_t current_id;
    uint32_t keep;
    int64_t rotation; /* seconds per cookie key id (lockstep.ntp.nts.cookies.CookieKeys) */
    int key_count;
    uint32_t key_ids[MAX_KEYS];
    Siv cookie_keys[MAX_KEYS];
    ClientKeys *clients; /* CLIENT_SLOTS of them, by the C2S key's first two bytes */
    Outbox *outbox;
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

/* The kept contexts of the client keys in a cookie's plaintext (one slot per value of the C2S
 * key's first two bytes, replaced on a miss). */
static const ClientKeys *client_keys(FastPath *self, const unsigned char *keys) {
    ClientKeys *slot = &self->clients[((unsigned)keys[0] << 8 | keys[1]) % CLIENT_SLOTS];
    if (!slot->used || !memeql_sec(slot->keys, keys, sizeof slot->keys)) {
        memcpy(slot->keys, keys, sizeof slot->keys);
        siv_cmac_aes128_set_key(&slot->c2s, keys);
        siv_cmac_aes128_set_key(&slot->s2c, keys + KEY_LENGTH);
        slot->used = 1;
    }
    return slot;
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
static const Siv *cookie_key(const FastPath *self, uint32_t key_id) {
    for (int i = 0; i < self->key_count; i++)
        if (self->key_ids[i] == key_id) return &self->cookie_keys[i];
    return NULL;
}

/* Answer the NTS request ``data`` (``total`` bytes) with the 48-byte NTP reply ``header``
 * protected, written to ``out`` (room for ``total`` bytes: a reply is never longer than its
 * request). Returns the reply's length; 0 when the request is one for the Python path (nothing
 * taken from the nonce pool then); -1 with a Python exception set. */
static Py_ssize_t answer(FastPath *self, const unsigned char *data, Py_ssize_t total, const unsigned char *header,
                         unsigned char *out) {
    if (total <= HEADER_LENGTH || total > MAX_REQUEST || self->key_count == 0) return 0;

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
        if (remaining < MIN_EXTENSION_LENGTH) return 0;
        unsigned type = be16(data + offset), length = be16(data + offset + 2);
        if (length < MIN_EXTENSION_LENGTH || (length & 3) || length > remaining) return 0;
        if (type == UNIQUE_IDENTIFIER) {
            if (uid_end || length - 4 < UNIQUE_ID_LENGTH) return 0;
            uid_begin = offset, uid_end = offset + length;
        } else if (type == NTS_COOKIE) {
            if (cookie_end) return 0;
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
    if (auth_end && (auth_position != fields_seen - 1 || has_mac)) return 0;
    if (!uid_end || !cookie_end || !auth_end) return 0;
    Py_ssize_t cookie_field_length = cookie_end - cookie_begin;
    for (int i = 0; i < placeholders; i++)
        if (placeholder_lengths[i] != cookie_field_length) return 0;

    /* The request's Authenticator (§5.6): nonce length, ciphertext length, the nonce and the
     * ciphertext each padded to 4, additional padding; nonce plus all padding at least 16 bytes;
     * the associated data is the datagram up to this field. */
    const unsigned char *value = data + auth_begin + 4;
    Py_ssize_t value_length = auth_end - auth_begin - 4;
    Py_ssize_t nonce_length = be16(value), ciphertext_length = be16(value + 2);
    Py_ssize_t nonce_end = 4 + nonce_length + pad4(nonce_length);
    Py_ssize_t ciphertext_end = nonce_end + ciphertext_length + pad4(ciphertext_length);
    if (ciphertext_end > value_length) return 0;
    if (nonce_length < 1 || ciphertext_length < TAG_LENGTH) return 0;
    if (value_length - ciphertext_end + nonce_end - 4 < MIN_NONCE_AND_PADDING) return 0;
    /* Encrypted fields in a request (placeholders may travel there, §5.5) are left to the Python
     * path; with nothing encrypted, the ciphertext is the synthetic IV alone. */
    if (ciphertext_length != TAG_LENGTH) return 0;

    /* The reply (§5.7): header, the request's Unique Identifier field byte for byte, and an
     * Authenticator under S2C whose encrypted part holds one new cookie per cookie and per
     * placeholder, fewer if the reply would be longer than the request (RFC 8633). */
    Py_ssize_t uid_length = uid_end - uid_begin;
    Py_ssize_t associated_length = HEADER_LENGTH + uid_length;
    Py_ssize_t count = 1 + placeholders;
    while (count > 0 && associated_length + AUTHENTICATOR_LENGTH + count * COOKIE_FIELD_LENGTH > total) count--;
    if (count == 0) return 0;

    /* The cookie (RFC 8915 §6, lockstep.ntp.nts.cookies): key id | nonce | SIV of the plaintext
     * AEAD id | reserved | C2S key | S2C key, under the key id's key with [key id, nonce] as its
     * associated data. Keys older than ``keep`` periods are expired (a NAK: the Python path). */
    const unsigned char *cookie = data + cookie_begin + 4;
    if (cookie_field_length - 4 != COOKIE_LENGTH) return 0;
    uint32_t cookie_key_id = be32(cookie);
    if ((uint32_t)(self->current_id - cookie_key_id) > self->keep) return 0;
    const Siv *opening_key = cookie_key(self, cookie_key_id);
    const Siv *sealing_key = cookie_key(self, self->current_id);
    if (opening_key == NULL || sealing_key == NULL) return 0;
    unsigned char plain[COOKIE_PLAINTEXT_LENGTH]; /* the cookie's: the client's keys */
    Py_ssize_t length = 0;
    if (!siv_cmac_aes128_decrypt_message(opening_key, COOKIE_NONCE_LENGTH, cookie + 4, 4, cookie,
                                         COOKIE_PLAINTEXT_LENGTH, plain, cookie + 4 + COOKIE_NONCE_LENGTH))
        goto done;
    if (be16(plain) != AEAD_AES_SIV_CMAC_256 || be16(plain + 2) != 0) goto done;
    const ClientKeys *client = client_keys(self, plain + 4);
    /* The request's tag: the SIV of an empty plaintext under C2S, over [request up to the
     * authenticator, nonce]; Nettle compares it in constant time. */
    if (!siv_cmac_aes128_decrypt_message(&client->c2s, (size_t)nonce_length, value + 4, (size_t)auth_begin, data, 0,
                                         NULL, value + nonce_end))
        goto done;

    memcpy(out, header, HEADER_LENGTH);
    memcpy(out + HEADER_LENGTH, data + uid_begin, (size_t)uid_length);
    Py_ssize_t cookies_length = count * COOKIE_FIELD_LENGTH;
    unsigned char new_cookies[(MAX_REQUEST / COOKIE_FIELD_LENGTH + 1) * COOKIE_FIELD_LENGTH];
    unsigned char key_id_bytes[4];
    put32(key_id_bytes, self->current_id);
    for (Py_ssize_t i = 0; i < count; i++) {
        unsigned char *field = new_cookies + i * COOKIE_FIELD_LENGTH;
        const unsigned char *nonce = take(self, COOKIE_NONCE_LENGTH);
        if (nonce == NULL) goto failed;
        put16(field, NTS_COOKIE);
        put16(field + 2, COOKIE_FIELD_LENGTH);
        memcpy(field + 4, key_id_bytes, 4);
        memcpy(field + 8, nonce, COOKIE_NONCE_LENGTH);
        siv_cmac_aes128_encrypt_message(sealing_key, COOKIE_NONCE_LENGTH, nonce, 4, key_id_bytes,
                                        TAG_LENGTH + COOKIE_PLAINTEXT_LENGTH, field + 8 + COOKIE_NONCE_LENGTH, plain);
    }
    unsigned char *auth = out + associated_length;
    const unsigned char *nonce = take(self, NONCE_LENGTH);
    if (nonce == NULL) goto failed;
    put16(auth, NTS_AUTHENTICATOR);
    put16(auth + 2, (unsigned)(AUTHENTICATOR_LENGTH + cookies_length));
    put16(auth + 4, NONCE_LENGTH);
    put16(auth + 6, (unsigned)(TAG_LENGTH + cookies_length));
    memcpy(auth + 8, nonce, NONCE_LENGTH);
    siv_cmac_aes128_encrypt_message(&client->s2c, NONCE_LENGTH, nonce, (size_t)associated_length, out,
                                    (size_t)(TAG_LENGTH + cookies_length), auth + 8 + NONCE_LENGTH, new_cookies);
    length = associated_length + AUTHENTICATOR_LENGTH + cookies_length;
    goto done;
failed:
    length = -1;
done:
    explicit_bzero(plain, sizeof plain);
    return length;
}

static PyObject *respond(FastPath *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer request, header;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "respond(request, header, key_id)");
        return NULL;
    }
    unsigned long key_id = PyLong_AsUnsignedLong(args[2]);
    if (key_id == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    if (key_id != self->current_id) Py_RETURN_NONE; /* keys not set for it */
    if (PyObject_GetBuffer(args[0], &request, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(args[1], &header, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&request);
        return NULL;
    }
    PyObject *result = NULL;
    unsigned char reply[MAX_REQUEST];
    Py_ssize_t length = 0;
    if (header.len == HEADER_LENGTH) length = answer(self, request.buf, request.len, header.buf, reply);
    if (length > 0)
        result = PyBytes_FromStringAndSize((const char *)reply, length);
    else if (length == 0)
        result = Py_NewRef(Py_None);
    PyBuffer_Release(&request);
    PyBuffer_Release(&header);
    return result;
}

/* Full NTP time (RFC 5905 §6): seconds since 1900 in any era, and a 32-bit fraction. */
typedef struct {
    int64_t seconds;
    uint32_t fraction;
} NtpTime;

/* ``t`` (Unix time) as NTP time, plus ``offset`` (signed, 2^-32 s: the server's clock_offset);
 * the fraction rounded to nearest, as lockstep.ntp.timestamps.from_unix_ns rounds it. */
static NtpTime ntp_time(const struct timespec *t, int64_t offset) {
    uint64_t offset_fraction = (uint32_t)offset;
    int64_t offset_seconds = (offset - (int64_t)offset_fraction) / 4294967296LL; /* floor */
    uint64_t fraction = (((uint64_t)t->tv_nsec << 32) + 500000000u) / 1000000000u + offset_fraction;
    NtpTime out = {t->tv_sec + UNIX_EPOCH_SECONDS + offset_seconds + (int64_t)(fraction >> 32),
                   (uint32_t)fraction};
    return out;
}

static int later(NtpTime a, NtpTime b) {
    return a.seconds > b.seconds || (a.seconds == b.seconds && a.fraction > b.fraction);
}

/* T3 as NtpServer.respond writes it: ``now`` made even, and after T2 (``received``, odd), so
 * that the two mark which of our timestamps a client echoes (lockstep.ntp.interleave). */
static NtpTime transmit_time(NtpTime now, NtpTime received) {
    now.fraction &= ~1u;
    if (!later(now, received)) { /* T2 + 1 */
        now = received;
        if (++now.fraction == 0) now.seconds++;
    }
    return now;
}

/* A timestamp's 64 bits on the wire: the era's seconds and the fraction (RFC 5905 §6). */
static void put_timestamp(unsigned char *p, NtpTime t) {
    put32(p, (uint32_t)t.seconds);
    put32(p + 4, t.fraction);
}

/* The kernel's software receive time of a datagram (SO_TIMESTAMPING: struct scm_timestamping,
 * the first of its three timespecs), or NULL when the kernel gave none. */
static const struct timespec *arrival_time(struct msghdr *header) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(header); c != NULL; c = CMSG_NXTHDR(header, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPING_OLD &&
            c->cmsg_len >= CMSG_LEN(3 * sizeof(struct timespec)))
            return (const struct timespec *)CMSG_DATA(c);
    return NULL;
}

/* sendmmsg the outbox's replies, again for what a call left; returns how many did not go out
 * (a full socket buffer drops them, as UDP may). */
static Py_ssize_t send_outbox(Outbox *box, int fd) {
    int sent = 0, done = 0;
    while (sent < box->used) {
        Py_BEGIN_ALLOW_THREADS
        done = sendmmsg(fd, box->messages + sent, (unsigned)(box->used - sent), 0);
        Py_END_ALLOW_THREADS
        if (done <= 0) break;
        sent += done;
    }
    Py_ssize_t unsent = box->used - sent;
    box->used = 0;
    return unsent;
}

/* answer_batch(fd, messages, count, template, table, template_second, clock_offset)
 *     -> (answered, unsent, left)
 *
 * ``messages``: the first ``count`` struct mmsghdr of a lockstep.ntp.aio.mmsg.DatagramBatch that
 * recvmmsg filled (the caller keeps the buffers their pointers name alive). Each NTS request that
 * answer() can answer gets NtpServer.respond's reply: header bytes 0..23 from ``template`` (the
 * 24 bytes batch_template gives for ``template_second``, the served time's second) with the
 * request's first byte mapped through ``table`` and its poll byte echoed, origin = the request's
 * transmit timestamp, T2 = the kernel's arrival time + clock_offset (odd), T3 = the clock when
 * the reply is built + clock_offset (even, after T2) (RFC 5905 §8; the odd/even marks are
 * lockstep.ntp.interleave's). The replies leave with sendmmsg on ``fd``, each at most
 * LONG_REPLY_WAIT_NS after its T3. ``left``: the indices of the datagrams for the Python path,
 * which answers anything else exactly as before — plain NTP, interleaved requests (odd origin),
 * no kernel arrival time, an arrival outside the template's second or the loaded cookie key's
 * period, and every request answer() declines. */
static PyObject *answer_batch(FastPath *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "answer_batch(fd, messages, count, template, table, template_second, clock_offset)");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    Py_ssize_t count = PyLong_AsSsize_t(args[2]);
    long long template_second = PyLong_AsLongLong(args[5]);
    long long clock_offset = PyLong_AsLongLong(args[6]);
    if (PyErr_Occurred()) return NULL;
    Py_buffer messages, template, table;
    if (PyObject_GetBuffer(args[1], &messages, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(args[3], &template, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&messages);
        return NULL;
    }
    if (PyObject_GetBuffer(args[4], &table, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&messages);
        PyBuffer_Release(&template);
        return NULL;
    }
    PyObject *left = PyList_New(0), *result = NULL;
    Py_ssize_t answered = 0, unsent = 0;
    Outbox *box = self->outbox;
    int64_t send_by = 0;
    if (left == NULL) goto release;
    if (fd < 0 || fd > INT_MAX || count < 0 || count > SEND_SLOTS ||
        (size_t)messages.len < (size_t)count * sizeof(struct mmsghdr) || template.len != 24 || table.len != 256) {
        PyErr_SetString(PyExc_ValueError, "answer_batch: bad count, messages, template or table");
        goto release;
    }
    struct mmsghdr *received = messages.buf;
    const unsigned char *prefix = template.buf, *first_bytes = table.buf;
    for (Py_ssize_t i = 0; i < count; i++) {
        struct msghdr *request = &received[i].msg_hdr;
        const unsigned char *data = request->msg_iovlen ? request->msg_iov[0].iov_base : NULL;
        size_t length = received[i].msg_len;
        const struct timespec *arrival = arrival_time(request);
        int answerable = data != NULL && length > HEADER_LENGTH && length <= MAX_REQUEST &&
                         length <= request->msg_iov[0].iov_len && first_bytes[data[0]] && !(data[31] & 1) &&
                         arrival != NULL && request->msg_namelen <= sizeof(struct sockaddr_storage) &&
                         self->rotation > 0 &&
                         (uint32_t)((arrival->tv_sec + UNIX_EPOCH_SECONDS) / self->rotation) == self->current_id;
        NtpTime received_at = {0, 0};
        if (answerable) {
            received_at = ntp_time(arrival, clock_offset);
            answerable = received_at.seconds == template_second;
        }
        Py_ssize_t reply_length = 0;
        unsigned char *out = box->data[box->used];
        struct timespec now = {0, 0};
        if (answerable) {
            unsigned char header[HEADER_LENGTH];
            clock_gettime(CLOCK_REALTIME, &now);
            received_at.fraction |= 1;
            NtpTime sent_at = transmit_time(ntp_time(&now, clock_offset), received_at);
            /* Bytes 0..23: the template's, with the reply's first byte for the request's and
             * its poll echoed; then origin = the request's transmit timestamp, T2, T3. */
            memcpy(header, prefix, 24);
            header[0] = first_bytes[data[0]];
            header[2] = data[2];
            memcpy(header + 24, data + 40, 8);
            put_timestamp(header + 32, received_at);
            put_timestamp(header + 40, sent_at);
            reply_length = answer(self, data, (Py_ssize_t)length, header, out);
        }
        if (reply_length < 0) goto release;
        if (reply_length == 0) {
            PyObject *index = PyLong_FromSsize_t(i);
            int failed = index == NULL || PyList_Append(left, index) < 0;
            Py_XDECREF(index);
            if (failed) goto release;
            continue;
        }
        int slot = box->used++;
        box->parts[slot].iov_len = (size_t)reply_length;
        memcpy(&box->addresses[slot], request->msg_name, request->msg_namelen);
        box->messages[slot].msg_hdr.msg_namelen = request->msg_namelen;
        answered++;
        int64_t read_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
        if (slot == 0)
            send_by = read_ns + LONG_REPLY_WAIT_NS;
        else if (read_ns >= send_by || box->used == SEND_SLOTS)
            unsent += send_outbox(box, (int)fd);
    }
    unsent += send_outbox(box, (int)fd);
    result = Py_BuildValue("nnO", answered, unsent, left);
release:
    if (box->used) send_outbox(box, (int)fd); /* after an error: what was sealed still goes */
    Py_XDECREF(left);
    PyBuffer_Release(&messages);
    PyBuffer_Release(&template);
    PyBuffer_Release(&table);
    return result;
}

/* send_basic(fd, head, sockaddr, clock_offset): send a 48-byte basic reply whose first 40 bytes
 * are ``head`` to the raw sockaddr_in / sockaddr_in6 ``sockaddr``, with T3 = the clock read here
 * + clock_offset, as late as can be: nothing but the send follows the reading (a basic reply's T3
 * should be when it leaves, RFC 5905 §8; from Python the reply reached its client ≈ 2 µs later).
 * T3 is even and after the T2 in ``head`` (bytes 32..39), read as the full time nearest to T3
 * (RFC 5905 §6 eras). Raises OSError when the send fails. Not NTS: the one compiled module
 * holds the plain server's lone send too. */
static PyObject *send_basic(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "send_basic(fd, head, sockaddr, clock_offset)");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    long long clock_offset = PyLong_AsLongLong(args[3]);
    if (PyErr_Occurred()) return NULL;
    Py_buffer head, sockaddr;
    if (PyObject_GetBuffer(args[1], &head, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(args[2], &sockaddr, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&head);
        return NULL;
    }
    PyObject *result = NULL;
    struct sockaddr_storage address;
    unsigned char reply[HEADER_LENGTH];
    if (fd < 0 || fd > INT_MAX || head.len != 40 || sockaddr.len < (Py_ssize_t)sizeof(sa_family_t) ||
        (size_t)sockaddr.len > sizeof address) {
        PyErr_SetString(PyExc_ValueError, "send_basic: bad fd, head (40 bytes) or sockaddr");
        goto release;
    }
    memcpy(reply, head.buf, 40);
    memcpy(&address, sockaddr.buf, (size_t)sockaddr.len);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    NtpTime sent_at = ntp_time(&now, clock_offset);
    NtpTime received_at = {sent_at.seconds + (int32_t)(be32(reply + 32) - (uint32_t)sent_at.seconds), be32(reply + 36)};
    put_timestamp(reply + 40, transmit_time(sent_at, received_at));
    if (sendto((int)fd, reply, sizeof reply, 0, (struct sockaddr *)&address, (socklen_t)sockaddr.len) < 0)
        PyErr_SetFromErrno(PyExc_OSError);
    else
        result = Py_NewRef(Py_None);
release:
    PyBuffer_Release(&head);
    PyBuffer_Release(&sockaddr);
    return result;
}

/* A Python int in 0 .. 2**128-1 as a C integer: full NTP times pass 2**64 in 2036 (era 1, RFC 5905
 * §6), so 64 bits would not do for long. Raises OverflowError outside that range. */
static int as_u128(PyObject *value, unsigned __int128 *out) {
    unsigned long long low = PyLong_AsUnsignedLongLong(value);
    if (!(low == (unsigned long long)-1 && PyErr_Occurred())) {
        *out = low;
        return 0;
    }
    if (!PyErr_ExceptionMatches(PyExc_OverflowError) || _PyLong_Sign(value) < 0) return -1;
    PyErr_Clear();
    unsigned char bytes[16];
#if PY_VERSION_HEX >= 0x030D0000
    if (_PyLong_AsByteArray((PyLongObject *)value, bytes, sizeof bytes, 1, 0, 1) < 0) return -1;
#else
    if (_PyLong_AsByteArray((PyLongObject *)value, bytes, sizeof bytes, 1, 0) < 0) return -1;
#endif
    unsigned __int128 result = 0;
    for (int i = 15; i >= 0; i--) result = result << 8 | bytes[i];
    *out = result;
    return 0;
}

static PyObject *from_u128(unsigned __int128 value) {
    if (value >> 64 == 0) return PyLong_FromUnsignedLongLong((unsigned long long)value);
    unsigned char bytes[16];
    for (int i = 0; i < 16; i++, value >>= 8) bytes[i] = (unsigned char)value;
    return _PyLong_FromByteArray(bytes, sizeof bytes, 1, 0);
}

/* charge_batch(tats, clients, arrivals, cost, window) -> (refused indices, stopped at): the rate
 * limiter's per-request step (lockstep.ntp.limiter.ClientLimiter._charge, the reference; the
 * generic cell rate algorithm of RFC 8633 §4.4's leaky bucket) over a batch, in order. ``tats``
 * maps a client key to its theoretical arrival time (full NTP time); a new client starts at its
 * arrival; a request is admitted when it leaves the TAT no more than ``window`` after its arrival,
 * and then moves the TAT ``cost`` later; a refused one changes nothing. The caller has made sure
 * the table cannot fill up. A value outside 0 .. 2**128-1 stops the pass at that request, before
 * it changes anything: the caller goes on from "stopped at" in Python. */
static PyObject *charge_batch(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyDict_CheckExact(args[0]) || !PyList_CheckExact(args[1]) || !PyList_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "charge_batch(tats: dict, clients: list, arrivals: list, cost, window)");
        return NULL;
    }
    PyObject *tats = args[0], *clients = args[1], *arrivals = args[2];
    unsigned long long cost = PyLong_AsUnsignedLongLong(args[3]);
    if (cost == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    unsigned long long window = PyLong_AsUnsignedLongLong(args[4]);
    if (window == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    Py_ssize_t count = PyList_GET_SIZE(clients);
    if (PyList_GET_SIZE(arrivals) != count) {
        PyErr_SetString(PyExc_ValueError, "charge_batch: clients and arrivals differ in length");
        return NULL;
    }
    PyObject *refused = PyList_New(0);
    if (refused == NULL) return NULL;
    Py_ssize_t i = 0;
    for (; i < count; i++) {
        PyObject *client = PyList_GET_ITEM(clients, i);
        unsigned __int128 arrival;
        if (as_u128(PyList_GET_ITEM(arrivals, i), &arrival) < 0) break;
        PyObject *known = PyDict_GetItemWithError(tats, client); /* borrowed */
        unsigned __int128 tat = arrival;
        if (known != NULL) {
            unsigned __int128 held;
            if (as_u128(known, &held) < 0) break;
            if (held > tat) tat = held;
        } else if (PyErr_Occurred()) {
            goto fail; /* the key's __hash__ or __eq__ raised */
        }
        if (__builtin_add_overflow(tat, (unsigned __int128)cost, &tat)) {
            PyErr_SetNone(PyExc_OverflowError);
            break;
        }
        if (tat - arrival > window) { /* refused requests add no debt */
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL || PyList_Append(refused, index) < 0) {
                Py_XDECREF(index);
                goto fail;
            }
            Py_DECREF(index);
            continue;
        }
        PyObject *value = from_u128(tat);
        if (value == NULL || PyDict_SetItem(tats, client, value) < 0) {
            Py_XDECREF(value);
            goto fail;
        }
        Py_DECREF(value);
    }
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError) && !PyErr_ExceptionMatches(PyExc_TypeError)) goto fail;
        PyErr_Clear(); /* out of range, or not an int: the Python reference goes on from i */
    }
    return Py_BuildValue("(Nn)", refused, i);
fail:
    Py_DECREF(refused);
    return NULL;
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

/* set_keys(current_id, keep, rotation, keys): the cookie keys of ids current_id - keep ..
 * current_id, as (key id, 32-byte key) pairs, a key id lasting ``rotation`` seconds; respond()
 * and answer_batch() serve only requests for this current_id. */
static PyObject *set_keys(FastPath *self, PyObject *args) {
    unsigned long current_id, keep;
    long long rotation;
    PyObject *keys, *sequence;
    if (!PyArg_ParseTuple(args, "kkLO", &current_id, &keep, &rotation, &keys)) return NULL;
    if (rotation < 1) {
        PyErr_SetString(PyExc_ValueError, "rotation must be at least one second");
        return NULL;
    }
    sequence = PySequence_Fast(keys, "keys must be a sequence of (key id, key) pairs");
    if (sequence == NULL) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    if (count > MAX_KEYS || current_id > 0xFFFFFFFFul || keep > 0xFFFFFFFFul) {
        Py_DECREF(sequence);
        PyErr_SetString(PyExc_ValueError, "too many keys, or ids beyond 32 bits");
        return NULL;
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
        siv_cmac_aes128_set_key(&self->cookie_keys[i], (const uint8_t *)key);
    }
    Py_DECREF(sequence);
    self->key_count = (int)count;
    self->current_id = (uint32_t)current_id;
    self->keep = (uint32_t)keep;
    self->rotation = rotation;
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
    if (self->clients == NULL) {
        self->clients = PyMem_Calloc(CLIENT_SLOTS, sizeof *self->clients);
        if (self->clients == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    if (self->outbox == NULL) {
        Outbox *box = self->outbox = PyMem_Calloc(1, sizeof *self->outbox);
        if (box == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (int i = 0; i < SEND_SLOTS; i++) {
            box->parts[i].iov_base = box->data[i];
            box->messages[i].msg_hdr.msg_iov = &box->parts[i];
            box->messages[i].msg_hdr.msg_iovlen = 1;
            box->messages[i].msg_hdr.msg_name = &box->addresses[i];
        }
    }
    return 0;
}

static void dealloc(FastPath *self) {
    if (self->weakreflist != NULL) PyObject_ClearWeakRefs((PyObject *)self);
    /* The keys and their schedules are secrets: wiped, not just freed. */
    explicit_bzero(self->cookie_keys, sizeof self->cookie_keys);
    if (self->clients != NULL) explicit_bzero(self->clients, CLIENT_SLOTS * sizeof *self->clients);
    PyMem_Free(self->clients);
    PyMem_Free(self->outbox);
    Py_XDECREF(self->random_bytes);
    Py_XDECREF(self->pool);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef methods[] = {
    {"respond", (PyCFunction)(void (*)(void))respond, METH_FASTCALL,
     "respond(request, header, key_id) -> reply bytes, or None for the Python path to decide"},
    {"take", (PyCFunction)take_method, METH_O, "take(length) -> the next length bytes of the nonce pool"},
    {"forget", (PyCFunction)forget, METH_NOARGS, "drop the unspent nonce pool"},
    {"answer_batch", (PyCFunction)(void (*)(void))answer_batch, METH_FASTCALL,
     "answer_batch(fd, messages, count, template, table, template_second, clock_offset) -> (answered, unsent, left)"},
    {"set_keys", (PyCFunction)set_keys, METH_VARARGS, "set_keys(current_id, keep, rotation, [(key id, key), ...])"},
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

static PyMethodDef functions[] = {
    {"send_basic", (PyCFunction)(void (*)(void))send_basic, METH_FASTCALL,
     "send_basic(fd, head, sockaddr, clock_offset): send a basic reply with T3 read just before"},
    {"charge_batch", (PyCFunction)(void (*)(void))charge_batch, METH_FASTCALL,
     "charge_batch(tats, clients, arrivals, cost, window) -> (refused indices, stopped at)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastpath", "The NTP server's compiled paths (Nettle).",
                                    -1, functions};

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
