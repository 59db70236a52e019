/*
 * aiorecords._speedups: compiled per-record kernels.
 *
 * Optional: the package installs and works without it, and the pure-Python
 * code in the format cores is the reference each kernel here is tested
 * against (tests/test_kernels.py). Every function is pure work over bytes
 * in memory: no I/O, no event loop, no threads, nothing kept between calls.
 *
 * Each decoding kernel takes only what is plainly good (a whole record whose
 * checksum holds) and stops at anything else, returning where it stopped;
 * the Python core then handles that one case by its own rules. So the drop
 * reasons, offsets and limits stay the core's, defined in one place.
 *
 * Setting AIORECORDS_NO_EXTENSIONS (to anything but "" or "0") makes the
 * import fail, so that the pure-Python code is used.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define HAVE_X86_CRC 1
#endif

/* ---------------------------------------------------------------- CRC-32C */

/* The crc32c package's function: used for long data (it interleaves three
 * streams and is faster there, measured in bench/kernels.py) and on CPUs
 * without the instruction. */
static PyObject *package_crc32c = NULL;
static int have_crc_instruction = 0;

/* Data at least this long goes to the package (one call's overhead, about
 * 0.2 us, is then under 5% of the work). */
#define PACKAGE_CRC_FROM 16384

#ifdef HAVE_X86_CRC
__attribute__((target("sse4.2"))) static uint32_t
crc_instruction(uint32_t crc, const unsigned char *p, size_t n)
{
    uint64_t c = (uint32_t)~crc;
    while (n && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        n--;
    }
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = _mm_crc32_u64(c, word);
        p += 8;
        n -= 8;
    }
    while (n--) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
    }
    return ~(uint32_t)c;
}
#endif

/* CRC-32C of n bytes at p, continuing from crc (0 to start); -1 on error
 * (a Python exception is set). */
static int64_t
crc32c_of(uint32_t crc, const unsigned char *p, Py_ssize_t n)
{
#ifdef HAVE_X86_CRC
    if (have_crc_instruction && n < PACKAGE_CRC_FROM) {
        return crc_instruction(crc, p, (size_t)n);
    }
#endif
    PyObject *view = PyMemoryView_FromMemory((char *)p, n, PyBUF_READ);
    if (view == NULL) {
        return -1;
    }
    PyObject *value = PyObject_CallFunction(package_crc32c, "OI", view, crc);
    Py_DECREF(view);
    if (value == NULL) {
        return -1;
    }
    unsigned long result = PyLong_AsUnsignedLong(value);
    Py_DECREF(value);
    if (result == (unsigned long)-1 && PyErr_Occurred()) {
        return -1;
    }
    return (int64_t)(uint32_t)result;
}

static inline uint32_t
mask(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

static inline uint32_t
load32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static inline void
store32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline uint64_t
load64(const unsigned char *p)
{
    return (uint64_t)load32(p) | ((uint64_t)load32(p + 4) << 32);
}

static PyObject *
speedups_crc32c(PyObject *module, PyObject *args)
{
    Py_buffer data;
    unsigned int value = 0;
    if (!PyArg_ParseTuple(args, "y*|I:crc32c", &data, &value)) {
        return NULL;
    }
    int64_t crc = crc32c_of(value, data.buf, data.len);
    PyBuffer_Release(&data);
    if (crc < 0) {
        return NULL;
    }
    return PyLong_FromUnsignedLong((unsigned long)crc);
}

/* ---------------------------------------------------------------- records */

/* A record to frame: its bytes, and what to release after. */
typedef struct {
    const unsigned char *data;
    Py_ssize_t size;
    Py_buffer view;
    int has_view;
} Record;

/* The bytes of a record as the writers take them: bytes, str (as UTF-8) or
 * any object with the buffer protocol. */
static int
record_of(PyObject *item, Record *record)
{
    record->has_view = 0;
    if (PyBytes_Check(item)) {
        record->data = (const unsigned char *)PyBytes_AS_STRING(item);
        record->size = PyBytes_GET_SIZE(item);
        return 0;
    }
    if (PyUnicode_Check(item)) {
        const char *utf8 = PyUnicode_AsUTF8AndSize(item, &record->size);
        if (utf8 == NULL) {
            return -1;
        }
        record->data = (const unsigned char *)utf8;
        return 0;
    }
    if (PyByteArray_Check(item) || PyMemoryView_Check(item)) {
        if (PyObject_GetBuffer(item, &record->view, PyBUF_SIMPLE) < 0) {
            return -1;
        }
        record->has_view = 1;
        record->data = record->view.buf;
        record->size = record->view.len;
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "a record is bytes or str, not %.100s",
                 Py_TYPE(item)->tp_name);
    return -1;
}

static void
release(Record *record)
{
    if (record->has_view) {
        PyBuffer_Release(&record->view);
        record->has_view = 0;
    }
}

/* Room for `more` bytes at the end of a bytearray; where they go. */
static unsigned char *
grow(PyObject *out, Py_ssize_t more)
{
    Py_ssize_t size = PyByteArray_GET_SIZE(out);
    if (more > PY_SSIZE_T_MAX - size) {
        PyErr_NoMemory();
        return NULL;
    }
    if (PyByteArray_Resize(out, size + more) < 0) {
        return NULL;
    }
    return (unsigned char *)PyByteArray_AS_STRING(out) + size;
}

#define LOG_BLOCK 32768
#define LOG_HEADER 7
enum { LOG_FULL = 1, LOG_FIRST = 2, LOG_MIDDLE = 3, LOG_LAST = 4 };

/* The CRC-32C of each fragment type byte alone (the seed of its checksum). */
static uint32_t type_crc[5];

/* The bytes LevelDB's writer makes of a record of `size` bytes starting at
 * `offset` in its block. */
static Py_ssize_t
log_framed_size(Py_ssize_t offset, Py_ssize_t size)
{
    Py_ssize_t total = 0;
    for (;;) {
        Py_ssize_t room = LOG_BLOCK - offset;
        if (room < LOG_HEADER) {
            total += room;
            offset = 0;
            room = LOG_BLOCK;
        }
        Py_ssize_t part = size < room - LOG_HEADER ? size : room - LOG_HEADER;
        total += LOG_HEADER + part;
        offset += LOG_HEADER + part;
        size -= part;
        if (size == 0) {
            return total;
        }
    }
}

static int
log_put(unsigned char *at, int kind, const unsigned char *data, Py_ssize_t size)
{
    int64_t crc = crc32c_of(type_crc[kind], data, size);
    if (crc < 0) {
        return -1;
    }
    store32(at, mask((uint32_t)crc));
    at[4] = (unsigned char)size;
    at[5] = (unsigned char)(size >> 8);
    at[6] = (unsigned char)kind;
    memcpy(at + LOG_HEADER, data, (size_t)size);
    return 0;
}

/* Frame one record at `offset` in its block into `out`; the new offset, or
 * -1 on error. As LevelDB's log::Writer::AddRecord. */
static Py_ssize_t
log_frame(PyObject *out, Py_ssize_t offset, const Record *record)
{
    Py_ssize_t left = record->size;
    const unsigned char *data = record->data;
    unsigned char *at = grow(out, log_framed_size(offset, left));
    if (at == NULL) {
        return -1;
    }
    int begin = 1;
    for (;;) {
        Py_ssize_t room = LOG_BLOCK - offset;
        if (room < LOG_HEADER) {
            memset(at, 0, (size_t)room); /* the block's trailer */
            at += room;
            offset = 0;
            room = LOG_BLOCK;
        }
        Py_ssize_t part = left < room - LOG_HEADER ? left : room - LOG_HEADER;
        int end = part == left;
        int kind = begin ? (end ? LOG_FULL : LOG_FIRST)
                         : (end ? LOG_LAST : LOG_MIDDLE);
        if (log_put(at, kind, data, part) < 0) {
            return -1;
        }
        at += LOG_HEADER + part;
        offset += LOG_HEADER + part;
        data += part;
        left -= part;
        begin = 0;
        if (end) {
            return offset;
        }
    }
}

/* The records of records[start:stop] are framed in order until out has
 * grown by max_bytes or more; where it stopped. On an error (a record of
 * the wrong type, no memory) out is cut back to what it was: nothing of
 * the call is framed. */
typedef struct {
    PyObject *items; /* the records, as a fast sequence */
    Py_ssize_t start, stop, max_bytes;
    PyObject *out;
    Py_ssize_t out_size; /* out's size before the call */
} Batch;

static int
batch_of(PyObject *records, Batch *batch)
{
    batch->items = PySequence_Fast(records, "records must be a sequence");
    if (batch->items == NULL) {
        return -1;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(batch->items);
    if (batch->stop > count) {
        batch->stop = count;
    }
    if (batch->start < 0 || batch->start > batch->stop) {
        Py_DECREF(batch->items);
        PyErr_SetString(PyExc_ValueError, "start outside the records");
        return -1;
    }
    batch->out_size = PyByteArray_GET_SIZE(batch->out);
    return 0;
}

/* Whether record i is still to be framed: below stop, and still in the
 * list (checked each time: Python code run by a record's buffer export
 * may have shortened it). */
static inline int
batch_has(const Batch *batch, Py_ssize_t i)
{
    return i < batch->stop && i < PySequence_Fast_GET_SIZE(batch->items);
}

static void
batch_failed(Batch *batch)
{
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    /* Shrinking a bytearray does not fail. */
    if (PyByteArray_Resize(batch->out, batch->out_size) < 0) {
        PyErr_Clear();
    }
    PyErr_Restore(type, value, traceback);
    Py_DECREF(batch->items);
}

/* Frames one record into out from a state (a log's block offset; nothing
 * for TFRecord); the new state, or -1 on error. */
typedef Py_ssize_t (*Put)(PyObject *out, Py_ssize_t state, const Record *record);

/* The batch's records framed in order by put, from *state, until out has
 * grown by max_bytes; the index reached, or -1 on error (out cut back).
 * The batch's items are released either way. */
static Py_ssize_t
frame_batch(Batch *batch, Put put, Py_ssize_t *state)
{
    Py_ssize_t i = batch->start;
    while (batch_has(batch, i) &&
           PyByteArray_GET_SIZE(batch->out) - batch->out_size < batch->max_bytes) {
        Record record;
        /* Held while it is framed: a bytearray subclass's __buffer__ may
         * run Python code that changes the list. */
        PyObject *item = Py_NewRef(PySequence_Fast_GET_ITEM(batch->items, i));
        Py_ssize_t next = -1;
        if (record_of(item, &record) == 0) {
            next = put(batch->out, *state, &record);
            release(&record);
        }
        Py_DECREF(item);
        if (next < 0) {
            batch_failed(batch);
            return -1;
        }
        *state = next;
        i++;
    }
    Py_DECREF(batch->items);
    return i;
}

static PyObject *
speedups_log_encode(PyObject *module, PyObject *args)
{
    PyObject *records;
    Py_ssize_t offset;
    Batch batch;
    if (!PyArg_ParseTuple(args, "OnnnO!n:log_encode", &records, &batch.start,
                          &batch.stop, &offset, &PyByteArray_Type, &batch.out,
                          &batch.max_bytes)) {
        return NULL;
    }
    /* LOG_BLOCK itself: the last record ended the block exactly. */
    if (offset < 0 || offset > LOG_BLOCK) {
        PyErr_SetString(PyExc_ValueError, "block offset must be in 0..32768");
        return NULL;
    }
    if (batch_of(records, &batch) < 0) {
        return NULL;
    }
    Py_ssize_t i = frame_batch(&batch, log_frame, &offset);
    if (i < 0) {
        return NULL;
    }
    return Py_BuildValue("nn", offset, i);
}

/* A (data, start, end) record tuple appended to a list; -1 on error. */
static int
append_record(PyObject *out, const unsigned char *data, Py_ssize_t size,
              long long start, long long end)
{
    PyObject *tuple = PyTuple_New(3);
    if (tuple == NULL) {
        return -1;
    }
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)data, size);
    PyObject *first = PyLong_FromLongLong(start);
    PyObject *last = PyLong_FromLongLong(end);
    if (bytes == NULL || first == NULL || last == NULL) {
        Py_XDECREF(bytes);
        Py_XDECREF(first);
        Py_XDECREF(last);
        Py_DECREF(tuple);
        return -1;
    }
    PyTuple_SET_ITEM(tuple, 0, bytes);
    PyTuple_SET_ITEM(tuple, 1, first);
    PyTuple_SET_ITEM(tuple, 2, last);
    int failed = PyList_Append(out, tuple);
    Py_DECREF(tuple);
    return failed;
}

/* log_full_records(buffer, buffer_start, block_start, pos, start, stop,
 *                  limit, out) -> (block_start, pos, count)
 *
 * The whole FULL records from block_start + pos on, appended to out as
 * (data, start, end); block trailers of complete blocks are stepped over.
 * Stops before anything else: another fragment type, zero fill, a
 * checksum that fails, a record the buffer does not hold whole, a record
 * starting at or after stop, or a position before start (the core's
 * general path handles each by LevelDB's rules). */
static PyObject *
speedups_log_full_records(PyObject *module, PyObject *args)
{
    Py_buffer buffer;
    long long buffer_start, block_start, pos, start, stop;
    Py_ssize_t limit;
    PyObject *out;
    if (!PyArg_ParseTuple(args, "y*LLLLLnO!:log_full_records", &buffer,
                          &buffer_start, &block_start, &pos, &start, &stop,
                          &limit, &PyList_Type, &out)) {
        return NULL;
    }
    const unsigned char *bytes = buffer.buf;
    long long size = buffer.len;
    Py_ssize_t count = 0;
    long long base = block_start - buffer_start;
    if (base < 0 || pos < 0 || pos > LOG_BLOCK || base > size) {
        PyBuffer_Release(&buffer);
        PyErr_SetString(PyExc_ValueError, "position outside the buffer");
        return NULL;
    }
    while (count < limit) {
        long long where = block_start + pos;
        if (where < start || where >= stop) {
            break;
        }
        long long available = size - base < LOG_BLOCK ? size - base : LOG_BLOCK;
        if (available - pos < LOG_HEADER) {
            if (available < LOG_BLOCK) {
                break; /* the rest of the block is still to come */
            }
            block_start += LOG_BLOCK; /* the trailer */
            base += LOG_BLOCK;
            pos = 0;
            continue;
        }
        const unsigned char *at = bytes + base + pos;
        long long length = at[4] | (at[5] << 8);
        if (at[6] != LOG_FULL || pos + LOG_HEADER + length > available) {
            break;
        }
        int64_t crc = crc32c_of(type_crc[LOG_FULL], at + LOG_HEADER, length);
        if (crc < 0) {
            PyBuffer_Release(&buffer);
            return NULL;
        }
        if (mask((uint32_t)crc) != load32(at)) {
            break;
        }
        long long end = where + LOG_HEADER + length;
        if (append_record(out, at + LOG_HEADER, length, where, end) < 0) {
            PyBuffer_Release(&buffer);
            return NULL;
        }
        pos += LOG_HEADER + length;
        count++;
    }
    PyBuffer_Release(&buffer);
    return Py_BuildValue("LLn", block_start, pos, count);
}

/* --------------------------------------------------------------- TFRecord */

#define TF_HEADER 12
#define TF_FOOTER 4

/* A Put: TFRecord framing has no state between records (0 stays 0). */
static Py_ssize_t
tf_put(PyObject *out, Py_ssize_t state, const Record *record)
{
    (void)state;
    unsigned char *at = grow(out, TF_HEADER + record->size + TF_FOOTER);
    if (at == NULL) {
        return -1;
    }
    uint64_t length = (uint64_t)record->size;
    store32(at, (uint32_t)length);
    store32(at + 4, (uint32_t)(length >> 32));
    int64_t length_crc = crc32c_of(0, at, 8);
    if (length_crc < 0) {
        return -1;
    }
    int64_t data_crc = crc32c_of(0, record->data, record->size);
    if (data_crc < 0) {
        return -1;
    }
    store32(at + 8, mask((uint32_t)length_crc));
    memcpy(at + TF_HEADER, record->data, (size_t)record->size);
    store32(at + TF_HEADER + record->size, mask((uint32_t)data_crc));
    return 0;
}

static PyObject *
speedups_tf_frame(PyObject *module, PyObject *args)
{
    PyObject *records;
    Batch batch;
    if (!PyArg_ParseTuple(args, "OnnO!n:tf_frame", &records, &batch.start,
                          &batch.stop, &PyByteArray_Type, &batch.out,
                          &batch.max_bytes)) {
        return NULL;
    }
    if (batch_of(records, &batch) < 0) {
        return NULL;
    }
    Py_ssize_t none = 0;
    Py_ssize_t i = frame_batch(&batch, tf_put, &none);
    if (i < 0) {
        return NULL;
    }
    return PyLong_FromSsize_t(i);
}

/* tf_good_records(buffer, at, base, stop, max_record_size, limit, out)
 *     -> at
 *
 * The whole records from buffer[at:] on whose checksums hold, appended to
 * out as (data, start, end) with offsets from base (the file offset of
 * buffer[0]); stops before anything else: a record starting at or after
 * stop, one the buffer does not hold whole, a checksum that fails, a length
 * over max_record_size. */
static PyObject *
speedups_tf_good_records(PyObject *module, PyObject *args)
{
    Py_buffer buffer;
    Py_ssize_t at, limit;
    long long base, stop;
    unsigned long long max_record_size;
    PyObject *out;
    if (!PyArg_ParseTuple(args, "y*nLLKnO!:tf_good_records", &buffer, &at,
                          &base, &stop, &max_record_size, &limit, &PyList_Type,
                          &out)) {
        return NULL;
    }
    const unsigned char *bytes = buffer.buf;
    Py_ssize_t size = buffer.len;
    Py_ssize_t count = 0;
    if (at < 0 || at > size) {
        PyBuffer_Release(&buffer);
        PyErr_SetString(PyExc_ValueError, "position outside the buffer");
        return NULL;
    }
    while (count < limit) {
        long long start = base + at;
        if (start >= stop || size - at < TF_HEADER) {
            break;
        }
        const unsigned char *head = bytes + at;
        uint64_t length = load64(head);
        int64_t crc = crc32c_of(0, head, 8);
        if (crc < 0) {
            goto error;
        }
        if (mask((uint32_t)crc) != load32(head + 8) || length > max_record_size ||
            (uint64_t)(size - at) < TF_HEADER + TF_FOOTER + length) {
            break;
        }
        const unsigned char *data = head + TF_HEADER;
        crc = crc32c_of(0, data, (Py_ssize_t)length);
        if (crc < 0) {
            goto error;
        }
        if (mask((uint32_t)crc) != load32(data + length)) {
            break;
        }
        Py_ssize_t next = at + TF_HEADER + (Py_ssize_t)length + TF_FOOTER;
        if (append_record(out, data, (Py_ssize_t)length, start, base + next) < 0) {
            goto error;
        }
        at = next;
        count++;
    }
    PyBuffer_Release(&buffer);
    return PyLong_FromSsize_t(at);
error:
    PyBuffer_Release(&buffer);
    return NULL;
}

/* ---------------------------------------------------------------- readers */

/* take_records(pending, index, max_bytes, out) -> (index, size)
 *
 * The data of the decoded records pending[index:] ((data, start, end)
 * tuples) appended to out, until an item that is not such a tuple (a region
 * dropped) or until they reach max_bytes. */
static PyObject *
speedups_take_records(PyObject *module, PyObject *args)
{
    PyObject *pending, *out;
    Py_ssize_t index, max_bytes;
    if (!PyArg_ParseTuple(args, "O!nnO!:take_records", &PyList_Type, &pending,
                          &index, &max_bytes, &PyList_Type, &out)) {
        return NULL;
    }
    if (index < 0) {
        PyErr_SetString(PyExc_ValueError, "index cannot be negative");
        return NULL;
    }
    Py_ssize_t size = 0;
    while (index < PyList_GET_SIZE(pending)) {
        PyObject *item = PyList_GET_ITEM(pending, index);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 3) {
            break;
        }
        PyObject *data = PyTuple_GET_ITEM(item, 0);
        if (PyList_Append(out, data) < 0) {
            return NULL;
        }
        Py_ssize_t length = PyObject_Length(data);
        if (length < 0) {
            return NULL;
        }
        size += length;
        index++;
        if (size >= max_bytes) {
            break;
        }
    }
    return Py_BuildValue("nn", index, size);
}

/* ----------------------------------------------------------------- module */

/* ---------------------------------------------------------- capture files */

/* capture_items(block, offsets, start, text, out): the sized items (a
 * big-endian u32 length, then the bytes) at offsets[start:] in a block,
 * appended to out as bytes, or with text as UTF-8 str; the index reached.
 * It stops at an item that does not lie wholly inside the block, for the
 * Python reader (capture._index.frame_items) to raise its error; a record
 * that is not UTF-8 raises UnicodeDecodeError, as bytes.decode() does. */
static PyObject *
speedups_capture_items(PyObject *module, PyObject *args)
{
    Py_buffer block;
    PyObject *offsets, *out;
    Py_ssize_t start;
    int text;
    if (!PyArg_ParseTuple(args, "y*O!npO!:capture_items", &block,
                          &PyTuple_Type, &offsets, &start, &text,
                          &PyList_Type, &out)) {
        return NULL;
    }
    const unsigned char *bytes = block.buf;
    Py_ssize_t size = block.len;
    Py_ssize_t count = PyTuple_GET_SIZE(offsets);
    if (start < 0 || start > count) {
        PyBuffer_Release(&block);
        PyErr_SetString(PyExc_ValueError, "start outside the offsets");
        return NULL;
    }
    Py_ssize_t i = start;
    for (; i < count; i++) {
        PyObject *number = PyTuple_GET_ITEM(offsets, i);
        Py_ssize_t offset = PyLong_AsSsize_t(number);
        if (offset == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            break; /* not a position in any block: Python's error */
        }
        if (offset < 0 || offset > size - 4) {
            break;
        }
        const unsigned char *at = bytes + offset;
        uint64_t length = ((uint64_t)at[0] << 24) | ((uint64_t)at[1] << 16) |
                          ((uint64_t)at[2] << 8) | (uint64_t)at[3];
        if (length > (uint64_t)(size - offset - 4)) {
            break;
        }
        const char *data = (const char *)at + 4;
        PyObject *item = text ? PyUnicode_DecodeUTF8(data, (Py_ssize_t)length,
                                                     "strict")
                              : PyBytes_FromStringAndSize(data,
                                                          (Py_ssize_t)length);
        if (item == NULL) {
            PyBuffer_Release(&block);
            return NULL;
        }
        int failed = PyList_Append(out, item);
        Py_DECREF(item);
        if (failed < 0) {
            PyBuffer_Release(&block);
            return NULL;
        }
    }
    PyBuffer_Release(&block);
    return PyLong_FromSsize_t(i);
}

/* capture_add(records, start, stop, block, leaf, block_position,
 * block_size, node_size, max_record_size, text): records[start:stop] added to a
 * capture writer's open block and leaf node as CaptureWriter.add_record
 * adds them (the record's coordinate, big-endian u64 block position and u32
 * offset, to the leaf; its big-endian u32 length and bytes to the block).
 * It stops after a record that fills the block or the node (the writer
 * then settles them), and before one that is not bytes (nor, with text,
 * a str, stored as UTF-8) or is over max_record_size, for Python to
 * handle; the index reached. */
static PyObject *
speedups_capture_add(PyObject *module, PyObject *args)
{
    PyObject *records, *block, *leaf;
    Py_ssize_t start, stop, block_size, node_size, max_record_size;
    unsigned long long position;
    int text;
    if (!PyArg_ParseTuple(args, "OnnO!O!Knnnp:capture_add", &records, &start,
                          &stop, &PyByteArray_Type, &block, &PyByteArray_Type,
                          &leaf, &position, &block_size, &node_size,
                          &max_record_size, &text)) {
        return NULL;
    }
    PyObject *items = PySequence_Fast(records, "records must be a sequence");
    if (items == NULL) {
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    if (stop > count) {
        stop = count;
    }
    if (start < 0 || start > stop) {
        Py_DECREF(items);
        PyErr_SetString(PyExc_ValueError, "start outside the records");
        return NULL;
    }
    Py_ssize_t i = start;
    /* Only exact bytes and str are taken, whose data no Python code can
     * change or free while the loop runs; the length is checked each time
     * all the same. */
    while (i < stop && i < PySequence_Fast_GET_SIZE(items)) {
        PyObject *record = PySequence_Fast_GET_ITEM(items, i);
        const char *data;
        Py_ssize_t size;
        if (PyBytes_CheckExact(record)) {
            data = PyBytes_AS_STRING(record);
            size = PyBytes_GET_SIZE(record);
        }
        else if (text && PyUnicode_CheckExact(record)) {
            data = PyUnicode_AsUTF8AndSize(record, &size);
            if (data == NULL) {
                PyErr_Clear(); /* not encodable: Python raises for it */
                break;
            }
        }
        else {
            break;
        }
        if (size > max_record_size || size > 0xFFFFFFFF) {
            break;
        }
        Py_ssize_t offset = PyByteArray_GET_SIZE(block);
        unsigned char *at = grow(leaf, 12);
        if (at == NULL) {
            Py_DECREF(items);
            return NULL;
        }
        for (int k = 0; k < 8; k++) {
            at[k] = (unsigned char)(position >> (56 - 8 * k));
        }
        at[8] = (unsigned char)(offset >> 24);
        at[9] = (unsigned char)(offset >> 16);
        at[10] = (unsigned char)(offset >> 8);
        at[11] = (unsigned char)offset;
        at = grow(block, 4 + size);
        if (at == NULL) {
            /* Undo the coordinate: nothing of this record is added. */
            PyByteArray_Resize(leaf, PyByteArray_GET_SIZE(leaf) - 12);
            Py_DECREF(items);
            return NULL;
        }
        at[0] = (unsigned char)(size >> 24);
        at[1] = (unsigned char)(size >> 16);
        at[2] = (unsigned char)(size >> 8);
        at[3] = (unsigned char)size;
        memcpy(at + 4, data, (size_t)size);
        i++;
        if (PyByteArray_GET_SIZE(block) >= block_size ||
            PyByteArray_GET_SIZE(leaf) == node_size) {
            break;
        }
    }
    Py_DECREF(items);
    return PyLong_FromSsize_t(i);
}

/* ---------------------------------------------------------------- archives */

/* A version-2 archive element (archive/_format.py): a header of 37 bytes
 * ("GARe", codec, flags, then in bytes of seven bits, low first: timestamp
 * and start in 10, name and comment lengths in 3, checksum in 5), the name
 * and comment, the stored payload, and a trailer of 72 bytes (a zero byte;
 * start, length, stored and data sizes in 10 septets each; payload and
 * header checksums in 5; the 16-byte magic; its checksum in 5). */
#define AR_HEADER 37
#define AR_TRAILER 72
#define AR_FILE_HEADER 16
#define AR_MAX_STRING 65536
static const unsigned char ar_magic[16] = {0xe5, 0x01, 'G', 'A', 'R', ' ', 't', 'r',
                                           'a', 'i', 'l', 'e', 'r', ' ', 'v', '2'};

/* The value of n (at most 10) septets at p, if every byte was written so
 * (high bit clear) and the value is under 2**63; else -1. */
static int64_t
septets(const unsigned char *p, int n)
{
    uint64_t value = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] & 0x80) {
            return -1;
        }
        if (i == 9 && p[i] > 0) {
            return -1; /* 2**63 or more */
        }
        value |= (uint64_t)p[i] << (7 * i);
    }
    return (int64_t)value;
}

/* A timestamp's 10 septets: any 64-bit two's complement value; 0 if they
 * hold 2**64 or more or a byte never written. */
static int
timestamp_septets(const unsigned char *p, int64_t *timestamp)
{
    uint64_t value = 0;
    for (int i = 0; i < 10; i++) {
        if ((p[i] & 0x80) || (i == 9 && p[i] > 1)) {
            return 0;
        }
        value |= (uint64_t)p[i] << (7 * i);
    }
    *timestamp = (int64_t)value;
    return 1;
}

/* Set one slot of a new entry (a frozen dataclass: through its member
 * descriptor, as object.__setattr__ would); steals value. */
static int
set_slot(PyObject *entry, PyObject *descriptor, PyObject *value)
{
    if (value == NULL) {
        return -1;
    }
    int failed = Py_TYPE(descriptor)->tp_descr_set(descriptor, entry, value);
    Py_DECREF(value);
    return failed;
}

/* archive_elements(data, base, end, floor, codec_names, entry_type, slots,
 * most, out): walking back from end, until out holds most, the whole version-2 elements that data (the
 * file's bytes from offset base) holds and that start at or after floor,
 * appended to out newest first as entry_type instances (slots: its member
 * descriptors in field order). It stops at anything that is not plainly a
 * whole, checksummed element (damage, a torn tail, bytes before base) for
 * the Python walk to judge; where it stopped. */
static PyObject *
speedups_archive_elements(PyObject *module, PyObject *args)
{
    Py_buffer buffer;
    long long base, end, floor;
    Py_ssize_t most;
    PyObject *names, *entry_type, *slots, *out;
    if (!PyArg_ParseTuple(args, "y*LLLO!O!O!nO!:archive_elements", &buffer, &base,
                          &end, &floor, &PyTuple_Type, &names, &PyType_Type,
                          &entry_type, &PyTuple_Type, &slots, &most,
                          &PyList_Type, &out)) {
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)entry_type;
    if (PyTuple_GET_SIZE(slots) != 10) {
        PyBuffer_Release(&buffer);
        PyErr_SetString(PyExc_ValueError, "an entry has 10 slots");
        return NULL;
    }
    for (Py_ssize_t k = 0; k < 10; k++) {
        if (Py_TYPE(PyTuple_GET_ITEM(slots, k))->tp_descr_set == NULL) {
            PyBuffer_Release(&buffer);
            PyErr_SetString(PyExc_TypeError, "slots must be member descriptors");
            return NULL;
        }
    }
    const unsigned char *data = buffer.buf;
    long long size = (long long)buffer.len;
    if (floor < AR_FILE_HEADER) {
        floor = AR_FILE_HEADER;
    }
    while (PyList_GET_SIZE(out) < most && end - floor >= AR_HEADER + AR_TRAILER &&
           end - AR_TRAILER >= base && end <= base + size) {
        const unsigned char *t = data + (end - AR_TRAILER - base);
        if (t[0] != 0 || memcmp(t + 51, ar_magic, 16) != 0) {
            break;
        }
        int64_t start = septets(t + 1, 10), length = septets(t + 11, 10);
        int64_t stored = septets(t + 21, 10), data_size = septets(t + 31, 10);
        int64_t payload_crc = septets(t + 41, 5), header_crc = septets(t + 46, 5);
        int64_t trailer_crc = septets(t + 67, 5);
        if (start < 0 || length < 0 || stored < 0 || data_size < 0 ||
            payload_crc < 0 || payload_crc > 0xFFFFFFFFLL || header_crc < 0 ||
            header_crc > 0xFFFFFFFFLL || trailer_crc < 0 ||
            trailer_crc > 0xFFFFFFFFLL) {
            break;
        }
        if (start < floor || start < base || start + length != end ||
            stored > length - AR_HEADER - AR_TRAILER) {
            break;
        }
        int64_t crc = crc32c_of(0, t, 67);
        if (crc < 0) {
            goto error;
        }
        if (crc != trailer_crc) {
            break;
        }
        const unsigned char *h = data + (start - base);
        if (memcmp(h, "GARe", 4) != 0 || h[5] != 0 ||
            h[4] >= PyTuple_GET_SIZE(names)) {
            break;
        }
        int64_t timestamp;
        if (!timestamp_septets(h + 6, &timestamp)) {
            break;
        }
        int64_t said_start = septets(h + 16, 10), name_len = septets(h + 26, 3);
        int64_t comment_len = septets(h + 29, 3), crc_said = septets(h + 32, 5);
        if (said_start != start || name_len <= 0 || name_len > AR_MAX_STRING ||
            comment_len < 0 || comment_len > AR_MAX_STRING || crc_said < 0 ||
            crc_said != header_crc) {
            break;
        }
        int64_t header_size = AR_HEADER + name_len + comment_len;
        if (start + header_size + stored + AR_TRAILER != end) {
            break;
        }
        crc = crc32c_of(0, h, 32);
        if (crc < 0) {
            goto error;
        }
        crc = crc32c_of((uint32_t)crc, h + AR_HEADER, (Py_ssize_t)(name_len + comment_len));
        if (crc < 0) {
            goto error;
        }
        if (crc != crc_said) {
            break;
        }
        PyObject *name = PyUnicode_DecodeUTF8((const char *)h + AR_HEADER,
                                              (Py_ssize_t)name_len, "strict");
        if (name == NULL) {
            PyErr_Clear(); /* not UTF-8: Python's error */
            break;
        }
        PyObject *comment = PyUnicode_DecodeUTF8(
            (const char *)h + AR_HEADER + name_len, (Py_ssize_t)comment_len, "strict");
        if (comment == NULL) {
            Py_DECREF(name);
            PyErr_Clear();
            break;
        }
        PyObject *entry = type->tp_alloc(type, 0);
        if (entry == NULL) {
            Py_DECREF(name);
            Py_DECREF(comment);
            goto error;
        }
        PyObject *compression = PyTuple_GET_ITEM(names, h[4]);
        Py_INCREF(compression);
        PyObject *values[10] = {
            name,
            PyLong_FromLongLong(timestamp),
            compression,
            comment,
            PyLong_FromLongLong(start),
            PyLong_FromLongLong(start + header_size),
            PyLong_FromLongLong(stored),
            PyLong_FromLongLong(data_size),
            PyLong_FromLongLong(payload_crc),
            PyLong_FromLongLong(end),
        };
        int failed = 0;
        for (int k = 0; k < 10; k++) {
            if (!failed) {
                failed = set_slot(entry, PyTuple_GET_ITEM(slots, k), values[k]) < 0;
            }
            else {
                Py_XDECREF(values[k]);
            }
        }
        if (failed || PyList_Append(out, entry) < 0) {
            Py_DECREF(entry);
            goto error;
        }
        /* It holds only str, int and None, so it can be in no reference
         * cycle: the collector need not visit it. (A listing of 300,000
         * entries otherwise makes each full collection, run in whichever
         * thread allocates, hold the GIL for tens of milliseconds.) */
        if (PyObject_IS_GC(entry)) {
            PyObject_GC_UnTrack(entry);
        }
        Py_DECREF(entry);
        end = start;
    }
    PyBuffer_Release(&buffer);
    return PyLong_FromLongLong(end);
error:
    PyBuffer_Release(&buffer);
    return NULL;
}

/* value in n septets at p, low first (the caller knows it fits). */
static void
put_septets(unsigned char *p, uint64_t value, int n)
{
    for (int i = 0; i < n; i++) {
        p[i] = (unsigned char)(value & 0x7f);
        value >>= 7;
    }
}

/* archive_frame(start, name, comment, timestamp, codec, stored, data_size,
 * payload_crc): the header of a version-2 element at start (its fixed part,
 * checksum, name and comment, as ElementLayout.encode_header makes it), its
 * checksum, and the trailer that ends it once stored payload bytes follow
 * the header (as encode_trailer makes it): (header, header_crc, trailer).
 * The caller has checked the name, comment and timestamp. */
static PyObject *
speedups_archive_frame(PyObject *module, PyObject *args)
{
    unsigned long long start, stored, data_size;
    long long timestamp;
    unsigned int codec, payload_crc;
    Py_buffer name, comment;
    if (!PyArg_ParseTuple(args, "Ky*y*LIKKI:archive_frame", &start, &name, &comment,
                          &timestamp, &codec, &stored, &data_size, &payload_crc)) {
        return NULL;
    }
    PyObject *header = NULL, *trailer = NULL, *result = NULL;
    uint64_t limit = (uint64_t)1 << 63;
    if (name.len == 0 || name.len > AR_MAX_STRING || comment.len > AR_MAX_STRING ||
        codec > 255 || start >= limit || stored >= limit || data_size >= limit) {
        PyErr_SetString(PyExc_ValueError, "not an element's fields");
        goto done;
    }
    Py_ssize_t header_size = AR_HEADER + name.len + comment.len;
    uint64_t length = (uint64_t)header_size + stored + AR_TRAILER;
    if (length >= limit) {
        PyErr_SetString(PyExc_ValueError, "an element is under 2**63 bytes");
        goto done;
    }
    header = PyBytes_FromStringAndSize(NULL, header_size);
    trailer = PyBytes_FromStringAndSize(NULL, AR_TRAILER);
    if (header == NULL || trailer == NULL) {
        goto done;
    }
    unsigned char *h = (unsigned char *)PyBytes_AS_STRING(header);
    memcpy(h, "GARe", 4);
    h[4] = (unsigned char)codec;
    h[5] = 0;
    put_septets(h + 6, (uint64_t)timestamp, 10); /* two's complement */
    put_septets(h + 16, start, 10);
    put_septets(h + 26, (uint64_t)name.len, 3);
    put_septets(h + 29, (uint64_t)comment.len, 3);
    memcpy(h + AR_HEADER, name.buf, (size_t)name.len);
    memcpy(h + AR_HEADER + name.len, comment.buf, (size_t)comment.len);
    int64_t header_crc = crc32c_of(0, h, 32);
    if (header_crc < 0) {
        goto done;
    }
    header_crc = crc32c_of((uint32_t)header_crc, h + AR_HEADER,
                           name.len + comment.len);
    if (header_crc < 0) {
        goto done;
    }
    put_septets(h + 32, (uint64_t)header_crc, 5);
    unsigned char *t = (unsigned char *)PyBytes_AS_STRING(trailer);
    t[0] = 0;
    put_septets(t + 1, start, 10);
    put_septets(t + 11, length, 10);
    put_septets(t + 21, stored, 10);
    put_septets(t + 31, data_size, 10);
    put_septets(t + 41, payload_crc, 5);
    put_septets(t + 46, (uint64_t)header_crc, 5);
    memcpy(t + 51, ar_magic, 16);
    int64_t crc = crc32c_of(0, t, 67);
    if (crc < 0) {
        goto done;
    }
    put_septets(t + 67, (uint64_t)crc, 5);
    result = Py_BuildValue("OkO", header, (unsigned long)header_crc, trailer);
done:
    Py_XDECREF(header);
    Py_XDECREF(trailer);
    PyBuffer_Release(&name);
    PyBuffer_Release(&comment);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"crc32c", speedups_crc32c, METH_VARARGS,
     "crc32c(data, value=0): CRC-32C of data, continuing from value."},
    {"log_encode", speedups_log_encode, METH_VARARGS,
     "log_encode(records, start, stop, block_offset, out, max_bytes): frame "
     "records[start:stop] as LevelDB's log writer until out grew by "
     "max_bytes; (block offset, index reached)."},
    {"log_full_records", speedups_log_full_records, METH_VARARGS,
     "log_full_records(buffer, buffer_start, block_start, pos, start, stop, "
     "limit, out): the whole FULL records; (block_start, pos, count)."},
    {"tf_frame", speedups_tf_frame, METH_VARARGS,
     "tf_frame(records, start, stop, out, max_bytes): frame "
     "records[start:stop] as TFRecord until out grew by max_bytes; the "
     "index reached."},
    {"tf_good_records", speedups_tf_good_records, METH_VARARGS,
     "tf_good_records(buffer, at, base, stop, max_record_size, limit, out): "
     "the whole records whose checksums hold; where it stopped."},
    {"capture_add", speedups_capture_add, METH_VARARGS,
     "capture_add(records, start, stop, block, leaf, block_position, "
     "block_size, node_size, max_record_size, text): records added to a capture "
     "writer's block and leaf, up to one that fills either or that Python "
     "must handle; the index reached."},
    {"capture_items", speedups_capture_items, METH_VARARGS,
     "capture_items(block, offsets, start, text, out): the sized items at "
     "offsets[start:] of a capture block, as bytes or UTF-8 str, up to one "
     "outside the block; the index reached."},
    {"archive_elements", speedups_archive_elements, METH_VARARGS,
     "archive_elements(data, base, end, floor, codec_names, entry_type, slots, "
     "most, out): the whole version-2 elements ending at or before end that data "
     "(from offset base) holds, newest first, up to anything else; where it "
     "stopped."},
    {"archive_frame", speedups_archive_frame, METH_VARARGS,
     "archive_frame(start, name, comment, timestamp, codec, stored, "
     "data_size, payload_crc): a version-2 element's header, its checksum "
     "and its trailer."},
    {"take_records", speedups_take_records, METH_VARARGS,
     "take_records(pending, index, max_bytes, out): the data of decoded "
     "records up to a region or max_bytes; (index reached, bytes taken)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "aiorecords._speedups",
    "Compiled per-record kernels (optional; the Python cores are the "
    "reference).",
    -1, speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    const char *off = getenv("AIORECORDS_NO_EXTENSIONS");
    if (off != NULL && off[0] != '\0' && strcmp(off, "0") != 0) {
        PyErr_SetString(PyExc_ImportError,
                        "AIORECORDS_NO_EXTENSIONS is set: the pure-Python "
                        "code is used");
        return NULL;
    }
    PyObject *package = PyImport_ImportModule("crc32c");
    if (package == NULL) {
        return NULL;
    }
    package_crc32c = PyObject_GetAttrString(package, "crc32c");
    Py_DECREF(package);
    if (package_crc32c == NULL) {
        return NULL;
    }
#ifdef HAVE_X86_CRC
    __builtin_cpu_init();
    have_crc_instruction = __builtin_cpu_supports("sse4.2") != 0;
#endif
    for (int kind = 0; kind < 5; kind++) {
        unsigned char byte = (unsigned char)kind;
        int64_t crc = crc32c_of(0, &byte, 1);
        if (crc < 0) {
            return NULL;
        }
        type_crc[kind] = (uint32_t)crc;
    }
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(module, "crc_instruction", have_crc_instruction) <
        0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
