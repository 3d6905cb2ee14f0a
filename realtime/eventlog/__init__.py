"""The event log: numbered events, cursors, the sequencer and the reads that resume from it."""
