"""TFRecord files: TensorFlow's record framing, async.

[`TFRecordWriter`][aiorecords.TFRecordWriter] frames records as
``tf.io.TFRecordWriter`` does (optionally compressed whole with GZIP or
ZLIB, and indexed in a ``.tfindex`` file as the ``tfrecord`` package
indexes); [`TFRecordReader`][aiorecords.TFRecordReader] reads them back as
``tf.data.TFRecordDataset`` does. Both are shaped like the LevelDB records
API, and do their I/O the same way: one worker-thread hop per buffer or
block, none per record.
"""

from ._reader import TFRecordReader
from ._writer import TFRecordWriter

__all__ = ["TFRecordReader", "TFRecordWriter"]
