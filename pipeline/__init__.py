"""millrace pipeline: ports (event log, projection sink, connector), processors, runtimes, CLI."""
