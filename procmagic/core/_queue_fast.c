/* procmagic.core._queue_fast: the SysV queue's push and pop in C (see procmagic/core/queue_hot.py).
 *
 * A HotPath is built per queue handle. Its bound push and pop are what Queue.push/pop and
 * Process.push/pop hand out: calling one runs no Python frame in the common case (bytes, no to=,
 * a size within the limit). They call msgsnd/msgrcv on the queue's id with the GIL released,
 * retry EINTR after running the signal handlers (PEP 475: a handler that raises, such as
 * KeyboardInterrupt, ends the call with nothing sent or taken), and count each message in this
 * process's counter slot. Everything else goes to the Python functions the handle passes in:
 * other argument shapes and types, to=, sizes out of range, and every errno but EINTR (the
 * Python path redoes the call through sysv_ipc and raises exactly what it always raised).
 *
 * The counter slot: queue_hot hands over a writable buffer (the counters' memoryview) and the
 * four element indices of this process's slot; push and pop add to them in place, with the GIL
 * held. Only this process writes its slot, so the totals stay exact.
 *
 * Only the documented C API; no Py_LIMITED_API (METH_FASTCALL | METH_KEYWORDS is what makes
 * the call cheap), so the module is built for each Python version (3.11 to 3.14).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/types.h>

/* Messages up to this size travel through a buffer on the C stack; larger ones through one
 * allocated per call (kernel.msgmax is 8192 by default). */
#define STACK_TEXT 8192

typedef struct {
    long mtype;
    char mtext[STACK_TEXT];
} stack_message;

/* -- the counter slot ----------------------------------------------------------------------- */

static uint64_t no_slot[4];          /* until set_slot() is called */
static Py_buffer slot_buffer;        /* the exported buffer we point into (kept while in use) */
static int have_slot_buffer = 0;
static uint64_t *c_pushes = &no_slot[0];
static uint64_t *c_bytes_pushed = &no_slot[1];
static uint64_t *c_pops = &no_slot[2];
static uint64_t *c_bytes_popped = &no_slot[3];

PyDoc_STRVAR(set_slot_doc,
"set_slot(view, pushes, bytes_pushed, pops, bytes_popped)\n--\n\n"
"Count in this writable buffer of unsigned 64-bit integers from now on, at these element\n"
"indices (the process's counter slot).");

static PyObject *
set_slot(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t index[4], count;
    int i;

    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "set_slot() takes 5 arguments, not %zd", nargs);
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (view.itemsize != 8 || view.format == NULL || strcmp(view.format, "Q") != 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "set_slot() needs a buffer of unsigned 64-bit integers (format 'Q')");
        return NULL;
    }
    count = view.len / 8;
    for (i = 0; i < 4; i++) {
        index[i] = PyLong_AsSsize_t(args[i + 1]);
        if (index[i] == -1 && PyErr_Occurred()) {
            PyBuffer_Release(&view);
            return NULL;
        }
        if (index[i] < 0 || index[i] >= count) {
            PyBuffer_Release(&view);
            PyErr_Format(PyExc_IndexError, "counter index %zd is outside the buffer's %zd elements", index[i], count);
            return NULL;
        }
    }
    if (have_slot_buffer)
        PyBuffer_Release(&slot_buffer);
    slot_buffer = view;
    have_slot_buffer = 1;
    c_pushes = (uint64_t *)view.buf + index[0];
    c_bytes_pushed = (uint64_t *)view.buf + index[1];
    c_pops = (uint64_t *)view.buf + index[2];
    c_bytes_popped = (uint64_t *)view.buf + index[3];
    Py_RETURN_NONE;
}

PyDoc_STRVAR(count_push_doc,
"count_push(nbytes)\n--\n\n"
"Count one message pushed (the slow path's pushes, so both paths count in one place).");

static PyObject *
count_push(PyObject *module, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    *c_pushes += 1;
    *c_bytes_pushed += (uint64_t)n;
    Py_RETURN_NONE;
}

/* -- HotPath -------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    int msqid;
    int flags;               /* 0, or IPC_NOWAIT for a nowait handle */
    long push_type;          /* 0: no default receiver (orient, no peer): the slow path says why */
    long pop_type;
    Py_ssize_t limit;        /* the largest message push() takes */
    Py_ssize_t receive_size; /* msgrcv's msgsz: sysv_ipc's max_message_size for this queue */
    PyObject *push_any;      /* push(data, *, to=None) in Python: every other shape and case */
    PyObject *pop_args;      /* pop(size=None) in Python: parses other argument shapes, returns size */
    PyObject *send_slow;     /* send_slow(data, mtype): through sysv_ipc, raising what it raises */
    PyObject *receive_slow;  /* receive_slow() -> bytes: through sysv_ipc */
    PyObject *check_size;    /* check_size(size) -> int, or raises */
    PyObject *too_long;      /* too_long(data, size) -> ValueError */
} HotPath;

static int
hotpath_traverse(HotPath *self, visitproc visit, void *arg)
{
    Py_VISIT(self->push_any);
    Py_VISIT(self->pop_args);
    Py_VISIT(self->send_slow);
    Py_VISIT(self->receive_slow);
    Py_VISIT(self->check_size);
    Py_VISIT(self->too_long);
    return 0;
}

static int
hotpath_clear(HotPath *self)
{
    Py_CLEAR(self->push_any);
    Py_CLEAR(self->pop_args);
    Py_CLEAR(self->send_slow);
    Py_CLEAR(self->receive_slow);
    Py_CLEAR(self->check_size);
    Py_CLEAR(self->too_long);
    return 0;
}

static void
hotpath_dealloc(HotPath *self)
{
    PyObject_GC_UnTrack(self);
    hotpath_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Hold a new reference in *field, dropping the old one (__init__ may run twice). */
static void
keep(PyObject **field, PyObject *value)
{
    PyObject *old = *field;
    Py_INCREF(value);
    *field = value;
    Py_XDECREF(old);
}

static int
hotpath_init(HotPath *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"msqid", "block", "push_type", "pop_type", "limit", "receive_size", "push_any",
                            "pop_args", "send_slow", "receive_slow", "check_size", "too_long", NULL};
    int msqid, block;
    long push_type, pop_type;
    Py_ssize_t limit, receive_size;
    PyObject *push_any, *pop_args, *send_slow, *receive_slow, *check_size, *too_long;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ipllnnOOOOOO:HotPath", names, &msqid, &block, &push_type,
                                     &pop_type, &limit, &receive_size, &push_any, &pop_args, &send_slow,
                                     &receive_slow, &check_size, &too_long))
        return -1;
    if (limit < 1 || receive_size < 1 || push_type < 0 || pop_type < 0) {
        PyErr_SetString(PyExc_ValueError, "HotPath: limit and receive_size must be positive, types not negative");
        return -1;
    }
    self->msqid = msqid;
    self->flags = block ? 0 : IPC_NOWAIT;
    self->push_type = push_type;
    self->pop_type = pop_type;
    self->limit = limit;
    self->receive_size = receive_size;
    keep(&self->push_any, push_any);
    keep(&self->pop_args, pop_args);
    keep(&self->send_slow, send_slow);
    keep(&self->receive_slow, receive_slow);
    keep(&self->check_size, check_size);
    keep(&self->too_long, too_long);
    return 0;
}

/* msgsnd with the GIL released, EINTR retried after the signal handlers ran.
 * Returns 0 when sent, -1 with an exception set (a handler raised), or errno (> 0). */
static int
send_message(HotPath *self, const char *data, Py_ssize_t n)
{
    stack_message on_stack;
    stack_message *message = &on_stack;
    int rc, err = 0;

    if (n > STACK_TEXT) {
        message = PyMem_Malloc(sizeof(long) + (size_t)n);
        if (message == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    message->mtype = self->push_type;
    memcpy(message->mtext, data, (size_t)n);
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        rc = msgsnd(self->msqid, message, (size_t)n, self->flags);
        if (rc < 0)
            err = errno;
        Py_END_ALLOW_THREADS
        if (rc == 0 || err != EINTR)
            break;
        if (PyErr_CheckSignals() < 0) {
            err = -1;
            break;
        }
    }
    if (message != &on_stack)
        PyMem_Free(message);
    return rc == 0 ? 0 : err;
}

static PyObject *
hotpath_push(HotPath *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *data, *result;
    Py_ssize_t n;
    int err;

    if (nargs != 1 || kwnames != NULL)  /* to=, data=..., or a wrong call: Python says what it means */
        return PyObject_Vectorcall(self->push_any, args, nargs, kwnames);
    data = args[0];
    if (!PyBytes_CheckExact(data) || self->push_type == 0)
        return PyObject_Vectorcall(self->push_any, args, 1, NULL);
    n = PyBytes_GET_SIZE(data);
    if (n < 1 || n > self->limit)
        return PyObject_Vectorcall(self->push_any, args, 1, NULL);

    Py_INCREF(data);  /* kept alive while the GIL is released */
    err = send_message(self, PyBytes_AS_STRING(data), n);
    if (err > 0) {
        /* Full with nowait, removed queue, ...: sysv_ipc redoes it and raises what it raises. */
        PyObject *mtype = PyLong_FromLong(self->push_type);
        if (mtype == NULL) {
            Py_DECREF(data);
            return NULL;
        }
        result = PyObject_CallFunctionObjArgs(self->send_slow, data, mtype, NULL);
        Py_DECREF(mtype);
        if (result == NULL) {
            Py_DECREF(data);
            return NULL;
        }
        Py_DECREF(result);
        err = 0;
    }
    Py_DECREF(data);
    if (err < 0)
        return NULL;
    *c_pushes += 1;
    *c_bytes_pushed += (uint64_t)n;
    Py_RETURN_NONE;
}

/* msgrcv with the GIL released, EINTR retried after the signal handlers ran. Returns the
 * message, NULL with an exception set, or NULL with *err set to errno (no exception). */
static PyObject *
receive_message(HotPath *self, int *err)
{
    stack_message on_stack;
    stack_message *message = &on_stack;
    ssize_t got;
    PyObject *data = NULL;

    *err = 0;
    if (self->receive_size > STACK_TEXT) {
        message = PyMem_Malloc(sizeof(long) + (size_t)self->receive_size);
        if (message == NULL)
            return PyErr_NoMemory();
    }
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        got = msgrcv(self->msqid, message, (size_t)self->receive_size, self->pop_type, self->flags);
        if (got < 0)
            *err = errno;
        Py_END_ALLOW_THREADS
        if (got >= 0 || *err != EINTR)
            break;
        *err = 0;
        if (PyErr_CheckSignals() < 0)
            break;
    }
    if (got >= 0)
        data = PyBytes_FromStringAndSize(message->mtext, got);
    if (message != &on_stack)
        PyMem_Free(message);
    return data;
}

static PyObject *
hotpath_pop(HotPath *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *size = Py_None, *parsed = NULL, *data;
    Py_ssize_t most = PY_SSIZE_T_MAX, n;
    int err;

    if (nargs == 1 && kwnames == NULL) {
        size = args[0];
    }
    else if (nargs != 0 || kwnames != NULL) {  /* size=..., or a wrong call */
        parsed = PyObject_Vectorcall(self->pop_args, args, nargs, kwnames);
        if (parsed == NULL)
            return NULL;
        size = parsed;
    }
    if (size != Py_None) {
        PyObject *checked = PyObject_CallOneArg(self->check_size, size);
        Py_XDECREF(parsed);
        if (checked == NULL)
            return NULL;
        parsed = checked;
        size = checked;
        most = PyLong_AsSsize_t(size);
        if (most == -1 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
                Py_DECREF(parsed);
                return NULL;
            }
            PyErr_Clear();  /* larger than any message */
            most = PY_SSIZE_T_MAX;
        }
    }

    data = receive_message(self, &err);
    if (data == NULL) {
        if (err == 0) {  /* a signal handler raised, or no memory */
            Py_XDECREF(parsed);
            return NULL;
        }
        /* Empty with nowait, removed queue, a message over receive_size, ...: through sysv_ipc. */
        data = PyObject_CallNoArgs(self->receive_slow);
        if (data == NULL) {
            Py_XDECREF(parsed);
            return NULL;
        }
    }
    n = PyBytes_Size(data);
    if (n < 0) {
        Py_DECREF(data);
        Py_XDECREF(parsed);
        return NULL;
    }
    *c_pops += 1;
    *c_bytes_popped += (uint64_t)n;
    if (n > most) {
        PyObject *exc = PyObject_CallFunctionObjArgs(self->too_long, data, size, NULL);
        Py_DECREF(data);
        Py_XDECREF(parsed);
        if (exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
        return NULL;
    }
    Py_XDECREF(parsed);
    return data;
}

/* The text of Queue._push_doc and Queue._pop_doc (procmagic/core/queue_handle.py), shortened. */
PyDoc_STRVAR(push_doc,
"push(data, *, to=None)\n--\n\n"
"Put one message (bytes, or str as UTF-8) on the queue; waits while it is full (nowait: raises\n"
"QueueFull). to= (orient mode) names the receiver: a Process, its id, or PARENT.");

PyDoc_STRVAR(pop_doc,
"pop(size=None)\n--\n\n"
"Take one message: the oldest (balance) or the oldest for this process (orient); waits for one\n"
"(nowait: raises QueueEmpty). A message longer than size is taken and raised in ValueError.data.");

static PyMethodDef hotpath_methods[] = {
    {"push", (PyCFunction)(void (*)(void))hotpath_push, METH_FASTCALL | METH_KEYWORDS, push_doc},
    {"pop", (PyCFunction)(void (*)(void))hotpath_pop, METH_FASTCALL | METH_KEYWORDS, pop_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(hotpath_doc,
"HotPath(msqid, block, push_type, pop_type, limit, receive_size, push_any, pop_args, send_slow,\n"
"        receive_slow, check_size, too_long)\n\n"
"One queue handle's push and pop in C; built by procmagic.core.queue_hot, not by hand.");

static PyTypeObject HotPathType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "procmagic.core._queue_fast.HotPath",
    .tp_basicsize = sizeof(HotPath),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = hotpath_doc,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)hotpath_init,
    .tp_dealloc = (destructor)hotpath_dealloc,
    .tp_traverse = (traverseproc)hotpath_traverse,
    .tp_clear = (inquiry)hotpath_clear,
    .tp_methods = hotpath_methods,
};

/* -- the module ----------------------------------------------------------------------------- */

static PyMethodDef module_methods[] = {
    {"set_slot", (PyCFunction)(void (*)(void))set_slot, METH_FASTCALL, set_slot_doc},
    {"count_push", (PyCFunction)count_push, METH_O, count_push_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef queue_fast_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "procmagic.core._queue_fast",
    .m_doc = "The SysV queue's push and pop in C, with a pure-Python fallback (procmagic.core.queue_hot).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__queue_fast(void)
{
    PyObject *module;

    if (PyType_Ready(&HotPathType) < 0)
        return NULL;
    module = PyModule_Create(&queue_fast_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddType(module, &HotPathType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
