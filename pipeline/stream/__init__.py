"""Live-stream folds: log events in, stream items out (``api.stream_tail`` drives them)."""
