"""The archive: every topic's records copied to Avro files on a local directory or any
fsspec URL, with a manifest per file (format in :mod:`.format`, the archiver stage in
:mod:`.archiver`)."""
