"""Records every client exchange to SQLite (browsable in Datasette).

    rec = Recorder("recordings/bridge.db"); rec.open()   # ConfigError when the file is unusable
    rec.submit(exchange_record)                          # from any thread, never blocks
    rec.flush(); rec.close()

Modules: `schema` (migrations, connection), `messages` (content-addressed message store), `store`
(record -> rows, redaction), `writer` (the thread and queue), `prune` (retention), `export` (replay
fixtures), `metadata` (Datasette titles, descriptions and canned queries).
"""

from llmbridge.recorder.writer import Recorder, RecorderError, recorder_from_config

__all__ = ["Recorder", "RecorderError", "recorder_from_config"]
