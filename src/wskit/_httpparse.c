/* wskit._httpparse: the C twin of wskit.core.http.parse_head_python, the server's one-step
   parse of a request head that arrived whole (issue 14).

   Only the common case: a complete head at the start of data, every line valid (RFC 9112
   §2-§5, RFC 9110 §5.5) and within the limits, a start line "GET|HEAD|POST SP target SP
   HTTP/1.1". Anything else is None, and the line-by-line RequestParser in http.py then
   gives the same request, or waits for more bytes, or raises the error with its exact
   status: every error comes from that one parser. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* RFC 9110 §5.6.2 tchar, §5.5 field-value characters (VCHAR, obs-text, SP, HTAB), and
   RFC 9112 §3.2 request-target characters (visible ASCII). */
static unsigned char tchar[256];
static unsigned char vchar[256];
static unsigned char target_char[256];

static PyObject *str_get, *str_head, *str_post;

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
    Py_ssize_t n, pos, end, sp1, sp2, j, count = 0, header_bytes = 0;
    int i;
    (void)module;

    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError,
                     "parse_head() takes exactly 4 positional arguments (%zd given)", nargs);
        return NULL;
    }
    for (i = 0; i < 3; i++) {
        limits[i] = PyNumber_AsSsize_t(args[i + 1], PyExc_OverflowError);
        if (limits[i] == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "data must be bytes-like, not str");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE) < 0) {
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
    pos = end + 2;
    for (;;) {
        Py_ssize_t colon, vstart, vend;
        PyObject *name, *value, *pair, *key, *values;
        char lower[256];
        char *lowered = lower;

        if (pos + 1 < n && p[pos] == '\r' && p[pos + 1] == '\n') {
            pos += 2; /* the empty line: the head is complete */
            break;
        }
        /* One header line: CRLF-terminated, no bare CR or LF, within the limits. */
        end = line_end(p, n, pos);
        if (end < 0) {
            goto none;
        }
        header_bytes += end - pos + 2;
        if (end - pos > limits[0] || header_bytes > limits[2] || count >= limits[1]) {
            goto none;
        }
        /* field-name ":" OWS field-value OWS (RFC 9112 §5), the name a token. */
        colon = pos;
        while (colon < end && tchar[p[colon]]) {
            colon++;
        }
        if (colon == pos || colon == end || p[colon] != ':') {
            goto none;
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
        if (pair == NULL || PyList_Append(fields, pair) < 0) {
            Py_XDECREF(pair);
            Py_DECREF(value);
            goto error;
        }
        Py_DECREF(pair);
        /* The index under the ASCII lower-case name (what str.lower gives for a token). */
        if (colon - pos > (Py_ssize_t)sizeof(lower)) {
            lowered = PyMem_Malloc((size_t)(colon - pos));
            if (lowered == NULL) {
                Py_DECREF(value);
                PyErr_NoMemory();
                goto error;
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
        if (key == NULL) {
            Py_DECREF(value);
            goto error;
        }
        values = PyDict_GetItemWithError(index, key);
        if (values != NULL) {
            if (PyList_Append(values, value) < 0) {
                Py_DECREF(key);
                Py_DECREF(value);
                goto error;
            }
        }
        else {
            if (PyErr_Occurred()) {
                Py_DECREF(key);
                Py_DECREF(value);
                goto error;
            }
            values = PyList_New(1);
            if (values == NULL) {
                Py_DECREF(key);
                Py_DECREF(value);
                goto error;
            }
            Py_INCREF(value);
            PyList_SET_ITEM(values, 0, value);
            if (PyDict_SetItem(index, key, values) < 0) {
                Py_DECREF(values);
                Py_DECREF(key);
                Py_DECREF(value);
                goto error;
            }
            Py_DECREF(values);
        }
        Py_DECREF(key);
        Py_DECREF(value);
        count++;
        pos = end + 2;
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

static PyMethodDef methods[] = {
    {"parse_head", (PyCFunction)(void (*)(void))parse_head, METH_FASTCALL, parse_head_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "wskit._httpparse",
    "The C twin of wskit.core.http.parse_head_python (the server's one-step head parse).",
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
    if (str_get == NULL || str_head == NULL || str_post == NULL) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
