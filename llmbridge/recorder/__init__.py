"""Records every client exchange to SQLite (browsable in Datasette).

    rec = Recorder("recordings/bridge.db"); rec.open()   # ConfigError when the file is unusable
    rec.submit(exchange_record)                          # from any thread, never blocks
    rec.flush(); rec.close()

Modules: `recorder` (`Recorder`: the queue and the writer thread), `store` (`RecordWriter`: one record
-> rows in one transaction, redaction), `messages` (content-addressed message store), `schema`
(migrations, connection), `query` (read side for the CLI), `prune` (retention), `export` (replay
fixtures), `metadata` (Datasette titles, descriptions and canned queries), `browse` (what `llmbridge browse`
guards and starts), `reading` (one exchange for its screen), `render` (Markdown, JSON, durations, search
queries and charts as Datasette shows them); `datasette_plugins/` and `templates/` are loaded by Datasette.
"""

from llmbridge.recorder.recorder import Recorder, RecorderError, recorder_from_config

__all__ = ["Recorder", "RecorderError", "recorder_from_config"]
