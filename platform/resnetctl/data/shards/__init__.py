"""Data sets packed into WebDataset tar shards: `resnetctl data pack` writes them
(`plan.py`, `writer.py`, `pack.py`), `data.source.kind: shards` reads them (`manifest.py`,
`reading.py`, `cache.py`).

One shard is a tar of samples, each an image and its class index (`KEY.jpg`, `KEY.cls`), with a
DALI index beside it (`.idx`: the byte offset of every member), so DALI's
`fn.readers.webdataset` reads any sample without scanning the tar; `manifest.json` lists the
shards, classes and counts, so a run reads one file to start, and lists nothing.
"""
