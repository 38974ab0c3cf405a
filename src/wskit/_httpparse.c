/* wskit._httpparse: the C twins of wskit.core.http.parse_head_python and
   parse_response_head_python, the one-step parse of a head that arrived whole (issue 14):
   the server's request, the client's response.

   Only the common case: a complete head at the start of data, every line valid (RFC 9112
   §2-§5, RFC 9110 §5.5) and within the limits, a start line "GET|HEAD|POST SP target SP
   HTTP/1.1" or a status line as ResponseParser accepts it. Anything else is None, and the
   line-by-line RequestParser or ResponseParser in http.py then gives the same message, or
   waits for more bytes, or raises the error with its exact status: every error comes from
   those parsers. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* RFC 9110 §5.6.2 tchar, §5.5 field-value characters (VCHAR, obs-text, SP, HTAB), and
   RFC 9112 §3.2 request-target characters (visible ASCII). */
static unsigned char tchar[256];
static unsigned char vchar[256];
static unsigned char target_char[256];

static PyObject *str_get, *str_head, *str_post, *str_http11;

static int
isdigit_(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static void
init_tables(void)
{
    const char *punct = "!#$%&'*+-.^_`|~";
    int c;
    for (c = 0; c < 256; c++) {
        tchar[c] = (unsigned char)((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
                                   (c >= 'a' && c <= 'z') ||
                                   (c != 0 && strchr(punct, c) != NULL));
        vchar[c] = (unsigned char)(c == '\t' || (c >= 0x20 && c <= 0x7e) || c >= 0x80);
        target_char[c] = (unsigned char)(c >= 0x21 && c <= 0x7e);
    }
}

/* The field names of nearly every handshake, spelled as clients and servers send them: their
   name and lower-case key as shared strings (interned, so their hashes are computed once),
   not two new strings per field. Any other spelling is decoded as it comes. */
typedef struct {
    const char *spelling;
    Py_ssize_t len;
    PyObject *name;
    PyObject *key;
} KnownName;

static KnownName known_names[] = {
    {"Host", 4, NULL, NULL},
    {"Upgrade", 7, NULL, NULL},
    {"Connection", 10, NULL, NULL},
    {"Sec-WebSocket-Key", 17, NULL, NULL},
    {"Sec-WebSocket-Version", 21, NULL, NULL},
    {"Sec-WebSocket-Accept", 20, NULL, NULL},
    {"Sec-WebSocket-Extensions", 24, NULL, NULL},
    {"Sec-WebSocket-Protocol", 22, NULL, NULL},
    {"Origin", 6, NULL, NULL},
    {"User-Agent", 10, NULL, NULL},
    {"Content-Length", 14, NULL, NULL},
    {"Content-Type", 12, NULL, NULL},
    {"Server", 6, NULL, NULL},
    {"Date", 4, NULL, NULL},
};

#define N_KNOWN_NAMES (sizeof(known_names) / sizeof(known_names[0]))

static int
init_known_names(void)
{
    size_t i;
    Py_ssize_t j;
    char lower[64];

    for (i = 0; i < N_KNOWN_NAMES; i++) {
        KnownName *k = &known_names[i];
        for (j = 0; j < k->len; j++) {
            char c = k->spelling[j];
            lower[j] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
        }
        lower[k->len] = 0;
        k->name = PyUnicode_InternFromString(k->spelling);
        k->key = PyUnicode_InternFromString(lower);
        if (k->name == NULL || k->key == NULL) {
            return -1;
        }
    }
    return 0;
}

static const KnownName *
known_name(const unsigned char *p, Py_ssize_t len)
{
    size_t i;
    for (i = 0; i < N_KNOWN_NAMES; i++) {
        if (known_names[i].len == len && memcmp(known_names[i].spelling, p, (size_t)len) == 0) {
            return &known_names[i];
        }
    }
    return NULL;
}

/* The end of the line starting at pos (the index of its CR), or -1 when it has no CRLF in
   data, or holds a bare CR or LF. */
static Py_ssize_t
line_end(const unsigned char *p, Py_ssize_t n, Py_ssize_t pos)
{
    Py_ssize_t j;
    for (j = pos; j < n; j++) {
        if (p[j] == '\n') {
            return (j > pos && p[j - 1] == '\r') ? j - 1 : -1;
        }
        if (p[j] == '\r' && !(j + 1 < n && p[j + 1] == '\n')) {
            return -1;
        }
    }
    return -1;
}

/* The method of the start line as the shared string, or NULL for any other method. */
static PyObject *
known_method(const unsigned char *p, Py_ssize_t len)
{
    if (len == 3 && memcmp(p, "GET", 3) == 0) {
        return str_get;
    }
    if (len == 4 && memcmp(p, "HEAD", 4) == 0) {
        return str_head;
    }
    if (len == 4 && memcmp(p, "POST", 4) == 0) {
        return str_post;
    }
    return NULL;
}

/* The header fields of a head from pos (the line after the start line) to its empty line,
   appended to fields as (name, value) and to index under the lower-case name: the index of
   the byte after the empty line; -1 when a line is not a valid field within the limits (or
   the head does not end in data); -2 with an exception set. */
static Py_ssize_t
parse_fields(const unsigned char *p, Py_ssize_t n, Py_ssize_t pos, const Py_ssize_t *limits,
             PyObject *fields, PyObject *index)
{
    Py_ssize_t end, j, count = 0, header_bytes = 0;

    for (;;) {
        Py_ssize_t colon, vstart, vend;
        PyObject *name, *value, *pair, *key, *values;
        const KnownName *known;
        char lower[256];
        char *lowered = lower;

        if (pos + 1 < n && p[pos] == '\r' && p[pos + 1] == '\n') {
            pos += 2; /* the empty line: the head is complete */
            break;
        }
        /* One header line: CRLF-terminated, no bare CR or LF, within the limits. */
        end = line_end(p, n, pos);
        if (end < 0) {
            return -1;
        }
        header_bytes += end - pos + 2;
        if (end - pos > limits[0] || header_bytes > limits[2] || count >= limits[1]) {
            return -1;
        }
        /* field-name ":" OWS field-value OWS (RFC 9112 §5), the name a token. */
        colon = pos;
        while (colon < end && tchar[p[colon]]) {
            colon++;
        }
        if (colon == pos || colon == end || p[colon] != ':') {
            return -1;
        }
        vstart = colon + 1;
        vend = end;
        while (vstart < vend && (p[vstart] == ' ' || p[vstart] == '\t')) {
            vstart++;
        }
        while (vend > vstart && (p[vend - 1] == ' ' || p[vend - 1] == '\t')) {
            vend--;
        }
        for (j = vstart; j < vend; j++) {
            if (!vchar[p[j]]) {
                return -1;
            }
        }
        known = known_name(p + pos, colon - pos);
        if (known != NULL) {
            name = known->name;
            Py_INCREF(name);
        }
        else {
            name = PyUnicode_DecodeASCII((const char *)p + pos, colon - pos, NULL);
            if (name == NULL) {
                return -2;
            }
        }
        value = PyUnicode_DecodeLatin1((const char *)p + vstart, vend - vstart, NULL);
        if (value == NULL) {
            Py_DECREF(name);
            return -2;
        }
        pair = PyTuple_Pack(2, name, value);
        Py_DECREF(name);
        if (pair == NULL || PyList_Append(fields, pair) < 0) {
            Py_XDECREF(pair);
            Py_DECREF(value);
            return -2;
        }
        Py_DECREF(pair);
        /* The index under the ASCII lower-case name (what str.lower gives for a token). */
        if (known != NULL) {
            key = known->key;
            Py_INCREF(key);
        }
        else {
            if (colon - pos > (Py_ssize_t)sizeof(lower)) {
                lowered = PyMem_Malloc((size_t)(colon - pos));
                if (lowered == NULL) {
                    Py_DECREF(value);
                    PyErr_NoMemory();
                    return -2;
                }
            }
            for (j = pos; j < colon; j++) {
                unsigned char c = p[j];
                lowered[j - pos] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
            }
            key = PyUnicode_DecodeASCII(lowered, colon - pos, NULL);
            if (lowered != lower) {
                PyMem_Free(lowered);
            }
        }
        if (key == NULL) {
            Py_DECREF(value);
            return -2;
        }
        values = PyDict_GetItemWithError(index, key);
        if (values != NULL) {
            if (PyList_Append(values, value) < 0) {
                Py_DECREF(key);
                Py_DECREF(value);
                return -2;
            }
        }
        else {
            if (PyErr_Occurred()) {
                Py_DECREF(key);
                Py_DECREF(value);
                return -2;
            }
            values = PyList_New(1);
            if (values == NULL) {
                Py_DECREF(key);
                Py_DECREF(value);
                return -2;
            }
            Py_INCREF(value);
            PyList_SET_ITEM(values, 0, value);
            if (PyDict_SetItem(index, key, values) < 0) {
                Py_DECREF(values);
                Py_DECREF(key);
                Py_DECREF(value);
                return -2;
            }
            Py_DECREF(values);
        }
        Py_DECREF(key);
        Py_DECREF(value);
        count++;
        pos = end + 2;
    }
    return pos;
}

/* The arguments of both parsers, (data, max_line_length, max_headers, max_header_bytes):
   the limits and a view of data (released by the caller); -1 with an exception set. */
static int
head_arguments(const char *fname, PyObject *const *args, Py_ssize_t nargs, Py_ssize_t *limits,
               Py_buffer *buf)
{
    int i;

    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes exactly 4 positional arguments (%zd given)", fname, nargs);
        return -1;
    }
    for (i = 0; i < 3; i++) {
        limits[i] = PyNumber_AsSsize_t(args[i + 1], PyExc_OverflowError);
        if (limits[i] == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    if (PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "data must be bytes-like, not str");
        return -1;
    }
    return PyObject_GetBuffer(args[0], buf, PyBUF_SIMPLE);
}

PyDoc_STRVAR(parse_head_doc,
"parse_head(data, max_line_length, max_headers, max_header_bytes, /)\n--\n\n"
"(method, target, [(name, value), ...], {lower-case name: [values]}, end) of a complete,\n"
"valid request head at the start of data, within the limits; None for anything else.");

static PyObject *
parse_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer buf;
    Py_ssize_t limits[3];
    PyObject *result = NULL, *method, *target = NULL, *fields = NULL, *index = NULL;
    const unsigned char *p;
    Py_ssize_t n, pos, end, sp1, sp2, j;
    (void)module;

    if (head_arguments("parse_head", args, nargs, limits, &buf) < 0) {
        return NULL;
    }
    p = (const unsigned char *)buf.buf;
    n = buf.len;

    /* The start line: first in data, CRLF-terminated, within the line limit, exactly
       method SP request-target SP "HTTP/1.1" (RFC 9112 §3, RFC 6455 §4.1). */
    if (n == 0 || p[0] == '\r' || p[0] == '\n') {
        goto none;
    }
    end = line_end(p, n, 0);
    if (end < 0 || end > limits[0]) {
        goto none;
    }
    for (sp1 = 0; sp1 < end && p[sp1] != ' '; sp1++) {
    }
    for (sp2 = sp1 + 1; sp2 < end && p[sp2] != ' '; sp2++) {
    }
    if (sp2 >= end || end - sp2 - 1 != 8 || memcmp(p + sp2 + 1, "HTTP/1.1", 8) != 0) {
        goto none;
    }
    method = known_method(p, sp1);
    if (method == NULL || sp2 == sp1 + 1) {
        goto none;
    }
    for (j = sp1 + 1; j < sp2; j++) {
        if (!target_char[p[j]]) {
            goto none;
        }
    }
    target = PyUnicode_DecodeASCII((const char *)p + sp1 + 1, sp2 - sp1 - 1, NULL);
    fields = PyList_New(0);
    index = PyDict_New();
    if (target == NULL || fields == NULL || index == NULL) {
        goto error;
    }
    pos = parse_fields(p, n, end + 2, limits, fields, index);
    if (pos == -1) {
        goto none;
    }
    if (pos < 0) {
        goto error;
    }
    result = Py_BuildValue("(OOOOn)", method, target, fields, index, pos);
    goto error; /* (releases what the result now holds) */

none:
    Py_INCREF(Py_None);
    result = Py_None;
error:
    Py_XDECREF(target);
    Py_XDECREF(fields);
    Py_XDECREF(index);
    PyBuffer_Release(&buf);
    return result;
}

PyDoc_STRVAR(parse_response_head_doc,
"parse_response_head(data, max_line_length, max_headers, max_header_bytes, /)\n--\n\n"
"(version, status, reason, [(name, value), ...], {lower-case name: [values]}, end) of a\n"
"complete, valid response head at the start of data, within the limits; None for anything\n"
"else.");

static PyObject *
parse_response_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer buf;
    Py_ssize_t limits[3];
    PyObject *result = NULL, *version = NULL, *reason = NULL, *fields = NULL, *index = NULL;
    const unsigned char *p;
    Py_ssize_t n, pos, end, j;
    int status;
    (void)module;

    if (head_arguments("parse_response_head", args, nargs, limits, &buf) < 0) {
        return NULL;
    }
    p = (const unsigned char *)buf.buf;
    n = buf.len;

    /* The status line: first in data, CRLF-terminated, within the line limit, and what
       ResponseParser accepts (RFC 9112 §4): "HTTP/1." DIGIT SP status, status 100-599,
       then nothing or SP and a reason phrase of field-value characters. */
    if (n == 0 || p[0] == '\r' || p[0] == '\n') {
        goto none;
    }
    end = line_end(p, n, 0);
    if (end < 12 || end > limits[0] || memcmp(p, "HTTP/1.", 7) != 0 || !isdigit_(p[7]) ||
        p[8] != ' ' || p[9] < '1' || p[9] > '5' || !isdigit_(p[10]) || !isdigit_(p[11]) ||
        (end > 12 && p[12] != ' ')) {
        goto none;
    }
    for (j = 13; j < end; j++) {
        if (!vchar[p[j]]) {
            goto none;
        }
    }
    status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (p[7] == '1') {
        version = str_http11;
        Py_INCREF(version);
    }
    else {
        version = PyUnicode_DecodeASCII((const char *)p, 8, NULL);
    }
    reason = PyUnicode_DecodeLatin1((const char *)p + 13, end > 13 ? end - 13 : 0, NULL);
    fields = PyList_New(0);
    index = PyDict_New();
    if (version == NULL || reason == NULL || fields == NULL || index == NULL) {
        goto error;
    }
    pos = parse_fields(p, n, end + 2, limits, fields, index);
    if (pos == -1) {
        goto none;
    }
    if (pos < 0) {
        goto error;
    }
    result = Py_BuildValue("(OiOOOn)", version, status, reason, fields, index, pos);
    goto error; /* (releases what the result now holds) */

none:
    Py_INCREF(Py_None);
    result = Py_None;
error:
    Py_XDECREF(version);
    Py_XDECREF(reason);
    Py_XDECREF(fields);
    Py_XDECREF(index);
    PyBuffer_Release(&buf);
    return result;
}

static PyMethodDef methods[] = {
    {"parse_head", (PyCFunction)(void (*)(void))parse_head, METH_FASTCALL, parse_head_doc},
    {"parse_response_head", (PyCFunction)(void (*)(void))parse_response_head, METH_FASTCALL,
     parse_response_head_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "wskit._httpparse",
    "The C twins of wskit.core.http's one-step head parses (parse_head, parse_response_head).",
    -1,
    methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__httpparse(void)
{
    init_tables();
    str_get = PyUnicode_InternFromString("GET");
    str_head = PyUnicode_InternFromString("HEAD");
    str_post = PyUnicode_InternFromString("POST");
    str_http11 = PyUnicode_InternFromString("HTTP/1.1");
    if (str_get == NULL || str_head == NULL || str_post == NULL || str_http11 == NULL ||
        init_known_names() < 0) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
