/* Optional C speed-ups for wskit's core: the same signatures and errors as the pure-Python code. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

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

/* XOR n bytes of src into dst with the 4-byte key repeating from offset 0 (RFC 6455 §5.3).
   The 8-byte key lets each step cover two key periods; memcpy keeps loads and stores legal at
   any alignment and compiles to plain moves, and at -O3 gcc turns the loop into SIMD. */
static void
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

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL, apply_mask_doc},
    {NULL, NULL, 0, NULL},
};

/* The module keeps no state, so it is safe in sub-interpreters and without the GIL. */
static PyModuleDef_Slot speedups_slots[] = {
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
    0,
    speedups_methods,
    speedups_slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
