/* Optional C speed-ups for wskit's core: the same signatures and errors as the pure-Python code. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <stdint.h>
#include <string.h>

/* MSVC spells C99's restrict with underscores. */
#if defined(_MSC_VER)
#define WSKIT_RESTRICT __restrict
#else
#define WSKIT_RESTRICT restrict
#endif

/* Above this size the XOR takes long enough (microseconds) that letting other threads run
   is worth the cost of dropping and retaking the GIL. */
#define RELEASE_GIL_MIN ((Py_ssize_t)65536)

/* Get a C-contiguous byte buffer, turning every refusal into the TypeError the pure-Python
   version raises, so callers see one behaviour whichever implementation is loaded. */
static int
get_contiguous_buffer(PyObject *obj, Py_buffer *view, const char *name)
{
    if (!PyObject_CheckBuffer(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a bytes-like object, not '%.100s'", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) {
        /* A strided memoryview refuses PyBUF_SIMPLE with BufferError. */
        if (PyErr_ExceptionMatches(PyExc_BufferError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous buffer", name);
        }
        return -1;
    }
    /* An exporter may ignore the flags; never read a strided buffer as if it were flat. */
    if (!PyBuffer_IsContiguous(view, 'C')) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous buffer", name);
        return -1;
    }
    return 0;
}

/* On x86-64 glibc, gcc and clang build the two XOR loops below twice, for AVX2 (32 bytes a
   step) and for the baseline (SSE2, 16), and pick one when the module loads (an ifunc): about
   3x fewer instructions per KiB masked, where picows masks with AVX2 too. Elsewhere (musl has
   no ifunc, other CPUs) the loops are built once, for the baseline. */
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define WSKIT_XOR_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef WSKIT_XOR_CLONES
#define WSKIT_XOR_CLONES
#endif
/* Four 8-byte words as one vector (the vector extension of gcc and clang): the loops below
   take 64 bytes a step as two such XORs, one AVX2 instruction each (two SSE2 ones in the
   baseline clone), with a counter of their own: gcc's vectorising of the 8-byte loop kept a
   vector of indices beside it, twice the instructions. i is a multiple of 8 after each step,
   so every word starts at key octet 0. */
#if defined(__GNUC__)
#define WSKIT_SIMD 1
typedef uint64_t wskit_u64x4 __attribute__((vector_size(32)));
#endif

/* XOR n bytes of src into dst with the 4-byte key repeating from offset 0 (RFC 6455 §5.3).
   The 8-byte key lets each step cover two key periods; memcpy keeps loads and stores legal at
   any alignment and compiles to plain moves, and at -O3 gcc turns the loop into SIMD. */
WSKIT_XOR_CLONES static void
xor_mask(unsigned char *WSKIT_RESTRICT dst, const unsigned char *WSKIT_RESTRICT src, Py_ssize_t n,
         const unsigned char key[4])
{
    unsigned char key8[8];
    uint64_t k;
    Py_ssize_t i = 0;

    memcpy(key8, key, 4);
    memcpy(key8 + 4, key, 4);
    /* Same byte order in memory as the data, so the result is endian-independent. */
    memcpy(&k, key8, 8);
#ifdef WSKIT_SIMD
    {
        const wskit_u64x4 kv = {k, k, k, k};
        for (; i + 64 <= n; i += 64) {
            wskit_u64x4 a, b;
            memcpy(&a, src + i, 32);
            memcpy(&b, src + i + 32, 32);
            a ^= kv;
            b ^= kv;
            memcpy(dst + i, &a, 32);
            memcpy(dst + i + 32, &b, 32);
        }
    }
#endif
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, src + i, 8);
        v ^= k;
        memcpy(dst + i, &v, 8);
    }
    /* i is a multiple of 8 here, so i & 3 is still the key phase. */
    for (; i < n; i++) {
        dst[i] = src[i] ^ key[i & 3];
    }
}

/* xor_mask with the result over its input: each 8-byte word is loaded before it is stored, so
   the same steps are right in place (xor_mask's restrict promises distinct buffers). */
WSKIT_XOR_CLONES static void
xor_in_place(unsigned char *p, Py_ssize_t n, const unsigned char key[4])
{
    unsigned char key8[8];
    uint64_t k;
    Py_ssize_t i = 0;

    memcpy(key8, key, 4);
    memcpy(key8 + 4, key, 4);
    memcpy(&k, key8, 8);
#ifdef WSKIT_SIMD
    {
        const wskit_u64x4 kv = {k, k, k, k};
        for (; i + 64 <= n; i += 64) {
            wskit_u64x4 a, b;
            memcpy(&a, p + i, 32);
            memcpy(&b, p + i + 32, 32);
            a ^= kv;
            b ^= kv;
            memcpy(p + i, &a, 32);
            memcpy(p + i + 32, &b, 32);
        }
    }
#endif
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= k;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++) {
        p[i] ^= key[i & 3];
    }
}

PyDoc_STRVAR(apply_mask_doc,
"apply_mask($module, data, key, /)\n"
"--\n"
"\n"
"Return data XOR-ed with the 4-byte masking key repeated (RFC 6455 \xc2\xa7" "5.3).\n"
"\n"
"data is any C-contiguous bytes-like object (TypeError otherwise); key must be\n"
"exactly 4 bytes (ValueError otherwise). Masking twice with the same key restores\n"
"the input.");

static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, key;
    PyObject *result = NULL;
    (void)module;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "apply_mask() takes exactly 2 positional arguments (%zd given)",
                     nargs);
        return NULL;
    }
    if (get_contiguous_buffer(args[0], &data, "data") < 0) {
        return NULL;
    }
    if (get_contiguous_buffer(args[1], &key, "key") < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (key.len != 4) {
        PyErr_Format(PyExc_ValueError, "key must be 4 bytes, got %zd", key.len);
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result == NULL) {
        goto done;
    }
    if (data.len >= RELEASE_GIL_MIN) {
        /* Safe without the GIL: the buffer exports pin both inputs' memory (a bytearray cannot
           be resized while exported), and the result is not yet visible to any other thread. */
        Py_BEGIN_ALLOW_THREADS
        xor_mask((unsigned char *)PyBytes_AS_STRING(result), (const unsigned char *)data.buf,
                 data.len, (const unsigned char *)key.buf);
        Py_END_ALLOW_THREADS
    }
    else {
        xor_mask((unsigned char *)PyBytes_AS_STRING(result), (const unsigned char *)data.buf,
                 data.len, (const unsigned char *)key.buf);
    }

done:
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return result;
}

/* Interned attribute names that fan_out reads and writes (see its doc string). */
typedef struct {
    PyObject *conn;
    PyObject *protocol;
    PyObject *state;
    PyObject *sending_fragments;
    PyObject *client;
    PyObject *messages_out;
    PyObject *bytes_out;
    PyObject *corked;
    PyObject *cork;
    PyObject *depth;
    PyObject *pending;
    PyObject *transport;
    PyObject *write;
    PyObject *get_write_buffer_size;
    PyObject *is_closing;
} fanout_names;

/* ---- frames (RFC 6455 §5.2): the twins of parse_frames_python and build_frame_python ---- */

/* Interned attribute names of FrameParser, made once per module object. */
typedef struct {
    PyObject *expect_mask;
    PyObject *allowed_rsv;
    PyObject *batch;
    PyObject *max_size;
    PyObject *msg_left;
    PyObject *msg_rsv1;
    PyObject *need;
    PyObject *partial;
    fanout_names fan;
} speedups_state;

static inline speedups_state *
get_state(PyObject *module)
{
    return (speedups_state *)PyModule_GetState(module);
}

/* Raise wskit.core.errors.<name>(message), as the pure version does; steals message.
   Imported on use: errors end a connection, so they are rare, and an import at module
   initialisation would be circular (wskit.core imports this module). */
static void
raise_remote(const char *name, PyObject *message)
{
    PyObject *errors, *cls, *exc;

    if (message == NULL) {
        return;
    }
    errors = PyImport_ImportModule("wskit.core.errors");
    if (errors != NULL) {
        cls = PyObject_GetAttrString(errors, name);
        if (cls != NULL) {
            exc = PyObject_CallOneArg(cls, message);
            if (exc != NULL) {
                PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
                Py_DECREF(exc);
            }
            Py_DECREF(cls);
        }
        Py_DECREF(errors);
    }
    Py_DECREF(message);
}

static void
protocol_error(const char *message)
{
    raise_remote("ProtocolError", PyUnicode_FromString(message));
}

/* An int attribute as a C value for comparisons with frame lengths (which are below 2**63):
   values beyond int64 are clamped, which keeps every comparison's outcome. */
static int
as_limit(PyObject *obj, long long *out)
{
    int overflow;
    long long value = PyLong_AsLongLongAndOverflow(obj, &overflow);

    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow > 0) {
        value = LLONG_MAX;
    }
    else if (overflow < 0) {
        value = LLONG_MIN;
    }
    *out = value;
    return 0;
}

static int
set_int_attr(PyObject *obj, PyObject *name, unsigned long long value)
{
    PyObject *number = PyLong_FromUnsignedLongLong(value);
    int rc;

    if (number == NULL) {
        return -1;
    }
    rc = PyObject_SetAttr(obj, name, number);
    Py_DECREF(number);
    return rc;
}

/* Where a UTF-8 check of a short masked text payload unmasks its bytes: on the stack. */
#define SCRATCH_SIZE 1024

/* The payload of a complete frame in a writable buffer (the parser's assembly of a large
   frame): unmasked in place and returned as a view of the buffer, or as the str of a text
   payload when asked and valid. No copy: that is the point of assembling in place. */
static PyObject *
frame_payload_in_place(PyObject *view, unsigned char *base, Py_ssize_t start, Py_ssize_t n,
                       const unsigned char *key, int decode)
{
    PyObject *result;

    if (key != NULL) {
        unsigned char k[4];
        memcpy(k, key, 4);
        if (n >= RELEASE_GIL_MIN) {
            /* Safe without the GIL: our export pins the buffer, which cannot be resized. */
            Py_BEGIN_ALLOW_THREADS
            xor_in_place(base + start, n, k);
            Py_END_ALLOW_THREADS
        }
        else {
            xor_in_place(base + start, n, k);
        }
    }
    if (decode) {
        result = PyUnicode_DecodeUTF8((const char *)base + start, n, "strict");
        if (result != NULL || !PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            return result;
        }
        PyErr_Clear();
    }
    return PySequence_GetSlice(view, start, start + n);
}

/* The payload of a complete frame: unmasked bytes, or the str of a text payload when asked
   and valid (invalid UTF-8 stays bytes, for the caller to refuse, as in the pure version). */
static PyObject *
frame_payload(const unsigned char *src, Py_ssize_t n, const unsigned char *key, int decode)
{
    unsigned char stack[SCRATCH_SIZE];
    unsigned char *scratch;
    PyObject *result;

    if (decode) {
        if (key == NULL) {
            result = PyUnicode_DecodeUTF8((const char *)src, n, "strict");
            if (result != NULL || !PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                return result;
            }
            PyErr_Clear();
            return PyBytes_FromStringAndSize((const char *)src, n);
        }
        /* Unmask into scratch space and decode from there: no bytes object for valid text. */
        scratch = n <= SCRATCH_SIZE ? stack : (unsigned char *)PyMem_Malloc((size_t)n);
        if (scratch == NULL) {
            return PyErr_NoMemory();
        }
        xor_mask(scratch, src, n, key);
        result = PyUnicode_DecodeUTF8((const char *)scratch, n, "strict");
        if (result == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            result = PyBytes_FromStringAndSize((const char *)scratch, n);
        }
        if (scratch != stack) {
            PyMem_Free(scratch);
        }
        return result;
    }
    if (key == NULL) {
        return PyBytes_FromStringAndSize((const char *)src, n);
    }
    result = PyBytes_FromStringAndSize(NULL, n);
    if (result == NULL) {
        return NULL;
    }
    if (n >= RELEASE_GIL_MIN) {
        /* Safe without the GIL: src lies in an immutable bytes object we hold a reference to,
           and the result is not yet visible to any other thread. */
        Py_BEGIN_ALLOW_THREADS
        xor_mask((unsigned char *)PyBytes_AS_STRING(result), src, n, key);
        Py_END_ALLOW_THREADS
    }
    else {
        xor_mask((unsigned char *)PyBytes_AS_STRING(result), src, n, key);
    }
    return result;
}

/* Append (b0, payload) to out; 0 on success. */
static int
append_frame(PyObject *out, int b0, PyObject *payload)
{
    PyObject *head, *item;
    int rc;

    if (payload == NULL) {
        return -1;
    }
    head = PyLong_FromLong(b0); /* a cached small int: no allocation */
    if (head == NULL) {
        Py_DECREF(payload);
        return -1;
    }
    item = PyTuple_New(2);
    if (item == NULL) {
        Py_DECREF(head);
        Py_DECREF(payload);
        return -1;
    }
    PyTuple_SET_ITEM(item, 0, head);
    PyTuple_SET_ITEM(item, 1, payload);
    rc = PyList_Append(out, item);
    Py_DECREF(item);
    return rc;
}

/* RFC 6455 §5.2: the opcodes defined so far (CONT, TEXT, BINARY, CLOSE, PING, PONG). */
#define KNOWN_OPCODES ((1u << 0x0) | (1u << 0x1) | (1u << 0x2) | (1u << 0x8) | (1u << 0x9) | (1u << 0xA))

PyDoc_STRVAR(parse_frames_doc,
"parse_frames($module, parser, data, out, decode_text, /)\n"
"--\n"
"\n"
"Append to out the complete frames at the start of data; return where they end.\n"
"\n"
"The twin of wskit.core.frames.parse_frames_python: same state updates on parser,\n"
"same frames, same errors. parser is the one state struct: only its public fields\n"
"expect_mask, allowed_rsv, max_size, msg_left, msg_rsv1, need and partial are read\n"
"or written (FrameParser's docstring; docs/architecture.md).");

static PyObject *
parse_frames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    speedups_state *st = get_state(module);
    PyObject *parser, *data, *out, *obj;
    PyObject *max_size_obj = NULL, *left_obj = NULL, *view = NULL;
    Py_buffer writable;
    const unsigned char *buf;
    Py_ssize_t end, pos = 0;
    long long max_size = 0, left = 0, allowed_rsv = 0, batch = 0;
    int expect_mask, decode, in_place, have_rsv = 0, ok = 0;
    unsigned long long need = 0; /* 0: the loop ran out of bytes, so need 2 */

    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError,
                     "parse_frames() takes exactly 4 positional arguments (%zd given)", nargs);
        return NULL;
    }
    parser = args[0];
    data = args[1];
    out = args[2];
    /* bytes: payloads are copies; a writable buffer: payloads are unmasked in place and come
       as views of it. */
    in_place = !PyBytes_Check(data);
    if (in_place && !PyObject_CheckBuffer(data)) {
        PyErr_Format(PyExc_TypeError, "data must be bytes or a writable buffer, not '%.100s'",
                     Py_TYPE(data)->tp_name);
        return NULL;
    }
    if (!PyList_Check(out)) {
        PyErr_Format(PyExc_TypeError, "out must be a list, not '%.100s'", Py_TYPE(out)->tp_name);
        return NULL;
    }
    decode = PyObject_IsTrue(args[3]);
    if (decode < 0) {
        return NULL;
    }
    /* Each attribute access costs about 25 ns from C: the limits are read when a frame needs
       them, and need is written only when it changes (the caller resets partial and need). */
    obj = PyObject_GetAttr(parser, st->expect_mask);
    if (obj == NULL) {
        return NULL;
    }
    expect_mask = PyObject_IsTrue(obj);
    Py_DECREF(obj);
    if (expect_mask < 0) {
        return NULL;
    }
    /* Frames one call appends at most: the caller keeps the rest of the input for later. */
    obj = PyObject_GetAttr(parser, st->batch);
    if (obj == NULL) {
        return NULL;
    }
    ok = as_limit(obj, &batch);
    Py_DECREF(obj);
    if (ok < 0) {
        return NULL;
    }
    if (in_place) {
        if (PyObject_GetBuffer(data, &writable, PyBUF_WRITABLE) < 0) {
            /* Read-only or strided: the pure version refuses both with this TypeError. */
            if (PyErr_ExceptionMatches(PyExc_BufferError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_TypeError,
                             "data must be bytes or a writable buffer, not '%.100s'",
                             Py_TYPE(data)->tp_name);
            }
            return NULL;
        }
        view = PyMemoryView_FromObject(data);
        if (view == NULL) {
            PyBuffer_Release(&writable);
            return NULL;
        }
        buf = (const unsigned char *)writable.buf;
        end = writable.len;
    }
    else {
        buf = (const unsigned char *)PyBytes_AS_STRING(data);
        end = PyBytes_GET_SIZE(data);
    }
    ok = -1;

    while (end - pos >= 2) {
        const unsigned char *frame = buf + pos;
        Py_ssize_t avail = end - pos;
        int b0 = frame[0], b1 = frame[1];
        int opcode = b0 & 0x0F, rsv = b0 & 0x70, fin = b0 & 0x80, masked = b1 & 0x80;
        unsigned long long length = (unsigned long long)(b1 & 0x7F), total;
        Py_ssize_t head = 2;

        if ((long long)PyList_GET_SIZE(out) >= batch) {
            /* Enough for one call: the caller keeps the rest and parses it later. */
            need = 2;
            break;
        }
        if (rsv && !have_rsv) {
            obj = PyObject_GetAttr(parser, st->allowed_rsv);
            if (obj == NULL) {
                goto done;
            }
            have_rsv = as_limit(obj, &allowed_rsv) == 0;
            Py_DECREF(obj);
            if (!have_rsv) {
                goto done;
            }
        }
        /* RFC 6455 §5.2: reserved bits MUST be 0 unless an extension defines them. */
        if (rsv & ~allowed_rsv) {
            protocol_error("reserved bits set without a negotiated extension");
            goto done;
        }
        /* RFC 6455 §5.2: unknown opcodes MUST fail the connection. */
        if (!(KNOWN_OPCODES & (1u << opcode))) {
            raise_remote("ProtocolError", PyUnicode_FromFormat("unknown opcode 0x%x", opcode));
            goto done;
        }
        if (opcode >= 0x8) {
            /* RFC 6455 §5.5: control frames MUST NOT be fragmented. */
            if (!fin) {
                protocol_error("fragmented control frame");
                goto done;
            }
            /* RFC 7692 §6.1: RSV1 on a control frame is an error even with compression. */
            if (rsv) {
                protocol_error("reserved bit set on a control frame");
                goto done;
            }
        }
        /* RFC 6455 §5.1: clients MUST mask, servers MUST NOT. */
        if (expect_mask && !masked) {
            protocol_error("unmasked frame from client");
            goto done;
        }
        if (masked && !expect_mask) {
            protocol_error("masked frame from server");
            goto done;
        }
        if (length == 126) {
            if (avail < 4) {
                need = 4;
                break;
            }
            length = ((unsigned long long)frame[2] << 8) | frame[3];
            head = 4;
            /* RFC 6455 §5.2: the minimal number of bytes MUST be used. */
            if (length < 126) {
                protocol_error("frame length not minimally encoded");
                goto done;
            }
        }
        else if (length == 127) {
            int i;
            if (avail < 10) {
                need = 10;
                break;
            }
            length = 0;
            for (i = 2; i < 10; i++) {
                length = (length << 8) | frame[i];
            }
            head = 10;
            /* RFC 6455 §5.2: the most significant bit MUST be 0. */
            if (length >> 63) {
                protocol_error("frame length has its top bit set");
                goto done;
            }
            if (length < 0x10000) {
                protocol_error("frame length not minimally encoded");
                goto done;
            }
        }
        if (opcode >= 0x8) {
            /* RFC 6455 §5.5: control frame payloads are at most 125 bytes. */
            if (length > 125) {
                protocol_error("control frame payload longer than 125 bytes");
                goto done;
            }
        }
        else {
            /* TEXT or BINARY starts a message with the whole limit; CONT gets what is left. */
            Py_XDECREF(left_obj);
            left_obj = NULL;
            if (max_size_obj == NULL) {
                max_size_obj = PyObject_GetAttr(parser, st->max_size);
                if (max_size_obj == NULL || as_limit(max_size_obj, &max_size) < 0) {
                    goto done;
                }
            }
            if (opcode) {
                Py_INCREF(max_size_obj);
                left_obj = max_size_obj;
                left = max_size;
            }
            else {
                left_obj = PyObject_GetAttr(parser, st->msg_left);
                if (left_obj == NULL || as_limit(left_obj, &left) < 0) {
                    goto done;
                }
            }
            /* RFC 6455 §10.4: refuse from the declared length, before buffering the payload. */
            if (left < 0 || length > (unsigned long long)left) {
                raise_remote("MessageTooBig",
                             PyUnicode_FromFormat("data frame of %llu bytes exceeds the %S bytes "
                                                  "left under the limit of %S",
                                                  length, left_obj, max_size_obj));
                goto done;
            }
        }
        if (masked) {
            head += 4;
        }
        total = (unsigned long long)head + length;
        if ((unsigned long long)avail < total) {
            if (avail < head) {
                /* Parse again once the mask key is here, to report the partial frame. */
                need = (unsigned long long)head;
                break;
            }
            need = total;
            if (opcode < 0x8) {
                /* So the connection can check a text payload as it arrives (§8.1). */
                PyObject *key = PyBytes_FromStringAndSize(
                    masked ? (const char *)frame + head - 4 : NULL, masked ? 4 : 0);
                PyObject *partial;
                if (key == NULL) {
                    goto done;
                }
                partial = Py_BuildValue("(iiNn)", opcode, rsv & 0x40, key, head);
                if (partial == NULL) {
                    goto done;
                }
                ok = PyObject_SetAttr(parser, st->partial, partial);
                Py_DECREF(partial);
                if (ok < 0) {
                    goto done;
                }
                ok = -1;
            }
            break;
        }
        if (append_frame(out, b0,
                         in_place
                             ? frame_payload_in_place(view, (unsigned char *)buf, pos + head,
                                                      (Py_ssize_t)length,
                                                      masked ? frame + head - 4 : NULL,
                                                      decode && b0 == 0x81)
                             : frame_payload(frame + head, (Py_ssize_t)length,
                                             masked ? frame + head - 4 : NULL,
                                             decode && b0 == 0x81)) < 0) {
            goto done;
        }
        pos += (Py_ssize_t)total;
        if (!fin && opcode < 0x8) {
            /* A fragmented message: the next fragments may bring only what is left, unless it
               has RSV1 (compressed, RFC 7692 §6), whose decoded size the connection checks. */
            int msg_rsv1;
            PyObject *new_left;
            if (opcode) {
                msg_rsv1 = rsv & 0x40;
                if (set_int_attr(parser, st->msg_rsv1, (unsigned long long)msg_rsv1) < 0) {
                    goto done;
                }
            }
            else {
                obj = PyObject_GetAttr(parser, st->msg_rsv1);
                if (obj == NULL) {
                    goto done;
                }
                msg_rsv1 = PyObject_IsTrue(obj);
                Py_DECREF(obj);
                if (msg_rsv1 < 0) {
                    goto done;
                }
            }
            if (msg_rsv1) {
                Py_INCREF(left_obj);
                new_left = left_obj;
            }
            else {
                PyObject *taken = PyLong_FromUnsignedLongLong(length);
                if (taken == NULL) {
                    goto done;
                }
                new_left = PyNumber_Subtract(left_obj, taken);
                Py_DECREF(taken);
                if (new_left == NULL) {
                    goto done;
                }
            }
            ok = PyObject_SetAttr(parser, st->msg_left, new_left);
            Py_DECREF(new_left);
            if (ok < 0) {
                goto done;
            }
            ok = -1;
        }
        if (opcode == 0x8) {
            /* Data after a close frame is never read (RFC 6455 §5.5.1). */
            pos = end;
            ok = 0;
            goto done;
        }
    }
    /* Need 2 when one byte is left (the caller sets it when nothing is). */
    if ((need || pos < end) && set_int_attr(parser, st->need, need ? need : 2) < 0) {
        goto done;
    }
    ok = 0;

done:
    if (in_place) {
        Py_DECREF(view);
        PyBuffer_Release(&writable);
    }
    Py_XDECREF(left_obj);
    Py_XDECREF(max_size_obj);
    if (ok < 0) {
        return NULL;
    }
    return PyLong_FromSsize_t(pos);
}

PyDoc_STRVAR(parse_messages_doc,
"parse_messages($module, data, expect_mask, max_size, max_frames, max_bytes, /)\n"
"--\n"
"\n"
"The payloads of data when it is nothing but whole messages, each in one final frame\n"
"without RSV bits, masked as expect_mask says, within max_size, at most max_frames\n"
"of them, the ones before the last under max_bytes in all: str for valid text, bytes\n"
"for binary. None for anything else (the general parser then handles data).\n"
"\n"
"The twin of wskit.core.frames.parse_messages_python.");

/* The header of a whole message at frame (avail bytes from there): one final TEXT or BINARY
   frame without RSV bits, masked as expected, its length minimal and within max_size, all
   its bytes here. 1 with its header and payload lengths, else 0. */
static int
message_header(const unsigned char *frame, Py_ssize_t avail, int expect_mask,
               long long max_size, Py_ssize_t *head_out, unsigned long long *length_out)
{
    int b0, b1;
    Py_ssize_t head = 2;
    unsigned long long length;

    if (avail < 2) {
        return 0;
    }
    b0 = frame[0];
    b1 = frame[1];
    if ((b0 != 0x81 && b0 != 0x82) || !(b1 & 0x80) != !expect_mask) {
        return 0;
    }
    length = (unsigned long long)(b1 & 0x7F);
    if (length == 126) {
        if (avail < 4) {
            return 0;
        }
        length = ((unsigned long long)frame[2] << 8) | frame[3];
        head = 4;
        if (length < 126) {
            return 0;
        }
    }
    else if (length == 127) {
        int i;
        if (avail < 10) {
            return 0;
        }
        length = 0;
        for (i = 2; i < 10; i++) {
            length = (length << 8) | frame[i];
        }
        head = 10;
        if ((length >> 63) || length < 0x10000) {
            return 0;
        }
    }
    if (max_size < 0 || length > (unsigned long long)max_size) {
        return 0;
    }
    if (expect_mask) {
        head += 4;
    }
    if (avail < head || (unsigned long long)(avail - head) < length) {
        return 0;
    }
    *head_out = head;
    *length_out = length;
    return 1;
}

/* The fast path of a read: no state, no errors. Anything unusual (a control frame, a
   fragment, RSV bits, invalid UTF-8, a frame cut short, a length the general parser refuses,
   a batch cut short) gives None, and the general parser handles the same bytes from scratch,
   with every check and error of its own. The headers are checked first, so that a read cut
   inside its last frame (common with many messages in flight) costs no payload objects. */
static PyObject *
parse_messages(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *data, *out, *payload;
    const unsigned char *buf;
    Py_ssize_t end, pos = 0, count = 0, i, head;
    unsigned long long length;
    long long max_size, max_frames, max_bytes, used = 0;
    int expect_mask;
    (void)module;

    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError,
                     "parse_messages() takes exactly 5 positional arguments (%zd given)", nargs);
        return NULL;
    }
    data = args[0];
    if (!PyBytes_Check(data)) {
        PyErr_Format(PyExc_TypeError, "data must be bytes, not '%.100s'", Py_TYPE(data)->tp_name);
        return NULL;
    }
    expect_mask = PyObject_IsTrue(args[1]);
    if (expect_mask < 0 || as_limit(args[2], &max_size) < 0 || as_limit(args[3], &max_frames) < 0
        || as_limit(args[4], &max_bytes) < 0) {
        return NULL;
    }
    buf = (const unsigned char *)PyBytes_AS_STRING(data);
    end = PyBytes_GET_SIZE(data);
    if (end < 2) {
        Py_RETURN_NONE;
    }
    /* Every frame a whole message, ending exactly at the end, within the frame budget. */
    while (pos < end) {
        if (count >= max_frames
            || !message_header(buf + pos, end - pos, expect_mask, max_size, &head, &length)) {
            Py_RETURN_NONE;
        }
        count++;
        pos += head + (Py_ssize_t)length;
    }
    out = PyList_New(count);
    if (out == NULL) {
        return NULL;
    }
    pos = 0;
    for (i = 0; i < count; i++) {
        const unsigned char *frame = buf + pos;
        int text = frame[0] == 0x81;

        /* The general path would keep the rest for later once the bytes delivered reach the
           byte budget (RFC 6455 says nothing of it; fairness does). */
        if (i && used >= max_bytes) {
            goto none;
        }
        (void)message_header(frame, end - pos, expect_mask, max_size, &head, &length);
        payload = frame_payload(frame + head, (Py_ssize_t)length,
                                expect_mask ? frame + head - 4 : NULL, text);
        if (payload == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, payload);
        if (text && !PyUnicode_CheckExact(payload)) {
            /* Invalid UTF-8: the general path fails the connection (1007). */
            goto none;
        }
        /* The budget counts what len() of each message gives: characters for text. */
        used += text ? (long long)PyUnicode_GET_LENGTH(payload) : (long long)length;
        pos += head + (Py_ssize_t)length;
    }
    return out;

none:
    /* The items not set yet are NULL, which list_dealloc skips. */
    Py_DECREF(out);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(build_frame_doc,
"build_frame($module, b0, payload, key, /)\n"
"--\n"
"\n"
"Return the frame with first header byte b0 (FIN, RSV, opcode), masked with key\n"
"(4 bytes) unless it is None: header, key and payload in one bytes object.\n"
"\n"
"The twin of wskit.core.frames.build_frame_python.");

static PyObject *
build_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer payload, key;
    PyObject *result = NULL;
    long b0;
    int overflow, masked;
    Py_ssize_t n, head;
    unsigned char *dst;
    (void)module;

    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError,
                     "build_frame() takes exactly 3 positional arguments (%zd given)", nargs);
        return NULL;
    }
    b0 = PyLong_AsLongAndOverflow(args[0], &overflow);
    if (b0 == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (overflow || b0 < 0 || b0 > 0xFF) {
        PyErr_Format(PyExc_ValueError, "b0 must be in range(0, 256), got %S", args[0]);
        return NULL;
    }
    if (get_contiguous_buffer(args[1], &payload, "payload") < 0) {
        return NULL;
    }
    masked = args[2] != Py_None;
    if (masked) {
        if (get_contiguous_buffer(args[2], &key, "key") < 0) {
            PyBuffer_Release(&payload);
            return NULL;
        }
        if (key.len != 4) {
            PyErr_Format(PyExc_ValueError, "key must be 4 bytes, got %zd", key.len);
            goto done;
        }
    }
    n = payload.len;
    /* RFC 6455 §5.2: the minimal number of bytes MUST be used to encode the length. */
    head = (n < 126 ? 2 : n < 0x10000 ? 4 : 10) + (masked ? 4 : 0);
    result = PyBytes_FromStringAndSize(NULL, head + n);
    if (result == NULL) {
        goto done;
    }
    dst = (unsigned char *)PyBytes_AS_STRING(result);
    dst[0] = (unsigned char)b0;
    if (n < 126) {
        dst[1] = (unsigned char)n;
    }
    else if (n < 0x10000) {
        dst[1] = 126;
        dst[2] = (unsigned char)(n >> 8);
        dst[3] = (unsigned char)n;
    }
    else {
        unsigned long long len = (unsigned long long)n;
        int i;
        dst[1] = 127;
        for (i = 9; i >= 2; i--) {
            dst[i] = (unsigned char)len;
            len >>= 8;
        }
    }
    if (masked) {
        dst[1] |= 0x80;
        memcpy(dst + head - 4, key.buf, 4);
        if (n >= RELEASE_GIL_MIN) {
            /* As in apply_mask: the exports pin the inputs, the result is ours alone. */
            Py_BEGIN_ALLOW_THREADS
            xor_mask(dst + head, (const unsigned char *)payload.buf, n,
                     (const unsigned char *)key.buf);
            Py_END_ALLOW_THREADS
        }
        else {
            xor_mask(dst + head, (const unsigned char *)payload.buf, n,
                     (const unsigned char *)key.buf);
        }
    }
    else {
        memcpy(dst + head, payload.buf, (size_t)n);
    }

done:
    if (masked) {
        PyBuffer_Release(&key);
    }
    PyBuffer_Release(&payload);
    return result;
}

/* ---- client frames (RFC 6455 §5.3): masking keys from a per-thread pool of CSPRNG bytes,
   mask_key (the twin of masking.generate_mask_python) and build_masked_frame (the twin of
   frames.build_masked_frame_python): a client's whole frame in one call ---- */

#if defined(_MSC_VER)
#define WSKIT_THREAD_LOCAL __declspec(thread)
#else
#define WSKIT_THREAD_LOCAL _Thread_local
#endif

#if defined(__linux__) && defined(__has_include)
#if __has_include(<sys/random.h>)
#include <errno.h>
#include <sys/random.h>
#define WSKIT_HAVE_GETRANDOM 1
#endif
#endif
#if !defined(_WIN32)
#include <pthread.h>
#define WSKIT_HAVE_ATFORK 1
#endif

/* One getrandom() per 256 keys instead of one per frame. The pool is per thread, so no two
   threads (nor interpreters, nor free-threaded callers) ever share a key or need a lock. */
#define MASK_POOL_BYTES 1024

typedef struct {
    unsigned char bytes[MASK_POOL_BYTES];
    int next; /* offset of the next unused key; MASK_POOL_BYTES when empty */
} mask_pool;

static WSKIT_THREAD_LOCAL mask_pool thread_mask_pool = {{0}, MASK_POOL_BYTES};

#ifdef WSKIT_HAVE_ATFORK
/* fork() copies the forking thread's pool into the child, whose only thread it is: without
   this, parent and child would mask with the same keys. */
static void
forget_mask_pool_in_child(void)
{
    memset(thread_mask_pool.bytes, 0, MASK_POOL_BYTES);
    thread_mask_pool.next = MASK_POOL_BYTES;
}

static pthread_once_t mask_pool_atfork_once = PTHREAD_ONCE_INIT;

static void
register_mask_pool_atfork(void)
{
    (void)pthread_atfork(NULL, NULL, forget_mask_pool_in_child);
}
#endif

/* os.urandom(n) into buf: where getrandom() is missing (not Linux, old kernels, seccomp). */
static int
urandom_into(unsigned char *buf, Py_ssize_t n)
{
    PyObject *os, *bytes;

    os = PyImport_ImportModule("os");
    if (os == NULL) {
        return -1;
    }
    bytes = PyObject_CallMethod(os, "urandom", "n", n);
    Py_DECREF(os);
    if (bytes == NULL) {
        return -1;
    }
    if (!PyBytes_Check(bytes) || PyBytes_GET_SIZE(bytes) != n) {
        Py_DECREF(bytes);
        PyErr_SetString(PyExc_RuntimeError, "os.urandom returned a wrong result");
        return -1;
    }
    memcpy(buf, PyBytes_AS_STRING(bytes), (size_t)n);
    Py_DECREF(bytes);
    return 0;
}

/* n bytes from the OS's CSPRNG, as os.urandom gives them (§5.3: never a PRNG). */
static int
fill_random(unsigned char *buf, Py_ssize_t n)
{
#ifdef WSKIT_HAVE_GETRANDOM
    Py_ssize_t got = 0;

    while (got < n) {
        ssize_t r = getrandom(buf + got, (size_t)(n - got), 0);
        if (r < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0) {
                    return -1;
                }
                continue;
            }
            if (errno == ENOSYS || errno == EPERM) {
                return urandom_into(buf, n);
            }
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        got += r;
    }
    return 0;
#else
    return urandom_into(buf, n);
#endif
}

/* The next unused 4 bytes of this thread's pool, refilling it when it is used up. */
static int
take_mask_key(unsigned char key[4])
{
    mask_pool *pool = &thread_mask_pool;

    if (pool->next > MASK_POOL_BYTES - 4) {
        if (fill_random(pool->bytes, MASK_POOL_BYTES) < 0) {
            return -1;
        }
        pool->next = 0;
    }
    memcpy(key, pool->bytes + pool->next, 4);
    pool->next += 4;
    return 0;
}

PyDoc_STRVAR(mask_key_doc,
"mask_key($module, /)\n"
"--\n"
"\n"
"Return a fresh masking key: 4 bytes from the OS's CSPRNG\n"
"(RFC 6455 \xc2\xa7" "5.3, \xc2\xa7" "10.3).\n"
"\n"
"The twin of wskit.core.masking.generate_mask_python.");

static PyObject *
mask_key(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    unsigned char key[4];
    (void)module;

    if (take_mask_key(key) < 0) {
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)key, 4);
}

PyDoc_STRVAR(build_masked_frame_doc,
"build_masked_frame($module, b0, payload, /)\n"
"--\n"
"\n"
"Return a client's frame with first header byte b0, masked with a fresh key\n"
"(RFC 6455 \xc2\xa7" "5.3): a str payload is sent as its UTF-8 bytes.\n"
"\n"
"The twin of wskit.core.frames.build_masked_frame_python.");

/* A client's frame: b0, the MASK bit and length, a fresh key, and n bytes of src masked with
   it, as one new bytes object (NULL with an exception set). For every masked sender in this
   file, so each frame of a client gets a key of its own. */
static PyObject *
new_masked_frame(unsigned char b0, const unsigned char *src, Py_ssize_t n)
{
    PyObject *result;
    unsigned char key[4], *dst;
    Py_ssize_t head;

    if (take_mask_key(key) < 0) {
        return NULL;
    }
    /* RFC 6455 §5.2: the minimal number of bytes MUST be used to encode the length. */
    head = (n < 126 ? 2 : n < 0x10000 ? 4 : 10) + 4;
    result = PyBytes_FromStringAndSize(NULL, head + n);
    if (result == NULL) {
        return NULL;
    }
    dst = (unsigned char *)PyBytes_AS_STRING(result);
    dst[0] = b0;
    if (n < 126) {
        dst[1] = (unsigned char)(0x80 | n);
    }
    else if (n < 0x10000) {
        dst[1] = 0x80 | 126;
        dst[2] = (unsigned char)(n >> 8);
        dst[3] = (unsigned char)n;
    }
    else {
        unsigned long long len = (unsigned long long)n;
        int i;
        dst[1] = 0x80 | 127;
        for (i = 9; i >= 2; i--) {
            dst[i] = (unsigned char)len;
            len >>= 8;
        }
    }
    memcpy(dst + head - 4, key, 4);
    if (n >= RELEASE_GIL_MIN) {
        /* As in build_frame: the caller's references pin the input, the result is ours. */
        Py_BEGIN_ALLOW_THREADS
        xor_mask(dst + head, src, n, key);
        Py_END_ALLOW_THREADS
    }
    else {
        xor_mask(dst + head, src, n, key);
    }
    return result;
}

static PyObject *
build_masked_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer payload;
    PyObject *encoded = NULL, *result = NULL, *source;
    long b0;
    int overflow;
    (void)module;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "build_masked_frame() takes exactly 2 positional arguments (%zd given)",
                     nargs);
        return NULL;
    }
    source = args[1];
    /* In the pure twin's order: the text is encoded first, then b0 and the buffer checked. */
    if (PyUnicode_Check(source)) {
#if PY_VERSION_HEX < 0x030C0000
        /* (Every str is ready from 3.12 on, where the call is deprecated.) */
        if (PyUnicode_READY(source) < 0) {
            return NULL;
        }
#endif
        if (!PyUnicode_IS_ASCII(source)) {
            /* UnicodeEncodeError for lone surrogates, as str.encode raises. */
            encoded = PyUnicode_AsUTF8String(source);
            if (encoded == NULL) {
                return NULL;
            }
            source = encoded;
        }
    }
    b0 = PyLong_AsLongAndOverflow(args[0], &overflow);
    if (b0 == -1 && PyErr_Occurred()) {
        goto done;
    }
    if (overflow || b0 < 0 || b0 > 0xFF) {
        PyErr_Format(PyExc_ValueError, "b0 must be in range(0, 256), got %S", args[0]);
        goto done;
    }
    if (PyUnicode_Check(source)) {
        /* ASCII is its own UTF-8: the str's characters are the payload, without a copy. */
        result = new_masked_frame((unsigned char)b0,
                                  (const unsigned char *)PyUnicode_DATA(source),
                                  PyUnicode_GET_LENGTH(source));
    }
    else if (PyBytes_CheckExact(source)) {
        result = new_masked_frame((unsigned char)b0,
                                  (const unsigned char *)PyBytes_AS_STRING(source),
                                  PyBytes_GET_SIZE(source));
    }
    else if (get_contiguous_buffer(source, &payload, "payload") == 0) {
        result = new_masked_frame((unsigned char)b0, (const unsigned char *)payload.buf,
                                  payload.len);
        PyBuffer_Release(&payload);
    }

done:
    Py_XDECREF(encoded);
    return result;
}

/* ---- end of client frames ---- */

/* ---- HTTP heads (the opening handshake): split_head, the twin of http.split_head_python ---- */

/* RFC 9110 §5.6.2 tchar, and §5.5 field-value characters (VCHAR, obs-text, SP, HTAB). */
static unsigned char head_tchar[256];
static unsigned char head_vchar[256];

static void
init_head_tables(void)
{
    const char *punct = "!#$%&'*+-.^_`|~";
    int c;
    for (c = 0; c < 256; c++) {
        head_tchar[c] = (unsigned char)((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
                                        (c >= 'a' && c <= 'z') ||
                                        (c != 0 && strchr(punct, c) != NULL));
        head_vchar[c] = (unsigned char)(c == '\t' || (c >= 0x20 && c <= 0x7e) || c >= 0x80);
    }
}

PyDoc_STRVAR(split_head_doc,
"split_head(data, max_line_length, max_headers, max_header_bytes, /)\n--\n\n"
"(start line, [(name, value), ...], end) of a complete, valid HTTP head at the start of\n"
"data, within the limits; None for anything else, which the line parser then handles.");

/* Only the common case: a head complete in data, every line valid and within the limits.
   Anything else (incomplete, malformed, too large) gives None, so every error comes from the
   one line-by-line parser in http.py, with its exact message and status. */
static PyObject *
split_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer buf;
    Py_ssize_t limits[3];
    PyObject *result = NULL, *start = NULL, *fields = NULL;
    const unsigned char *p;
    Py_ssize_t n, pos, lf, count = 0, header_bytes = 0;
    int i;
    (void)module;

    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError,
                     "split_head() takes exactly 4 positional arguments (%zd given)", nargs);
        return NULL;
    }
    for (i = 0; i < 3; i++) {
        limits[i] = PyNumber_AsSsize_t(args[i + 1], PyExc_OverflowError);
        if (limits[i] == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (get_contiguous_buffer(args[0], &buf, "data") < 0) {
        return NULL;
    }
    p = (const unsigned char *)buf.buf;
    n = buf.len;

    /* The start line: no empty lines before it, no CR inside it, within the line limit. */
    if (n == 0 || p[0] == '\r' || p[0] == '\n') {
        goto none;
    }
    lf = -1;
    for (pos = 0; pos < n; pos++) {
        if (p[pos] == '\n') {
            lf = pos;
            break;
        }
        if (p[pos] == '\r' && !(pos + 1 < n && p[pos + 1] == '\n')) {
            goto none;
        }
    }
    if (lf < 1 || p[lf - 1] != '\r' || lf - 1 > limits[0]) {
        goto none;
    }
    start = PyBytes_FromStringAndSize((const char *)p, lf - 1);
    fields = PyList_New(0);
    if (start == NULL || fields == NULL) {
        goto error;
    }
    pos = lf + 1;
    for (;;) {
        Py_ssize_t line_end, colon, vstart, vend, j;
        PyObject *name, *value, *pair;

        if (pos + 1 < n && p[pos] == '\r' && p[pos + 1] == '\n') {
            pos += 2; /* the empty line: the head is complete */
            break;
        }
        /* One header line: CRLF-terminated, no bare CR or LF, within the limits. */
        lf = -1;
        for (j = pos; j < n; j++) {
            if (p[j] == '\n') {
                lf = j;
                break;
            }
            if (p[j] == '\r' && !(j + 1 < n && p[j + 1] == '\n')) {
                goto none;
            }
        }
        if (lf <= pos || p[lf - 1] != '\r') {
            goto none;
        }
        line_end = lf - 1;
        header_bytes += line_end - pos + 2;
        if (line_end - pos > limits[0] || header_bytes > limits[2] || count >= limits[1]) {
            goto none;
        }
        /* field-name ":" OWS field-value OWS (RFC 9112 §5), the name a token. */
        colon = pos;
        while (colon < line_end && head_tchar[p[colon]]) {
            colon++;
        }
        if (colon == pos || colon == line_end || p[colon] != ':') {
            goto none;
        }
        vstart = colon + 1;
        vend = line_end;
        while (vstart < vend && (p[vstart] == ' ' || p[vstart] == '\t')) {
            vstart++;
        }
        while (vend > vstart && (p[vend - 1] == ' ' || p[vend - 1] == '\t')) {
            vend--;
        }
        for (j = vstart; j < vend; j++) {
            if (!head_vchar[p[j]]) {
                goto none;
            }
        }
        name = PyUnicode_DecodeASCII((const char *)p + pos, colon - pos, NULL);
        if (name == NULL) {
            goto error;
        }
        value = PyUnicode_DecodeLatin1((const char *)p + vstart, vend - vstart, NULL);
        if (value == NULL) {
            Py_DECREF(name);
            goto error;
        }
        pair = PyTuple_Pack(2, name, value);
        Py_DECREF(name);
        Py_DECREF(value);
        if (pair == NULL || PyList_Append(fields, pair) < 0) {
            Py_XDECREF(pair);
            goto error;
        }
        Py_DECREF(pair);
        count++;
        pos = lf + 1;
    }
    result = Py_BuildValue("(OOn)", start, fields, pos);
    goto error; /* releases what is held either way */

none:
    result = Py_NewRef(Py_None);
error:
    Py_XDECREF(start);
    Py_XDECREF(fields);
    PyBuffer_Release(&buf);
    return result;
}

/* ---- fan-out: the twin of the loop of wskit.websocket.send_prepared_to ---- */

/* The fields a delivery reads are slots (WebSocket, WebSocketProtocol, Connection, _Cork
   declare them): each is read at its offset, found once per call and type from the type's
   member descriptor, instead of a look-up by name per delivery (which costs more than the
   specialised bytecode of the pure loop). A type whose field is not such a slot, or an
   object whose slot is unset, takes the pure path for that socket. */
#if PY_VERSION_HEX >= 0x030C0000
#define FAN_T_OBJECT_EX Py_T_OBJECT_EX
#define FAN_READONLY Py_READONLY
#else
#include <structmember.h>
#define FAN_T_OBJECT_EX T_OBJECT_EX
#define FAN_READONLY READONLY
#endif

#define SLOT_MAX_FIELDS 9  /* the most one user asks of a type (the Reader, of Connection) */

/* The offsets of some slots of one type, resolved when a different type is seen: fan_out keeps
   them for one call; the Sender, Reader and BufferUpdated for their life. */
typedef struct {
    PyTypeObject *type;  /* a reference while cached; NULL before the first resolution */
    int usable;          /* every field is a writable object slot */
    Py_ssize_t offset[SLOT_MAX_FIELDS];
} slot_offsets;

static void
resolve_slots(slot_offsets *cache, PyTypeObject *type, PyObject *const *names, int n)
{
    int i;

    Py_INCREF(type);
    Py_XSETREF(cache->type, type);
    cache->usable = 1;
    for (i = 0; i < n; i++) {
        PyObject *descr = PyObject_GetAttr((PyObject *)type, names[i]);
        if (descr == NULL) {
            PyErr_Clear();
            cache->usable = 0;
            return;
        }
        if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
            if (member->type == FAN_T_OBJECT_EX && !(member->flags & FAN_READONLY)) {
                cache->offset[i] = member->offset;
                Py_DECREF(descr);
                continue;
            }
        }
        Py_DECREF(descr);
        cache->usable = 0;
        return;
    }
}

/* The offsets for obj's type (resolved when it differs from the last one seen), or NULL
   when that type cannot be read this way. */
static inline const Py_ssize_t *
slots_of(slot_offsets *cache, PyObject *obj, PyObject *const *names, int n)
{
    if (Py_TYPE(obj) != cache->type) {
        resolve_slots(cache, Py_TYPE(obj), names, n);
    }
    return cache->usable ? cache->offset : NULL;
}

#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

/* obj's slot at offset += delta (an int); 0, or -1 with an exception set. */
static int
add_to_slot(PyObject *obj, Py_ssize_t offset, PyObject *delta)
{
    PyObject *value = SLOT(obj, offset), *sum;

    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "fan_out: a counter slot is unset");
        return -1;
    }
    sum = PyNumber_Add(value, delta);
    if (sum == NULL) {
        return -1;
    }
    SLOT(obj, offset) = sum;
    Py_DECREF(value);
    return 0;
}

typedef struct {
    slot_offsets ws, conn, proto, cork;
    PyObject *ws_names[2], *conn_names[4], *proto_names[4], *cork_names[2];
} fan_types;

enum { WS_CONN, WS_PROTOCOL };
enum { CONN_STATE, CONN_SENDING_FRAGMENTS, CONN_CLIENT, CONN_MESSAGES_OUT };
enum { PROTO_CORKED, PROTO_CORK, PROTO_BYTES_OUT, PROTO_TRANSPORT };
enum { CORK_DEPTH, CORK_PENDING };

/* One socket: 1 when plain was written or corked for it, 0 when the pure path must decide
   (not open, fragmenting, a client, no transport, possibly over max_buffered, or fields
   that are not slots), -1 on an error. Nothing is changed before it is known that the frame
   goes. */
static int
fan_out_one(fanout_names *nm, fan_types *ft, PyObject *ws, PyObject *plain, int limited,
            long long limit, PyObject *open_state, PyObject *size_obj, PyObject *one_obj)
{
    const Py_ssize_t *off;
    PyObject *conn, *proto, *corked, *transport, *cork = NULL, *pending = NULL, *value;
    int depth = 0;

    off = slots_of(&ft->ws, ws, ft->ws_names, 2);
    if (off == NULL) {
        return 0;
    }
    conn = SLOT(ws, off[WS_CONN]);
    proto = SLOT(ws, off[WS_PROTOCOL]);
    if (conn == NULL || proto == NULL) {
        return 0;
    }
    /* Connection.send_prepared shares plain on a server connection that is OPEN and not in
       the middle of its own fragmented message (RFC 6455 §5.4); a client masks each frame
       with a fresh key (§5.3). */
    off = slots_of(&ft->conn, conn, ft->conn_names, 4);
    if (off == NULL || SLOT(conn, off[CONN_STATE]) != open_state
            || SLOT(conn, off[CONN_SENDING_FRAGMENTS]) != Py_False
            || SLOT(conn, off[CONN_CLIENT]) != Py_False) {
        return 0;
    }
    off = slots_of(&ft->proto, proto, ft->proto_names, 4);
    if (off == NULL) {
        return 0;
    }
    transport = SLOT(proto, off[PROTO_TRANSPORT]);
    if (transport == NULL || transport == Py_None) {
        return 0;
    }
    if (limited) {
        /* WebSocketProtocol.buffered_over: the transport's buffer and the corked frames. An
           upper bound over the limit goes to the pure path, which hands the corked frames
           over and measures again. */
        long long size;
        value = PyObject_CallMethodNoArgs(transport, nm->get_write_buffer_size);
        if (value == NULL) {
            return -1;
        }
        if (as_limit(value, &size) < 0) {
            Py_DECREF(value);
            return -1;
        }
        Py_DECREF(value);
        /* (Read after the call, which could have run code.) */
        corked = SLOT(proto, off[PROTO_CORKED]);
        if (corked != NULL && PyList_CheckExact(corked)) {
            Py_ssize_t i, n = PyList_GET_SIZE(corked);
            for (i = 0; i < n && size <= limit; i++) {
                PyObject *item = PyList_GET_ITEM(corked, i);
                Py_ssize_t len = PyBytes_CheckExact(item) ? PyBytes_GET_SIZE(item)
                                                          : PyObject_Length(item);
                if (len < 0) {
                    return -1;
                }
                size += len;
            }
        }
        if (size > limit) {
            return 0;
        }
    }
    corked = SLOT(proto, off[PROTO_CORKED]);
    transport = SLOT(proto, off[PROTO_TRANSPORT]);
    if (corked == NULL || transport == NULL || transport == Py_None
            || (corked != Py_None && !PyList_CheckExact(corked))) {
        return 0;
    }
    if (corked == Py_None) {
        /* WebSocketProtocol.write: corked while a read of this thread is in progress. */
        const Py_ssize_t *coff;
        cork = SLOT(proto, off[PROTO_CORK]);
        if (cork == NULL) {
            return 0;
        }
        coff = slots_of(&ft->cork, cork, ft->cork_names, 2);
        if (coff == NULL || SLOT(cork, coff[CORK_DEPTH]) == NULL) {
            return 0;
        }
        depth = PyObject_IsTrue(SLOT(cork, coff[CORK_DEPTH]));
        if (depth < 0) {
            return -1;
        }
        if (depth) {
            pending = SLOT(cork, coff[CORK_PENDING]);
            if (pending == NULL || !PyList_CheckExact(pending)) {
                return 0;
            }
        }
    }
    /* The frame goes: counted as Connection.send_prepared and WebSocketProtocol.write do. */
    if (add_to_slot(conn, ft->conn.offset[CONN_MESSAGES_OUT], one_obj) < 0
            || add_to_slot(proto, off[PROTO_BYTES_OUT], size_obj) < 0) {
        return -1;
    }
    if (corked != Py_None) {
        return PyList_Append(corked, plain) < 0 ? -1 : 1;
    }
    if (depth) {
        PyObject *fresh = PyList_New(1);
        if (fresh == NULL) {
            return -1;
        }
        Py_INCREF(plain);
        PyList_SET_ITEM(fresh, 0, plain);
        /* The slot held None (immortal or not, its reference is dropped here). */
        SLOT(proto, off[PROTO_CORKED]) = fresh;
        Py_DECREF(Py_None);
        return PyList_Append(pending, proto) < 0 ? -1 : 1;
    }
    value = PyObject_CallMethodOneArg(transport, nm->write, plain);
    if (value == NULL) {
        return -1;
    }
    Py_DECREF(value);
    return 1;
}

PyDoc_STRVAR(fan_out_doc,
"fan_out(sockets, plain, max_buffered, one, open_state, outcomes, /)\n"
"\n"
"Write the frame plain (bytes, shared) to every socket of sockets that can take it as it\n"
"is: a server connection in open_state, not in the middle of its own fragmented message,\n"
"with at most max_buffered bytes queued, corked ones included (None: no limit). Every\n"
"other socket goes to one(ws), whose result is counted against outcomes, the tuple (SENT,\n"
"DROPPED, CLOSED). Returns (sent, dropped, closed).\n"
"\n"
"The twin of the loop of wskit.websocket.send_prepared_to without compression: it does\n"
"what Connection.send_prepared (messages_out) and WebSocketProtocol.write (bytes_out, the\n"
"cork list, the thread's cork, transport.write) do for the shared frame, with the fields\n"
"they use: WebSocket._conn, _protocol; Connection.state, _sending_fragments, _client,\n"
"messages_out; WebSocketProtocol._corked, _cork, bytes_out, transport; _Cork.depth,\n"
"pending.");

static PyObject *
fan_out(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    fanout_names *nm = &get_state(module)->fan;
    fan_types ft;
    PyObject *plain, *one, *outcomes, *iter = NULL, *ws = NULL, *size_obj = NULL;
    PyObject *one_obj = NULL, *result = NULL;
    Py_ssize_t sent = 0, dropped = 0, closed = 0;
    long long limit = 0;
    int limited;

    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError,
                     "fan_out() takes exactly 6 positional arguments (%zd given)", nargs);
        return NULL;
    }
    plain = args[1];
    one = args[3];
    outcomes = args[5];
    if (!PyBytes_CheckExact(plain)) {
        PyErr_SetString(PyExc_TypeError, "fan_out() needs the shared frame as bytes");
        return NULL;
    }
    if (!PyTuple_CheckExact(outcomes) || PyTuple_GET_SIZE(outcomes) != 3) {
        PyErr_SetString(PyExc_TypeError, "fan_out() needs outcomes as (SENT, DROPPED, CLOSED)");
        return NULL;
    }
    limited = args[2] != Py_None;
    if (limited && as_limit(args[2], &limit) < 0) {
        return NULL;
    }
    memset(&ft, 0, sizeof(ft));
    ft.ws_names[WS_CONN] = nm->conn;
    ft.ws_names[WS_PROTOCOL] = nm->protocol;
    ft.conn_names[CONN_STATE] = nm->state;
    ft.conn_names[CONN_SENDING_FRAGMENTS] = nm->sending_fragments;
    ft.conn_names[CONN_CLIENT] = nm->client;
    ft.conn_names[CONN_MESSAGES_OUT] = nm->messages_out;
    ft.proto_names[PROTO_CORKED] = nm->corked;
    ft.proto_names[PROTO_CORK] = nm->cork;
    ft.proto_names[PROTO_BYTES_OUT] = nm->bytes_out;
    ft.proto_names[PROTO_TRANSPORT] = nm->transport;
    ft.cork_names[CORK_DEPTH] = nm->depth;
    ft.cork_names[CORK_PENDING] = nm->pending;
    size_obj = PyLong_FromSsize_t(PyBytes_GET_SIZE(plain));
    one_obj = PyLong_FromLong(1);
    if (size_obj == NULL || one_obj == NULL) {
        goto done;
    }
    iter = PyObject_GetIter(args[0]);
    if (iter == NULL) {
        goto done;
    }
    while ((ws = PyIter_Next(iter)) != NULL) {
        int rc = fan_out_one(nm, &ft, ws, plain, limited, limit, args[4], size_obj, one_obj);
        if (rc < 0) {
            goto done;
        }
        if (rc) {
            sent++;
        }
        else {
            PyObject *outcome = PyObject_CallOneArg(one, ws);
            if (outcome == NULL) {
                goto done;
            }
            if (outcome == PyTuple_GET_ITEM(outcomes, 0)) {
                sent++;
            }
            else if (outcome == PyTuple_GET_ITEM(outcomes, 1)) {
                dropped++;
            }
            else if (outcome == PyTuple_GET_ITEM(outcomes, 2)) {
                closed++;
            }
            Py_DECREF(outcome);
        }
        Py_CLEAR(ws);
    }
    if (!PyErr_Occurred()) {
        result = Py_BuildValue("(nnn)", sent, dropped, closed);
    }

done:
    Py_XDECREF(ws);
    Py_XDECREF(iter);
    Py_XDECREF(size_obj);
    Py_XDECREF(one_obj);
    Py_XDECREF(ft.ws.type);
    Py_XDECREF(ft.conn.type);
    Py_XDECREF(ft.proto.type);
    Py_XDECREF(ft.cork.type);
    return result;
}

PyDoc_STRVAR(flush_corked_doc,
"flush_corked(pending, join_limit, /)\n"
"\n"
"Uncork each protocol of the list pending: take its _corked list (set to None) and hand\n"
"its frames to its transport unless it is closing, one write when there is one frame or\n"
"at most join_limit bytes of them (joined), else in runs of at most join_limit bytes, a\n"
"larger frame alone. A failing write does not keep the others corked: the first error is\n"
"raised once all were uncorked.\n"
"\n"
"The twin of wskit.aio.protocol.flush_corked_python (WebSocketProtocol._write_out inlined;\n"
"its slots _corked and transport).");

/* transport.write(data); 0, or -1 with an exception set. */
static int
write_to(PyObject *transport, PyObject *write, PyObject *data)
{
    PyObject *result = PyObject_CallMethodOneArg(transport, write, data);

    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* The frames of items (a list, total bytes in all) to transport in one write: the one
   frame as it is, else joined. 0, or -1 with an exception set. */
static int
write_joined(fanout_names *nm, PyObject *transport, PyObject *items, Py_ssize_t total)
{
    Py_ssize_t i, n = PyList_GET_SIZE(items);
    int all_bytes = 1, rc;
    PyObject *joined;
    char *dst;

    if (n == 1) {
        return write_to(transport, nm->write, PyList_GET_ITEM(items, 0));
    }
    for (i = 0; i < n; i++) {
        if (!PyBytes_CheckExact(PyList_GET_ITEM(items, i))) {
            all_bytes = 0;
            break;
        }
    }
    if (all_bytes) {
        joined = PyBytes_FromStringAndSize(NULL, total);
        if (joined == NULL) {
            return -1;
        }
        dst = PyBytes_AS_STRING(joined);
        for (i = 0; i < n; i++) {
            PyObject *item = PyList_GET_ITEM(items, i);
            memcpy(dst, PyBytes_AS_STRING(item), (size_t)PyBytes_GET_SIZE(item));
            dst += PyBytes_GET_SIZE(item);
        }
    }
    else {
        PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
        if (empty == NULL) {
            return -1;
        }
        joined = PyObject_CallMethod(empty, "join", "O", items);
        Py_DECREF(empty);
        if (joined == NULL) {
            return -1;
        }
    }
    rc = write_to(transport, nm->write, joined);
    Py_DECREF(joined);
    return rc;
}

/* The frames [start, stop) of frames to transport in one write. */
static int
write_run(fanout_names *nm, PyObject *transport, PyObject *frames, Py_ssize_t start,
          Py_ssize_t stop, Py_ssize_t size)
{
    PyObject *run = PyList_GetSlice(frames, start, stop);
    int rc;

    if (run == NULL) {
        return -1;
    }
    rc = write_joined(nm, transport, run, size);
    Py_DECREF(run);
    return rc;
}

/* The frames of one corked list to transport, as WebSocketProtocol._write_out does: one
   write up to join_limit bytes, else in runs of at most join_limit bytes, a larger frame by
   itself (wskit.aio.writes.write_runs). 0, or -1 with an exception set. */
static int
write_out(fanout_names *nm, PyObject *transport, PyObject *corked, long long join_limit)
{
    Py_ssize_t i, n = PyList_GET_SIZE(corked), total = 0, start = 0, size = 0;
    PyObject *frames;
    int rc = 0;

    if (n == 1) {
        return write_to(transport, nm->write, PyList_GET_ITEM(corked, 0));
    }
    /* A copy of the list: a write may run code that changes it. */
    frames = PyList_GetSlice(corked, 0, n);
    if (frames == NULL) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(frames, i);
        Py_ssize_t len = PyBytes_CheckExact(item) ? PyBytes_GET_SIZE(item) : PyObject_Length(item);
        if (len < 0) {
            Py_DECREF(frames);
            return -1;
        }
        total += len;
    }
    if (total <= join_limit) {
        rc = write_joined(nm, transport, frames, total);
        Py_DECREF(frames);
        return rc;
    }
    for (i = 0; i < n && rc == 0; i++) {
        PyObject *item = PyList_GET_ITEM(frames, i);
        Py_ssize_t len = PyBytes_CheckExact(item) ? PyBytes_GET_SIZE(item) : PyObject_Length(item);
        if (len < 0) {
            rc = -1;
            break;
        }
        if (i > start && size + len > join_limit) {
            rc = write_run(nm, transport, frames, start, i, size);
            start = i;
            size = 0;
            if (rc < 0) {
                break;
            }
        }
        size += len;
        if (size > join_limit) {  /* one frame over the limit, alone */
            rc = write_run(nm, transport, frames, i, i + 1, size);
            start = i + 1;
            size = 0;
        }
    }
    if (rc == 0 && start < n) {
        rc = write_run(nm, transport, frames, start, n, size);
    }
    Py_DECREF(frames);
    return rc;
}

static PyObject *
flush_corked(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    fanout_names *nm = &get_state(module)->fan;
    PyObject *pending, *names[2];
    PyObject *error_type = NULL, *error_value = NULL, *error_tb = NULL;
    slot_offsets cache;
    long long join_limit;
    Py_ssize_t i;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "flush_corked() takes exactly 2 positional arguments (%zd given)", nargs);
        return NULL;
    }
    pending = args[0];
    if (!PyList_CheckExact(pending)) {
        PyErr_SetString(PyExc_TypeError, "flush_corked() needs a list of protocols");
        return NULL;
    }
    if (as_limit(args[1], &join_limit) < 0) {
        return NULL;
    }
    names[0] = nm->corked;
    names[1] = nm->transport;
    memset(&cache, 0, sizeof(cache));
    Py_INCREF(pending);
    for (i = 0; i < PyList_GET_SIZE(pending); i++) {
        PyObject *proto = PyList_GET_ITEM(pending, i), *corked = NULL, *transport = NULL;
        PyObject *closing = NULL;
        const Py_ssize_t *off;
        int failed = 0, is_closing;
        Py_INCREF(proto);
        off = slots_of(&cache, proto, names, 2);
        if (off == NULL) {
            /* Not our slots: the same steps by name. */
            corked = PyObject_GetAttr(proto, nm->corked);
            failed = corked == NULL || PyObject_SetAttr(proto, nm->corked, Py_None) < 0;
        }
        else {
            corked = SLOT(proto, off[0]);  /* the slot's reference, now ours */
            Py_INCREF(Py_None);
            SLOT(proto, off[0]) = Py_None;
        }
        if (!failed && corked != NULL && PyList_CheckExact(corked)
                && PyList_GET_SIZE(corked)) {
            transport = off == NULL ? PyObject_GetAttr(proto, nm->transport)
                                    : Py_XNewRef(SLOT(proto, off[1]));
            failed = transport == NULL && off == NULL;
            if (!failed && transport != NULL && transport != Py_None) {
                closing = PyObject_CallMethodNoArgs(transport, nm->is_closing);
                is_closing = closing == NULL ? -1 : PyObject_IsTrue(closing);
                failed = is_closing < 0
                         || (!is_closing && write_out(nm, transport, corked, join_limit) < 0);
            }
        }
        if (failed && error_type == NULL) {
            PyErr_Fetch(&error_type, &error_value, &error_tb);
        }
        else if (failed) {
            PyErr_Clear();
        }
        Py_XDECREF(closing);
        Py_XDECREF(transport);
        Py_XDECREF(corked);
        Py_DECREF(proto);
    }
    Py_DECREF(pending);
    Py_XDECREF(cache.type);
    if (error_type != NULL) {
        PyErr_Restore(error_type, error_value, error_tb);
        return NULL;
    }
    Py_RETURN_NONE;
}


/* ---- direct sends (helper client): the first step of a plain socket transport's write ---- */

#if !defined(_WIN32)
#include <sys/socket.h>
#define WSKIT_HAVE_SEND 1
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif
#endif

typedef struct {
    PyObject *write;
} direct_names;

static int
direct_names_init(direct_names *nm)
{
    nm->write = PyUnicode_InternFromString("write");
    return nm->write ? 0 : -1;
}

static void
direct_names_clear(direct_names *nm)
{
    Py_CLEAR(nm->write);
}

/* transport.write(frame); 0, or -1 with an exception set. Where the protocol gave its socket
   (WebSocketProtocol._send_fd: the descriptor, the transport's get_write_buffer_size and
   is_closing; only for asyncio's and uvloop's plain TCP and unix transports, whose write
   with nothing buffered starts with one send() of the data on that socket) and the
   transport is not closing (so the descriptor is still its socket) and holds nothing unsent
   (so nothing goes ahead of the frame), that send() is made here: what the transport's write
   does first, without its Python or Cython call. What it did not take (a full socket buffer,
   the rest of a partial send) or could not (an error, which the transport's own send then
   meets and reports as it always does) goes to transport.write, after what was sent: the
   same bytes in the same order. */
static int
direct_write(direct_names *nm, PyObject *transport, PyObject *direct, PyObject *frame)
{
    PyObject *result, *rest = NULL;
#ifdef WSKIT_HAVE_SEND
    long fd = -1;

    if (direct != NULL && PyTuple_CheckExact(direct) && PyTuple_GET_SIZE(direct) == 3
            && PyLong_CheckExact(PyTuple_GET_ITEM(direct, 0))) {
        fd = PyLong_AsLong(PyTuple_GET_ITEM(direct, 0));
    }
    if (fd >= 0 && fd <= INT_MAX && PyBytes_CheckExact(frame)) {
        Py_ssize_t size, sent;
        int idle;

        result = PyObject_CallNoArgs(PyTuple_GET_ITEM(direct, 1));
        if (result == NULL) {
            return -1;
        }
        size = PyLong_CheckExact(result) ? PyLong_AsSsize_t(result) : -1;
        Py_DECREF(result);
        if (size == -1 && PyErr_Occurred()) {
            return -1;
        }
        idle = size == 0;
        if (idle) {
            result = PyObject_CallNoArgs(PyTuple_GET_ITEM(direct, 2));
            if (result == NULL) {
                return -1;
            }
            idle = result == Py_False;
            Py_DECREF(result);
        }
        if (idle) {
            const char *buf = PyBytes_AS_STRING(frame);
            size = PyBytes_GET_SIZE(frame);
            do {
                sent = (Py_ssize_t)send((int)fd, buf, (size_t)size, MSG_DONTWAIT | MSG_NOSIGNAL);
            } while (sent < 0 && errno == EINTR);
            if (sent == size) {
                return 0;
            }
            if (sent > 0) {
                rest = PyBytes_FromStringAndSize(buf + sent, size - sent);
                if (rest == NULL) {
                    return -1;
                }
                frame = rest;
            }
        }
    }
#else
    (void)direct;
#endif
    result = PyObject_CallMethodOneArg(transport, nm->write, frame);
    Py_XDECREF(rest);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* ---- end of direct sends ---- */

/* ---- the per-message path of a server (helper rt): WebSocket.send in C ---- */

/* Sender(fallback, open_state, connection_type, protocol_write, large_payload) is what
   WebSocket.send is when the extension is built: a method descriptor (no bound method is
   made for ws.send(x)), called with the WebSocket first. Its common case -- a connection
   OPEN, no extension, not in the middle of its own fragmented message, data of an exact
   type str, bytes, bytearray or memoryview (contiguous, of bytes), binary data shorter than
   large_payload (which goes as header and payload, Connection.send_parts), no keyword --
   builds the frame and does what Connection.send_text / send_binary (messages_out) and
   WebSocketProtocol.write (bytes_out, the cork list, the thread's cork, transport.write) do,
   on the fields they use, read as slots at their offsets (WebSocket._conn, _protocol;
   Connection.state, _sending_fragments, _extension, _client, messages_out;
   WebSocketProtocol._corked, _cork, bytes_out, transport; _Cork.depth, pending). A client's
   frame is masked with a fresh key from the thread's pool, as send_text / send_binary mask
   it (new_masked_frame, RFC 6455 §5.3). Anything else -- a subclass of Connection, a
   protocol whose write is overridden, a field that is not a slot -- goes to fallback, the
   pure WebSocket.send, unchanged, and nothing is changed before it is known that the frame
   goes. */

enum { SND_WS_CONN, SND_WS_PROTOCOL };
enum { SND_CONN_STATE, SND_CONN_SENDING_FRAGMENTS, SND_CONN_EXTENSION, SND_CONN_CLIENT,
       SND_CONN_MESSAGES_OUT };
enum { SND_PROTO_CORKED, SND_PROTO_CORK, SND_PROTO_BYTES_OUT, SND_PROTO_TRANSPORT,
       SND_PROTO_SEND_FD };
enum { SND_CORK_DEPTH, SND_CORK_PENDING };

#if PY_VERSION_HEX >= 0x030C0000
#define SND_T_PYSSIZET Py_T_PYSSIZET
#else
#define SND_T_PYSSIZET T_PYSSIZET
#endif


typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *dict;         /* __doc__, __name__, __wrapped__ ... (functools.update_wrapper) */
    PyObject *fallback;     /* the pure WebSocket.send */
    PyObject *open_state;   /* State.OPEN */
    PyObject *conn_type;    /* Connection: only its exact instances take the C path */
    PyObject *proto_write;  /* WebSocketProtocol.write: a type overriding it takes fallback */
    PyObject *write_name;
    direct_names direct;    /* for direct_write */
    PyObject *ws_names[2], *conn_names[5], *proto_names[5], *cork_names[2];
    slot_offsets ws, conn, proto, cork;
    Py_ssize_t large_payload;  /* frames.LARGE_PAYLOAD: binary data from there goes apart */
} Sender;

/* The protocol's offsets, usable only when its type writes with WebSocketProtocol.write. */
static const Py_ssize_t *
snd_proto_slots(Sender *self, PyObject *proto)
{
    if (Py_TYPE(proto) != self->proto.type) {
        PyObject *write;
        resolve_slots(&self->proto, Py_TYPE(proto), self->proto_names, 5);
        write = PyObject_GetAttr((PyObject *)Py_TYPE(proto), self->write_name);
        if (write == NULL) {
            PyErr_Clear();
            self->proto.usable = 0;
        }
        else {
            if (write != self->proto_write) {
                self->proto.usable = 0;
            }
            Py_DECREF(write);
        }
    }
    return self->proto.usable ? self->proto.offset : NULL;
}

/* obj's int slot += delta, with the small-int fast case; 0, or -1 with an exception. */
static int
snd_add(PyObject *obj, Py_ssize_t offset, Py_ssize_t delta)
{
    PyObject *value = SLOT(obj, offset), *sum;

    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "send: a counter slot is unset");
        return -1;
    }
    if (PyLong_CheckExact(value)) {
        Py_ssize_t v = PyLong_AsSsize_t(value);
        if (v == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            goto generic;
        }
        if (v <= PY_SSIZE_T_MAX - delta) {
            sum = PyLong_FromSsize_t(v + delta);
            if (sum == NULL) {
                return -1;
            }
            SLOT(obj, offset) = sum;
            Py_DECREF(value);
            return 0;
        }
    }
generic:
    {
        PyObject *d = PyLong_FromSsize_t(delta);
        if (d == NULL) {
            return -1;
        }
        sum = PyNumber_Add(value, d);
        Py_DECREF(d);
        if (sum == NULL) {
            return -1;
        }
        SLOT(obj, offset) = sum;
        Py_DECREF(value);
        return 0;
    }
}

/* An unmasked final frame (FIN | opcode) of n bytes at buf (RFC 6455 §5.2: the minimal
   length encoding; a server does not mask, §5.1). */
static PyObject *
snd_frame(unsigned char b0, const char *buf, Py_ssize_t n)
{
    Py_ssize_t head = n < 126 ? 2 : n < 0x10000 ? 4 : 10;
    PyObject *frame = PyBytes_FromStringAndSize(NULL, head + n);
    unsigned char *dst;

    if (frame == NULL) {
        return NULL;
    }
    dst = (unsigned char *)PyBytes_AS_STRING(frame);
    dst[0] = b0;
    if (n < 126) {
        dst[1] = (unsigned char)n;
    }
    else if (n < 0x10000) {
        dst[1] = 126;
        dst[2] = (unsigned char)(n >> 8);
        dst[3] = (unsigned char)n;
    }
    else {
        unsigned long long len = (unsigned long long)n;
        int i;
        dst[1] = 127;
        for (i = 9; i >= 2; i--) {
            dst[i] = (unsigned char)len;
            len >>= 8;
        }
    }
    memcpy(dst + head, buf, (size_t)n);
    return frame;
}

/* The frame of one message: unmasked for a server, masked for a client (RFC 6455 §5.3). */
static inline PyObject *
snd_build(int masked, unsigned char b0, const char *buf, Py_ssize_t n)
{
    return masked ? new_masked_frame(b0, (const unsigned char *)buf, n) : snd_frame(b0, buf, n);
}

/* 1 when data was sent (written or corked), 0 when fallback must decide, -1 on an error. */
static int
snd_fast(Sender *self, PyObject *ws, PyObject *data)
{
    const Py_ssize_t *off, *poff;
    PyObject *conn, *proto, *corked, *transport, *cork = NULL, *pending = NULL, *frame;
    PyObject *encoded = NULL;
    Py_buffer view;
    PyTypeObject *kind = Py_TYPE(data);
    unsigned char b0;
    int depth = 0, result, masked = 0;

    off = slots_of(&self->ws, ws, self->ws_names, 2);
    if (off == NULL) {
        return 0;
    }
    conn = SLOT(ws, off[SND_WS_CONN]);
    proto = SLOT(ws, off[SND_WS_PROTOCOL]);
    if (conn == NULL || proto == NULL || (PyObject *)Py_TYPE(conn) != self->conn_type) {
        return 0;
    }
    off = slots_of(&self->conn, conn, self->conn_names, 5);
    /* RFC 6455 §5.4: no message inside our own fragmented one. */
    if (off == NULL || SLOT(conn, off[SND_CONN_STATE]) != self->open_state
            || SLOT(conn, off[SND_CONN_SENDING_FRAGMENTS]) != Py_False
            || SLOT(conn, off[SND_CONN_EXTENSION]) != Py_None) {
        return 0;
    }
    /* §5.3: a client masks every frame, each with a fresh key (new_masked_frame). */
    if (SLOT(conn, off[SND_CONN_CLIENT]) == Py_True) {
        masked = 1;
    }
    else if (SLOT(conn, off[SND_CONN_CLIENT]) != Py_False) {
        return 0;
    }
    poff = snd_proto_slots(self, proto);
    if (poff == NULL) {
        return 0;
    }
    corked = SLOT(proto, poff[SND_PROTO_CORKED]);
    transport = SLOT(proto, poff[SND_PROTO_TRANSPORT]);
    if (corked == NULL || transport == NULL || transport == Py_None
            || (corked != Py_None && !PyList_CheckExact(corked))) {
        return 0;
    }
    if (corked == Py_None) {
        const Py_ssize_t *coff;
        cork = SLOT(proto, poff[SND_PROTO_CORK]);
        if (cork == NULL) {
            return 0;
        }
        coff = slots_of(&self->cork, cork, self->cork_names, 2);
        if (coff == NULL || SLOT(cork, coff[SND_CORK_DEPTH]) == NULL) {
            return 0;
        }
        depth = PyObject_IsTrue(SLOT(cork, coff[SND_CORK_DEPTH]));
        if (depth < 0) {
            return -1;
        }
        if (depth) {
            pending = SLOT(cork, coff[SND_CORK_PENDING]);
            if (pending == NULL || !PyList_CheckExact(pending)) {
                return 0;
            }
        }
    }
    if (kind == &PyUnicode_Type) {
        b0 = 0x81;  /* FIN, TEXT */
        if (PyUnicode_IS_COMPACT_ASCII(data)) {
            frame = snd_build(masked, b0, (const char *)PyUnicode_DATA(data),
                              PyUnicode_GET_LENGTH(data));
        }
        else {
            /* str.encode(), as send_text: no UTF-8 copy left cached on the str. Lone
               surrogates raise in fallback, with the pure path's error. */
            encoded = PyUnicode_AsUTF8String(data);
            if (encoded == NULL) {
                PyErr_Clear();
                return 0;
            }
            frame = snd_build(masked, b0, PyBytes_AS_STRING(encoded),
                              PyBytes_GET_SIZE(encoded));
            Py_DECREF(encoded);
        }
    }
    else if (kind == &PyBytes_Type) {
        if (PyBytes_GET_SIZE(data) >= self->large_payload) {
            return 0;
        }
        frame = snd_build(masked, 0x82, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data));
    }
    else if (kind == &PyMemoryView_Type || kind == &PyByteArray_Type) {
        if (kind == &PyMemoryView_Type && PyMemoryView_GET_BUFFER(data)->itemsize != 1) {
            return 0;  /* len() counts items: the pure path measures it */
        }
        if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
            PyErr_Clear();  /* not contiguous, or released: fallback says what it does */
            return 0;
        }
        if (view.len >= self->large_payload) {
            PyBuffer_Release(&view);
            return 0;
        }
        frame = snd_build(masked, 0x82, (const char *)view.buf, view.len);
        PyBuffer_Release(&view);
    }
    else {
        return 0;
    }
    if (frame == NULL) {
        return -1;
    }
    /* The frame goes: counted as send_text / send_binary and write count it. */
    if (snd_add(conn, off[SND_CONN_MESSAGES_OUT], 1) < 0
            || snd_add(proto, poff[SND_PROTO_BYTES_OUT], PyBytes_GET_SIZE(frame)) < 0) {
        Py_DECREF(frame);
        return -1;
    }
    if (corked != Py_None) {
        result = PyList_Append(corked, frame) < 0 ? -1 : 1;
        Py_DECREF(frame);
        return result;
    }
    if (depth) {
        /* A listener of another connection's read writes here: corked until its end. */
        PyObject *fresh = PyList_New(1);
        if (fresh == NULL) {
            Py_DECREF(frame);
            return -1;
        }
        PyList_SET_ITEM(fresh, 0, frame);  /* steals frame */
        SLOT(proto, poff[SND_PROTO_CORKED]) = fresh;
        Py_DECREF(Py_None);
        return PyList_Append(pending, proto) < 0 ? -1 : 1;
    }
    result = direct_write(&self->direct, transport, SLOT(proto, poff[SND_PROTO_SEND_FD]), frame);
    Py_DECREF(frame);
    return result < 0 ? -1 : 1;
}

static PyObject *
sender_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Sender *self = (Sender *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);

    if (nargs == 2 && (kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0)) {
        int done = snd_fast(self, args[0], args[1]);
        if (done < 0) {
            return NULL;
        }
        if (done) {
            Py_RETURN_NONE;
        }
    }
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

static PyObject *
sender_get(PyObject *self, PyObject *obj, PyObject *type)
{
    (void)type;
    if (obj == NULL || obj == Py_None) {
        Py_INCREF(self);
        return self;
    }
    return PyMethod_New(self, obj);
}

static PyObject *
sender_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    Sender *self;
    PyObject *fallback, *open_state, *conn_type, *proto_write, *large;
    Py_ssize_t large_payload;
    int i;
    static const char *ws_names[] = {"_conn", "_protocol"};
    static const char *conn_names[] = {"state", "_sending_fragments", "_extension", "_client",
                                       "messages_out"};
    static const char *proto_names[] = {"_corked", "_cork", "bytes_out", "transport",
                                        "_send_fd"};
    static const char *cork_names[] = {"depth", "pending"};

    if (kwargs != NULL && PyDict_GET_SIZE(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "Sender() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "Sender", 5, 5, &fallback, &open_state, &conn_type,
                           &proto_write, &large)) {
        return NULL;
    }
    if (!PyCallable_Check(fallback) || !PyType_Check(conn_type) || !PyLong_Check(large)) {
        PyErr_SetString(PyExc_TypeError, "Sender(fallback, open_state, connection_type, "
                        "protocol_write, large_payload)");
        return NULL;
    }
    large_payload = PyLong_AsSsize_t(large);
    if (large_payload == -1 && PyErr_Occurred()) {
        return NULL;
    }
    self = (Sender *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = sender_vectorcall;
    self->large_payload = large_payload;
    Py_INCREF(fallback);
    self->fallback = fallback;
    Py_INCREF(open_state);
    self->open_state = open_state;
    Py_INCREF(conn_type);
    self->conn_type = conn_type;
    Py_INCREF(proto_write);
    self->proto_write = proto_write;
#define SND_NAMES(field, texts, n)                                              \
    for (i = 0; i < (n); i++) {                                                 \
        if ((self->field[i] = PyUnicode_InternFromString(texts[i])) == NULL) {  \
            Py_DECREF(self);                                                    \
            return NULL;                                                        \
        }                                                                       \
    }
    SND_NAMES(ws_names, ws_names, 2)
    SND_NAMES(conn_names, conn_names, 5)
    SND_NAMES(proto_names, proto_names, 5)
    SND_NAMES(cork_names, cork_names, 2)
#undef SND_NAMES
    if ((self->write_name = PyUnicode_InternFromString("write")) == NULL
            || direct_names_init(&self->direct) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
sender_traverse(Sender *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->dict);
    Py_VISIT(self->fallback);
    Py_VISIT(self->open_state);
    Py_VISIT(self->conn_type);
    Py_VISIT(self->proto_write);
    Py_VISIT(self->ws.type);
    Py_VISIT(self->conn.type);
    Py_VISIT(self->proto.type);
    Py_VISIT(self->cork.type);
    return 0;
}

static int
sender_clear(Sender *self)
{
    int i;

    Py_CLEAR(self->dict);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->open_state);
    Py_CLEAR(self->conn_type);
    Py_CLEAR(self->proto_write);
    Py_CLEAR(self->write_name);
    direct_names_clear(&self->direct);
    for (i = 0; i < 2; i++) {
        Py_CLEAR(self->ws_names[i]);
        Py_CLEAR(self->cork_names[i]);
    }
    for (i = 0; i < 5; i++) {
        Py_CLEAR(self->conn_names[i]);
        Py_CLEAR(self->proto_names[i]);
    }
    Py_CLEAR(self->ws.type);
    Py_CLEAR(self->conn.type);
    Py_CLEAR(self->proto.type);
    Py_CLEAR(self->cork.type);
    return 0;
}

static void
sender_dealloc(Sender *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    sender_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMemberDef sender_members[] = {
    {"__dictoffset__", SND_T_PYSSIZET, offsetof(Sender, dict), FAN_READONLY, NULL},
    {"__vectorcalloffset__", SND_T_PYSSIZET, offsetof(Sender, vectorcall), FAN_READONLY,
     NULL},
    {"fallback", FAN_T_OBJECT_EX, offsetof(Sender, fallback), FAN_READONLY,
     "The pure WebSocket.send, which takes every case but the common one."},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef sender_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyObject *
sender_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return PyVectorcall_Call(self, args, kwargs);
}

static PyType_Slot sender_type_slots[] = {
    {Py_tp_doc, (void *)
     "Sender(fallback, open_state, connection_type, protocol_write, large_payload)\n"
     "\n"
     "WebSocket.send with its common case in C (a connection OPEN, no extension, masked\n"
     "for a client,\n"
     "str, or bytes / bytearray / contiguous memoryview below large_payload, no keyword);\n"
     "every other call goes\n"
     "to fallback, the pure WebSocket.send."},
    {Py_tp_new, (void *)sender_new},
    {Py_tp_dealloc, (void *)sender_dealloc},
    {Py_tp_traverse, (void *)sender_traverse},
    {Py_tp_clear, (void *)sender_clear},
    {Py_tp_descr_get, (void *)sender_get},
    {Py_tp_call, (void *)sender_call},
    {Py_tp_members, (void *)sender_members},
    {Py_tp_getset, (void *)sender_getset},
    {0, NULL},
};

static PyType_Spec sender_spec = {
    "wskit._speedups.Sender",
    sizeof(Sender),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
        | Py_TPFLAGS_METHOD_DESCRIPTOR,
    sender_type_slots,
};

/* Reader(fallback, open_state, connection_type, parser_type) is what
   WebSocketProtocol.data_received is when the extension is built: a method descriptor
   whose common case -- an OPEN connection without an extension, nothing buffered, held,
   fragmented or corked, a read of whole messages (parse_messages) -- does what the pure
   data_received, Connection.receive_messages and Dispatcher.receive_messages do, without a
   Python frame of its own: bytes_in and messages_in, the cork list and the thread's cork
   around the listeners, each plain listener called as fn(ws, message) (on_buffer's with a
   memoryview released after the call), one write of what they sent, and _end_read once a
   listener closed the connection. The fields are read as slots at their offsets
   (WebSocketProtocol.conn, _corked, _cork, receiver, transport, bytes_in; Connection.state,
   _held, _backlog, _msg_opcode, _extension, parser, max_batch_messages, max_batch_bytes,
   messages_in; FrameParser.buffered, error, lent, expect_mask, max_size, batch;
   Dispatcher._text, _binary; _Listener.fn, is_async, zero_copy; _Cork.depth, pending).

   Any other read goes to fallback, the pure data_received, before anything changed. A
   message whose listener is missing (the inbox) or a coroutine function, and every message
   after it, go to receiver.receive_messages (the pure delivery); so do all the messages of
   a receiver that is not a Dispatcher (whose receive_messages is not the one registered by
   dispatch.py as Reader.dispatch). A plain listener that raises an Exception ends the
   delivery and goes to receiver.listener_failed, as in Dispatcher.receive_messages. */

enum { RD_P_CONN, RD_P_CORKED, RD_P_CORK, RD_P_RECEIVER, RD_P_TRANSPORT, RD_P_BYTES_IN,
       RD_P_SEND_FD };
enum { RD_C_STATE, RD_C_HELD, RD_C_BACKLOG, RD_C_MSG_OPCODE, RD_C_EXTENSION, RD_C_PARSER,
       RD_C_MAX_BATCH_MESSAGES, RD_C_MAX_BATCH_BYTES, RD_C_MESSAGES_IN };
enum { RD_F_BUFFERED, RD_F_ERROR, RD_F_LENT, RD_F_EXPECT_MASK, RD_F_MAX_SIZE, RD_F_BATCH };
enum { RD_R_TEXT, RD_R_BINARY };
enum { RD_L_FN, RD_L_IS_ASYNC, RD_L_ZERO_COPY };

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *dict;
    PyObject *fallback;     /* the pure data_received */
    PyObject *open_state;
    PyObject *conn_type;    /* Connection */
    PyObject *parser_type;  /* FrameParser */
    PyObject *dispatch;     /* Dispatcher.receive_messages, once dispatch.py registered it */
    PyObject *n_receive_messages, *n_listener_failed, *n_flush, *n_write, *n_write_out;
    PyObject *n_end_read, *release;  /* memoryview.release, looked up once */
    direct_names direct;    /* for direct_write */
    PyObject *proto_names[7], *conn_names[9], *parser_names[6], *recv_names[2];
    PyObject *listener_names[3], *cork_names[2];
    slot_offsets proto, conn, parser, recv, listener, cork;
    PyTypeObject *recv_checked;  /* the receiver type recv_dispatcher was found for */
    int recv_dispatcher;         /* whether its receive_messages is dispatch */
} Reader;

/* Whether an int slot holds 0 (a non-int is not). */
static inline int
rd_is_zero(PyObject *value)
{
    return value != NULL && PyLong_CheckExact(value) && PyLong_AsLong(value) == 0;
}

/* The exception being raised, normalised, with its traceback; cleared. */
static PyObject *
rd_take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

/* Raise exc again (taken by rd_take_exception), with its traceback; steals exc. */
static void
rd_restore(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyObject *type = (PyObject *)Py_TYPE(exc);
    Py_INCREF(type);
    PyErr_Restore(type, exc, PyException_GetTraceback(exc));
#endif
}

/* Whether receiver's type is a Dispatcher whose slots are known; resolved per type. */
static const Py_ssize_t *
rd_recv_slots(Reader *self, PyObject *receiver)
{
    PyTypeObject *type = Py_TYPE(receiver);

    if (type != self->recv_checked) {
        PyObject *method;
        self->recv_dispatcher = 0;
        Py_INCREF(type);
        Py_XSETREF(self->recv_checked, type);
        if (self->dispatch != NULL) {
            method = PyObject_GetAttr((PyObject *)type, self->n_receive_messages);
            if (method == NULL) {
                PyErr_Clear();
            }
            else {
                self->recv_dispatcher = method == self->dispatch;
                Py_DECREF(method);
            }
        }
    }
    if (!self->recv_dispatcher) {
        return NULL;
    }
    return slots_of(&self->recv, receiver, self->recv_names, 2);
}

/* messages[start:] to receiver.receive_messages; 0, or -1 with an exception. */
static int
rd_hand_over(Reader *self, PyObject *receiver, PyObject *messages, Py_ssize_t start)
{
    PyObject *rest, *result;

    if (start == 0) {
        Py_INCREF(messages);
        rest = messages;
    }
    else {
        rest = PyList_GetSlice(messages, start, PyList_GET_SIZE(messages));
        if (rest == NULL) {
            return -1;
        }
    }
    result = PyObject_CallMethodOneArg(receiver, self->n_receive_messages, rest);
    Py_DECREF(rest);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* Dispatcher.receive_messages for the plain listeners: 0, or -1 with an exception (a
   BaseException that is not an Exception, or an error of the delivery itself). */
static int
rd_deliver(Reader *self, PyObject *receiver, PyObject *messages)
{
    const Py_ssize_t *roff = rd_recv_slots(self, receiver);
    Py_ssize_t i, n = PyList_GET_SIZE(messages);

    if (roff == NULL) {
        return rd_hand_over(self, receiver, messages, 0);
    }
    for (i = 0; i < n; i++) {
        PyObject *data = PyList_GET_ITEM(messages, i), *listener, *fn, *result, *args[2];
        const Py_ssize_t *loff;
        int text = PyUnicode_CheckExact(data), zero_copy;

        /* (Read for each message: a listener may set another.) */
        listener = SLOT(receiver, roff[text ? RD_R_TEXT : RD_R_BINARY]);
        if (listener == NULL || listener == Py_None) {
            return rd_hand_over(self, receiver, messages, i);  /* the inbox */
        }
        loff = slots_of(&self->listener, listener, self->listener_names, 3);
        if (loff == NULL || SLOT(listener, loff[RD_L_IS_ASYNC]) != Py_False
                || (fn = SLOT(listener, loff[RD_L_FN])) == NULL) {
            return rd_hand_over(self, receiver, messages, i);  /* queued coroutine calls */
        }
        zero_copy = !text && SLOT(listener, loff[RD_L_ZERO_COPY]) == Py_True;
        Py_INCREF(fn);
        Py_INCREF(data);
        args[0] = receiver;
        if (zero_copy) {
            /* on_buffer: a view valid during the call (_call_with_view). */
            PyObject *view = PyMemoryView_FromObject(data);
            if (view == NULL) {
                Py_DECREF(fn);
                Py_DECREF(data);
                return -1;
            }
            args[1] = view;
            result = PyObject_Vectorcall(fn, args, 2, NULL);
            {
                PyObject *exc = result == NULL ? rd_take_exception() : NULL;
                PyObject *released = PyObject_Vectorcall(self->release, &view, 1, NULL);
                if (released == NULL) {
                    /* BufferError: the listener exported the buffer further, its own
                       responsibility. */
                    if (PyErr_ExceptionMatches(PyExc_BufferError)) {
                        PyErr_Clear();
                    }
                    else if (exc != NULL) {
                        PyErr_Clear();  /* the listener's error goes on */
                    }
                    else {
                        Py_DECREF(view);
                        Py_DECREF(result);
                        Py_DECREF(fn);
                        Py_DECREF(data);
                        return -1;
                    }
                }
                else {
                    Py_DECREF(released);
                }
                if (exc != NULL) {
                    rd_restore(exc);
                }
            }
            Py_DECREF(view);
        }
        else {
            args[1] = data;
            result = PyObject_Vectorcall(fn, args, 2, NULL);
        }
        Py_DECREF(fn);
        Py_DECREF(data);
        if (result == NULL) {
            PyObject *exc, *done;
            if (!PyErr_ExceptionMatches(PyExc_Exception)) {
                return -1;
            }
            exc = rd_take_exception();
            done = PyObject_CallMethodOneArg(receiver, self->n_listener_failed, exc);
            Py_DECREF(exc);
            if (done == NULL) {
                return -1;
            }
            Py_DECREF(done);
            return 0;  /* the rest of the read is not delivered */
        }
        Py_DECREF(result);
    }
    return 0;
}

/* 1 when the read was handled here, 0 when fallback must take it, -1 on an error. */
static int
rd_fast(Reader *self, PyObject *proto, PyObject *data)
{
    const Py_ssize_t *poff, *coff, *foff, *kof;
    PyObject *conn, *parser, *receiver, *cork, *messages, *corked, *transport, *result;
    PyObject *pargs[5];
    long long limit_a, limit_b;
    int status, failed = 0;

    if (!PyBytes_CheckExact(data)) {
        return 0;
    }
    poff = slots_of(&self->proto, proto, self->proto_names, 7);
    if (poff == NULL) {
        return 0;
    }
    conn = SLOT(proto, poff[RD_P_CONN]);
    receiver = SLOT(proto, poff[RD_P_RECEIVER]);
    cork = SLOT(proto, poff[RD_P_CORK]);
    if (conn == NULL || receiver == NULL || receiver == Py_None || cork == NULL
            || SLOT(proto, poff[RD_P_CORKED]) != Py_None
            || SLOT(proto, poff[RD_P_BYTES_IN]) == NULL
            || (PyObject *)Py_TYPE(conn) != self->conn_type) {
        return 0;
    }
    coff = slots_of(&self->conn, conn, self->conn_names, 9);
    if (coff == NULL || SLOT(conn, coff[RD_C_STATE]) != self->open_state
            || SLOT(conn, coff[RD_C_HELD]) != Py_None
            || SLOT(conn, coff[RD_C_BACKLOG]) != Py_None
            || !rd_is_zero(SLOT(conn, coff[RD_C_MSG_OPCODE]))
            || SLOT(conn, coff[RD_C_EXTENSION]) != Py_None
            || SLOT(conn, coff[RD_C_MESSAGES_IN]) == NULL
            || SLOT(conn, coff[RD_C_MAX_BATCH_MESSAGES]) == NULL
            || SLOT(conn, coff[RD_C_MAX_BATCH_BYTES]) == NULL) {
        return 0;
    }
    parser = SLOT(conn, coff[RD_C_PARSER]);
    if (parser == NULL || (PyObject *)Py_TYPE(parser) != self->parser_type) {
        return 0;
    }
    foff = slots_of(&self->parser, parser, self->parser_names, 6);
    if (foff == NULL || !rd_is_zero(SLOT(parser, foff[RD_F_BUFFERED]))
            || SLOT(parser, foff[RD_F_ERROR]) != Py_None
            || SLOT(parser, foff[RD_F_LENT]) != Py_None
            || SLOT(parser, foff[RD_F_EXPECT_MASK]) == NULL
            || SLOT(parser, foff[RD_F_MAX_SIZE]) == NULL
            || SLOT(parser, foff[RD_F_BATCH]) == NULL) {
        return 0;
    }
    kof = slots_of(&self->cork, cork, self->cork_names, 2);
    if (kof == NULL || SLOT(cork, kof[SND_CORK_DEPTH]) == NULL) {
        return 0;
    }
    /* Connection.receive_messages: within one feed's frames and the batch budget. */
    if (as_limit(SLOT(conn, coff[RD_C_MAX_BATCH_MESSAGES]), &limit_a) < 0
            || as_limit(SLOT(parser, foff[RD_F_BATCH]), &limit_b) < 0) {
        return -1;
    }
    pargs[0] = data;
    pargs[1] = SLOT(parser, foff[RD_F_EXPECT_MASK]);
    pargs[2] = SLOT(parser, foff[RD_F_MAX_SIZE]);
    pargs[3] = limit_a < limit_b ? SLOT(conn, coff[RD_C_MAX_BATCH_MESSAGES])
                                 : SLOT(parser, foff[RD_F_BATCH]);
    pargs[4] = SLOT(conn, coff[RD_C_MAX_BATCH_BYTES]);
    messages = parse_messages(NULL, pargs, 5);
    if (messages == NULL) {
        return -1;
    }
    if (messages == Py_None) {
        Py_DECREF(messages);
        return 0;
    }
    /* From here the read is ours. */
    if (snd_add(proto, poff[RD_P_BYTES_IN], PyBytes_GET_SIZE(data)) < 0
            || snd_add(conn, coff[RD_C_MESSAGES_IN], PyList_GET_SIZE(messages)) < 0) {
        Py_DECREF(messages);
        return -1;
    }
    corked = PyList_New(0);
    if (corked == NULL) {
        Py_DECREF(messages);
        return -1;
    }
    Py_INCREF(corked);
    SLOT(proto, poff[RD_P_CORKED]) = corked;
    Py_DECREF(Py_None);
    Py_INCREF(cork);
    Py_INCREF(receiver);
    Py_INCREF(conn);
    if (snd_add(cork, kof[SND_CORK_DEPTH], 1) < 0) {
        PyObject *old = SLOT(proto, poff[RD_P_CORKED]);
        Py_INCREF(Py_None);
        SLOT(proto, poff[RD_P_CORKED]) = Py_None;
        Py_XDECREF(old);
        status = -1;
    }
    else {
        status = rd_deliver(self, receiver, messages);
        /* finally: uncorked, the outermost read flushes the other connections. */
        {
            PyObject *exc = status < 0 ? rd_take_exception() : NULL;
            PyObject *old = SLOT(proto, poff[RD_P_CORKED]);
            Py_INCREF(Py_None);
            SLOT(proto, poff[RD_P_CORKED]) = Py_None;
            Py_XDECREF(old);
            if (snd_add(cork, kof[SND_CORK_DEPTH], -1) < 0) {
                failed = 1;
            }
            else if (rd_is_zero(SLOT(cork, kof[SND_CORK_DEPTH]))) {
                PyObject *pending = SLOT(cork, kof[SND_CORK_PENDING]);
                int any = pending != NULL && PyList_Check(pending)
                          ? PyList_GET_SIZE(pending) > 0
                          : (pending != NULL ? PyObject_IsTrue(pending) : 0);
                if (any < 0) {
                    failed = 1;
                }
                else if (any) {
                    result = PyObject_CallMethodNoArgs(cork, self->n_flush);
                    if (result == NULL) {
                        failed = 1;
                    }
                    Py_XDECREF(result);
                }
            }
            if (exc != NULL) {
                if (failed) {
                    Py_DECREF(exc);  /* the error of the finally block goes on */
                }
                else {
                    rd_restore(exc);
                }
            }
            else if (failed) {
                status = -1;
            }
        }
    }
    Py_DECREF(messages);
    Py_DECREF(receiver);
    Py_DECREF(cork);
    if (status == 0 && PyList_GET_SIZE(corked)) {
        /* What the listeners sent: one write (_write_out's common case inline). */
        transport = SLOT(proto, poff[RD_P_TRANSPORT]);
        if (PyList_GET_SIZE(corked) == 1 && transport != NULL && transport != Py_None) {
            if (direct_write(&self->direct, transport, SLOT(proto, poff[RD_P_SEND_FD]),
                             PyList_GET_ITEM(corked, 0)) < 0) {
                status = -1;
            }
        }
        else {
            result = PyObject_CallMethodOneArg(proto, self->n_write_out, corked);
            if (result == NULL) {
                status = -1;
            }
            Py_XDECREF(result);
        }
    }
    Py_DECREF(corked);
    if (status == 0 && SLOT(conn, coff[RD_C_STATE]) != self->open_state) {
        /* A listener closed or failed the connection: what _handle does after them. */
        result = PyObject_CallMethodOneArg(proto, self->n_end_read, conn);
        if (result == NULL) {
            status = -1;
        }
        Py_XDECREF(result);
    }
    Py_DECREF(conn);
    return status < 0 ? -1 : 1;
}

static PyObject *
reader_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Reader *self = (Reader *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);

    if (nargs == 2 && (kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0)) {
        int done = rd_fast(self, args[0], args[1]);
        if (done < 0) {
            return NULL;
        }
        if (done) {
            Py_RETURN_NONE;
        }
    }
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

static PyObject *
reader_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    Reader *self;
    PyObject *fallback, *open_state, *conn_type, *parser_type;
    int i;
    static const char *proto_names[] = {"conn", "_corked", "_cork", "receiver", "transport",
                                        "bytes_in", "_send_fd"};
    static const char *conn_names[] = {"state", "_held", "_backlog", "_msg_opcode",
                                       "_extension", "parser", "max_batch_messages",
                                       "max_batch_bytes", "messages_in"};
    static const char *parser_names[] = {"buffered", "error", "lent", "expect_mask",
                                         "max_size", "batch"};
    static const char *recv_names[] = {"_text", "_binary"};
    static const char *listener_names[] = {"fn", "is_async", "zero_copy"};
    static const char *cork_names[] = {"depth", "pending"};

    if (kwargs != NULL && PyDict_GET_SIZE(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "Reader() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "Reader", 4, 4, &fallback, &open_state, &conn_type,
                           &parser_type)) {
        return NULL;
    }
    if (!PyCallable_Check(fallback) || !PyType_Check(conn_type) || !PyType_Check(parser_type)) {
        PyErr_SetString(PyExc_TypeError,
                        "Reader(fallback, open_state, connection_type, parser_type)");
        return NULL;
    }
    self = (Reader *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = reader_vectorcall;
    Py_INCREF(fallback);
    self->fallback = fallback;
    Py_INCREF(open_state);
    self->open_state = open_state;
    Py_INCREF(conn_type);
    self->conn_type = conn_type;
    Py_INCREF(parser_type);
    self->parser_type = parser_type;
#define RD_NAME(field, text)                                                    \
    if ((self->field = PyUnicode_InternFromString(text)) == NULL) {             \
        Py_DECREF(self);                                                        \
        return NULL;                                                            \
    }
#define RD_NAMES(field, texts, n)                                               \
    for (i = 0; i < (n); i++) {                                                 \
        RD_NAME(field[i], texts[i])                                             \
    }
    RD_NAMES(proto_names, proto_names, 7)
    RD_NAMES(conn_names, conn_names, 9)
    RD_NAMES(parser_names, parser_names, 6)
    RD_NAMES(recv_names, recv_names, 2)
    RD_NAMES(listener_names, listener_names, 3)
    RD_NAMES(cork_names, cork_names, 2)
    RD_NAME(n_receive_messages, "receive_messages")
    RD_NAME(n_listener_failed, "listener_failed")
    RD_NAME(n_flush, "flush")
    RD_NAME(n_write, "write")
    RD_NAME(n_write_out, "_write_out")
    RD_NAME(n_end_read, "_end_read")
    if (direct_names_init(&self->direct) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    if ((self->release = PyObject_GetAttrString((PyObject *)&PyMemoryView_Type,
                                                "release")) == NULL) {
        Py_DECREF(self);
        return NULL;
    }
#undef RD_NAMES
#undef RD_NAME
    return (PyObject *)self;
}

static int
reader_traverse(Reader *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->dict);
    Py_VISIT(self->fallback);
    Py_VISIT(self->open_state);
    Py_VISIT(self->conn_type);
    Py_VISIT(self->parser_type);
    Py_VISIT(self->dispatch);
    Py_VISIT(self->recv_checked);
    Py_VISIT(self->proto.type);
    Py_VISIT(self->conn.type);
    Py_VISIT(self->parser.type);
    Py_VISIT(self->recv.type);
    Py_VISIT(self->listener.type);
    Py_VISIT(self->cork.type);
    return 0;
}

static int
reader_clear(Reader *self)
{
    int i;

    Py_CLEAR(self->dict);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->open_state);
    Py_CLEAR(self->conn_type);
    Py_CLEAR(self->parser_type);
    Py_CLEAR(self->dispatch);
    Py_CLEAR(self->n_receive_messages);
    Py_CLEAR(self->n_listener_failed);
    Py_CLEAR(self->n_flush);
    Py_CLEAR(self->n_write);
    Py_CLEAR(self->n_write_out);
    Py_CLEAR(self->n_end_read);
    Py_CLEAR(self->release);
    direct_names_clear(&self->direct);
    for (i = 0; i < 6; i++) {
        Py_CLEAR(self->proto_names[i]);
        Py_CLEAR(self->parser_names[i]);
    }
    Py_CLEAR(self->proto_names[6]);
    for (i = 0; i < 9; i++) {
        Py_CLEAR(self->conn_names[i]);
    }
    for (i = 0; i < 2; i++) {
        Py_CLEAR(self->recv_names[i]);
        Py_CLEAR(self->cork_names[i]);
    }
    for (i = 0; i < 3; i++) {
        Py_CLEAR(self->listener_names[i]);
    }
    Py_CLEAR(self->recv_checked);
    Py_CLEAR(self->proto.type);
    Py_CLEAR(self->conn.type);
    Py_CLEAR(self->parser.type);
    Py_CLEAR(self->recv.type);
    Py_CLEAR(self->listener.type);
    Py_CLEAR(self->cork.type);
    return 0;
}

static void
reader_dealloc(Reader *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    reader_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
reader_get_dispatch(Reader *self, void *closure)
{
    (void)closure;
    if (self->dispatch == NULL) {
        Py_RETURN_NONE;
    }
    Py_INCREF(self->dispatch);
    return self->dispatch;
}

static int
reader_set_dispatch(Reader *self, PyObject *value, void *closure)
{
    (void)closure;
    if (value == Py_None) {
        value = NULL;
    }
    Py_XINCREF(value);
    Py_XSETREF(self->dispatch, value);
    /* Receiver types are looked at again. */
    Py_CLEAR(self->recv_checked);
    return 0;
}

static PyGetSetDef reader_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {"dispatch", (getter)reader_get_dispatch, (setter)reader_set_dispatch,
     "Dispatcher.receive_messages: the receivers whose plain listeners are called here.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef reader_members[] = {
    {"__dictoffset__", SND_T_PYSSIZET, offsetof(Reader, dict), FAN_READONLY, NULL},
    {"__vectorcalloffset__", SND_T_PYSSIZET, offsetof(Reader, vectorcall), FAN_READONLY,
     NULL},
    {"fallback", FAN_T_OBJECT_EX, offsetof(Reader, fallback), FAN_READONLY,
     "The pure data_received, which takes every read but the common one."},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot reader_type_slots[] = {
    {Py_tp_doc, (void *)
     "Reader(fallback, open_state, connection_type, parser_type)\n"
     "\n"
     "WebSocketProtocol.data_received with its common case in C (a read of whole messages\n"
     "on an OPEN connection without an extension, delivered to plain listeners); every\n"
     "other read goes to fallback, the pure data_received."},
    {Py_tp_new, (void *)reader_new},
    {Py_tp_dealloc, (void *)reader_dealloc},
    {Py_tp_traverse, (void *)reader_traverse},
    {Py_tp_clear, (void *)reader_clear},
    {Py_tp_descr_get, (void *)sender_get},
    {Py_tp_call, (void *)sender_call},
    {Py_tp_members, (void *)reader_members},
    {Py_tp_getset, (void *)reader_getset},
    {0, NULL},
};

static PyType_Spec reader_spec = {
    "wskit._speedups.Reader",
    sizeof(Reader),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
        | Py_TPFLAGS_METHOD_DESCRIPTOR,
    reader_type_slots,
};

/* BufferUpdated(fallback, reader) is what WebSocketProtocol.buffer_updated is when the
   extension is built (asyncio reads into the thread's shared buffer, then calls it): when the
   read went to that buffer (not _into_frame, a large frame's own room), its bytes are copied
   out (the buffer is shared, the parser keeps slices of its input) and handed to the Reader's
   common case directly, or to data_received otherwise, as the pure buffer_updated does. A
   protocol type whose data_received is not reader, or whose fields are not slots, goes to
   fallback, the pure buffer_updated. */

enum { BU_INTO_FRAME, BU_READ_VIEW };

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *dict;
    PyObject *fallback;  /* the pure buffer_updated */
    PyObject *reader;    /* the Reader that is data_received */
    PyObject *n_data_received;
    PyObject *names[2];
    slot_offsets proto;
} BufferUpdated;

static const Py_ssize_t *
bu_slots(BufferUpdated *self, PyObject *proto)
{
    if (Py_TYPE(proto) != self->proto.type) {
        PyObject *method;
        resolve_slots(&self->proto, Py_TYPE(proto), self->names, 2);
        method = PyObject_GetAttr((PyObject *)Py_TYPE(proto), self->n_data_received);
        if (method == NULL) {
            PyErr_Clear();
            self->proto.usable = 0;
        }
        else {
            if (method != self->reader) {
                self->proto.usable = 0;
            }
            Py_DECREF(method);
        }
    }
    return self->proto.usable ? self->proto.offset : NULL;
}

static PyObject *
buffer_updated_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                          PyObject *kwnames)
{
    BufferUpdated *self = (BufferUpdated *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), nbytes;
    const Py_ssize_t *off;
    PyObject *proto, *view, *data, *result;
    Py_buffer buffer;
    int done;

    if (nargs != 2 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))
            || !PyLong_CheckExact(args[1])) {
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    proto = args[0];
    off = bu_slots(self, proto);
    if (off == NULL || SLOT(proto, off[BU_INTO_FRAME]) != Py_False) {
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    view = SLOT(proto, off[BU_READ_VIEW]);
    nbytes = PyLong_AsSsize_t(args[1]);
    if (nbytes == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    if (view == NULL || !PyMemoryView_Check(view)
            || PyMemoryView_GET_BUFFER(view)->itemsize != 1) {
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    if (PyObject_GetBuffer(view, &buffer, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();  /* released, or not contiguous: the pure method says what it does */
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    if (nbytes < 0 || nbytes > buffer.len) {
        PyBuffer_Release(&buffer);
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    /* view[:nbytes].tobytes(): copied out before anything else runs. */
    data = PyBytes_FromStringAndSize((const char *)buffer.buf, nbytes);
    PyBuffer_Release(&buffer);
    if (data == NULL) {
        return NULL;
    }
    done = rd_fast((Reader *)self->reader, proto, data);
    if (done < 0) {
        Py_DECREF(data);
        return NULL;
    }
    if (done) {
        Py_DECREF(data);
        Py_RETURN_NONE;
    }
    {
        PyObject *call[2] = {proto, data};
        result = PyObject_Vectorcall(((Reader *)self->reader)->fallback, call, 2, NULL);
    }
    Py_DECREF(data);
    return result;
}

static PyObject *
buffer_updated_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    BufferUpdated *self;
    PyObject *fallback, *reader;

    if (kwargs != NULL && PyDict_GET_SIZE(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "BufferUpdated() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "BufferUpdated", 2, 2, &fallback, &reader)) {
        return NULL;
    }
    if (!PyCallable_Check(fallback) || Py_TYPE(reader)->tp_basicsize != sizeof(Reader)
            || strcmp(Py_TYPE(reader)->tp_name, reader_spec.name) != 0) {
        PyErr_SetString(PyExc_TypeError, "BufferUpdated(fallback, reader: Reader)");
        return NULL;
    }
    self = (BufferUpdated *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = buffer_updated_vectorcall;
    Py_INCREF(fallback);
    self->fallback = fallback;
    Py_INCREF(reader);
    self->reader = reader;
    if ((self->n_data_received = PyUnicode_InternFromString("data_received")) == NULL
            || (self->names[BU_INTO_FRAME] = PyUnicode_InternFromString("_into_frame")) == NULL
            || (self->names[BU_READ_VIEW] = PyUnicode_InternFromString("_read_view")) == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
buffer_updated_traverse(BufferUpdated *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->dict);
    Py_VISIT(self->fallback);
    Py_VISIT(self->reader);
    Py_VISIT(self->proto.type);
    return 0;
}

static int
buffer_updated_clear(BufferUpdated *self)
{
    Py_CLEAR(self->dict);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->reader);
    Py_CLEAR(self->n_data_received);
    Py_CLEAR(self->names[0]);
    Py_CLEAR(self->names[1]);
    Py_CLEAR(self->proto.type);
    return 0;
}

static void
buffer_updated_dealloc(BufferUpdated *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    buffer_updated_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMemberDef buffer_updated_members[] = {
    {"__dictoffset__", SND_T_PYSSIZET, offsetof(BufferUpdated, dict), FAN_READONLY, NULL},
    {"__vectorcalloffset__", SND_T_PYSSIZET, offsetof(BufferUpdated, vectorcall),
     FAN_READONLY, NULL},
    {"fallback", FAN_T_OBJECT_EX, offsetof(BufferUpdated, fallback), FAN_READONLY,
     "The pure buffer_updated."},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot buffer_updated_type_slots[] = {
    {Py_tp_doc, (void *)
     "BufferUpdated(fallback, reader)\n"
     "\n"
     "WebSocketProtocol.buffer_updated in C for a read into the shared buffer: its bytes\n"
     "to the Reader's common case; everything else to fallback, the pure method."},
    {Py_tp_new, (void *)buffer_updated_new},
    {Py_tp_dealloc, (void *)buffer_updated_dealloc},
    {Py_tp_traverse, (void *)buffer_updated_traverse},
    {Py_tp_clear, (void *)buffer_updated_clear},
    {Py_tp_descr_get, (void *)sender_get},
    {Py_tp_call, (void *)sender_call},
    {Py_tp_members, (void *)buffer_updated_members},
    {Py_tp_getset, (void *)sender_getset},
    {0, NULL},
};

static PyType_Spec buffer_updated_spec = {
    "wskit._speedups.BufferUpdated",
    sizeof(BufferUpdated),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
        | Py_TPFLAGS_METHOD_DESCRIPTOR,
    buffer_updated_type_slots,
};

/* GetBuffer(fallback) is what WebSocketProtocol.get_buffer is when the extension is built
   (asyncio asks it for the room of each read): when no frame is arriving (not _into_frame, the
   parser holds nothing: conn.parser.buffered is 0) and the thread's shared buffer is there
   (_read_view), it is the answer, as in the pure get_buffer, without a Python frame. Anything
   else (a large frame's own room, the first read, fields that are not slots) goes to
   fallback, the pure get_buffer. */

enum { GB_INTO_FRAME, GB_READ_VIEW, GB_CONN };
enum { GB_C_PARSER };
enum { GB_F_BUFFERED };

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *dict;
    PyObject *fallback;  /* the pure get_buffer */
    PyObject *names[3], *conn_names[1], *parser_names[1];
    slot_offsets proto, conn, parser;
} GetBuffer;

static PyObject *
get_buffer_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                      PyObject *kwnames)
{
    GetBuffer *self = (GetBuffer *)callable;
    const Py_ssize_t *off;
    PyObject *proto, *conn, *parser, *view, *buffered;

    if (PyVectorcall_NARGS(nargsf) != 2 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    proto = args[0];
    off = slots_of(&self->proto, proto, self->names, 3);
    if (off == NULL || SLOT(proto, off[GB_INTO_FRAME]) != Py_False) {
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    view = SLOT(proto, off[GB_READ_VIEW]);
    conn = SLOT(proto, off[GB_CONN]);
    if (view == NULL || view == Py_None || conn == NULL) {
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    off = slots_of(&self->conn, conn, self->conn_names, 1);
    parser = off == NULL ? NULL : SLOT(conn, off[GB_C_PARSER]);
    if (parser == NULL) {
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    off = slots_of(&self->parser, parser, self->parser_names, 1);
    buffered = off == NULL ? NULL : SLOT(parser, off[GB_F_BUFFERED]);
    if (buffered == NULL || !rd_is_zero(buffered)) {
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    Py_INCREF(view);
    return view;
}

static PyObject *
get_buffer_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    GetBuffer *self;
    PyObject *fallback;

    if (kwargs != NULL && PyDict_GET_SIZE(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "GetBuffer() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "GetBuffer", 1, 1, &fallback)) {
        return NULL;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "GetBuffer(fallback)");
        return NULL;
    }
    self = (GetBuffer *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = get_buffer_vectorcall;
    Py_INCREF(fallback);
    self->fallback = fallback;
    if ((self->names[GB_INTO_FRAME] = PyUnicode_InternFromString("_into_frame")) == NULL
            || (self->names[GB_READ_VIEW] = PyUnicode_InternFromString("_read_view")) == NULL
            || (self->names[GB_CONN] = PyUnicode_InternFromString("conn")) == NULL
            || (self->conn_names[GB_C_PARSER] = PyUnicode_InternFromString("parser")) == NULL
            || (self->parser_names[GB_F_BUFFERED] = PyUnicode_InternFromString("buffered"))
                == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
get_buffer_traverse(GetBuffer *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->dict);
    Py_VISIT(self->fallback);
    Py_VISIT(self->proto.type);
    Py_VISIT(self->conn.type);
    Py_VISIT(self->parser.type);
    return 0;
}

static int
get_buffer_clear(GetBuffer *self)
{
    int i;

    Py_CLEAR(self->dict);
    Py_CLEAR(self->fallback);
    for (i = 0; i < 3; i++) {
        Py_CLEAR(self->names[i]);
    }
    Py_CLEAR(self->conn_names[0]);
    Py_CLEAR(self->parser_names[0]);
    Py_CLEAR(self->proto.type);
    Py_CLEAR(self->conn.type);
    Py_CLEAR(self->parser.type);
    return 0;
}

static void
get_buffer_dealloc(GetBuffer *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    get_buffer_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMemberDef get_buffer_members[] = {
    {"__dictoffset__", SND_T_PYSSIZET, offsetof(GetBuffer, dict), FAN_READONLY, NULL},
    {"__vectorcalloffset__", SND_T_PYSSIZET, offsetof(GetBuffer, vectorcall),
     FAN_READONLY, NULL},
    {"fallback", FAN_T_OBJECT_EX, offsetof(GetBuffer, fallback), FAN_READONLY,
     "The pure get_buffer."},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot get_buffer_type_slots[] = {
    {Py_tp_doc, (void *)
     "GetBuffer(fallback)\n"
     "\n"
     "WebSocketProtocol.get_buffer in C when no frame is arriving: the thread's shared\n"
     "buffer; everything else to fallback, the pure method."},
    {Py_tp_new, (void *)get_buffer_new},
    {Py_tp_dealloc, (void *)get_buffer_dealloc},
    {Py_tp_traverse, (void *)get_buffer_traverse},
    {Py_tp_clear, (void *)get_buffer_clear},
    {Py_tp_descr_get, (void *)sender_get},
    {Py_tp_call, (void *)sender_call},
    {Py_tp_members, (void *)get_buffer_members},
    {Py_tp_getset, (void *)sender_getset},
    {0, NULL},
};

static PyType_Spec get_buffer_spec = {
    "wskit._speedups.GetBuffer",
    sizeof(GetBuffer),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
        | Py_TPFLAGS_METHOD_DESCRIPTOR,
    get_buffer_type_slots,
};

/* Adds the types to the module (from speedups_exec). Not on a free-threaded build: their
   offset caches and the slots they read assume the GIL, and WebSocket.send, data_received and
   buffer_updated stay the pure methods there. */
static int
rt_exec(PyObject *module)
{
    PyObject *type;
    int rc;

#ifdef Py_GIL_DISABLED
    (void)module;
    return 0;
#endif
    type = PyType_FromModuleAndSpec(module, &sender_spec, NULL);

    if (type == NULL) {
        return -1;
    }
    rc = PyModule_AddObjectRef(module, "Sender", type);
    Py_DECREF(type);
    if (rc < 0) {
        return -1;
    }
    type = PyType_FromModuleAndSpec(module, &reader_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    rc = PyModule_AddObjectRef(module, "Reader", type);
    Py_DECREF(type);
    if (rc < 0) {
        return -1;
    }
    type = PyType_FromModuleAndSpec(module, &buffer_updated_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    rc = PyModule_AddObjectRef(module, "BufferUpdated", type);
    Py_DECREF(type);
    if (rc < 0) {
        return -1;
    }
    type = PyType_FromModuleAndSpec(module, &get_buffer_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    rc = PyModule_AddObjectRef(module, "GetBuffer", type);
    Py_DECREF(type);
    return rc;
}

/* ---- end of the per-message path (helper rt) ---- */

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL, apply_mask_doc},
    {"parse_frames", (PyCFunction)(void (*)(void))parse_frames, METH_FASTCALL, parse_frames_doc},
    {"build_frame", (PyCFunction)(void (*)(void))build_frame, METH_FASTCALL, build_frame_doc},
    {"parse_messages", (PyCFunction)(void (*)(void))parse_messages, METH_FASTCALL,
     parse_messages_doc},
    {"split_head", (PyCFunction)(void (*)(void))split_head, METH_FASTCALL, split_head_doc},
    {"fan_out", (PyCFunction)(void (*)(void))fan_out, METH_FASTCALL, fan_out_doc},
    {"flush_corked", (PyCFunction)(void (*)(void))flush_corked, METH_FASTCALL,
     flush_corked_doc},
    {"mask_key", (PyCFunction)mask_key, METH_NOARGS, mask_key_doc},
    {"build_masked_frame", (PyCFunction)(void (*)(void))build_masked_frame, METH_FASTCALL,
     build_masked_frame_doc},
    {NULL, NULL, 0, NULL},
};

static int
speedups_exec(PyObject *module)
{
    speedups_state *st = get_state(module);

    init_head_tables();
#ifdef WSKIT_HAVE_ATFORK
    (void)pthread_once(&mask_pool_atfork_once, register_mask_pool_atfork);
#endif
#define INTERN(field, text)                                 \
    do {                                                    \
        st->field = PyUnicode_InternFromString(text);       \
        if (st->field == NULL) {                            \
            return -1;                                      \
        }                                                   \
    } while (0)
    INTERN(expect_mask, "expect_mask");
    INTERN(allowed_rsv, "allowed_rsv");
    INTERN(max_size, "max_size");
    INTERN(msg_left, "msg_left");
    INTERN(msg_rsv1, "msg_rsv1");
    INTERN(need, "need");
    INTERN(batch, "batch");
    INTERN(partial, "partial");
    INTERN(fan.conn, "_conn");
    INTERN(fan.protocol, "_protocol");
    INTERN(fan.state, "state");
    INTERN(fan.sending_fragments, "_sending_fragments");
    INTERN(fan.client, "_client");
    INTERN(fan.messages_out, "messages_out");
    INTERN(fan.bytes_out, "bytes_out");
    INTERN(fan.corked, "_corked");
    INTERN(fan.cork, "_cork");
    INTERN(fan.depth, "depth");
    INTERN(fan.pending, "pending");
    INTERN(fan.transport, "transport");
    INTERN(fan.write, "write");
    INTERN(fan.get_write_buffer_size, "get_write_buffer_size");
    INTERN(fan.is_closing, "is_closing");
#undef INTERN
    return rt_exec(module);
}

static int
speedups_clear(PyObject *module)
{
    speedups_state *st = get_state(module);

    if (st == NULL) {
        return 0;
    }
    Py_CLEAR(st->expect_mask);
    Py_CLEAR(st->allowed_rsv);
    Py_CLEAR(st->max_size);
    Py_CLEAR(st->msg_left);
    Py_CLEAR(st->msg_rsv1);
    Py_CLEAR(st->need);
    Py_CLEAR(st->partial);
    Py_CLEAR(st->batch);
    Py_CLEAR(st->fan.conn);
    Py_CLEAR(st->fan.protocol);
    Py_CLEAR(st->fan.state);
    Py_CLEAR(st->fan.sending_fragments);
    Py_CLEAR(st->fan.client);
    Py_CLEAR(st->fan.messages_out);
    Py_CLEAR(st->fan.bytes_out);
    Py_CLEAR(st->fan.corked);
    Py_CLEAR(st->fan.cork);
    Py_CLEAR(st->fan.depth);
    Py_CLEAR(st->fan.pending);
    Py_CLEAR(st->fan.transport);
    Py_CLEAR(st->fan.write);
    Py_CLEAR(st->fan.get_write_buffer_size);
    Py_CLEAR(st->fan.is_closing);
    return 0;
}

static void
speedups_free(void *module)
{
    speedups_clear((PyObject *)module);
}

/* The state is written once, at initialisation, so the module is safe in sub-interpreters
   and without the GIL. */
static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, (void *)speedups_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "wskit._speedups",
    "Optional C speed-ups for wskit's core: the same signatures and errors as the pure-Python code.",
    sizeof(speedups_state),
    speedups_methods,
    speedups_slots,
    NULL,
    speedups_clear,
    speedups_free,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
